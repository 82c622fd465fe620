package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver/cache"
	"github.com/appfence/appfence/resolver/upstream"
)

// testConfig is the config of the integration tests: the real server on a
// random loopback port, a local upstream, and 127.0.0.2 in a group that
// exempts tiktok. %s is the upstream address; extra is appended.
const testConfig = `
[server]
listen = ["127.0.0.1:0"]
allow_clients = ["127.0.0.1/32", "127.0.0.2/32", "::1/128"]

[upstream]
servers = ["%s"]
timeout = "500ms"

[blocking]
lists = []
%s

[[group]]
name = "investigators"
clients = ["127.0.0.2"]
allow = ["tiktok"]

[metrics]
listen = ""
`

// env is a running resolver with its upstream.
type env struct {
	t        testing.TB
	addr     string
	upstream *dnstest.Upstream
	handler  *Handler
	cache    *cache.Cache
	metrics  *metrics.Metrics
	srv      *Server
}

// upstreamRecords answer the names the tests resolve.
var upstreamRecords = []string{
	"www.tiktok.com. 300 IN A 192.0.2.10",
	"www.tiktok.com. 300 IN AAAA 2001:db8::10",
	"www.example.test. 300 IN A 192.0.2.20",
	"txt.example.test. 300 IN TXT \"hello\"",
}

// startEnv starts an upstream and the resolver; blocking holds extra lines
// for the [blocking] section.
func startEnv(t testing.TB, blocking string) *env {
	t.Helper()
	up := dnstest.NewUpstream(t, upstreamRecords...)
	return startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, blocking))
}

func startEnvWith(t testing.TB, up *dnstest.Upstream, cfgText string) *env {
	t.Helper()
	return startEnvClock(t, up, cfgText, time.Now)
}

