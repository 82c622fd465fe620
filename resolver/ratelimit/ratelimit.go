// Package ratelimit limits the queries per second of each client address
// (server.rate_limit) in a table of fixed size.
//
// A client is an IPv4 address or an IPv6 /64: one host usually owns a whole
// /64, so limiting single IPv6 addresses would let it rotate through 2^64 of
// them. Each client has a token bucket kept as a single theoretical arrival
// time (the generic cell rate algorithm): at rate r a query is let through
// when the client's bucket holds a token, the bucket refills one token every
// 1/r seconds and holds at most r tokens (one second of queries), so a
// client may send a burst of r queries at once and r per second after it.
//
// Memory does not depend on the number of clients: the table has a fixed
// number of entries, chosen at New, in sets of eight. A client's set is
// found by hashing its address with a key chosen at random, so that an
// attacker cannot aim addresses at one set. A new client takes the entry
// of its set whose bucket is the fullest; an entry whose bucket is full
// again holds nothing a fresh one would not, so a client is forgotten
// without loss unless every entry of its set belongs to a client that is
// still being limited. Clients over their limit are the last ones
// forgotten, so spraying many source addresses does not free a flooding
// client from its limit (it only lets the spoofed addresses through, which
// no per-address limit can stop).
//
// It imports no AppFence package.
package ratelimit

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// ways is the number of entries in a set.
const ways = 8

// Limiter is a per-client rate limiter. It is safe for concurrent use.
type Limiter struct {
	sets  []set
	mask  uint64
	seed  uint64
	epoch time.Time
}

type set struct {
	mu      sync.Mutex
	entries [ways]entry
}

// entry is one client's bucket. tat is the theoretical arrival time of the
// client's next query, in nanoseconds since the Limiter's epoch: the bucket
// is full when tat is at or before now, and holds one token less for each
// emission interval tat is ahead of now. 0 is an unused entry.
type entry struct {
	key uint64
	tat int64
}

// New returns a limiter that remembers at least entries clients (rounded up
// to a power of two, at least one set).
func New(entries int) *Limiter {
	n := 1
	for n*ways < entries {
		n <<= 1
	}
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return &Limiter{
		sets:  make([]set, n),
		mask:  uint64(n - 1),
		seed:  binary.LittleEndian.Uint64(b[:]),
		epoch: time.Now(),
	}
}

// Size returns the number of clients the limiter remembers.
func (l *Limiter) Size() int { return len(l.sets) * ways }

// Allow reports whether a query from addr at now is within rate queries per
// second, and takes a token from its bucket if it is. rate may change from
// call to call (a reload); 0 or less lets every query through.
func (l *Limiter) Allow(addr netip.Addr, rate int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	t := int64(now.Sub(l.epoch))
	if t <= 0 {
		t = 1 // 0 marks an unused entry
	}
	interval := int64(time.Second) / int64(rate)
	// A full bucket holds rate tokens: tat may run ahead of now by this
	// much, and a query is let through while it is.
	burst := interval * int64(rate-1)
	k := key(addr)
	s := &l.sets[mix(k^l.seed)&l.mask]
	s.mu.Lock()
	e := s.find(k)
	tat := max(e.tat, t)
	ok := tat-t <= burst
	if ok {
		e.tat = tat + interval
	}
	s.mu.Unlock()
	return ok
}

// find returns k's entry in s, or the entry it takes over: the one whose
// bucket is the fullest (an unused one first).
func (s *set) find(k uint64) *entry {
	victim := &s.entries[0]
	for i := range s.entries {
		e := &s.entries[i]
		if e.key == k && e.tat != 0 {
			return e
		}
		if e.tat < victim.tat {
			victim = e
		}
	}
	*victim = entry{key: k}
	return victim
}

// key is the client of addr: an IPv4 address, or the /64 of an IPv6 one.
// IPv4 addresses are put in ffff:ffff::/32, inside the multicast range
// ff00::/8, which is never the source of a query, so the two families
// cannot share a key.
func key(addr netip.Addr) uint64 {
	addr = addr.Unmap()
	if addr.Is4() {
		a := addr.As4()
		return 0xffffffff<<32 | uint64(binary.BigEndian.Uint32(a[:]))
	}
	a := addr.As16()
	return binary.BigEndian.Uint64(a[:8])
}

// mix is the splitmix64 finalizer: every bit of x moves every bit of the
// result, so that the set of a key cannot be told from the key without the
// seed.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
