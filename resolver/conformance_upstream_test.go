package resolver

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// Upstream-side conformance (issue 13 items 2, 3, 5, 8, 10): AppFence
// resolving through an upstream that misbehaves on cue, over real sockets
// on loopback. See docs/conformance.md, "Upstream side".

// cuedUpstream is a DNS server on 127.0.0.1 (UDP and TCP on one port) whose
// answers the test writes: serve gets each query with the network it came
// over and returns the answer, or nil for none. raw, when set, sends bytes
// as they are instead (a UDP answer larger than the query allowed).
type cuedUpstream struct {
	addr string

	mu      sync.Mutex
	queries []cuedQuery
}

// cuedQuery is one query a cuedUpstream received.
type cuedQuery struct {
	net  string
	msg  *dns.Msg
	edns bool
	size uint16
}

type cuedFunc func(netw string, req *dns.Msg) (resp *dns.Msg, raw []byte)

func startCued(t *testing.T, serve cuedFunc) *cuedUpstream {
	t.Helper()
	u := &cuedUpstream{}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if i > 10 {
			t.Fatal(err)
		}
	}
	u.addr = pc.LocalAddr().String()
	handler := func(netw string) dns.HandlerFunc {
		return func(w dns.ResponseWriter, req *dns.Msg) {
			q := cuedQuery{net: netw, msg: req.Copy()}
			if opt := req.IsEdns0(); opt != nil {
				q.edns, q.size = true, opt.UDPSize()
			}
			u.mu.Lock()
			u.queries = append(u.queries, q)
			u.mu.Unlock()
			resp, raw := serve(netw, req)
			switch {
			case raw != nil:
				w.Write(raw)
			case resp != nil:
				w.WriteMsg(resp)
			}
		}
	}
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: handler("udp")},
		{Listener: l, Handler: handler("tcp")},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// asked returns the queries received so far.
func (u *cuedUpstream) asked() []cuedQuery {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]cuedQuery(nil), u.queries...)
}

// reply is the start of an answer to req as a recursive resolver writes
// it: RA set, EDNS echoed with its DO bit, records rrs in the answer.
func reply(req *dns.Msg, rrs ...string) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(4096, opt.Do())
	}
	for _, s := range rrs {
		resp.Answer = append(resp.Answer, mustRR(s))
	}
	return resp
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", s, err))
	}
	return rr
}

// startCuedEnv starts AppFence forwarding to u.
func startCuedEnv(t *testing.T, u *cuedUpstream) *env {
	t.Helper()
	return startEnvWith(t, nil, fmt.Sprintf(testConfig, u.addr, ""))
}

// bigTXT returns an answer to req with n TXT records of 200 bytes, the
// text of each starting with tag.
func bigTXT(req *dns.Msg, n int, tag string) *dns.Msg {
	resp := reply(req)
	for i := range n {
		txt := fmt.Sprintf("%s-%03d-%s", tag, i, strings.Repeat("x", 190))
		resp.Answer = append(resp.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{txt},
		})
	}
	return resp
}

