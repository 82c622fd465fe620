package resolver

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// Server-side protocol conformance (issue 13): what AppFence answers
// itself, on real sockets. docs/conformance.md has the table.

// askRaw sends m over netw and returns the reply, failing the test when
// there is none.
func askRaw(t *testing.T, e *env, netw string, m *dns.Msg) *dns.Msg {
	t.Helper()
	b := rawExchange(t, netw, "", e.addr, pack(t, m), 2*time.Second)
	if b == nil {
		t.Fatalf("%s %v: no reply", netw, m.Question)
	}
	return unpack(t, b, m.Id)
}

// TestChaosClass: CHAOS TXT id.server, hostname.bind, version.bind and
// version.server are answered here (RFC 4892) from server.identity and
// server.version, every other CHAOS query and every class but IN and ANY
// is REFUSED, and none reaches the upstream.
func TestChaosClass(t *testing.T) {
	q := func(name string, qtype, class uint16) *dns.Msg {
		m := dnstest.NewQuery(name, qtype, true, false)
		m.Question[0].Qclass = class
		return m
	}
	tests := []struct {
		name   string
		server string // lines of [server]
		msg    *dns.Msg
		rcode  int
		txt    string // the TXT answer, "" for none
	}{
		{"id.server", `identity = "dns-1.test"`, q("id.server.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeSuccess, "dns-1.test"},
		{"hostname.bind", `identity = "dns-1.test"`, q("HOSTNAME.bind.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeSuccess, "dns-1.test"},
		{"id.server ANY", `identity = "dns-1.test"`, q("id.server.", dns.TypeANY, dns.ClassCHAOS), dns.RcodeSuccess, "dns-1.test"},
		{"identity escapes", `identity = 'a\b "c"'`, q("id.server.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeSuccess, `a\b "c"`},
		{"identity off", `identity = ""`, q("id.server.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeRefused, ""},
		{"version off by default", "", q("version.bind.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeRefused, ""},
		{"version.bind", `version = "appfence-test"`, q("version.bind.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeSuccess, "appfence-test"},
		{"version.server", `version = "appfence-test"`, q("version.server.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeSuccess, "appfence-test"},
		{"CH A id.server", `identity = "dns-1.test"`, q("id.server.", dns.TypeA, dns.ClassCHAOS), dns.RcodeRefused, ""},
		{"other CH name", `identity = "dns-1.test"`, q("authors.bind.", dns.TypeTXT, dns.ClassCHAOS), dns.RcodeRefused, ""},
		{"CH www", "", q("www.example.test.", dns.TypeA, dns.ClassCHAOS), dns.RcodeRefused, ""},
		{"HS", "", q("www.example.test.", dns.TypeA, dns.ClassHESIOD), dns.RcodeRefused, ""},
		{"NONE", "", q("www.example.test.", dns.TypeA, dns.ClassNONE), dns.RcodeRefused, ""},
		{"class 2", "", q("www.example.test.", dns.TypeA, 2), dns.RcodeRefused, ""},
		{"class 0", "", q("www.example.test.", dns.TypeA, 0), dns.RcodeRefused, ""},
	}
	envs := map[string]*env{}
	for _, tt := range tests {
		e := envs[tt.server]
		if e == nil {
			e = startLimited(t, tt.server, nil)
			envs[tt.server] = e
		}
		for _, netw := range []string{"udp", "tcp"} {
			resp := askRaw(t, e, netw, tt.msg)
			if resp.Rcode != tt.rcode {
				t.Errorf("%s/%s: %s, want %s", tt.name, netw, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if resp.Question[0] != tt.msg.Question[0] {
				t.Errorf("%s/%s: question %v, want %v", tt.name, netw, resp.Question[0], tt.msg.Question[0])
			}
			if tt.txt == "" {
				if len(resp.Answer) != 0 {
					t.Errorf("%s/%s: answer %v, want none", tt.name, netw, resp.Answer)
				}
				continue
			}
			if len(resp.Answer) != 1 {
				t.Fatalf("%s/%s: answer %v, want one TXT", tt.name, netw, resp.Answer)
			}
			txt, ok := resp.Answer[0].(*dns.TXT)
			if !ok || txt.Hdr.Class != dns.ClassCHAOS || txt.Hdr.Name != tt.msg.Question[0].Name || len(txt.Txt) != 1 {
				t.Fatalf("%s/%s: answer %v, want CH TXT", tt.name, netw, resp.Answer[0])
			}
			// The wire bytes of the string, not miekg/dns's escaped form.
			rdata := make([]byte, 512)
			n, err := dns.PackRR(txt, rdata, 0, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			rdata = rdata[n-int(txt.Hdr.Rdlength) : n]
			if got := string(rdata[1:]); got != tt.txt || int(rdata[0]) != len(tt.txt) {
				t.Errorf("%s/%s: TXT %q, want %q", tt.name, netw, got, tt.txt)
			}
		}
	}
	for server, e := range envs {
		if n := e.upstream.Total(); n != 0 {
			t.Errorf("[server] %q: upstream asked %d times", server, n)
		}
	}
	// Class ANY is forwarded like IN.
	e := envs[""]
	if resp := askRaw(t, e, "udp", q("www.example.test.", dns.TypeA, dns.ClassANY)); resp.Rcode != dns.RcodeSuccess || e.upstream.Total() != 1 {
		t.Errorf("class ANY: %v, upstream asked %d times; want it forwarded", resp, e.upstream.Total())
	}
}

// withOption returns a query for name with EDNS and one option of code
// and data, to be packed as given (EDNS0_LOCAL is packed unchecked).
func withOption(t testing.TB, name string, code uint16, data []byte) *dns.Msg {
	t.Helper()
	m := dnstest.NewQuery(name, dns.TypeA, true, false)
	m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_LOCAL{Code: code, Data: data}}
	return m
}

// TestMalformedOptions: a query with a badly formed option that AppFence
// knows is answered FORMERR (with the question and an OPT), not dropped,
// over UDP and TCP, from the fast path's cache hit too; well-formed ones
// are answered.
func TestMalformedOptions(t *testing.T) {
	e := startEnv(t, "")
	const name = "www.example.test."
	e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(name, dns.TypeA, true, false)) // cached: hits take the fast path
	before := e.upstream.Total()
	brokenFrame := pack(t, withOption(t, name, 65001, []byte{1, 2, 3, 4}))
	binary.BigEndian.PutUint16(brokenFrame[len(brokenFrame)-6:], 10) // the option's length: past the end
	tests := []struct {
		name  string
		raw   []byte
		rcode int
	}{
		{"ECS length 0", pack(t, withOption(t, name, dns.EDNS0SUBNET, nil)), dns.RcodeFormatError},
		{"ECS family 3", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 3, 0, 0})), dns.RcodeFormatError},
		{"ECS family 0 with a prefix", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 0, 8, 0, 10})), dns.RcodeFormatError},
		{"ECS IPv4 /33", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 1, 33, 0, 192, 0, 2, 1, 0})), dns.RcodeFormatError},
		{"ECS address longer than its prefix", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 1, 16, 0, 192, 0, 2})), dns.RcodeFormatError},
		{"ECS bits beyond the prefix", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 1, 20, 0, 192, 0, 0xFF})), dns.RcodeFormatError},
		{"ECS scope in a query", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 1, 24, 24, 192, 0, 2})), dns.RcodeFormatError},
		{"keepalive length 1", pack(t, withOption(t, name, dns.EDNS0TCPKEEPALIVE, []byte{1})), dns.RcodeFormatError},
		{"keepalive length 3", pack(t, withOption(t, name, dns.EDNS0TCPKEEPALIVE, []byte{0, 1, 2})), dns.RcodeFormatError},
		{"cookie of 5 bytes", pack(t, withOption(t, name, dns.EDNS0COOKIE, make([]byte, 5))), dns.RcodeFormatError},
		{"cookie of 12 bytes", pack(t, withOption(t, name, dns.EDNS0COOKIE, make([]byte, 12))), dns.RcodeFormatError},
		{"cookie of 41 bytes", pack(t, withOption(t, name, dns.EDNS0COOKIE, make([]byte, 41))), dns.RcodeFormatError},
		{"expire of 2 bytes", pack(t, withOption(t, name, dns.EDNS0EXPIRE, []byte{0, 1})), dns.RcodeFormatError},
		{"option past the end", brokenFrame, dns.RcodeFormatError},
		{"ECS IPv4 /24", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 1, 24, 0, 192, 0, 2})), dns.RcodeSuccess},
		{"ECS IPv6 /56", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 1})), dns.RcodeSuccess},
		{"ECS as dig sends /0", pack(t, withOption(t, name, dns.EDNS0SUBNET, []byte{0, 0, 0, 0})), dns.RcodeSuccess},
		{"keepalive empty", pack(t, withOption(t, name, dns.EDNS0TCPKEEPALIVE, nil)), dns.RcodeSuccess},
		{"client cookie", pack(t, withOption(t, name, dns.EDNS0COOKIE, make([]byte, 8))), dns.RcodeSuccess},
		{"client and server cookie", pack(t, withOption(t, name, dns.EDNS0COOKIE, make([]byte, 24))), dns.RcodeSuccess},
		{"unknown option", pack(t, withOption(t, name, 65001, []byte{1})), dns.RcodeSuccess},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			b := rawExchange(t, netw, "", e.addr, tt.raw, 2*time.Second)
			if b == nil {
				t.Errorf("%s/%s: no reply", tt.name, netw)
				continue
			}
			resp := unpack(t, b, binary.BigEndian.Uint16(tt.raw))
			if resp.Rcode != tt.rcode {
				t.Errorf("%s/%s: %s, want %s", tt.name, netw, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if len(resp.Question) != 1 || resp.Question[0].Name != name || resp.IsEdns0() == nil {
				t.Errorf("%s/%s: question %v, OPT %v; want the question and an OPT", tt.name, netw, resp.Question, resp.IsEdns0())
			}
			if len(b) > len(tt.raw) && tt.rcode == dns.RcodeFormatError {
				t.Errorf("%s/%s: FORMERR of %d bytes to a query of %d", tt.name, netw, len(b), len(tt.raw))
			}
		}
	}
	if n := e.upstream.Total() - before; n != 0 {
		t.Errorf("upstream asked %d times: every answer is from the cache or FORMERR", n)
	}
	if d := e.counter(t, "default", "dropped"); d != 0 {
		t.Errorf("%v queries dropped, want none", d)
	}
}

