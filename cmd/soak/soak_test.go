package main

import (
	"context"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/synthetic"
)

func TestCheck(t *testing.T) {
	answer := func(q question, rcode int, rrs ...string) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Rcode = rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		return m
	}
	a := question{"N1.soak.test.", dns.TypeA}
	right := "N1.soak.test. 5 IN A " + synthetic.AddrOf("n1.soak.test.", false).String()
	tests := []struct {
		q      question
		exempt bool
		resp   *dns.Msg
		want   string
	}{
		{a, false, answer(a, dns.RcodeSuccess, right), ""},
		{a, false, answer(a, dns.RcodeSuccess, "N1.soak.test. 5 IN A 192.0.2.1"), "answer-wrong"},
		{a, false, answer(a, dns.RcodeSuccess, "n1.soak.test. 5 IN A "+synthetic.AddrOf("n1.soak.test.", false).String()), "case-wrong"},
		{a, false, answer(a, dns.RcodeServerFailure), "servfail"},
		{question{"www.tiktok.com.", dns.TypeA}, false, answer(a, dns.RcodeNameError), ""},
		{question{"www.tiktok.com.", dns.TypeA}, false, answer(a, dns.RcodeSuccess, "www.tiktok.com. 5 IN A 192.0.2.1"), "block-wrong"},
		{question{"www.tiktok.com.", dns.TypeA}, true, answer(a, dns.RcodeSuccess, "www.tiktok.com. 5 IN A "+synthetic.AddrOf("www.tiktok.com.", false).String()), ""},
		{question{"nx1.soak.test.", dns.TypeAAAA}, false, answer(a, dns.RcodeNameError), ""},
		{question{"nx1.soak.test.", dns.TypeAAAA}, false, answer(a, dns.RcodeSuccess), "rcode-wrong"},
	}
	for i, tt := range tests {
		if got := check(tt.q, tt.exempt, tt.resp); got != tt.want {
			t.Errorf("%d: check(%v) = %q, want %q", i, tt.q, got, tt.want)
		}
	}
}

