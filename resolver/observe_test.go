package resolver

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/httpapi"
	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
)

// BenchmarkObserve measures the per-query observe step: counting the
// decision and the reply in the metrics, and with the query log on,
// queueing its line.
func BenchmarkObserve(b *testing.B) {
	cfg := filepath.Join(b.TempDir(), "bench.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(testConfig, "127.0.0.1:9", "")), 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := policy.Load(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	h := NewHandler(context.Background(), &State{Policy: p}, nil, metrics.New("bench"), nil)
	st := h.State()
	tests := []struct {
		name     string
		client   string
		qname    string
		rcode    int
		querylog bool // the entry goes to the logger's buffer, or is dropped when it is full
		parallel bool // every core observing at once: shared cache lines show
	}{
		{"blocked", "127.0.0.1", "www.tiktok.com.", dns.RcodeNameError, false, false},
		{"exempted", "127.0.0.2", "www.tiktok.com.", dns.RcodeSuccess, false, false},
		{"resolved", "127.0.0.1", "www.example.test.", dns.RcodeSuccess, false, false},
		{"blocked-querylog", "127.0.0.1", "www.tiktok.com.", dns.RcodeNameError, true, false},
		{"blocked-parallel", "127.0.0.1", "www.tiktok.com.", dns.RcodeNameError, false, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			if tt.querylog {
				ql := querylog.New(io.Discard, querylog.Options{})
				h.SetQueryLog(ql)
				defer func() { h.SetQueryLog(nil); ql.Close() }()
			}
			client := netip.MustParseAddr(tt.client)
			d := p.Decide(client, dnsname.Canonical(tt.qname))
			req := new(dns.Msg)
			req.SetQuestion(tt.qname, dns.TypeA)
			start := time.Now()
			b.ReportAllocs()
			if tt.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						h.observe(st, &d, client, source{transport: "udp"}, question{msg: req}, tt.rcode, start)
					}
				})
				return
			}
			for b.Loop() {
				h.observe(st, &d, client, source{transport: "udp"}, question{msg: req}, tt.rcode, start)
			}
		})
	}
}

// serveMetrics serves the env's metrics endpoints on a loopback port and
// returns the /metrics URL.
func serveMetrics(t *testing.T, e *env) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ep := &httpapi.Endpoints{Metrics: e.metrics.Registry}
	addr, _, err := ep.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String() + "/metrics"
}