// TestUpstreamPayloadSizeAndTCP (item 2): whatever the client's EDNS
// buffer, AppFence asks with 1232; a UDP answer larger than that (4 KB,
// which would arrive as IP fragments) is not used, and neither is a
// truncated one: the same upstream is asked again over TCP.
func TestUpstreamPayloadSizeAndTCP(t *testing.T) {
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		name := req.Question[0].Name
		switch {
		case netw == "tcp":
			return bigTXT(req, 20, "tcp"), nil
		case strings.HasPrefix(name, "big."):
			// 4 KB in one datagram, whatever the query advertised.
			b, err := bigTXT(req, 20, "udp").Pack()
			if err != nil {
				panic(err)
			}
			return nil, b
		case strings.HasPrefix(name, "tc."):
			resp := reply(req)
			resp.Truncated = true
			return resp, nil
		}
		return reply(req, name+" 300 IN A 192.0.2.1"), nil
	})
	e := startCuedEnv(t, u)

	for _, size := range []uint16{0, 512, 4096, 65535} {
		q := dnstest.NewQuery(fmt.Sprintf("size%d.example.test.", size), dns.TypeA, size > 0, false)
		if size > 0 {
			q.IsEdns0().SetUDPSize(size)
		}
		if resp := e.ask(t, "udp", "127.0.0.1", q); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Fatalf("client size %d: %v", size, resp)
		}
	}
	for _, q := range u.asked() {
		if !q.edns || q.size != ednsSize {
			t.Errorf("%s asked upstream with EDNS=%v size %d, want %d", q.msg.Question[0].Name, q.edns, q.size, ednsSize)
		}
	}

	for _, name := range []string{"big.example.test.", "tc.example.test."} {
		before := len(u.asked())
		resp := e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery(name, dns.TypeTXT, true, false))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 20 {
			t.Fatalf("%s: %v", name, resp)
		}
		for _, rr := range resp.Answer {
			if txt := rr.(*dns.TXT).Txt[0]; !strings.HasPrefix(txt, "tcp-") {
				t.Fatalf("%s: record %q came from the UDP answer", name, txt[:10])
			}
		}
		var nets []string
		for _, q := range u.asked()[before:] {
			nets = append(nets, q.net)
		}
		if strings.Join(nets, ",") != "udp,tcp" {
			t.Errorf("%s: upstream asked over %v, want udp then tcp", name, nets)
		}
	}
}

// TestUpstreamADCleared (item 3): AD from an upstream not trusted for
// validation is cleared, on the answer stored and on every cache hit (the
// fast path's and the full pipeline's), for clients that asked with DO;
// a DoT upstream listed in trust_ad keeps it.
func TestUpstreamADCleared(t *testing.T) {
	ca := dnstest.NewCA(t)
	up := dnstest.NewUpstream(t, upstreamRecords...)
	up.SetValidated(true)
	tlsAddr := up.StartTLS(t, ca.Issue(t, "dns.test"))
	dot := "tls://" + tlsAddr + "#dns.test"
	caFile := ca.WriteFile(t)
	for _, tt := range []struct {
		name   string
		server string
		trust  string
		wantAD bool
	}{
		{"plain", up.Addr, "", false},
		{"DoT not trusted", dot, "", false},
		{"DoT trusted", dot, fmt.Sprintf("trust_ad = [%q]", dot), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := strings.Replace(fmt.Sprintf(testConfig, tt.server, ""), `timeout = "500ms"`,
				fmt.Sprintf("timeout = \"2s\"\nca_file = %q\n%s", caFile, tt.trust), 1)
			e := startEnvWith(t, up, cfg)
			before := up.Asked("www.example.test.")
			for i, netw := range []string{"udp", "udp", "tcp"} { // miss, fast-path hit, full-pipeline hit
				resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, true))
				if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
					t.Fatalf("query %d: %v", i, resp)
				}
				if resp.AuthenticatedData != tt.wantAD {
					t.Errorf("query %d over %s: AD=%v, want %v", i, netw, resp.AuthenticatedData, tt.wantAD)
				}
			}
			if n := up.Asked("www.example.test.") - before; n != 1 {
				t.Errorf("upstream asked %d times, want 1 (then cache hits)", n)
			}
		})
	}
}