func TestInOutage(t *testing.T) {
	base := time.Now()
	tl := newTally()
	tl.setOutage(outage{from: base, to: base.Add(10 * time.Second)}, 0)
	tests := []struct {
		from, to time.Duration
		want     bool
	}{
		{-2 * time.Second, -time.Second, false},
		{-time.Second, time.Second, true},
		{5 * time.Second, 5 * time.Second, true},
		{12 * time.Second, 12 * time.Second, true}, // grace
		{14 * time.Second, 14 * time.Second, false},
	}
	for _, tt := range tests {
		if got := tl.inOutage(base.Add(tt.from), base.Add(tt.to)); got != tt.want {
			t.Errorf("[%s, %s]: %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestConfigFile: the soak's and the attacks' configurations load, and the
// attacks' forwards the slow zone to its servers.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []configFile{
		{dnsAddr: "127.0.0.1:5300", metricsAddr: "127.0.0.1:9300", upstreamAddr: "127.0.0.1:5301", dir: dir},
		{dnsAddr: "127.0.0.1:5300", metricsAddr: "127.0.0.1:9300", upstreamAddr: "127.0.0.1:5301", dir: dir, variant: 1},
		{dnsAddr: "127.0.0.1:5300", metricsAddr: "127.0.0.1:9300", upstreamAddr: "127.0.0.1:5301", dir: dir,
			timeout: "2s", idleTimeout: 10 * time.Second, slowZone: slowZone, slowServers: []string{"127.0.0.1:5302", "127.0.0.1:5303"}},
	} {
		cfg, err := config.Parse(filepath.Join(dir, "appfence.toml"), []byte(c.text()), dir)
		if err != nil {
			t.Fatalf("%+v: %v\n%s", c, err, c.text())
		}
		if c.slowZone == "" {
			if len(cfg.Upstream.Forward) != 0 || cfg.Upstream.Timeout != 500*time.Millisecond || cfg.Server.TCPIdleTimeout != tcpIdleTimeout {
				t.Errorf("soak config: forward %v, timeout %s, idle %s", cfg.Upstream.Forward, cfg.Upstream.Timeout, cfg.Server.TCPIdleTimeout)
			}
			continue
		}
		if f := cfg.Upstream.Forward; len(f) != 1 || len(f[0].Servers) != 2 || f[0].Servers[1].Addr != "127.0.0.1:5303" ||
			len(f[0].Zones) != 1 || f[0].Zones[0] != "slow.test" {
			t.Errorf("forward = %+v", f)
		}
		if cfg.Upstream.Timeout != 2*time.Second || cfg.Server.TCPIdleTimeout != 10*time.Second || cfg.Server.MaxTCPConnections != maxTCPConnections {
			t.Errorf("attack config: timeout %s, idle %s, max TCP %d", cfg.Upstream.Timeout, cfg.Server.TCPIdleTimeout, cfg.Server.MaxTCPConnections)
		}
	}
	if _, err := config.Parse("broken.toml", []byte(configFile{dir: dir, broken: true}.text()), dir); err == nil {
		t.Error("the broken variant loads")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, v := range n {
			d = append(d, time.Duration(v)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	tests := []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 0.99, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(3, 1, 2), 0.5, 2 * time.Millisecond},
		{ms(hundred...), 0.99, 99 * time.Millisecond},
		{ms(hundred...), 1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.d, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %s, want %s", len(tt.d), tt.p, got, tt.want)
		}
	}
}

// TestBan: the answers to the banned name are classified, and the ban holds
// only when both groups were seen and neither was wrong.
func TestBan(t *testing.T) {
	q := question{bannedName, dns.TypeA}
	reply := func(rcode int, addr bool) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.Rcode = rcode
		if addr {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
				A: synthetic.AddrOf(q.name, false).AsSlice()}}
		}
		return m
	}
	kinds := []struct {
		exempt bool
		resp   *dns.Msg
		want   string
	}{
		{false, reply(dns.RcodeNameError, false), "default blocked"},
		{false, reply(dns.RcodeSuccess, true), "default resolved"},
		{false, reply(dns.RcodeServerFailure, false), "default servfail"},
		{true, reply(dns.RcodeSuccess, true), "exempt resolved"},
		{true, reply(dns.RcodeNameError, false), "exempt blocked"},
		{true, reply(dns.RcodeRefused, false), "exempt REFUSED"},
	}
	for _, k := range kinds {
		if got := banKind(k.exempt, k.resp); got != k.want {
			t.Errorf("banKind(%v, %s) = %q, want %q", k.exempt, dns.RcodeToString[k.resp.Rcode], got, k.want)
		}
	}
	tl := newTally()
	tl.result("udp", q, false, reply(dns.RcodeNameError, false), time.Now())
	if banHeld(tl.ban) {
		t.Error("held without an exempt answer")
	}
	tl.result("tcp", q, true, reply(dns.RcodeSuccess, true), time.Now())
	if !banHeld(tl.ban) || tl.correct["udp"] != 1 || tl.correct["tcp"] != 1 || len(tl.latency) != 2 {
		t.Errorf("ban %v, correct %v, %d latencies", tl.ban, tl.correct, len(tl.latency))
	}
	tl.result("udp", q, false, reply(dns.RcodeSuccess, true), time.Now())
	if banHeld(tl.ban) || tl.failOut["block-wrong"] != 1 {
		t.Errorf("a default client resolved the banned name: held %v, failures %v", banHeld(tl.ban), tl.failOut)
	}
}

