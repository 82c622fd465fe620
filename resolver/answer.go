package resolver

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/upstream"
)

// ednsSize is the UDP payload size AppFence advertises, to clients and to
// upstreams (the DNS flag day 2020 value, which avoids IP fragmentation).
const ednsSize = 1232

// Names in the SOA of block answers. .invalid is reserved (RFC 6761), so
// they can never collide with a real zone.
const (
	soaMName = "appfence.invalid."
	soaRName = "hostmaster.appfence.invalid."
)

// Addresses of the "null" block response.
var (
	nullIPv4 = netip.IPv4Unspecified()
	nullIPv6 = netip.IPv6Unspecified()
)

// blockAnswer builds the block response for req according to the
// blocking.response mode: the question echoed, RA set, AA clear, an SOA in
// the authority section with the block TTL, and EDE 15 naming the app for
// EDNS clients (added by finish); see blockRcode.
func blockAnswer(p *policy.Policy, req *dns.Msg, name string, d *policy.Decision) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	q := req.Question[0]
	ttl := blockTTL(p)
	rcode, addr := blockRcode(p, q.Qtype, d)
	resp.Rcode = rcode
	if addr.IsValid() {
		hdr := dns.RR_Header{Name: q.Name, Class: q.Qclass, Rrtype: q.Qtype, Ttl: ttl}
		if addr.Is4() {
			resp.Answer = []dns.RR{&dns.A{Hdr: hdr, A: addr.AsSlice()}}
		} else {
			resp.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}}
		}
	}
	resp.Ns = []dns.RR{blockSOA(p, name, d, ttl)}
	return resp
}

// blockTTL is the TTL of block answers and of their SOA.
func blockTTL(p *policy.Policy) uint32 { return uint32(p.Config.Blocking.TTL.Seconds()) }

// blockRcode returns the rcode of the block answer to a query of type
// qtype decided d, under the blocking.response mode, and the address of
// its answer record for the null and sinkhole modes (A and AAAA queries
// with an address configured), or the zero Addr for no answer record. A
// canary is always answered NXDOMAIN, which is what the devices that ask
// for it look for.
func blockRcode(p *policy.Policy, qtype uint16, d *policy.Decision) (int, netip.Addr) {
	b := &p.Config.Blocking
	response := b.Response
	if d.Via == policy.ViaCanary {
		response = config.ResponseNXDomain
	}
	switch response {
	case config.ResponseNXDomain:
		return dns.RcodeNameError, netip.Addr{}
	case config.ResponseRefused:
		return dns.RcodeRefused, netip.Addr{}
	case config.ResponseNull, config.ResponseSinkhole:
		v4, v6 := b.SinkholeIPv4, b.SinkholeIPv6
		if response == config.ResponseNull {
			v4, v6 = nullIPv4, nullIPv6
		}
		switch {
		case qtype == dns.TypeA && v4.IsValid():
			return dns.RcodeSuccess, v4
		case qtype == dns.TypeAAAA && v6.IsValid():
			return dns.RcodeSuccess, v6
		}
	}
	return dns.RcodeSuccess, netip.Addr{} // nodata, or no address for the type
}

// blockSOA returns the SOA of a block answer (see blockZone), with the
// policy's load time as its serial, and the block TTL as its TTL and
// MINIMUM, so that resolvers behind AppFence cache the answer for that long
// (RFC 2308).
func blockSOA(p *policy.Policy, name string, d *policy.Decision, ttl uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: fqdn(blockZone(name, d)), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      soaMName,
		Mbox:    soaRName,
		Serial:  uint32(p.Loaded.Unix()),
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  ttl,
	}
}

// The timers of the SOA of block answers.
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// blockZone returns the owner of the SOA of a block answer to name decided
// d: the blocked domain, which is the rule's name, or the query name for
// exact and pattern rules and for rules found in the upstream's answer
// (whose names are not above the query name).
func blockZone(name string, d *policy.Decision) string {
	if d.Match.Kind == blocklists.KindDomain && d.Via == policy.ViaName {
		return d.Match.Rule
	}
	return name
}

// blockText is the EDE extra text of a block answer: the app and group,
// and for a rule not found through the query name where it was found
// ("via=cname:tiktokv.com.edgekey.net", "via=ip:192.0.2.1", "via=canary").
func blockText(d *policy.Decision) string {
	return string(appendBlockText(nil, d))
}

// appendBlockText appends blockText(d) to dst.
func appendBlockText(dst []byte, d *policy.Decision) []byte {
	if d.Unapproved {
		dst = append(dst, "not approved: group="...)
		return append(dst, d.Group.Name...)
	}
	dst = append(dst, "blocked: app="...)
	dst = append(dst, d.App()...)
	dst = append(dst, " group="...)
	dst = append(dst, d.Group.Name...)
	switch {
	case d.Via.Answer():
		dst = append(dst, " via="...)
		dst = append(dst, d.Via.String()...)
		dst = append(dst, ':')
		dst = append(dst, d.Found...)
	case d.Via != policy.ViaName:
		dst = append(dst, " via="...)
		dst = append(dst, d.Via.String()...)
	}
	return dst
}

