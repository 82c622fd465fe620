package testzone

import (
	"testing"

	"github.com/miekg/dns"
)

func TestServer(t *testing.T) {
	s, err := Start("gr.test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		netw      string
		do        bool
		bufsize   uint16
		rcode     int
		answers   int // records of qtype in the answer
		rrsigs    bool
		authority bool // SOA in the authority section
		truncated bool
	}{
		{name: "SOA", qname: "gr.test.", qtype: dns.TypeSOA, netw: "udp", rcode: dns.RcodeSuccess, answers: 1},
		{name: "SOA with DO", qname: "gr.test.", qtype: dns.TypeSOA, netw: "udp", do: true, bufsize: 4096, rcode: dns.RcodeSuccess, answers: 1, rrsigs: true},
		{name: "NXDOMAIN", qname: "nope.gr.test.", qtype: dns.TypeA, netw: "udp", rcode: dns.RcodeNameError, authority: true},
		{name: "NODATA", qname: "gr.test.", qtype: dns.TypeSRV, netw: "udp", rcode: dns.RcodeSuccess, authority: true},
		{name: "CNAME followed", qname: "www.gr.test.", qtype: dns.TypeA, netw: "udp", rcode: dns.RcodeSuccess, answers: 1},
		{name: "DNSKEY over 512 truncated", qname: "gr.test.", qtype: dns.TypeDNSKEY, netw: "udp", do: true, bufsize: 512, rcode: dns.RcodeSuccess, truncated: true},
		{name: "DNSKEY over TCP", qname: "gr.test.", qtype: dns.TypeDNSKEY, netw: "tcp", do: true, bufsize: 512, rcode: dns.RcodeSuccess, answers: 2, rrsigs: true},
		{name: "outside the zone", qname: "example.", qtype: dns.TypeA, netw: "udp", rcode: dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			m.RecursionDesired = false
			if tt.bufsize > 0 {
				m.SetEdns0(tt.bufsize, tt.do)
			}
			c := &dns.Client{Net: tt.netw, UDPSize: 65535}
			resp, _, err := c.Exchange(m, s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if resp.Truncated != tt.truncated {
				t.Fatalf("TC=%v, want %v (%d bytes)", resp.Truncated, tt.truncated, resp.Len())
			}
			if tt.rcode == dns.RcodeRefused || tt.truncated {
				return
			}
			if !resp.Authoritative {
				t.Error("AA not set")
			}
			var answers, rrsigs int
			for _, rr := range resp.Answer {
				switch rr.Header().Rrtype {
				case tt.qtype:
					answers++
				case dns.TypeRRSIG:
					rrsigs++
				}
			}
			if answers != tt.answers {
				t.Errorf("%d answers of the type, want %d: %v", answers, tt.answers, resp.Answer)
			}
			if (rrsigs > 0) != tt.rrsigs {
				t.Errorf("%d RRSIGs, want them: %v", rrsigs, tt.rrsigs)
			}
			soa := len(resp.Ns) > 0 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if soa != tt.authority {
				t.Errorf("SOA in authority %v, want %v", soa, tt.authority)
			}
			if (resp.IsEdns0() != nil) != (tt.bufsize > 0) {
				t.Errorf("EDNS in answer %v, want %v", resp.IsEdns0() != nil, tt.bufsize > 0)
			}
		})
	}
}

// TestSignatures: the zone's RRSIGs verify with its DNSKEYs.
func TestSignatures(t *testing.T) {
	s, err := Start("gr.test")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := map[uint16]*dns.DNSKEY{}
	for _, rr := range s.rrsets[key{"gr.test.", dns.TypeDNSKEY}] {
		k := rr.(*dns.DNSKEY)
		keys[k.KeyTag()] = k
	}
	checked := 0
	for k, sigs := range s.sigs {
		for _, rr := range sigs {
			sig := rr.(*dns.RRSIG)
			if err := sig.Verify(keys[sig.KeyTag], s.rrsets[k]); err != nil {
				t.Errorf("RRSIG of %s %s: %v", k.name, dns.TypeToString[k.rtype], err)
			}
			checked++
		}
	}
	if checked < len(s.rrsets) {
		t.Errorf("%d signatures for %d RRsets", checked, len(s.rrsets))
	}
}