// TestOPTOwnerNotRoot: an OPT record owned by another name than the root
// is a malformed query (RFC 6891, 6.1.2): FORMERR.
func TestOPTOwnerNotRoot(t *testing.T) {
	e := startEnv(t, "")
	m := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
	m.IsEdns0().Hdr.Name = "example.test."
	for _, netw := range []string{"udp", "tcp"} {
		if resp := askRaw(t, e, netw, m); resp.Rcode != dns.RcodeFormatError {
			t.Errorf("%s: %s, want FORMERR", netw, dns.RcodeToString[resp.Rcode])
		}
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("upstream asked %d times", n)
	}
}

// TestNotImpFlags: NOTIMP to an opcode other than QUERY has the opcode
// and none of the flags defined for QUERY only (RA, AD, CD), whatever the
// query set (genreport's opcode and opcodeflg tests).
func TestNotImpFlags(t *testing.T) {
	e := startEnv(t, "")
	for _, opcode := range []int{dns.OpcodeNotify, dns.OpcodeStatus, 3, 15} {
		m := dnstest.NewQuery("www.example.test.", dns.TypeSOA, true, false)
		m.Opcode = opcode
		m.AuthenticatedData, m.CheckingDisabled, m.RecursionAvailable = true, true, true
		for _, netw := range []string{"udp", "tcp"} {
			resp := askRaw(t, e, netw, m)
			if resp.Rcode != dns.RcodeNotImplemented || resp.Opcode != opcode {
				t.Errorf("opcode %d/%s: %s opcode %d, want NOTIMP and the opcode", opcode, netw,
					dns.RcodeToString[resp.Rcode], resp.Opcode)
			}
			if resp.RecursionAvailable || resp.AuthenticatedData || resp.CheckingDisabled {
				t.Errorf("opcode %d/%s: RA=%v AD=%v CD=%v, want none", opcode, netw,
					resp.RecursionAvailable, resp.AuthenticatedData, resp.CheckingDisabled)
			}
		}
	}
}

