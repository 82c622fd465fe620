package cache

import (
	"math"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnsname"
)

// StaleTTL is the TTL of every record of an answer served after its entry
// expired (RFC 8767, section 4).
const StaleTTL = 30

// maxTTL is the largest TTL RFC 2181 (section 8) allows; a TTL with the top
// bit set is treated as zero.
const maxTTL = math.MaxInt32

// storedTTLs returns the TTL the cache keeps for every record of m (answer,
// authority and additional sections in order, OPT left out), or false when
// m must not be cached. m answers the question of k.
//
// Positive answers: each record's TTL clamped to [min_ttl, max_ttl]; the
// entry lives as long as the smallest. Negative answers (NXDOMAIN, and
// NODATA: NOERROR without a record of the asked type) are cached per
// RFC 2308 only when they carry an SOA: for the smaller of the SOA's TTL and
// its MINIMUM, clamped the same way and capped by max_negative_ttl. The SOA
// gets exactly that TTL and no other record gets more.
//
// Not cached: truncated answers, rcodes other than NOERROR and NXDOMAIN
// (SERVFAIL, REFUSED, ...), answers to another question, negative answers
// without an SOA, and answers whose TTL comes to zero.
func storedTTLs(k Key, m *dns.Msg, s *config.Cache) ([]uint32, bool) {
	if m.Truncated || m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return nil, false
	}
	if len(m.Question) != 1 {
		return nil, false
	}
	q := m.Question[0]
	if q.Qtype != k.Type || q.Qclass != k.Class || !dnsname.Equal(q.Name, k.Name) {
		return nil, false
	}
	lo, hi := seconds(s.MinTTL), seconds(s.MaxTTL)
	clamp := func(ttl uint32) uint32 {
		if ttl > maxTTL {
			ttl = 0
		}
		return min(max(ttl, lo), hi)
	}
	negative := m.Rcode == dns.RcodeNameError || !answers(k.Type, m.Answer)
	var soa *dns.SOA
	neg := uint32(math.MaxUint32)
	if negative {
		for _, rr := range m.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
				break
			}
		}
		if soa == nil {
			return nil, false
		}
		neg = min(clamp(min(soa.Hdr.Ttl, soa.Minttl)), seconds(s.MaxNegativeTTL))
	}
	ttls := make([]uint32, 0, len(m.Answer)+len(m.Ns)+len(m.Extra))
	least := uint32(math.MaxUint32)
	for _, section := range [...][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range section {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			t := min(clamp(h.Ttl), neg)
			if rr == dns.RR(soa) {
				t = neg
			}
			ttls = append(ttls, t)
			least = min(least, t)
		}
	}
	if len(ttls) == 0 || least == 0 {
		return nil, false
	}
	return ttls, true
}

// answers reports whether rrs hold a record of type qtype: the answer is
// positive. Any record answers a query of type ANY.
func answers(qtype uint16, rrs []dns.RR) bool {
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == qtype || qtype == dns.TypeANY && t != dns.TypeOPT {
			return true
		}
	}
	return false
}

// seconds converts a configured duration to a TTL in whole seconds.
func seconds(d time.Duration) uint32 {
	return uint32(min(max(d/time.Second, 0), maxTTL))
}