// loadPolicy parses cfgText as a config file and builds its policy, with
// the app files it names.
func loadPolicy(t testing.TB, cfgText string) *policy.Policy {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(cfgText), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, err := blocklists.Load(blocklists.Options{Globs: cfg.Blocking.Lists})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Build(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startEnvClock is startEnvWith with the cache reading the time from now.
func startEnvClock(t testing.TB, up *dnstest.Upstream, cfgText string, now func() time.Time) *env {
	t.Helper()
	return startEnvServer(t, up, cfgText, now, nil)
}

// startEnvServer is startEnvClock with adjust called on the server before
// it starts (to lower its limits); adjust may be nil.
func startEnvServer(t testing.TB, up *dnstest.Upstream, cfgText string, now func() time.Time, adjust func(*Server)) *env {
	t.Helper()
	p := loadPolicy(t, cfgText)
	cfg := p.Config
	m := metrics.New("test")
	router, err := upstream.NewRouter(context.Background(), cfg.Upstream, m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	c := cache.New(context.Background(), cfg.Cache, m.Registry)
	c.Now = now
	h := NewHandler(context.Background(), &State{Policy: p, Upstream: router}, c, m, nil)
	srv := NewServer(h, nil)
	if adjust != nil {
		adjust(srv)
	}
	if err := srv.Start(context.Background(), cfg.Server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &env{t: t, addr: srv.UDPAddrs()[0].String(), upstream: up, handler: h, cache: c, metrics: m, srv: srv}
}

// ask sends a query from local over netw and fails the test on error.
func (e *env) ask(t *testing.T, netw, local string, m *dns.Msg) *dns.Msg {
	t.Helper()
	resp, err := dnstest.Client{Local: local}.Exchange(context.Background(), netw, e.addr, m)
	if err != nil {
		t.Fatalf("%s query %s from %s: %v", netw, m.Question[0].Name, local, err)
	}
	if resp.Id != m.Id {
		t.Errorf("reply ID %d, query ID %d", resp.Id, m.Id)
	}
	if len(resp.Question) != 1 || resp.Question[0] != m.Question[0] {
		t.Errorf("question not echoed: %v, want %v", resp.Question, m.Question)
	}
	return resp
}

func ede(resp *dns.Msg) *dns.EDNS0_EDE {
	if opt := resp.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func soaOf(t *testing.T, resp *dns.Msg) *dns.SOA {
	t.Helper()
	if len(resp.Ns) != 1 {
		t.Fatalf("authority section = %v, want one SOA", resp.Ns)
	}
	soa, ok := resp.Ns[0].(*dns.SOA)
	if !ok {
		t.Fatalf("authority = %v, want an SOA", resp.Ns[0])
	}
	return soa
}

func TestBlockModes(t *testing.T) {
	tests := []struct {
		mode     string
		extra    string
		qtype    uint16
		rcode    int
		answer   string // the answer record's data, "" for none
		response string
	}{
		{"nxdomain", "", dns.TypeA, dns.RcodeNameError, "", ""},
		{"nodata", "", dns.TypeA, dns.RcodeSuccess, "", ""},
		{"refused", "", dns.TypeA, dns.RcodeRefused, "", ""},
		{"null", "", dns.TypeA, dns.RcodeSuccess, "0.0.0.0", ""},
		{"null", "", dns.TypeAAAA, dns.RcodeSuccess, "::", ""},
		{"null", "", dns.TypeTXT, dns.RcodeSuccess, "", ""},
		{"sinkhole", `sinkhole_ipv4 = "192.0.2.99"` + "\n" + `sinkhole_ipv6 = "2001:db8::99"`, dns.TypeA, dns.RcodeSuccess, "192.0.2.99", ""},
		{"sinkhole", `sinkhole_ipv4 = "192.0.2.99"` + "\n" + `sinkhole_ipv6 = "2001:db8::99"`, dns.TypeAAAA, dns.RcodeSuccess, "2001:db8::99", ""},
		{"sinkhole", `sinkhole_ipv4 = "192.0.2.99"`, dns.TypeAAAA, dns.RcodeSuccess, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
			e := startEnv(t, fmt.Sprintf("response = %q\nttl = \"45s\"\n%s", tt.mode, tt.extra))
			for _, netw := range []string{"udp", "tcp"} {
				before := e.upstream.Total()
				// default group: blocked
				resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("www.tiktok.com.", tt.qtype, true, false))
				if resp.Rcode != tt.rcode {
					t.Errorf("%s: rcode %s, want %s", netw, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if !resp.RecursionAvailable || resp.Authoritative {
					t.Errorf("%s: RA %v AA %v, want RA set and AA clear", netw, resp.RecursionAvailable, resp.Authoritative)
				}
				switch {
				case tt.answer == "" && len(resp.Answer) != 0:
					t.Errorf("%s: answer %v, want none", netw, resp.Answer)
				case tt.answer != "":
					if len(resp.Answer) != 1 || !strings.HasSuffix(resp.Answer[0].String(), "\t"+tt.answer) || resp.Answer[0].Header().Ttl != 45 {
						t.Errorf("%s: answer %v, want %s with TTL 45", netw, resp.Answer, tt.answer)
					}
				}
				soa := soaOf(t, resp)
				if soa.Hdr.Ttl != 45 || soa.Minttl != 45 || soa.Hdr.Name != "tiktok.com." {
					t.Errorf("%s: SOA %v, want owner tiktok.com. with TTL and MINIMUM 45", netw, soa)
				}
				if x := ede(resp); x == nil || x.InfoCode != dns.ExtendedErrorCodeBlocked || x.ExtraText != "blocked: app=tiktok group=default" {
					t.Errorf("%s: EDE %v, want 15 naming tiktok and default", netw, x)
				}
				if e.upstream.Total() != before {
					t.Errorf("%s: a blocked query reached the upstream", netw)
				}
				// exempted group: the upstream's answer, asked once (UDP)
				// and then served from the cache (TCP)
				if tt.qtype == dns.TypeTXT {
					continue
				}
				resp = e.ask(t, netw, "127.0.0.2", dnstest.NewQuery("www.tiktok.com.", tt.qtype, true, false))
				if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || ede(resp) != nil || len(resp.Ns) != 0 {
					t.Errorf("%s exempted: %v", netw, resp)
				}
				if want := map[string]int64{"udp": 1, "tcp": 0}[netw]; e.upstream.Total() != before+want {
					t.Errorf("%s exempted: upstream got %d queries, want %d", netw, e.upstream.Total()-before, want)
				}
			}
		})
	}
}

func TestBlockedForEveryType(t *testing.T) {
	e := startEnv(t, "")
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeTXT, dns.TypeMX, dns.TypeCNAME, dns.TypeANY, dns.TypeNS} {
		for _, name := range []string{"www.tiktok.com.", "tiktok.com.", "v16-webapp.tiktokcdn.com."} {
			resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(name, qtype, false, false))
			if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
				t.Errorf("%s %s: %s %v, want NXDOMAIN", name, dns.TypeToString[qtype], dns.RcodeToString[resp.Rcode], resp.Answer)
			}
			if resp.IsEdns0() != nil {
				t.Errorf("%s: OPT sent to a client without EDNS", name)
			}
		}
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("upstream got %d queries for blocked names", n)
	}
}

func TestNamesAreNormalized(t *testing.T) {
	e := startEnv(t, "")
	// On the wire every name ends at the root: "www.tiktok.com" and
	// "www.tiktok.com." are the same query; dnsname tests cover the text form.
	// Escapes of printable characters (www.\116iktok.com) are decoded by
	// miekg/dns when the query is unpacked.
	for _, name := range []string{"WwW.TikTok.COM.", "TIKTOK.COM.", "v16.TikTokCDN.com."} {
		resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(name, dns.TypeA, true, false))
		if resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN", name, dns.RcodeToString[resp.Rcode])
		}
	}
	// An escaped dot makes one label: "tiktok\.com." is not tiktok.com.
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(`www.tiktok\.com.`, dns.TypeA, true, false))
	if ede(resp) != nil || e.upstream.Total() != 1 {
		t.Errorf("www.tiktok\\.com: %v, want it forwarded", resp)
	}
	// An ordinary mixed-case name resolves, and the reply keeps the case.
	resp = e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("WwW.ExAmPlE.TeSt.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].Header().Name != "WwW.ExAmPlE.TeSt." {
		t.Errorf("mixed case: %v", resp)
	}
	if q := e.upstream.Queries(); len(q) != 2 || q[1].Name != "www.example.test." {
		t.Errorf("upstream saw %v, want the lower-case name", q)
	}
}