// TestTCInQueryIgnored: TC means nothing in a query; it is answered as
// without it, over UDP and TCP, with TC clear in the reply.
func TestTCInQueryIgnored(t *testing.T) {
	e := startEnv(t, "")
	m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
	m.Truncated = true
	for _, netw := range []string{"udp", "tcp"} {
		resp := askRaw(t, e, netw, m)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 || resp.Truncated {
			t.Errorf("%s: %s, %d answers, TC=%v; want NOERROR with the answer, TC clear", netw,
				dns.RcodeToString[resp.Rcode], len(resp.Answer), resp.Truncated)
		}
	}
}

// TestServfailHasEDE: every SERVFAIL AppFence sends says why (RFC 8914):
// a silent upstream (22), an unreachable one (23), no upstream place free
// (0), the upstream's own SERVFAIL (0), with and without the cache, and
// for ANY.
func TestServfailHasEDE(t *testing.T) {
	closed := func() string { // a port where nothing listens: ICMP port unreachable
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}()
	tests := []struct {
		name   string
		cache  bool
		setup  func(e *env)
		server string // the upstream address; "" for e's
		qtype  uint16
		codes  []uint16 // acceptable
	}{
		{"silent", true, func(e *env) { e.upstream.SetSilent(true) }, "", dns.TypeA, []uint16{dns.ExtendedErrorCodeNoReachableAuthority}},
		{"silent, no cache", false, func(e *env) { e.upstream.SetSilent(true) }, "", dns.TypeA, []uint16{dns.ExtendedErrorCodeNoReachableAuthority}},
		{"silent ANY", true, func(e *env) { e.upstream.SetSilent(true) }, "", dns.TypeANY, []uint16{dns.ExtendedErrorCodeNoReachableAuthority}},
		{"unreachable", true, nil, closed, dns.TypeA, []uint16{dns.ExtendedErrorCodeNetworkError}},
		{"busy", true, func(e *env) { e.handler.upstreamPlaces.max.Store(0) }, "", dns.TypeA, []uint16{dns.ExtendedErrorCodeOther}},
		{"busy, no cache", false, func(e *env) { e.handler.upstreamPlaces.max.Store(0) }, "", dns.TypeA, []uint16{dns.ExtendedErrorCodeOther}},
		{"upstream SERVFAIL", true, func(e *env) { e.upstream.SetRcode(dns.RcodeServerFailure) }, "", dns.TypeA, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := dnstest.NewUpstream(t, upstreamRecords...)
			addr := up.Addr
			if tt.server != "" {
				addr = tt.server
			}
			cfg := fmt.Sprintf(testConfig, addr, "")
			if !tt.cache {
				cfg += "\n[cache]\nsize = 0\n"
			}
			e := startEnvWith(t, up, cfg)
			if tt.setup != nil {
				tt.setup(e)
			}
			for _, netw := range []string{"udp", "tcp"} {
				m := dnstest.NewQuery(fmt.Sprintf("q-%s.example.test.", netw), tt.qtype, true, false)
				resp := e.ask(t, netw, "127.0.0.1", m)
				if resp.Rcode != dns.RcodeServerFailure {
					t.Fatalf("%s: %s, want SERVFAIL", netw, dns.RcodeToString[resp.Rcode])
				}
				x := ede(resp)
				if x == nil {
					t.Fatalf("%s: SERVFAIL without EDE", netw)
				}
				ok := tt.codes == nil
				for _, c := range tt.codes {
					ok = ok || x.InfoCode == c
				}
				if !ok {
					t.Errorf("%s: EDE %d %q, want one of %v", netw, x.InfoCode, x.ExtraText, tt.codes)
				}
			}
		})
	}
}

