package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/cache"
)

// TestParseWire: the fast path takes plain queries, reading the fields
// the full pipeline reads from a dns.Msg, and leaves every other packet to
// it.
func TestParseWire(t *testing.T) {
	plain := func(edit func(m *dns.Msg)) []byte {
		m := dnstest.NewQuery("WwW.Example-1.TEST_.", dns.TypeAAAA, true, true)
		m.Id, m.CheckingDisabled, m.AuthenticatedData = 0xbeef, true, true
		if edit != nil {
			edit(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw := plain(nil)
	var q wireQuery
	if !parseWire(raw, &q, nil) {
		t.Fatal("a plain query is left to the full pipeline")
	}
	if q.id != 0xbeef || !q.rd || !q.cd || !q.ad || q.qtype != dns.TypeAAAA || q.qclass != dns.ClassINET ||
		!q.edns || !q.do || q.udpSize != 1232 || string(q.name) != "www.example-1.test_" ||
		string(q.qname()) != "\x03WwW\x09Example-1\x05TEST_\x00" {
		t.Errorf("parsed %+v", q)
	}
	cookie := plain(func(m *dns.Msg) {
		m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}, &dns.EDNS0_PADDING{Padding: make([]byte, 20)}}
	})
	if !parseWire(cookie, &q, nil) || !q.edns {
		t.Errorf("a query with a cookie and padding (as dig sends) is left to the full pipeline")
	}
	noEDNS := plain(func(m *dns.Msg) { m.Extra = nil })
	if !parseWire(noEDNS, &q, nil) || q.edns || q.do || q.udpLimit() != 512 {
		t.Errorf("without EDNS: %+v", q)
	}

	for _, tt := range []struct {
		name string
		raw  []byte
	}{
		{"runt", raw[:11]},
		{"cut in the name", raw[:16]},
		{"cut in the type", raw[:len(noEDNS)-3]},
		{"cut in the OPT", raw[:len(raw)-2]},
		{"trailing byte", append(append([]byte{}, noEDNS...), 0)},
		{"response", plain(func(m *dns.Msg) { m.Response = true })},
		{"opcode NOTIFY", plain(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })},
		{"TC", plain(func(m *dns.Msg) { m.Truncated = true })},
		{"AA", plain(func(m *dns.Msg) { m.Authoritative = true })},
		{"Z", plain(func(m *dns.Msg) { m.Zero = true })},
		{"rcode", plain(func(m *dns.Msg) { m.Rcode = dns.RcodeNameError })},
		{"two questions", plain(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })},
		{"no question", plain(func(m *dns.Msg) { m.Question = nil })},
		{"an answer", plain(func(m *dns.Msg) { m.Answer = []dns.RR{testRR} })},
		{"authority", plain(func(m *dns.Msg) { m.Ns = []dns.RR{testRR} })},
		{"two additional", plain(func(m *dns.Msg) { m.Extra = append(m.Extra, testRR) })},
		{"additional not OPT", plain(func(m *dns.Msg) { m.Extra = []dns.RR{testRR} })},
		{"EDNS version 1", patch(raw, len(raw)-5, 1)},
		{"extended rcode", patch(raw, len(raw)-6, 1)},
		{"client subnet", plain(func(m *dns.Msg) {
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0)}}
		})},
		{"option cut short", patch(cookie, len(cookie)-22, 0xff)},
		{"class CH", plain(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })},
		{"ANY", plain(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeANY })},
		{"AXFR", plain(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR })},
		{"IXFR", plain(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeIXFR })},
		{"meta type", plain(func(m *dns.Msg) { m.Question[0].Qtype = 200 })},
		{"root", plain(func(m *dns.Msg) { m.Question[0].Name = "." })},
		{"wildcard", plain(func(m *dns.Msg) { m.Question[0].Name = "*.example.test." })},
		{"escaped dot", plain(func(m *dns.Msg) { m.Question[0].Name = `a\.b.example.test.` })},
		{"space", plain(func(m *dns.Msg) { m.Question[0].Name = `a\032b.example.test.` })},
		{"8-bit", plain(func(m *dns.Msg) { m.Question[0].Name = `\200.example.test.` })},
	} {
		if parseWire(tt.raw, &q, nil) {
			t.Errorf("%s: taken by the fast path", tt.name)
		}
	}
}

// patch returns a copy of raw with the byte at off set to b.
func patch(raw []byte, off int, b byte) []byte {
	p := append([]byte{}, raw...)
	p[off] = b
	return p
}