// waitObserved waits until the observe step has counted n queries: it runs
// after the reply is sent, so a client can have its answer first.
func waitObserved(t *testing.T, e *env, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got uint64
		for _, c := range promtest.Gather(t, e.metrics.Registry).Counts("appfence_query_duration_seconds", "group") {
			got += c
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("observed %d queries, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMetricsPerGroup sends a scripted set of queries from the default
// group (127.0.0.1), the exempted group (127.0.0.2) and a client outside
// allow_clients (127.0.0.3), scrapes /metrics over HTTP and compares every
// series of the per-query metrics with the expected counts, zeros included.
func TestMetricsPerGroup(t *testing.T) {
	up := dnstest.NewUpstream(t, append(upstreamRecords, "www.larksuite.com. 300 IN A 192.0.2.30")...)
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, `monitor = ["lark"]`))
	url := serveMetrics(t, e)

	type query struct {
		netw, from, name string
		qtype            uint16
		opcode           int
	}
	script := []query{
		{"udp", "127.0.0.1", "www.tiktok.com.", dns.TypeA, dns.OpcodeQuery},    // default blocked NXDOMAIN
		{"tcp", "127.0.0.1", "www.tiktok.com.", dns.TypeAAAA, dns.OpcodeQuery}, // default blocked NXDOMAIN
		{"udp", "127.0.0.1", "v16.tiktokcdn.com.", dns.TypeHTTPS, dns.OpcodeQuery},
		{"udp", "127.0.0.1", "www.example.test.", dns.TypeA, dns.OpcodeQuery},     // default resolved NOERROR
		{"tcp", "127.0.0.1", "www.example.test.", dns.TypeA, dns.OpcodeQuery},     // default resolved NOERROR
		{"udp", "127.0.0.1", "missing.example.test.", dns.TypeA, dns.OpcodeQuery}, // default resolved NXDOMAIN
		{"udp", "127.0.0.1", "www.larksuite.com.", dns.TypeA, dns.OpcodeQuery},    // default monitored NOERROR
		{"udp", "127.0.0.1", "www.example.test.", dns.TypeSOA, dns.OpcodeNotify},  // default resolved NOTIMP
		{"udp", "127.0.0.2", "www.tiktok.com.", dns.TypeA, dns.OpcodeQuery},       // investigators exempted NOERROR
		{"tcp", "127.0.0.2", "WWW.TikTok.com.", dns.TypeA, dns.OpcodeQuery},       // investigators exempted NOERROR
		{"udp", "127.0.0.2", "www.larksuite.com.", dns.TypeA, dns.OpcodeQuery},    // investigators monitored NOERROR
		{"udp", "127.0.0.2", "www.example.test.", dns.TypeA, dns.OpcodeQuery},     // investigators resolved NOERROR
		{"udp", "127.0.0.3", "www.example.test.", dns.TypeA, dns.OpcodeQuery},     // default refused REFUSED
	}
	for _, q := range script {
		m := dnstest.NewQuery(q.name, q.qtype, true, false)
		m.Opcode = q.opcode
		e.ask(t, q.netw, q.from, m)
	}
	// Requests dropped before an answer (rate limiting, malformed packets)
	// are counted through Handler.Dropped.
	e.handler.Dropped(netip.MustParseAddr("127.0.0.2"))

	waitObserved(t, e, uint64(len(script)))
	fams := promtest.Scrape(t, url)
	check := func(name string, got, want map[string]float64) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
	check("appfence_queries_total", fams.Values("appfence_queries_total", "group", "action"), map[string]float64{
		"default/resolved": 4, "default/blocked": 3, "default/exempted": 0,
		"default/monitored": 1, "default/refused": 1, "default/dropped": 0,
		"investigators/resolved": 1, "investigators/blocked": 0, "investigators/exempted": 2,
		"investigators/monitored": 1, "investigators/refused": 0, "investigators/dropped": 1,
	})
	check("appfence_app_queries_total", fams.Values("appfence_app_queries_total", "group", "app", "action"), map[string]float64{
		"default/tiktok/blocked": 3, "default/tiktok/exempted": 0, "default/tiktok/monitored": 0,
		"default/lark/blocked": 0, "default/lark/exempted": 0, "default/lark/monitored": 1,
		"investigators/tiktok/blocked": 0, "investigators/tiktok/exempted": 2, "investigators/tiktok/monitored": 0,
		"investigators/lark/blocked": 0, "investigators/lark/exempted": 0, "investigators/lark/monitored": 1,
		// the canary app's series exist while an app is blocked
		"default/encrypted-dns/blocked": 0, "default/encrypted-dns/exempted": 0, "default/encrypted-dns/monitored": 0,
		"investigators/encrypted-dns/blocked": 0, "investigators/encrypted-dns/exempted": 0, "investigators/encrypted-dns/monitored": 0,
	})
	check("appfence_responses_total", fams.Values("appfence_responses_total", "group", "rcode"), map[string]float64{
		"default/NOERROR": 3, "default/NXDOMAIN": 4, "default/SERVFAIL": 0, "default/REFUSED": 1, "default/NOTIMP": 1,
		"investigators/NOERROR": 4, "investigators/NXDOMAIN": 0, "investigators/SERVFAIL": 0, "investigators/REFUSED": 0,
	})
	if got, want := fams.Counts("appfence_query_duration_seconds", "group"), map[string]uint64{"default": 9, "investigators": 4}; !maps.Equal(got, want) {
		t.Errorf("appfence_query_duration_seconds counts: got %v, want %v", got, want)
	}
	// 8 queries were forwarded (resolved, monitored, exempted) but only 4
	// distinct ones reached the upstream: the cache answered the repeats, and
	// they still count under their group's action (the exempted TCP query
	// for WWW.TikTok.com was a cache hit).
	if n := up.Total(); n != 4 {
		t.Errorf("upstream got %d queries, want 4", n)
	}
	check("appfence_cache_requests_total", fams.Values("appfence_cache_requests_total", "result"), map[string]float64{
		"hit": 4, "miss": 4, "stale": 0,
	})
}

// logLine is a query log line as the tests read it back.
type logLine struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Transport  string  `json:"transport,omitempty"`
	ClientID   string  `json:"client_id,omitempty"`
	Cert       string  `json:"cert,omitempty"`
	Group      string  `json:"group"`
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Action     string  `json:"action"`
	App        string  `json:"app"`
	Rule       string  `json:"rule"`
	Via        string  `json:"via,omitempty"`
	Found      string  `json:"found,omitempty"`
	Rcode      string  `json:"rcode"`
	DurationMS float64 `json:"duration_ms"`
}

