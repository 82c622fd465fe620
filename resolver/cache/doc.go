// Package cache keeps upstream answers so that a repeated question is
// answered without asking upstream again.
//
// It owns what is stored (an Entry: the answer packed in wire format, with
// the offset and stored TTL of every record), for how long (RFC 2308 and the
// [cache] TTL limits, ttl.go), how an entry becomes the reply to a client
// (patching a copy of the bytes: ID, flags, the question's letter case,
// TTLs counted down, an OPT for EDNS clients; entry.go), and what happens
// around a miss: concurrent identical misses share one upstream query
// (flight.go), popular entries are refreshed shortly before they expire
// (prefetch.go), and expired entries answer when the upstream fails, for
// serve_stale (RFC 8767; resolve.go).
//
// The cache holds upstream answers only. Block answers never reach it: the
// policy decides before the cache is consulted, so one group's exemption can
// never leak to another group, nor a block the other way round.
//
// Entries are keyed by Key: the canonical question name, type and class,
// and the client's DO and CD bits, which change what the upstream returns.
// The client's letter case, ID, RD and EDNS size are not part of the key;
// they are patched into each reply.
//
// Expiry and eviction are independent. The LRU (hashicorp/golang-lru/v2)
// evicts the least recently used entry when it is full, fresh or not; an
// entry that has expired stays until serve_stale has passed since its
// expiry (so it can still answer when the upstream fails), and is dropped
// when it is next looked up after that or when the LRU evicts it. An expired
// entry nobody asks for sinks to the tail and is evicted first.
//
// An Entry is built once, when the answer is stored, from the unpacked
// message. Facts about the answer that every hit needs belong in Entry, so
// that a hit reads them without unpacking: the apps its CNAME targets and
// addresses belong to (policy.Findings) are kept there for one policy
// generation (Entry.Findings, Entry.SetFindings), computed by the resolver
// once per entry and policy, and checked against each client's group.
//
// It owns the entries, their expiry and the shared resolutions, and
// declares its collectors (metrics.go), registered on the registerer New
// is given. It may import config, internal/dnsname, internal/dnswire and
// internal/promreg; not policy (the findings are kept opaque) nor metrics.
package cache