// testRR is a record for packets that are not plain queries.
var testRR = &dns.A{Hdr: dns.RR_Header{Name: "x.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(192, 0, 2, 1)}

// TestFastPathAnswersAsServeDNS: for every block mode, blocked names and
// cache hits (clean, and blocked or exempted through their CNAME), in any
// letter case, with and without EDNS and DO, from each group, the fast
// path answers, and its reply is the reply of the full pipeline.
func TestFastPathAnswersAsServeDNS(t *testing.T) {
	modes := []string{
		"",
		`response = "nodata"`,
		`response = "null"`,
		`response = "refused"`,
		"response = \"sinkhole\"\nsinkhole_ipv4 = \"192.0.2.99\"\nsinkhole_ipv6 = \"2001:db8::99\"",
		`response = "sinkhole"` + "\nsinkhole_ipv4 = \"192.0.2.99\"",
		"extended_errors = false",
		`ttl = "5m"`,
	}
	names := []string{
		"www.tiktok.com.", "WWW.TikTok.COM.", "tiktok.com.", "TikTok.com.", "a.b.c.v16-webapp.tiktokcdn.com.",
		"use-application-dns.net.", "mask.icloud.com.", // canaries
		"www.video.test.", "cdn.video.test.", // a user app
		"www.example.test.", "WwW.ExAmPlE.tEsT.", "chain.example.test.", // clean hits
		"video.example.test.", "img.example.test.", "vid.example.test.", "svc.example.test.", // hits blocked through their answer
		"nx.example.test.", // a cached NXDOMAIN
	}
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeTXT}
	for _, mode := range modes {
		t.Run(strings.ReplaceAll(mode, "\n", " "), func(t *testing.T) {
			e := startInspect(t, mode, "")
			var scratch fastScratch
			fastCount := 0
			defer func() {
				if fastCount < 300 {
					t.Errorf("only %d queries answered by the fast path", fastCount)
				}
			}()
			for _, client := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
				w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(client), Port: 40000}}
				for _, name := range names {
					for _, qtype := range types {
						for _, ednsDO := range [][2]bool{{false, false}, {true, false}, {true, true}} {
							req := dnstest.NewQuery(name, qtype, ednsDO[0], ednsDO[1])
							req.Id = 0x1234
							e.handler.ServeDNS(w, req) // stores the answer of a name resolved
							slow := unpackReply(t, w)
							raw, err := req.Pack()
							if err != nil {
								t.Fatal(err)
							}
							// Fast: blocked by name, or answered from the cache.
							addr := netip.MustParseAddr(client)
							canonical := dnsname.Canonical(name)
							_, fresh := e.cache.Lookup(cache.KeyOf(req, canonical), e.cache.Now())
							expect := fresh || e.handler.State().Policy.Decide(addr, canonical).Action == policy.ActionBlock
							reply, ok := e.handler.serveWire(raw, addr, source{transport: "udp"}, nil, &scratch)
							what := fmt.Sprintf("%s %s from %s (EDNS %v, DO %v)", name, dns.TypeToString[qtype], client, ednsDO[0], ednsDO[1])
							if ok != expect {
								t.Errorf("%s: answered by the fast path %v, want %v", what, ok, expect)
							}
							if !ok {
								continue
							}
							fastCount++
							fast := new(dns.Msg)
							if err := fast.Unpack(reply); err != nil {
								t.Fatalf("%s: fast reply: %v", what, err)
							}
							if fast.String() != slow.String() {
								t.Errorf("%s: fast path\n%s\nfull pipeline\n%s", what, fast, slow)
							}
						}
					}
				}
			}
		})
	}
}

// TestFastPathLeavesToServeDNS: what the fast path does not answer
// itself, it leaves without counting it (ServeDNS will).
func TestFastPathLeavesToServeDNS(t *testing.T) {
	e := startInspect(t, "", "\n[cache]\nsize = 1000\n")
	var scratch fastScratch
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	refused := netip.MustParseAddr("127.0.0.9")
	local := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		what   string
		client netip.Addr
		raw    []byte
	}{
		{"a client outside allow_clients", refused, pack(dnstest.NewQuery("www.tiktok.com.", dns.TypeA, true, false))},
		{"a cache miss", local, pack(dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))},
		{"resolver.arpa", local, pack(dnstest.NewQuery("_dns.resolver.arpa.", dns.TypeSVCB, true, false))},
		{"ANY", local, pack(dnstest.NewQuery("www.tiktok.com.", dns.TypeANY, true, false))},
	} {
		before := e.upstream.Total()
		if _, ok := e.handler.serveWire(tt.raw, tt.client, source{transport: "udp"}, nil, &scratch); ok {
			t.Errorf("%s: answered by the fast path", tt.what)
		}
		if e.upstream.Total() != before {
			t.Errorf("%s: the fast path asked the upstream", tt.what)
		}
	}
	if got := e.cache.Len(); got != 0 {
		t.Errorf("the fast path stored %d entries", got)
	}
	// A cached answer larger than a client without EDNS takes: truncated
	// by the full pipeline; over TCP, or to a client that takes it, from
	// the fast path.
	for i := range 8 {
		e.upstream.Add(t, fmt.Sprintf("big.example.test. 300 IN TXT %q", strings.Repeat(fmt.Sprint(i), 100)))
	}
	w := newRecorder()
	if m := serve(t, e.handler, w, dnstest.NewQuery("big.example.test.", dns.TypeTXT, false, false)); !m.Truncated {
		t.Fatalf("the big answer is not truncated: %v", m)
	}
	noEDNS := pack(dnstest.NewQuery("big.example.test.", dns.TypeTXT, false, false))
	if _, ok := e.handler.serveWire(noEDNS, local, source{transport: "udp"}, nil, &scratch); ok {
		t.Error("an answer larger than 512 bytes: answered by the fast path over UDP")
	}
	if reply, ok := e.handler.serveWire(noEDNS, local, source{transport: "tcp"}, nil, &scratch); !ok || len(reply) <= 512 {
		t.Errorf("the same over TCP: answered %v, %d bytes", ok, len(reply))
	}
	if reply, ok := e.handler.serveWire(pack(dnstest.NewQuery("big.example.test.", dns.TypeTXT, true, false)), local, source{transport: "udp"}, nil, &scratch); !ok || len(reply) <= 512 {
		t.Errorf("the same to an EDNS client over UDP: answered %v, %d bytes", ok, len(reply))
	}
}