// readQueryLog returns the lines of a query log file, each parsed as JSON
// with no field unknown to logLine.
func readQueryLog(t *testing.T, path string) []logLine {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logLine
	for _, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		var l logLine
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// TestQueryLog checks what the observe step writes to the query log for
// each scope, with and without anonymized clients: every line parsed as
// JSON and compared field by field.
func TestQueryLog(t *testing.T) {
	blocked := logLine{Client: "127.0.0.1", Transport: "udp", Group: "default", Name: "www.tiktok.com", Type: "AAAA", Action: "blocked", App: "tiktok", Rule: "tiktok.com", Rcode: "NXDOMAIN"}
	exempted := logLine{Client: "127.0.0.2", Transport: "tcp", Group: "investigators", Name: "www.tiktok.com", Type: "A", Action: "exempted", App: "tiktok", Rule: "tiktok.com", Rcode: "NOERROR"}
	monitored := logLine{Client: "127.0.0.1", Transport: "udp", Group: "default", Name: "www.larksuite.com", Type: "A", Action: "monitored", App: "lark", Rule: "larksuite.com", Rcode: "NOERROR"}
	resolved := logLine{Client: "127.0.0.1", Transport: "udp", Group: "default", Name: "www.example.test", Type: "TXT", Action: "resolved", Rcode: "NOERROR"}
	refused := logLine{Client: "127.0.0.3", Transport: "udp", Group: "default", Name: "www.example.test", Type: "A", Action: "refused", Rcode: "REFUSED"}
	anon := func(l logLine) logLine { l.Client = "127.0.0.0"; return l }
	tests := []struct {
		name string
		log  string // the [log] section
		want []logLine
	}{
		{"blocked scope", `query_log_scope = "blocked"`, []logLine{blocked, exempted, monitored}},
		{"all", `query_log_scope = "all"`, []logLine{blocked, exempted, monitored, resolved, refused}},
		{"all anonymized", "query_log_scope = \"all\"\nanonymize_clients = true",
			[]logLine{anon(blocked), anon(exempted), anon(monitored), anon(resolved), anon(refused)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := dnstest.NewUpstream(t, append(upstreamRecords, "www.larksuite.com. 300 IN A 192.0.2.30")...)
			e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, `monitor = ["lark"]`)+"\n[log]\n"+tt.log+"\n")
			path := filepath.Join(t.TempDir(), "query.log")
			ql, err := querylog.Open(path, querylog.Options{})
			if err != nil {
				t.Fatal(err)
			}
			e.handler.SetQueryLog(ql)
			start := time.Now()
			e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("WWW.TikTok.com.", dns.TypeAAAA, true, false))
			e.ask(t, "tcp", "127.0.0.2", dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
			e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.larksuite.com.", dns.TypeA, false, false))
			e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeTXT, false, false))
			e.ask(t, "udp", "127.0.0.3", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
			waitObserved(t, e, 5)
			e.handler.SetQueryLog(nil)
			if err := ql.Close(); err != nil {
				t.Fatal(err)
			}
			end := time.Now()
			var got []logLine
			for _, l := range readQueryLog(t, path) {
				ts, err := time.Parse(time.RFC3339Nano, l.Time)
				if err != nil || !strings.HasSuffix(l.Time, "Z") || len(l.Time) != len("2026-11-22T14:37:37.123Z") {
					t.Errorf("time %q: want UTC with milliseconds (%v)", l.Time, err)
				}
				if ts.Before(start.Truncate(time.Millisecond)) || ts.After(end) {
					t.Errorf("time %s not within the test (%s - %s)", ts, start, end)
				}
				if l.DurationMS <= 0 || l.DurationMS > 5000 {
					t.Errorf("%s: duration_ms %v, want the time the query took", l.Name, l.DurationMS)
				}
				l.Time, l.DurationMS = "", 0
				got = append(got, l)
			}
			// Queries are observed after their answer is sent, so two lines
			// may change places: compare them sorted.
			order := func(a, b logLine) int { return strings.Compare(a.Client+a.Name+a.Type, b.Client+b.Name+b.Type) }
			slices.SortFunc(got, order)
			want := slices.Clone(tt.want)
			slices.SortFunc(want, order)
			if !slices.Equal(got, want) {
				t.Errorf("query log:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestSwapReplacesSeries: a policy without the investigators group and with
// lark monitored replaces the series of the old one through Handler.Swap.
func TestSwapReplacesSeries(t *testing.T) {
	e := startEnv(t, "")
	e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
	waitObserved(t, e, 1)
	text := strings.Replace(fmt.Sprintf(testConfig, e.upstream.Addr, `monitor = ["lark"]`), `name = "investigators"`, `name = "press"`, 1)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.handler.Swap(&State{Policy: p, Upstream: e.handler.State().Upstream})
	fams := promtest.Gather(t, e.metrics.Registry)
	groups := map[string]float64{}
	for k, v := range fams.Values("appfence_queries_total", "group", "action") {
		g, _, _ := strings.Cut(k, "/")
		groups[g] += v
	}
	if want := map[string]float64{"default": 1, "press": 0}; !maps.Equal(groups, want) {
		t.Errorf("queries by group after the swap: %v, want %v", groups, want)
	}
	apps := fams.Values("appfence_app_queries_total", "group", "app", "action")
	if apps["default/tiktok/blocked"] != 1 || apps["press/lark/monitored"] != 0 || len(apps) != 18 {
		t.Errorf("app series after the swap: %v, want default and press × tiktok, lark and encrypted-dns × 3 actions", apps)
	}
}

// TestQueryLogIdentity: queries over DoT and DoH are logged with their
// transport, the ClientID the client sent and its certificate's name.
func TestQueryLogIdentity(t *testing.T) {
	e := startTLSEnv(t)
	path := filepath.Join(t.TempDir(), "query.log")
	ql, err := querylog.Open(path, querylog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.handler.SetQueryLog(ql)
	phone := e.ca.IssueClient(t, "phone-1.devices.test", time.Now().Add(time.Hour))

	for _, dot := range []struct {
		sni  string
		cert *tls.Certificate
	}{{"officer-017.dns.test", nil}, {"dns.test", &phone}} {
		c, err := e.dialDoT(t, dot.sni, dot.cert)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exchange(c, new(dns.Msg).SetQuestion("www.tiktok.com.", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	q := packQuery(t, "www.tiktok.com.", true)
	resp, err := e.dohClient(true, nil).Post(e.dohURL("/dns-query/officer-017"), "application/dns-message", bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitObserved(t, e.env, 3)
	e.handler.SetQueryLog(nil)
	if err := ql.Close(); err != nil {
		t.Fatal(err)
	}

	exempted := logLine{Client: "127.0.0.1", Group: "investigators", Name: "www.tiktok.com", Type: "A", Action: "exempted",
		App: "tiktok", Rule: "tiktok.com", Rcode: "NOERROR"}
	byID, byCert, byDoH := exempted, exempted, exempted
	byID.Transport, byID.ClientID = "dot", "officer-017"
	byCert.Transport, byCert.Cert, byCert.Group = "dot", "phone-1.devices.test", "certified"
	byDoH.Transport, byDoH.ClientID = "doh", "officer-017"
	var got []logLine
	for _, l := range readQueryLog(t, path) {
		l.Time, l.DurationMS = "", 0
		got = append(got, l)
	}
	want := []logLine{byID, byCert, byDoH}
	order := func(a, b logLine) int {
		return strings.Compare(a.Transport+a.ClientID+a.Cert, b.Transport+b.ClientID+b.Cert)
	}
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if !slices.Equal(got, want) {
		t.Errorf("query log:\n got %+v\nwant %+v", got, want)
	}
}