// TestANYNonexistent: ANY is answered with RFC 8482's HINFO for a name
// that exists, and keeps the upstream's NXDOMAIN (with its SOA) for one
// that does not; the upstream is asked for A, never for ANY.
func TestANYNonexistent(t *testing.T) {
	up := dnstest.NewUpstream(t, append(upstreamRecords,
		"alias.example.test. 300 IN CNAME gone.example.test.",
		"onlytxt.example.test. 300 IN TXT \"x\"")...)
	for _, cache := range []string{"", "\n[cache]\nsize = 0\n"} {
		e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, "")+cache)
		tests := []struct {
			name  string
			rcode int
			hinfo bool
		}{
			{"Missing.Example.Test.", dns.RcodeNameError, false},
			{"www.example.test.", dns.RcodeSuccess, true},
			{"onlytxt.example.test.", dns.RcodeSuccess, true},
			{"alias.example.test.", dns.RcodeSuccess, true}, // exists: its CNAME's target does not
		}
		for _, tt := range tests {
			for _, netw := range []string{"udp", "tcp"} {
				resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(tt.name, dns.TypeANY, true, false))
				if resp.Rcode != tt.rcode {
					t.Errorf("cache %q %s ANY %s: %s, want %s", cache, netw, tt.name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if resp.Question[0].Name != tt.name || resp.Question[0].Qtype != dns.TypeANY {
					t.Errorf("%s ANY %s: question %v", netw, tt.name, resp.Question[0])
				}
				if tt.hinfo {
					if len(resp.Answer) != 1 || resp.Answer[0].Header().Rrtype != dns.TypeHINFO {
						t.Errorf("%s ANY %s: answer %v, want the HINFO", netw, tt.name, resp.Answer)
					}
					continue
				}
				if len(resp.Answer) != 0 || len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
					t.Errorf("%s ANY %s: answer %v authority %v, want the upstream's SOA", netw, tt.name, resp.Answer, resp.Ns)
				}
			}
		}
	}
	for _, q := range up.Queries() {
		if q.Type != dns.TypeA {
			t.Errorf("upstream asked %s %s, want only A", q.Name, dns.TypeToString[q.Type])
		}
	}
	// A name whose CNAME leads to a name that does not exist: the upstream
	// answers NXDOMAIN (RFC 6604: the rcode is the last name's), yet the
	// name exists.
	var asked atomic.Int64
	addr := handlerUpstream(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		asked.Add(1)
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Rcode = dns.RcodeNameError
		q := req.Question[0]
		if q.Qtype != dns.TypeA {
			resp.Rcode = dns.RcodeRefused
		} else if q.Name == "alias.example.test." {
			resp.Answer = []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: "gone.example.test."}}
		}
		resp.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "ns.example.test.", Mbox: "h.example.test.", Serial: 1, Refresh: 2, Retry: 3, Expire: 4, Minttl: 300}}
		w.WriteMsg(resp)
	}))
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, addr, ""))
	for name, want := range map[string]int{"alias.example.test.": dns.RcodeSuccess, "gone.example.test.": dns.RcodeNameError} {
		if resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(name, dns.TypeANY, true, false)); resp.Rcode != want {
			t.Errorf("ANY %s behind a CNAME to nowhere: %s, want %s", name, dns.RcodeToString[resp.Rcode], dns.RcodeToString[want])
		}
	}
	if asked.Load() != 2 {
		t.Errorf("upstream asked %d times, want 2 (A for each name)", asked.Load())
	}
}

