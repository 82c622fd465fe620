package resolver

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// fuzzSeeds are packets for FuzzServePacket: ordinary queries and each kind
// of odd one the server must drop or refuse.
func fuzzSeeds(f *testing.F) [][]byte {
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	q := func(name string, qtype uint16, edns bool) *dns.Msg { return dnstest.NewQuery(name, qtype, edns, edns) }
	query := pack(q("www.example.test.", dns.TypeA, true))
	var seeds [][]byte
	for _, m := range []*dns.Msg{
		q("www.example.test.", dns.TypeA, false),
		q("WwW.TikTok.com.", dns.TypeAAAA, true),
		q("big.example.test.", dns.TypeTXT, true),
		q("example.test.", dns.TypeANY, false),
		q("example.test.", dns.TypeAXFR, false),
		q(".", dns.TypeNS, true),
		q(`a\.b\000.example.test.`, dns.TypeHTTPS, false),
		func() *dns.Msg { m := q("x.test.", dns.TypeSOA, false); m.Opcode = dns.OpcodeNotify; return m }(),
		func() *dns.Msg { m := q("x.test.", dns.TypeA, true); m.Extra[0].(*dns.OPT).SetVersion(1); return m }(),
		func() *dns.Msg {
			m := q("x.test.", dns.TypeA, true)
			m.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
			return m
		}(),
		func() *dns.Msg {
			m := q("x.test.", dns.TypeA, false)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(),
		func() *dns.Msg { m := q("x.test.", dns.TypeA, false); m.Truncated = true; return m }(),
		// Issue 13: malformed options (FORMERR), a non-root OPT, CHAOS
		// and other classes.
		withOption(f, "www.example.test.", dns.EDNS0COOKIE, make([]byte, 5)),
		withOption(f, "www.example.test.", dns.EDNS0SUBNET, nil),
		withOption(f, "www.example.test.", dns.EDNS0TCPKEEPALIVE, []byte{1}),
		withOption(f, "www.example.test.", dns.EDNS0SUBNET, []byte{0, 1, 24, 0, 192, 0, 2}),
		func() *dns.Msg {
			m := q("www.example.test.", dns.TypeA, true)
			m.Extra[0].Header().Name = "x.test."
			return m
		}(),
		func() *dns.Msg {
			m := q("id.server.", dns.TypeTXT, false)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(),
		func() *dns.Msg {
			m := q("www.example.test.", dns.TypeA, false)
			m.Question[0].Qclass = dns.ClassHESIOD
			return m
		}(),
	} {
		seeds = append(seeds, pack(m))
	}
	response := append([]byte(nil), query...)
	response[2] |= 0x80
	seeds = append(seeds,
		response,
		append(append([]byte(nil), query[:12]...), 0xC0, 0x00, 0, 1, 0, 1), // compressed question
		query[:20], // cut short
		query[:11], // shorter than a header
	)
	return seeds
}

// FuzzServePacket sends bytes down the server's packet path as its UDP and
// TCP loops do (Server.request, which checks and parses, then
// Handler.ServeDNS with the real policy, cache and a loopback upstream),
// for a client inside allow_clients and one outside (192.0.2.1, which is
// only a source address here: the reply is captured, never sent). It
// checks what must hold for any input:
//
//   - a packet shorter than a header or with QR set is never answered;
//   - every other packet gets exactly one reply or none (dropped);
//   - a reply parses, has QR and RA set, the query's ID and opcode, the
//     query's first question or none, and an OPT exactly when the query had
//     one;
//   - over UDP it fits the client's buffer;
//   - a client outside allow_clients gets REFUSED, never larger than its
//     query.
func FuzzServePacket(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		for _, tcp := range []bool{false, true} {
			f.Add(s, tcp, false)
		}
		f.Add(s, false, true)
	}
	e := startEnv(f, "")
	f.Fuzz(func(t *testing.T, raw []byte, tcp, outside bool) {
		ip := netip.MustParseAddr("127.0.0.1")
		if outside {
			ip = netip.MustParseAddr("192.0.2.1")
		}
		w := &recorder{remote: &net.UDPAddr{IP: ip.AsSlice(), Port: 5300}}
		if tcp {
			w.remote = &net.TCPAddr{IP: ip.AsSlice(), Port: 5300}
		}
		var req *dns.Msg // as every transport reads it: checked, then parsed
		if checkPacket(raw) == nil {
			req = e.srv.request(raw, ip)
		}
		if req != nil {
			e.handler.ServeDNS(w, req)
		}
		if len(raw) < headerLen || raw[2]&0x80 != 0 {
			if req != nil || w.writes != 0 {
				t.Fatalf("answered a packet that is not a query: %x", raw)
			}
			return
		}
		switch {
		case req == nil && w.writes == 0:
			return // dropped
		case w.writes != 1:
			t.Fatalf("%d replies", w.writes)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(w.reply); err != nil {
			t.Fatalf("reply %x does not parse: %v\nquery: %v", w.reply, err, req)
		}
		if !resp.Response || resp.RecursionAvailable != (req.Opcode == dns.OpcodeQuery) || resp.Id != binary.BigEndian.Uint16(raw) || resp.Opcode != req.Opcode {
			t.Fatalf("reply header %+v to query %+v", resp.MsgHdr, req.MsgHdr)
		}
		if len(resp.Question) > 1 || len(req.Question) > 0 && (len(resp.Question) != 1 || resp.Question[0] != req.Question[0]) {
			t.Fatalf("reply question %v to %v", resp.Question, req.Question)
		}
		if (resp.IsEdns0() != nil) != (req.IsEdns0() != nil) {
			t.Fatalf("reply OPT %v to query OPT %v", resp.IsEdns0(), req.IsEdns0())
		}
		if limit := udpLimit(req.IsEdns0()); !tcp && len(w.reply) > limit {
			t.Fatalf("UDP reply of %d bytes, limit %d", len(w.reply), limit)
		}
		if outside && (resp.Rcode != dns.RcodeRefused || len(w.reply) > len(raw)) {
			t.Fatalf("outside allow_clients: %s reply of %d bytes to a query of %d", dns.RcodeToString[resp.Rcode], len(w.reply), len(raw))
		}
	})
}

// FuzzFastPath: whatever packet the fast path answers, its reply is the
// reply the full pipeline gives the same packet, and a packet it leaves
// is left untouched. The cache's clock is fixed, so that TTLs do not move
// between the two answers.
func FuzzFastPath(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	now := time.Now()
	up := dnstest.NewUpstream(f, upstreamRecords...)
	e := startEnvClock(f, up, fmt.Sprintf(testConfig, up.Addr, ""), func() time.Time { return now })
	var scratch fastScratch
	f.Fuzz(func(t *testing.T, raw []byte, exempted bool) {
		if checkPacket(raw) != nil {
			return
		}
		ip := netip.MustParseAddr("127.0.0.1")
		if exempted {
			ip = netip.MustParseAddr("127.0.0.2")
		}
		req := e.srv.request(raw, ip)
		if req == nil {
			if _, ok := e.handler.serveWire(raw, ip, source{transport: "udp"}, nil, &scratch); ok {
				t.Fatalf("the fast path answered a packet that does not parse: %x", raw)
			}
			return
		}
		w := &recorder{remote: &net.UDPAddr{IP: ip.AsSlice(), Port: 5300}}
		e.handler.ServeDNS(w, req)
		reply, ok := e.handler.serveWire(raw, ip, source{transport: "udp"}, nil, &scratch)
		if !ok {
			return
		}
		fast := new(dns.Msg)
		if err := fast.Unpack(reply); err != nil {
			t.Fatalf("fast reply to %x does not unpack: %v", raw, err)
		}
		if slow := unpackReply(t, w); fast.String() != slow.String() {
			t.Fatalf("packet %x: fast path\n%s\nfull pipeline\n%s", raw, fast, slow)
		}
	})
}