// TestSpoofPacket: every packet of the spoofed-source flood is one that a
// server must neither answer nor charge: a response, a runt, a question
// that is a compression pointer, a name without type and class, or one
// with a reserved label type, which does not parse.
func TestSpoofPacket(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		p := spoofPacket(r, i)
		switch {
		case len(p) < 12:
		case p[2]&0x80 != 0:
			if m := new(dns.Msg); m.Unpack(p) != nil || len(m.Answer) != 1 {
				t.Errorf("%d: response does not parse: %x", i, p)
			}
		case p[12]&0xC0 == 0xC0:
		case p[12]&0xC0 == 0x40:
			if new(dns.Msg).Unpack(p) == nil {
				t.Errorf("%d: a reserved label type that parses: %x", i, p)
			}
		default: // the name ends the packet (miekg/dns parses it leniently; AppFence drops it)
			if _, off, err := dns.UnpackDomainName(p, 12); err != nil || off != len(p) {
				t.Errorf("%d: not a query cut after its name: %x", i, p)
			}
		}
	}
}

// TestSlowServer: the slow zone's server answers NXDOMAIN after its delay,
// on a real socket.
func TestSlowServer(t *testing.T) {
	s, err := startSlowServer(300 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := new(dns.Msg)
	m.SetQuestion("r1."+slowZone, dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	resp, rtt, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rcode != dns.RcodeNameError || rtt < 300*time.Millisecond {
		t.Errorf("%s after %s, want NXDOMAIN after 300ms", dns.RcodeToString[resp.Rcode], rtt)
	}
}

// TestTCPHog: against a listener that keeps every connection, the hog holds
// exactly hogConns from clientHog and opens no more; when the listener
// closes some it opens new ones; all are closed when it stops.
func TestTCPHog(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	e := &attackEnv{o: options{hogConns: 10}, server: l.Addr().String(), t: newTally()}
	done := make(chan struct{})
	go func() { defer close(done); tcpHog(ctx, e) }()
	take := func(n int) []net.Conn {
		var got []net.Conn
		deadline := time.After(5 * time.Second)
		for len(got) < n {
			select {
			case c := <-conns:
				if h, _, _ := net.SplitHostPort(c.RemoteAddr().String()); h != clientHog {
					t.Errorf("hog connection from %s, want %s", h, clientHog)
				}
				got = append(got, c)
			case <-deadline:
				t.Fatalf("%d connections of %d", len(got), n)
			}
		}
		return got
	}
	held := take(10)
	for deadline := time.Now().Add(5 * time.Second); e.t.get(e.t.info, "hog: connections") < 10; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the hog did not count its 10 connections")
		}
	}
	for _, c := range held[:3] {
		c.Close()
	}
	take(3)
	cancel()
	<-done
	// A slot is free only when a connection closes: 10, then the 3 closed
	// here reopened, and none while 10 were held.
	if n, most := e.t.info["hog: connections"], e.t.info["hog: most held at once"]; n != 13 || most != 10 {
		t.Errorf("%d connections made, most held at once %d; want 13 and 10", n, most)
	}
	for _, c := range held[3:] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
			t.Error("a hog connection still open after the hog stopped")
		}
	}
}

func TestChooseAttacks(t *testing.T) {
	tests := []struct {
		list string
		want []string
		err  bool
	}{
		{"all", []string{"tcp-hog", "tcp-hog-spread", "slow-zone", "spoof"}, false},
		{"none", nil, false},
		{"", nil, false},
		{"spoof, tcp-hog", []string{"spoof", "tcp-hog"}, false},
		{"tcp-hog,nope", nil, true},
	}
	for _, tt := range tests {
		got, err := chooseAttacks(tt.list)
		var names []string
		for _, a := range got {
			names = append(names, a.name)
		}
		if (err != nil) != tt.err || !slices.Equal(names, tt.want) {
			t.Errorf("chooseAttacks(%q) = %v, %v; want %v (error %v)", tt.list, names, err, tt.want, tt.err)
		}
	}
	var out strings.Builder
	if code := run([]string{"-attacks", "nope"}, &out); code != 2 || !strings.Contains(out.String(), `no attack "nope"`) {
		t.Errorf("run -attacks nope: exit %d, %q", code, out.String())
	}
}
