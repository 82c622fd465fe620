// Package resolver answers DNS queries: the server that reads them from
// the network and the pipeline that decides and answers each one.
//
// Server (server.go, udp.go, tcp.go, packet.go) owns the sockets and
// everything before a query reaches the pipeline. On every transport,
// runts, responses, questions with a compression pointer or cut short are
// dropped unanswered and counted before anything else (checkPacket:
// answering them could be aimed at a spoofed victim), and only then is the
// client charged for the rate limit (package ratelimit), so that spoofed
// non-queries cannot drain a device's bucket. What happens to a query over
// the limit differs: on UDP it is dropped before it is parsed; on TCP the
// limit is checked before the fast path, but a limited query is then
// parsed, to be answered REFUSED; DoT, DoH and DoQ (encrypted.go) do as
// TCP, and their fast path decides for the device's identity and pads
// the reply. On UDP
// the bound on queries in flight is applied before a packet is parsed, and
// packets that do not parse are dropped. TCP connections are refused at accept for
// clients outside allow_clients, bounded in number in all and per client,
// the one idle longest closed to make room, and bounded in idle and read
// time, in write time and in queries. miekg/dns provides
// the messages and the UDP session helpers; its Server is not used,
// because it answers FORMERR to packets that do not parse and has no hook
// to stop it.
//
// Handler (handler.go) is the pipeline, a plain sequence of calls from
// ServeDNS down: the client's access (request.go checks the rest of the
// request), the policy's decision, then the block answer (answer.go), an
// answer made here (ANY, zone transfers), or the cache and the upstream;
// finish shapes every reply for its client (ID, case, EDNS, truncation).
// Metrics and the query log observe the result (observe.go). State holds
// what a reload replaces; Handler.Swap installs it atomically.
//
// Every query has a context from its listener (Server.Start,
// TLSServer.Start), cancelled when Shutdown's grace ends: no upstream wait
// outlives the shutdown. The cache's background resolutions run in the
// cache's own lifetime (cache.New).
//
// It owns the listeners, the pipeline and the per-query metrics series
// (series.go). It may import config, policy, blocklists, metrics,
// querylog, querylog/dnstap, its subpackages and internal/dnsname,
// internal/dnswire; not reload, httpapi or internal/daemon, which compose
// it.
package resolver