// heldUpstream is an upstream on 127.0.0.1 that answers every A query
// with 192.0.2.1, except that the answer for held waits until release is
// closed (held is a canonical name with the trailing dot), and each answer
// waits delay; it records the most queries it had in hand at once.
type heldUpstream struct {
	addr     string
	held     string
	release  chan struct{}
	delay    time.Duration
	cur, max atomic.Int64
}

func newHeldUpstream(t *testing.T, held string, delay time.Duration) *heldUpstream {
	t.Helper()
	u := &heldUpstream{held: held, release: make(chan struct{}), delay: delay}
	u.addr = handlerUpstream(t, dns.HandlerFunc(u.serve))
	t.Cleanup(u.Release) // registered last, run first: before the server's Shutdown
	return u
}

// handlerUpstream starts a UDP DNS server on 127.0.0.1 answering with h
// until the test ends, and returns its address.
func handlerUpstream(t *testing.T, h dns.Handler) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// Release lets the held answer go.
func (u *heldUpstream) Release() {
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

func (u *heldUpstream) serve(w dns.ResponseWriter, req *dns.Msg) {
	n := u.cur.Add(1)
	for m := u.max.Load(); n > m && !u.max.CompareAndSwap(m, n); m = u.max.Load() {
	}
	q := req.Question[0]
	if dns.CanonicalName(q.Name) == u.held {
		<-u.release
	}
	time.Sleep(u.delay)
	u.cur.Add(-1) // before the answer leaves: the next query may follow it at once
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	resp.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)}}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(1232, opt.Do())
	}
	w.WriteMsg(resp)
}