// TestUpstreamErrorRcodes (item 5 and 10): FORMERR, NOTIMP and REFUSED
// from the upstream, which describe AppFence's query, reach the client as
// SERVFAIL, and every SERVFAIL carries an extended error saying why.
func TestUpstreamErrorRcodes(t *testing.T) {
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		label, _, _ := strings.Cut(req.Question[0].Name, ".")
		resp := reply(req)
		switch label {
		case "formerr":
			resp.Rcode = dns.RcodeFormatError // with OPT: EDNS understood, no retry
		case "notimp":
			resp.Rcode = dns.RcodeNotImplemented
		case "refused":
			resp.Rcode = dns.RcodeRefused
		case "servfail":
			resp.Rcode = dns.RcodeServerFailure
		case "bogus":
			resp.Rcode = dns.RcodeServerFailure
			resp.IsEdns0().Option = append(resp.IsEdns0().Option,
				&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "signature expired"})
		case "silent":
			return nil, nil
		}
		return resp, nil
	})
	e := startCuedEnv(t, u)
	for _, tt := range []struct {
		label string
		code  uint16
		text  string
	}{
		{"formerr", dns.ExtendedErrorCodeNoReachableAuthority, "upstream answered FORMERR"},
		{"notimp", dns.ExtendedErrorCodeNoReachableAuthority, "upstream answered NOTIMP"},
		{"refused", dns.ExtendedErrorCodeNoReachableAuthority, "upstream answered REFUSED"},
		{"servfail", dns.ExtendedErrorCodeNoReachableAuthority, "upstream answered SERVFAIL"},
		{"bogus", dns.ExtendedErrorCodeDNSBogus, "signature expired"},
		{"silent", dns.ExtendedErrorCodeNoReachableAuthority, "no upstream answered in time"},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(tt.label+"."+netw+".example.test.", dns.TypeA, true, false))
			if resp.Rcode != dns.RcodeServerFailure {
				t.Errorf("%s over %s: rcode %s, want SERVFAIL", tt.label, netw, dns.RcodeToString[resp.Rcode])
			}
			x := ede(resp)
			if x == nil || x.InfoCode != tt.code || x.ExtraText != tt.text {
				t.Errorf("%s over %s: EDE %v, want %d %q", tt.label, netw, x, tt.code, tt.text)
			}
		}
	}
}

// TestUpstreamUnreachableEDE: a closed port is a network error (EDE 23).
func TestUpstreamUnreachableEDE(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: ICMP port unreachable
	e := startEnvWith(t, nil, fmt.Sprintf(testConfig, addr, ""))
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
	if x := ede(resp); resp.Rcode != dns.RcodeServerFailure || x == nil || x.InfoCode != dns.ExtendedErrorCodeNetworkError {
		t.Errorf("closed upstream port: %s with EDE %v, want SERVFAIL with EDE 23", dns.RcodeToString[resp.Rcode], x)
	}
}

// TestUpstreamFormerrRetriedWithoutEDNS (item 5): an upstream that answers
// FORMERR without OPT to a query with EDNS does not know EDNS (RFC 6891 7):
// it is asked once more without, and the client gets that answer.
func TestUpstreamFormerrRetriedWithoutEDNS(t *testing.T) {
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		if req.IsEdns0() != nil {
			resp := new(dns.Msg)
			resp.SetRcode(req, dns.RcodeFormatError)
			return resp, nil
		}
		return reply(req, req.Question[0].Name+" 300 IN A 192.0.2.7"), nil
	})
	e := startCuedEnv(t, u)
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("old.example.test.", dns.TypeA, true, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("answer %v, want the upstream's answer without EDNS", resp)
	}
	if resp.IsEdns0() == nil {
		t.Error("the client asked with EDNS and got no OPT")
	}
	q := u.asked()
	if len(q) != 2 || !q[0].edns || q[1].edns {
		t.Errorf("upstream got %d queries (EDNS %v), want one with EDNS then one without", len(q), q)
	}
}

// TestUpstreamTopBitTTL (item 8): a TTL with the top bit set is 0
// (RFC 2181 8) in every answer, and such an answer is not cached.
func TestUpstreamTopBitTTL(t *testing.T) {
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		resp := reply(req, req.Question[0].Name+" 300 IN A 192.0.2.1", req.Question[0].Name+" 300 IN A 192.0.2.2")
		resp.Answer[1].Header().Ttl = 1<<31 + 1
		return resp, nil
	})
	e := startCuedEnv(t, u)
	for i, netw := range []string{"udp", "tcp", "udp"} {
		resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("ttl.example.test.", dns.TypeA, i != 1, false))
		if got := ttls(resp); len(got) != 2 || got[0] != 300 || got[1] != 0 {
			t.Errorf("query %d over %s: TTLs %v, want [300 0]", i, netw, got)
		}
	}
	if n := len(u.asked()); n != 3 {
		t.Errorf("upstream asked %d times, want 3: an answer with a TTL of 0 is not cached", n)
	}
}