// blockEDE returns the extended DNS error of the answer to a query decided
// d: EDE 15 "Blocked" for a blocked query when blocking.extended_errors is
// on, nil otherwise.
func blockEDE(p *policy.Policy, d *policy.Decision) *dns.EDNS0_EDE {
	if d.Action != policy.ActionBlock || !p.Config.Blocking.ExtendedErrors {
		return nil
	}
	return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: blockText(d)}
}

// fqdn turns a canonical name back into a fully qualified one.
func fqdn(name string) string {
	if name == "" {
		return "."
	}
	return name + "."
}

// errorReply returns an empty reply to req with the given rcode.
func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	return resp
}

// upstreamQuery builds the query sent upstream for req: the canonical
// (lower-case) name, RD set, the client's CD, AD set, and EDNS with the DO bit of
// the client and a payload size of ednsSize, whatever the client's: a
// larger UDP answer would be fragmented on the way, and fragments can be
// forged (DNS flag day 2020, RFC 9715); a larger answer comes over TCP.
// Other EDNS options of the client (cookies, client subnet) are hop-by-hop
// and not forwarded.
func upstreamQuery(req *dns.Msg, name string) *dns.Msg {
	q := req.Question[0]
	// One allocation for the message, its question and its OPT record.
	u := new(upstreamMsg)
	u.question[0] = dns.Question{Name: fqdnLike(name, q.Name), Qtype: q.Qtype, Qclass: q.Qclass}
	u.msg = dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id:                dns.Id(),
			Opcode:            dns.OpcodeQuery,
			RecursionDesired:  true,
			CheckingDisabled:  req.CheckingDisabled,
			AuthenticatedData: true,
		},
		Question: u.question[:],
	}
	u.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}
	u.opt.SetUDPSize(ednsSize)
	if opt := req.IsEdns0(); opt != nil && opt.Do() {
		u.opt.SetDo()
	}
	u.extra[0] = &u.opt
	u.msg.Extra = u.extra[:]
	return &u.msg
}

// upstreamMsg is an upstream query with the arrays its slices point into.
type upstreamMsg struct {
	msg      dns.Msg
	question [1]dns.Question
	extra    [1]dns.RR
	opt      dns.OPT
}

// fqdnLike returns fqdn(name), or asked when it is that already (a query
// in lower case): no new string.
func fqdnLike(name, asked string) string {
	if len(asked) == len(name)+1 && asked[len(name)] == '.' && asked[:len(name)] == name {
		return asked
	}
	return fqdn(name)
}

// upstreamAnswer turns what the upstream returned into what the client
// gets: an error, or FORMERR, NOTIMP or REFUSED from every server (which
// describe AppFence's query, not the client's), becomes SERVFAIL with an
// extended error (RFC 8914) saying why; see servfail. The upstream's
// SERVFAIL keeps the extended error it carries (DNSSEC Bogus, ...), or gets
// 22 "No Reachable Authority".
func upstreamAnswer(req *dns.Msg, resp *dns.Msg, err error) *dns.Msg {
	if err != nil {
		return servfail(req, upstreamEDE(err))
	}
	switch resp.Rcode {
	case dns.RcodeServerFailure:
		if findEDE(resp.Extra) == nil {
			resp.Extra = stripOPT(resp.Extra)
			resp.Extra = append(resp.Extra, ednsOPT(&dns.EDNS0_EDE{
				InfoCode:  dns.ExtendedErrorCodeNoReachableAuthority,
				ExtraText: "upstream answered SERVFAIL",
			}))
		}
	case dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused:
		return servfail(req, &dns.EDNS0_EDE{
			InfoCode:  dns.ExtendedErrorCodeNoReachableAuthority,
			ExtraText: "upstream answered " + dns.RcodeToString[resp.Rcode],
		})
	}
	return resp
}

// upstreamEDE is the extended error of a query no upstream answered: 23
// "Network Error" when the servers could not be reached (refused, reset,
// TLS or HTTP failures), 22 "No Reachable Authority" when they did not
// answer in time or answered nonsense, 0 "Other" when AppFence did not ask
// (too many upstream queries in flight, or the client's or zone's share
// of them taken: shedEDE).
func upstreamEDE(err error) *dns.EDNS0_EDE {
	if ede := shedEDE(err); ede != nil {
		return ede
	}
	if errors.Is(err, errUpstreamBusy) {
		return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: errUpstreamBusy.Error()}
	}
	switch kind := upstream.ErrorKind(err); kind {
	case upstream.KindNetwork, upstream.KindTLS, upstream.KindHTTP:
		return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNetworkError, ExtraText: "upstream " + kind + " error"}
	case upstream.KindTimeout:
		return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "no upstream answered in time"}
	}
	return &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: "no usable upstream answer"}
}