// startHeld starts the resolver in front of u, with an upstream timeout
// long enough for a held answer, the [server] lines server added and adjust
// applied to the server.
func startHeld(t *testing.T, u *heldUpstream, server string, adjust func(*Server)) *env {
	t.Helper()
	cfg := strings.Replace(fmt.Sprintf(testConfig, u.addr, ""), `timeout = "500ms"`, `timeout = "10s"`, 1)
	if server != "" {
		cfg = insertServer(cfg, server)
	}
	return startEnvServer(t, dnstest.NewUpstream(t), cfg, time.Now, adjust)
}

// pipeline writes queries for names on c in one write, with IDs from 1.
func pipeline(t *testing.T, c net.Conn, names []string) {
	t.Helper()
	var all []byte
	for i, n := range names {
		m := dnstest.NewQuery(n, dns.TypeA, false, false)
		m.Id = uint16(i + 1)
		q := pack(t, m)
		all = binary.BigEndian.AppendUint16(all, uint16(len(q)))
		all = append(all, q...)
	}
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
}

// readReply reads one reply from c within wait; nil at EOF, and the
// read's error.
func readReply(t *testing.T, c net.Conn, wait time.Duration) (*dns.Msg, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return m, nil
}

// TestTCPPipelined sends 150 queries on one connection in one write, the
// first for a name whose upstream answer is held back: the 149 others are
// answered first (RFC 7766, 6.2.1.1: concurrently, out of order), the
// 129th and later too (they were read with the first 128, the
// per-connection limit of max_tcp_queries_per_connection = 128), then the
// held one, and then the server closes the connection gracefully: EOF, not
// a reset.
func TestTCPPipelined(t *testing.T) {
	const batch = 150
	u := newHeldUpstream(t, "slow.example.test.", 0)
	e := startHeld(t, u, "max_tcp_queries_per_connection = 128", nil)
	names := []string{"slow.example.test."}
	for i := 1; i < batch; i++ {
		names = append(names, fmt.Sprintf("n%d.example.test.", i))
	}
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	pipeline(t, c, names)
	seen := map[uint16]bool{}
	for len(seen) < batch-1 {
		m, err := readReply(t, c, 10*time.Second)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		if m.Id == 1 {
			t.Fatal("the held answer came before the others")
		}
		if seen[m.Id] || m.Id > batch || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Question[0].Name != names[m.Id-1] {
			t.Fatalf("reply %d: %v", len(seen)+1, m)
		}
		seen[m.Id] = true
	}
	u.Release()
	m, err := readReply(t, c, 10*time.Second)
	if err != nil || m.Id != 1 || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("the held answer: %v %v", m, err)
	}
	if _, err := readReply(t, c, 5*time.Second); err != io.EOF {
		t.Errorf("after %d replies: %v, want EOF (a graceful close)", batch, err)
	}
}

