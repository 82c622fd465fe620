// Package upstream sends the queries AppFence cannot answer itself to the
// configured upstream resolvers. It owns:
//
//   - the protocols (plain.go, stream.go, dot.go, doh.go): plain DNS over
//     UDP with a fresh random source port per query (answers that do not
//     match are counted and ignored) and TCP when the answer is truncated
//     or larger than the 1232 bytes advertised; DNS over TLS (RFC 7858);
//     DNS over HTTPS (RFC 8484, POST, HTTP/2 where offered). TCP and TLS connections are reused and
//     pipelined (RFC 7766): several queries in flight on one connection,
//     matched by message ID, closed when idle, redialled when the server
//     closes them. DoH uses HTTP keep-alive.
//   - the choice among servers (pool.go, strategy.go): failover,
//     round_robin, fastest (smoothed latency with occasional probes of the
//     others) and parallel (the two best at once, the first good answer
//     wins);
//   - health (health.go): consecutive failures mark a server down; a
//     background prober with exponential backoff brings it back;
//   - conditional forwarding (router.go): the most specific forward zone
//     that contains a name picks its pool, and its queries go nowhere else;
//   - what is taken from an answer (sanitize.go): AD only from servers
//     trusted for validation, no DNSSEC records for queries without DO, no
//     additional records out of the question's bailiwick, top-bit TTLs as 0;
//     FORMERR without OPT to an EDNS query is asked again without EDNS;
//   - error classification for metrics (errors.go).
//
// A Router is built from the [upstream] section and is immutable except for
// the health and latency it learns; Close stops its probers when a reload
// replaces it.
//
// It owns the exchanges with upstream servers, their health and their
// collectors (metrics.go, registered on the registerer NewRouter is given).
// It may import config, internal/dnsname, internal/dnswire and
// internal/promreg; not metrics, policy or the resolver.
package upstream