// servfail returns a SERVFAIL reply to req carrying ede in an OPT record,
// which finish passes on to EDNS clients.
func servfail(req *dns.Msg, ede *dns.EDNS0_EDE) *dns.Msg {
	resp := errorReply(req, dns.RcodeServerFailure)
	resp.Extra = append(resp.Extra, ednsOPT(ede))
	return resp
}

// ednsOPT returns an OPT record that carries ede to finish.
func ednsOPT(ede *dns.EDNS0_EDE) *dns.OPT {
	return &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: []dns.EDNS0{ede}}
}

// findEDE returns the first extended error of the OPT record in extra, or
// nil.
func findEDE(extra []dns.RR) *dns.EDNS0_EDE {
	for _, rr := range extra {
		if o, ok := rr.(*dns.OPT); ok {
			for _, opt := range o.Option {
				if e, ok := opt.(*dns.EDNS0_EDE); ok {
					return e
				}
			}
		}
	}
	return nil
}

// finish makes resp the reply to req as the client asked it: the client's
// ID, question and letter case, RA set (for QUERY), the client's EDNS (our OPT with its
// DO bit and any extended error, or no OPT for a client without EDNS), and
// for UDP no larger than the client can take (truncated with TC set). A
// SERVFAIL without ede gets the one resp's own OPT carries (the upstream's,
// or servfail's), else 0 "Other".
func finish(req, resp *dns.Msg, udp bool, ede *dns.EDNS0_EDE) {
	if ede == nil && resp.Rcode == dns.RcodeServerFailure {
		// Every SERVFAIL says why; 0 "Other" when nothing did.
		if ede = findEDE(resp.Extra); ede == nil {
			ede = &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther}
		}
	}
	resp.Id = req.Id
	resp.Compress = true
	resp.Response = true
	resp.Opcode = req.Opcode
	resp.RecursionDesired = req.RecursionDesired
	resp.RecursionAvailable = true
	resp.Authoritative = false
	resp.CheckingDisabled = req.CheckingDisabled
	if req.Opcode != dns.OpcodeQuery {
		// RA, AD and CD are defined for QUERY only (RFC 1035 4.1.1,
		// RFC 4035 3.2): the NOTIMP to another opcode sets none of them.
		resp.RecursionAvailable, resp.CheckingDisabled, resp.AuthenticatedData = false, false, false
	}
	if len(req.Question) > 0 {
		qname := req.Question[0].Name
		resp.Question = []dns.Question{req.Question[0]}
		for _, rr := range resp.Answer {
			if h := rr.Header(); h.Name != qname && strings.EqualFold(h.Name, qname) {
				h.Name = qname
			}
		}
	}
	resp.Extra = stripOPT(resp.Extra)
	opt := req.IsEdns0()
	if opt != nil {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(ednsSize)
		o.SetDo(opt.Do())
		if ede != nil {
			o.Option = append(o.Option, ede)
		}
		resp.Extra = append(resp.Extra, o)
	}
	if t := requestTSIG(req); t != nil {
		resp.Extra = append(resp.Extra, tsigReply(t)) // last (RFC 8945, 5.3)
	}
	if opt == nil || !opt.Do() {
		// RFC 6840 5.8: AD only for clients that asked with DO or AD.
		resp.AuthenticatedData = resp.AuthenticatedData && req.AuthenticatedData
	}
	if udp {
		if size := udpLimit(opt); resp.Len() > size {
			resp.Truncate(size)
		}
	}
}

// udpLimit returns the largest UDP reply sent to a client: the payload size
// of its OPT record, never less than 512 bytes (RFC 1035, RFC 6891), and
// never more than the ednsSize AppFence advertises. A larger reply would be
// fragmented on the way, and fragments are lost or forged (DNS flag day
// 2020); the client gets TC and asks again over TCP. Unbound's max-udp-size
// does the same.
func udpLimit(opt *dns.OPT) int {
	if opt == nil {
		return replyLimit(false, 0)
	}
	return replyLimit(true, opt.UDPSize())
}

// replyLimit is udpLimit for a client with or without EDNS and the UDP
// payload size it gave.
func replyLimit(edns bool, size uint16) int {
	if !edns {
		return dns.MinMsgSize
	}
	return min(max(dns.MinMsgSize, int(size)), ednsSize)
}

// stripOPT removes OPT records, which are hop-by-hop.
func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}