// TestUpstreamDNSSECRecordsForNonDO (item 10): RRSIG, NSEC and NSEC3 an
// upstream sends anyway reach only clients that asked with DO, or asked
// for that type.
func TestUpstreamDNSSECRecordsForNonDO(t *testing.T) {
	const sig = "www.example.test. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. AAAA"
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		q := req.Question[0]
		if q.Qtype == dns.TypeNSEC {
			return reply(req, "www.example.test. 300 IN NSEC zz.example.test. A RRSIG NSEC"), nil
		}
		resp := reply(req, "www.example.test. 300 IN A 192.0.2.1", sig)
		resp.Ns = append(resp.Ns, mustRR("example.test. 300 IN NSEC3 1 0 0 - 0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM A"))
		return resp, nil
	})
	e := startCuedEnv(t, u)
	count := func(resp *dns.Msg) (sigs, nsecs int) {
		for _, rr := range append(append([]dns.RR{}, resp.Answer...), resp.Ns...) {
			switch rr.Header().Rrtype {
			case dns.TypeRRSIG:
				sigs++
			case dns.TypeNSEC, dns.TypeNSEC3:
				nsecs++
			}
		}
		return
	}
	for _, round := range []string{"miss", "hit"} {
		resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
		if s, n := count(resp); s != 0 || n != 0 || len(resp.Answer) != 1 {
			t.Errorf("%s, no DO: %d RRSIG, %d NSEC/NSEC3, %d answers; want the A record alone", round, s, n, len(resp.Answer))
		}
		resp = e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, true))
		if s, n := count(resp); s != 1 || n != 1 {
			t.Errorf("%s, DO: %d RRSIG, %d NSEC3; want the upstream's 1 and 1", round, s, n)
		}
	}
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeNSEC, true, false))
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Rrtype != dns.TypeNSEC {
		t.Errorf("NSEC asked without DO: %v, want the NSEC record", resp.Answer)
	}
}

// TestUpstreamAdditionalScrubbed (item 10): additional records outside the
// bailiwick of the question (the question name and below, or the zone an
// authority SOA/NS names) are removed.
func TestUpstreamAdditionalScrubbed(t *testing.T) {
	u := startCued(t, func(netw string, req *dns.Msg) (*dns.Msg, []byte) {
		resp := reply(req, "mail.example.test. 300 IN MX 10 mx.mail.example.test.")
		if strings.Contains(req.Question[0].Name, ".zone.") {
			resp.Answer = nil
			resp.Ns = append(resp.Ns, mustRR("zone.example.test. 300 IN NS ns1.zone.example.test."))
			resp.Extra = append(resp.Extra, mustRR("ns1.zone.example.test. 300 IN A 192.0.2.53"))
		}
		resp.Extra = append(resp.Extra,
			mustRR("mx.mail.example.test. 300 IN A 192.0.2.25"),
			mustRR("www.bank.test. 300 IN A 203.0.113.66"),
			mustRR("example.test. 300 IN A 203.0.113.67"))
		return resp, nil
	})
	e := startCuedEnv(t, u)
	names := func(resp *dns.Msg) []string {
		var out []string
		for _, rr := range resp.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.Header().Name)
			}
		}
		return out
	}
	for _, round := range []string{"miss", "hit"} {
		resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("mail.example.test.", dns.TypeMX, true, false))
		if got := names(resp); fmt.Sprint(got) != "[mx.mail.example.test.]" {
			t.Errorf("%s: additional %v, want only mx.mail.example.test.", round, got)
		}
		resp = e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.zone.example.test.", dns.TypeA, true, false))
		if got := names(resp); fmt.Sprint(got) != "[ns1.zone.example.test.]" {
			t.Errorf("%s: additional %v, want only the glue of zone.example.test.", round, got)
		}
	}
}
