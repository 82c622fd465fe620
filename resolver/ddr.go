package resolver

import (
	"net"
	"strings"

	"github.com/miekg/dns"
)

// ddrName is the name a client asks to discover the encrypted endpoints of
// its resolver (RFC 9462, 4).
const ddrName = "_dns." + resolverArpa + "."

// ddrTTL is the TTL of the discovery records.
const ddrTTL = 300

// resolverArpaAnswer answers a query at or under resolver.arpa: the SVCB
// records of the encrypted listeners for _dns.resolver.arpa SVCB (DDR,
// RFC 9462) when there are some, else NODATA with the zone's SOA.
func (h *Handler) resolverArpaAnswer(req *dns.Msg) *dns.Msg {
	resp := resolverArpaNoData(req)
	q := req.Question[0]
	rrs := h.ddr.Load()
	if rrs == nil || q.Qtype != dns.TypeSVCB || !strings.EqualFold(q.Name, ddrName) {
		return resp
	}
	resp.Ns = nil
	for _, rr := range *rrs {
		resp.Answer = append(resp.Answer, dns.Copy(rr))
	}
	return resp
}

// setDDR installs the records _dns.resolver.arpa SVCB is answered with;
// nil: none.
func (h *Handler) setDDR(rrs []dns.RR) {
	if len(rrs) == 0 {
		h.ddr.Store(nil)
		return
	}
	h.ddr.Store(&rrs)
}

// ddrRecords returns the SVCB records that designate the encrypted
// listeners (RFC 9461, RFC 9462): one per bound DoT, DoH and DoQ address,
// with target serverName (the name the certificate proves), alpn, port,
// dohpath for DoH, and an address hint when the listener is bound to one
// address. Nil without serverName: a client could not validate the
// designation.
func ddrRecords(serverName string, dot, doh, doq []net.Addr) []dns.RR {
	if serverName == "" {
		return nil
	}
	target := dns.Fqdn(serverName)
	var rrs []dns.RR
	add := func(addrs []net.Addr, alpn []string, extra ...dns.SVCBKeyValue) {
		for _, a := range addrs {
			ip, port := addrIPPort(a)
			kv := []dns.SVCBKeyValue{&dns.SVCBAlpn{Alpn: alpn}, &dns.SVCBPort{Port: uint16(port)}}
			switch {
			case ip == nil || ip.IsUnspecified():
			case ip.To4() != nil:
				kv = append(kv, &dns.SVCBIPv4Hint{Hint: []net.IP{ip.To4()}})
			default:
				kv = append(kv, &dns.SVCBIPv6Hint{Hint: []net.IP{ip}})
			}
			kv = append(kv, extra...)
			rrs = append(rrs, &dns.SVCB{
				Hdr:      dns.RR_Header{Name: ddrName, Rrtype: dns.TypeSVCB, Class: dns.ClassINET, Ttl: ddrTTL},
				Priority: uint16(len(rrs) + 1),
				Target:   target,
				Value:    kv,
			})
		}
	}
	add(dot, []string{"dot"})
	add(doh, []string{"h2"}, &dns.SVCBDoHPath{Template: "/dns-query{?dns}"})
	add(doq, []string{"doq"})
	return rrs
}

// addrIPPort returns the IP and port of a TCP or UDP address.
func addrIPPort(a net.Addr) (net.IP, int) {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP, a.Port
	case *net.UDPAddr:
		return a.IP, a.Port
	}
	return nil, 0
}
