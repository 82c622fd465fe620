package resolver

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnsname"
)

// check returns the rcode that a query which is not a plain question gets,
// or RcodeSuccess. The rules are Unbound's:
//
//   - an opcode other than QUERY: NOTIMP;
//   - a question count other than one, records in the answer or
//     authority section, more than one record in the additional section
//     (an OPT; AppFence verifies no TSIG), or a question type that is
//     only meaningful inside a message (OPT, TSIG, TKEY), obsolete (MAILA,
//     MAILB) or a reserved meta-type (128-248): FORMERR;
//   - an OPT record whose owner is not the root (RFC 6891, 6.1.2), or a
//     known option that is badly formed (see validOption; request marks
//     the options miekg/dns does not parse): FORMERR;
//   - an EDNS version other than 0: BADVERS (RFC 6891, 6.1.3);
//   - a TSIG record, last in the additional section: NOTAUTH, with the
//     TSIG error BADKEY (RFC 8945, 5.2.2; see tsigReply): AppFence has no
//     keys. A TSIG anywhere else is FORMERR.
//
// TC in a query means nothing (RFC 1035 defines it for responses): it is
// ignored, as ISC's genreport expects; Unbound answers FORMERR.
//
// ANY, AXFR and IXFR are valid questions, answered after the decision (so
// that they stay blocked for a blocked name): see anyAnswer.
func check(req *dns.Msg) int {
	switch {
	case req.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented
	}
	extra := req.Extra
	tsig := requestTSIG(req)
	if tsig != nil {
		extra = extra[:len(extra)-1]
	}
	switch {
	case len(req.Question) != 1, len(req.Answer) != 0, len(req.Ns) != 0, len(extra) > 1,
		len(extra) == 1 && extra[0].Header().Rrtype != dns.TypeOPT:
		return dns.RcodeFormatError
	}
	if badQuestionType(req.Question[0].Qtype) {
		return dns.RcodeFormatError
	}
	opt := req.IsEdns0()
	if opt == nil {
		return tsigRcode(tsig)
	}
	if opt.Hdr.Name != "." {
		return dns.RcodeFormatError
	}
	for _, o := range opt.Option {
		if _, bad := o.(malformedOption); bad {
			return dns.RcodeFormatError
		}
	}
	if opt.Version() != 0 {
		return dns.RcodeBadVers
	}
	return tsigRcode(tsig)
}

// tsigRcode is the rcode of a query signed with tsig: NOTAUTH, since
// AppFence knows no key; RcodeSuccess for an unsigned query.
func tsigRcode(tsig *dns.TSIG) int {
	if tsig != nil {
		return dns.RcodeNotAuth
	}
	return dns.RcodeSuccess
}

// requestTSIG returns the TSIG record that ends req's additional section,
// or nil. A TSIG cut short is not one: miekg/dns reads missing fields as
// zero (an empty RDATA as no algorithm at all), and the reply, which
// writes the record out whole, could be larger than the query or not
// parse (both found by FuzzServePacket). The query is then malformed
// (FORMERR), and its reply carries no TSIG.
func requestTSIG(req *dns.Msg) *dns.TSIG {
	if n := len(req.Extra); n > 0 {
		if t, ok := req.Extra[n-1].(*dns.TSIG); ok && wholeTSIG(t) {
			return t
		}
	}
	return nil
}

// wholeTSIG reports whether t's RDATA, as read from the wire, held every
// field of a TSIG (RFC 8945, 4.2): the length it would be written out with.
func wholeTSIG(t *dns.TSIG) bool {
	if t.Algorithm == "" {
		return false
	}
	name := make([]byte, 256)
	n, err := dns.PackDomainName(t.Hdr.Name, name, 0, nil, false)
	if err != nil {
		return false
	}
	return dns.Len(t) == n+10+int(t.Hdr.Rdlength)
}

// tsigReply is the TSIG record of the reply to a query signed with t:
// unsigned (no MAC), with the TSIG error BADKEY, as RFC 8945, 5.2.2 says
// a server answers a key it does not know. AppFence has no TSIG keys:
// TSIG authenticates zone transfers and updates between configured peers,
// neither of which a forwarder serves.
func tsigReply(t *dns.TSIG) *dns.TSIG {
	return &dns.TSIG{
		Hdr:        dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  t.Algorithm,
		TimeSigned: t.TimeSigned,
		Fudge:      t.Fudge,
		OrigId:     t.OrigId,
		Error:      dns.RcodeBadKey,
	}
}

// classAnswer answers a query whose class is not IN or ANY: CHAOS TXT
// queries for the server's identity and version (RFC 4892) from s; every
// other CHAOS query, and every other class, REFUSED (AppFence forwards IN
// only, and never asks its upstream who it is). It returns nil for IN and
// ANY.
func classAnswer(req *dns.Msg, s *config.Server) *dns.Msg {
	q := req.Question[0]
	switch q.Qclass {
	case dns.ClassINET, dns.ClassANY:
		return nil
	case dns.ClassCHAOS:
	default:
		return errorReply(req, dns.RcodeRefused)
	}
	var text string
	switch dnsname.Canonical(q.Name) {
	case "id.server", "hostname.bind":
		text = s.Identity
	case "version.bind", "version.server":
		text = s.Version
	}
	if text == "" || q.Qtype != dns.TypeTXT && q.Qtype != dns.TypeANY {
		return errorReply(req, dns.RcodeRefused)
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Answer = []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS},
		// miekg/dns reads backslash escapes in TXT strings.
		Txt: []string{strings.ReplaceAll(text, `\`, `\\`)},
	}}
	return resp
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
// for names that exist; a name that does not keeps the upstream's
// NXDOMAIN (Handler.answerANY).
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
