// Package resolver answers DNS queries: the server that reads them from
// the network and the pipeline that decides and answers each one.
//
// Server (server.go, udp.go, tcp.go, packet.go) owns the sockets and
// everything before a query reaches the pipeline. One packet path serves
// UDP and TCP: the rate limit (package ratelimit) and the bound on queries
// in flight are applied before a packet is parsed; runts, responses,
// questions with a compression pointer or cut short, and packets that do
// not parse are dropped unanswered and counted (answering them could be
// aimed at a spoofed victim); TCP connections are bounded in number, in
// idle and read time, in write time and in queries. miekg/dns provides
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
package resolver