func TestRefusedOutsideAllowClients(t *testing.T) {
	e := startEnv(t, "")
	resp := e.ask(t, "udp", "127.0.0.3", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeRefused || len(resp.Answer) != 0 {
		t.Errorf("udp: %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
	// Over TCP the connection is reset at accept: it takes no place. The
	// reset may reach the client while it still connects.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	c, err := d.Dial("tcp", e.addr)
	switch {
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("tcp: dial: %v, want success or a reset", err)
	case err == nil:
		defer c.Close()
		if r := query(t, c, "www.example.test.", 2*time.Second); r != nil {
			t.Errorf("tcp: answered %v, want the connection reset", r)
		}
	}
	if e.upstream.Total() != 0 {
		t.Error("a refused client's query reached the upstream")
	}
}

func TestForwarding(t *testing.T) {
	e := startEnv(t, "")
	for _, netw := range []string{"udp", "tcp"} {
		resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.20" {
			t.Errorf("%s: %v", netw, resp)
		}
		resp = e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("txt.example.test.", dns.TypeTXT, false, false))
		if len(resp.Answer) != 1 {
			t.Errorf("%s TXT: %v", netw, resp)
		}
		resp = e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("missing.example.test.", dns.TypeA, false, false))
		if resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 1 {
			t.Errorf("%s NXDOMAIN from upstream: %v", netw, resp)
		}
	}
}

