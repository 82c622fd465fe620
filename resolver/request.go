package resolver

import (
	"github.com/miekg/dns"
)

// check returns the rcode that a query which is not a plain question gets,
// or RcodeSuccess. The rules are Unbound's:
//
//   - an opcode other than QUERY: NOTIMP;
//   - TC set, a question count other than one, records in the answer or
//     authority section, more than one record in the additional section
//     (an OPT; AppFence verifies no TSIG), or a question type that is
//     only meaningful inside a message (OPT, TSIG, TKEY), obsolete (MAILA,
//     MAILB) or a reserved meta-type (128-248): FORMERR;
//   - an EDNS version other than 0: BADVERS (RFC 6891, 6.1.3).
//
// ANY, AXFR and IXFR are valid questions, answered after the decision (so
// that they stay blocked for a blocked name): see anyAnswer.
func check(req *dns.Msg) int {
	switch {
	case req.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented
	case req.Truncated, len(req.Question) != 1, len(req.Answer) != 0, len(req.Ns) != 0, len(req.Extra) > 1:
		return dns.RcodeFormatError
	}
	if badQuestionType(req.Question[0].Qtype) {
		return dns.RcodeFormatError
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers
	}
	return dns.RcodeSuccess
}

// badQuestionType reports whether t is a type no question may ask: one
// that is only meaningful inside a message (OPT, TSIG, TKEY), obsolete
// (MAILA, MAILB) or a reserved meta-type (128-248).
func badQuestionType(t uint16) bool {
	switch {
	case t == dns.TypeOPT, t == dns.TypeTSIG, t == dns.TypeTKEY, t == dns.TypeMAILA, t == dns.TypeMAILB,
		t >= 128 && t <= 248:
		return true
	}
	return false
}

// anyTTL is the TTL of the answer to ANY.
const anyTTL = 3600

// anyAnswer is the answer to an ANY query that is not blocked: the HINFO
// record "RFC8482" "" of RFC 8482, section 4.2, instead of every record of
// the name. ANY is what reflection attacks ask for, because its answer is
// the largest; no stub resolver needs it (browsers and operating systems
// ask for A, AAAA, HTTPS). It is answered the same way over UDP and TCP,
// from here, without asking upstream, for names that exist or not.
func anyAnswer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	q := req.Question[0]
	resp.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeHINFO, Class: q.Qclass, Ttl: anyTTL},
		Cpu: "RFC8482",
	}}
	return resp
}

// resolverArpa is the special-use zone of Discovery of Designated Resolvers
// (RFC 9462). A forwarder must not send queries for it upstream (section
// 6.4): the upstream would describe itself, not AppFence.
const resolverArpa = "resolver.arpa"

// resolverArpaNoData answers a query at or under resolver.arpa with NODATA,
// with the zone's SOA so that the answer is cached (ddr.go answers the
// discovery query when there are encrypted listeners).
func resolverArpaNoData(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Ns = []dns.RR{&dns.SOA{
		Hdr:     dns.RR_Header{Name: resolverArpa + ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: anyTTL},
		Ns:      soaMName,
		Mbox:    soaRName,
		Serial:  1,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  anyTTL,
	}}
	return resp
}
