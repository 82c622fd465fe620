package upstream

import (
	"math"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
)

// sanitize makes resp, an upstream's answer to req, fit to cache and to
// pass on, whatever the upstream (or an attacker on the way to it) put in
// it:
//
//   - AD is cleared unless the server is trusted for validation (trustAD:
//     upstream.trust_ad, only for DoT and DoH servers): AppFence validates
//     nothing, and an AD bit that crossed an unauthenticated path proves
//     nothing (RFC 6840 5.8).
//   - For a query without DO, RRSIG, NSEC and NSEC3 records are removed
//     (RFC 4035 3.2.1), except records of the asked type in the answer
//     section.
//   - Additional records outside the bailiwick of the question are removed
//     (see inBailiwick); the OPT record is kept.
//   - A TTL with the top bit set is treated as zero (RFC 2181 8).
func sanitize(req, resp *dns.Msg, trustAD bool) {
	if !trustAD {
		resp.AuthenticatedData = false
	}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	var q dns.Question
	if len(req.Question) > 0 {
		q = req.Question[0]
	}
	resp.Answer = scrub(resp.Answer, func(rr dns.RR) bool {
		t := rr.Header().Rrtype
		return do || !isDNSSEC(t) || t == q.Qtype
	})
	resp.Ns = scrub(resp.Ns, func(rr dns.RR) bool { return do || !isDNSSEC(rr.Header().Rrtype) })
	if len(resp.Extra) > 0 {
		zone := bailiwick(q.Name, resp.Ns)
		resp.Extra = scrub(resp.Extra, func(rr dns.RR) bool {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				return true
			}
			return (do || !isDNSSEC(h.Rrtype)) && dnsname.IsSubdomain(dnsname.Canonical(h.Name), zone)
		})
	}
	for _, section := range [...][]dns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range section {
			// The OPT record's TTL field holds its flags, not a TTL.
			if h := rr.Header(); h.Rrtype != dns.TypeOPT && h.Ttl > math.MaxInt32 {
				h.Ttl = 0
			}
		}
	}
}

// isDNSSEC reports whether records of type t are DNSSEC proofs that a
// client without DO must not get.
func isDNSSEC(t uint16) bool {
	return t == dns.TypeRRSIG || t == dns.TypeNSEC || t == dns.TypeNSEC3
}

// bailiwick returns, as a canonical name, the zone whose additional
// records an answer to qname may carry: the closest enclosing zone of
// qname named by an SOA or NS record of the authority section, else qname
// itself.
func bailiwick(qname string, ns []dns.RR) string {
	name := dnsname.Canonical(qname)
	zone, found := name, false
	for _, rr := range ns {
		h := rr.Header()
		if h.Rrtype != dns.TypeSOA && h.Rrtype != dns.TypeNS {
			continue
		}
		owner := dnsname.Canonical(h.Name)
		if dnsname.IsSubdomain(name, owner) && (!found || len(owner) > len(zone)) {
			zone, found = owner, true
		}
	}
	return zone
}

// scrub keeps the records of rrs for which keep is true, in place.
func scrub(rrs []dns.RR, keep func(dns.RR) bool) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if keep(rr) {
			out = append(out, rr)
		}
	}
	return out
}