func TestEDNSPassedThrough(t *testing.T) {
	e := startEnv(t, "")
	m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
	m.SetEdns0(4096, true)
	resp := e.ask(t, "udp", "127.0.0.1", m)
	opt := resp.IsEdns0()
	if opt == nil || !opt.Do() {
		t.Fatalf("reply OPT = %v, want one with DO", opt)
	}
	q := e.upstream.Queries()
	// The client's DO, but AppFence's own payload size (conformance_upstream_test.go).
	if len(q) != 1 || !q[0].DO || q[0].Size != ednsSize {
		t.Errorf("upstream saw DO=%v size=%d, want DO and %d", q[0].DO, q[0].Size, ednsSize)
	}
	// Without EDNS: no OPT in the reply; upstream still gets EDNS (1232).
	resp = e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("txt.example.test.", dns.TypeTXT, false, false))
	if resp.IsEdns0() != nil {
		t.Error("OPT in the reply to a client without EDNS")
	}
	q = e.upstream.Queries()
	if len(q) != 2 || q[1].DO || q[1].Size != 1232 {
		t.Errorf("upstream saw DO=%v size=%d, want no DO and 1232", q[1].DO, q[1].Size)
	}
}

func TestTruncatedUpstreamRetriedOverTCP(t *testing.T) {
	e := startEnv(t, "")
	e.upstream.SetTruncateUDP(true)
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Truncated {
		t.Errorf("reply %v, want the full answer", resp)
	}
	if udp, tcp := e.upstream.Count(); udp != 1 || tcp != 1 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 1 and 1", udp, tcp)
	}
}

func TestLargeAnswerTruncatedForClient(t *testing.T) {
	up := dnstest.NewUpstream(t)
	for i := 0; i < 60; i++ {
		up.Add(t, fmt.Sprintf("big.example.test. 300 IN TXT \"%s-%02d\"", strings.Repeat("x", 40), i))
	}
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, ""))
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("big.example.test.", dns.TypeTXT, false, false))
	resp.Compress = true // measure it as it was sent
	if !resp.Truncated || resp.Len() > 512 {
		t.Errorf("UDP reply of %d bytes, TC=%v: want at most 512 bytes with TC", resp.Len(), resp.Truncated)
	}
	resp = e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("big.example.test.", dns.TypeTXT, false, false))
	if resp.Truncated || len(resp.Answer) != 60 {
		t.Errorf("TCP reply: TC=%v, %d records, want all 60", resp.Truncated, len(resp.Answer))
	}
}

func TestSilentUpstreamGivesSERVFAIL(t *testing.T) {
	e := startEnv(t, "")
	e.upstream.SetSilent(true)
	start := time.Now()
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	took := time.Since(start)
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	// upstream.timeout is 500ms; the client's own timeout is 5s.
	if took > 2*time.Second {
		t.Errorf("SERVFAIL after %s, want it within the upstream timeout", took)
	}
}

func TestFailoverToSecondUpstream(t *testing.T) {
	dead := dnstest.NewUpstream(t)
	dead.SetSilent(true)
	live := dnstest.NewUpstream(t, upstreamRecords...)
	cfg := strings.Replace(fmt.Sprintf(testConfig, dead.Addr, ""), `servers = ["`+dead.Addr+`"]`,
		`servers = ["`+dead.Addr+`", "`+live.Addr+`"]`, 1)
	e := startEnvWith(t, live, cfg)
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("reply %v, want the live upstream's answer", resp)
	}
	if dead.Total() != 1 || live.Total() != 1 {
		t.Errorf("dead got %d, live %d queries; want 1 and 1", dead.Total(), live.Total())
	}
}

// swapPolicy installs a policy built from the test config with blocking
// as the extra [blocking] lines, keeping the upstream, as a reload does.
func (e *env) swapPolicy(t *testing.T, blocking string) {
	t.Helper()
	old := e.handler.State()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(testConfig, e.upstream.Addr, blocking)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Build(cfg, old.Policy.Set)
	if err != nil {
		t.Fatal(err)
	}
	e.handler.Swap(&State{Policy: p, Upstream: old.Upstream})
}

func TestSwapKeepsServing(t *testing.T) {
	e := startEnv(t, "")
	e.swapPolicy(t, `block = []`)
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("after unblocking tiktok: %v", resp)
	}
}