// TestTCPClosedGracefully: past the per-connection query limit the server
// answers what it read, sends FIN, and reads and discards the queries
// still coming: the client reads every reply and then EOF, never a reset.
func TestTCPClosedGracefully(t *testing.T) {
	e := startLimited(t, "max_tcp_queries_per_connection = 4", nil)
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	names := []string{"www.example.test.", "txt.example.test.", "www.example.test.", "missing.example.test."}
	pipeline(t, c, names)
	for i := range names {
		if m, err := readReply(t, c, 5*time.Second); err != nil || m.Question[0].Name != names[m.Id-1] {
			t.Fatalf("reply %d: %v %v", i+1, m, err)
		}
	}
	pipeline(t, c, names) // past the limit: not answered
	if m, err := readReply(t, c, 5*time.Second); err != io.EOF {
		t.Errorf("past the limit: %v %v, want EOF", m, err)
	}
	c.Close()
	waitFor(t, "the connection to be released", func() bool { return e.srv.tcpActive.Load() == 0 })
}

// TestTCPInFlightBound: one connection has at most maxTCPInFlight queries
// being answered at once, and they are answered concurrently.
func TestTCPInFlightBound(t *testing.T) {
	const bound = 4
	u := newHeldUpstream(t, "", 50*time.Millisecond)
	e := startHeld(t, u, "", func(s *Server) { s.maxTCPInFlight = bound })
	var names []string
	for i := 0; i < 40; i++ {
		names = append(names, fmt.Sprintf("n%d.example.test.", i))
	}
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	pipeline(t, c, names)
	for i := range names {
		if m, err := readReply(t, c, 10*time.Second); err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("reply %d: %v %v", i+1, m, err)
		}
	}
	if m := u.max.Load(); m > bound || m < 2 {
		t.Errorf("the upstream had up to %d queries of the connection at once, want 2 to %d", m, bound)
	}
}

// TestTCPIdleWhileAnswering: a connection whose query is still being
// answered is not idle: it is not closed after tcp_idle_timeout, and the
// reply comes.
func TestTCPIdleWhileAnswering(t *testing.T) {
	u := newHeldUpstream(t, "slow.example.test.", 0)
	cfg := strings.Replace(fmt.Sprintf(testConfig, u.addr, ""), `timeout = "500ms"`, `timeout = "10s"`, 1)
	e := startEnvServer(t, dnstest.NewUpstream(t), insertServer(cfg, `tcp_idle_timeout = "200ms"`), time.Now, nil)
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	pipeline(t, c, []string{"slow.example.test."})
	// The upstream holds the answer for three idle timeouts; the reply
	// then comes on the same connection.
	waitFor(t, "the upstream to be asked", func() bool { return u.cur.Load() == 1 })
	time.Sleep(600 * time.Millisecond)
	u.Release()
	if m, err := readReply(t, c, 5*time.Second); err != nil || m.Id != 1 || len(m.Answer) != 1 {
		t.Fatalf("reply to a query answered for longer than tcp_idle_timeout: %v %v", m, err)
	}
	// Then it is idle, and closed after tcp_idle_timeout.
	if _, err := readReply(t, c, 5*time.Second); err != io.EOF {
		t.Errorf("idle after the reply: %v, want EOF", err)
	}
}

// TestTSIGQuery: a query signed with a key AppFence does not know (it
// knows none) gets NOTAUTH and an unsigned TSIG with the error BADKEY
// (RFC 8945, 5.2.2), and is not forwarded; a TSIG that is not the last
// record is FORMERR.
func TestTSIGQuery(t *testing.T) {
	e := startEnv(t, "")
	const key = "key.example."
	signed := func(edns bool) []byte {
		m := dnstest.NewQuery("www.example.test.", dns.TypeA, edns, false)
		m.SetTsig(key, dns.HmacSHA256, 300, time.Now().Unix())
		b, _, err := dns.TsigGenerate(m, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "", false)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, edns := range []bool{false, true} {
		for _, netw := range []string{"udp", "tcp"} {
			before := e.upstream.Total()
			raw := signed(edns)
			b := rawExchange(t, netw, "", e.addr, raw, 2*time.Second)
			if b == nil {
				t.Fatalf("edns %v/%s: no reply", edns, netw)
			}
			resp := unpack(t, b, binary.BigEndian.Uint16(raw))
			if resp.Rcode != dns.RcodeNotAuth {
				t.Errorf("edns %v/%s: %s, want NOTAUTH", edns, netw, dns.RcodeToString[resp.Rcode])
			}
			tsig := resp.IsTsig()
			if tsig == nil || resp.Extra[len(resp.Extra)-1] != dns.RR(tsig) {
				t.Fatalf("edns %v/%s: no TSIG last in the reply: %v", edns, netw, resp.Extra)
			}
			if tsig.Error != dns.RcodeBadKey || tsig.MAC != "" || tsig.Hdr.Name != key || tsig.Algorithm != dns.HmacSHA256 {
				t.Errorf("edns %v/%s: TSIG %v, want error BADKEY, no MAC, the query's key and algorithm", edns, netw, tsig)
			}
			if (resp.IsEdns0() != nil) != edns {
				t.Errorf("edns %v/%s: OPT in the reply %v", edns, netw, resp.IsEdns0())
			}
			if got := e.upstream.Total() - before; got != 0 {
				t.Errorf("edns %v/%s: upstream asked %d times", edns, netw, got)
			}
		}
	}
	// TSIG first, then an OPT: FORMERR.
	m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
	m.Extra = []dns.RR{
		&dns.TSIG{Hdr: dns.RR_Header{Name: key, Rrtype: dns.TypeTSIG, Class: dns.ClassANY}, Algorithm: dns.HmacSHA256, Fudge: 300},
		&dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}},
	}
	if resp := askRaw(t, e, "udp", m); resp.Rcode != dns.RcodeFormatError {
		t.Errorf("TSIG not last: %s, want FORMERR", dns.RcodeToString[resp.Rcode])
	}
	// A TSIG without RDATA (no algorithm, no time), or cut after its
	// algorithm, time, fudge and MAC size: FORMERR, and no TSIG in the
	// reply, which could not be written out or would be larger than the
	// query (found by FuzzServePacket).
	for what, rdata := range map[string][]byte{
		"without RDATA": {},
		"cut short":     {0, 0, 0, 0, 0, 0, 1, 0, 44, 0, 0},
	} {
		plain := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
		raw := pack(t, plain)
		raw[11] = 1 // ARCOUNT
		raw = append(raw, 0, 0, 250, 0, 255, 0, 0, 0, 0, 0, byte(len(rdata)))
		raw = append(raw, rdata...)
		b := rawExchange(t, "udp", "", e.addr, raw, 2*time.Second)
		if b == nil {
			t.Fatalf("a TSIG %s: no reply", what)
		}
		resp := unpack(t, b, plain.Id)
		if resp.Rcode != dns.RcodeFormatError || len(resp.Extra) != 0 {
			t.Errorf("a TSIG %s: %s with %v, want FORMERR and no TSIG", what, dns.RcodeToString[resp.Rcode], resp.Extra)
		}
	}
}
