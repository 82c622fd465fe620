package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/httpapi"
	"github.com/appfence/appfence/internal/daemon"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
	"github.com/appfence/appfence/policy"
)

// observeConfig is the config of TestServeObservability: %[1]d DNS port,
// %[2]d metrics port, %[3]s upstream, %[4]s a silent upstream for the zone
// slow.test, %[5]s the query log, %[6]s extra [log] lines.
const observeConfig = `
[server]
listen = ["127.0.0.1:%[1]d"]

[upstream]
servers = ["%[3]s"]
timeout = "300ms"

[[upstream.forward]]
zones = ["slow.test."]
servers = ["%[4]s"]

[blocking]
lists = []
block = ["tiktok"]

[[group]]
name = "investigators"
clients = ["127.0.0.2"]
allow = ["tiktok"]

[metrics]
listen = "127.0.0.1:%[2]d"

[log]
format = "json"
query_log = "%[5]s"
%[6]s
`

// TestServeObservability runs the appfence binary and checks, over real
// DNS and HTTP on loopback: /healthz, /readyz and /explain; that every
// metric the Grafana dashboard and the alert rules use is exported, with
// the labels they use; the query log, its reopening on SIGUSR1 (logrotate)
// and anonymized clients after a SIGHUP reload; and the reload metrics.
func TestServeObservability(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.tiktok.com. 300 IN A 192.0.2.10", "www.example.test. 300 IN A 192.0.2.20")
	silent := dnstest.NewUpstream(t)
	silent.SetSilent(true)
	port, mport := freePort(t), freePort(t)
	dir := t.TempDir()
	cfgPath, qlog := filepath.Join(dir, "appfence.toml"), filepath.Join(dir, "query.log")
	writeConfig := func(logExtra string) {
		t.Helper()
		text := fmt.Sprintf(observeConfig, port, mport, up.Addr, silent.Addr, qlog, logExtra)
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("")

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := startServe(t, bin, cfgPath, addr)
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)

	// waitServing asked for www.tiktok.com from 127.0.0.1: blocked, and in
	// the query log. Then one query of each kind.
	ask := func(from, name string) *dns.Msg {
		t.Helper()
		resp, err := dnstest.Client{Local: from}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery(name, dns.TypeA, true, false))
		if err != nil {
			t.Fatalf("%s from %s: %v", name, from, err)
		}
		return resp
	}
	ask("127.0.0.1", "www.example.test.")
	ask("127.0.0.2", "www.tiktok.com.")
	if r := ask("127.0.0.1", "www.slow.test."); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("slow.test: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}

	t.Run("health", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := httpGet(t, base+path); code != 200 || body != "ok\n" {
				t.Errorf("%s: %d %q", path, code, body)
			}
		}
	})

	t.Run("explain", func(t *testing.T) {
		tests := []struct {
			query string
			want  policy.Explanation
		}{
			{"client=127.0.0.1&name=WWW.TikTok.com.&type=AAAA", policy.Explanation{Client: "127.0.0.1", Name: "www.tiktok.com", Type: "AAAA",
				Group: "default", Action: "blocked", App: "tiktok", Rule: "tiktok.com", Kind: "domain"}},
			{"client=127.0.0.2&name=www.tiktok.com", policy.Explanation{Client: "127.0.0.2", Name: "www.tiktok.com", Type: "A",
				Group: "investigators", Action: "exempted", App: "tiktok", Rule: "tiktok.com", Kind: "domain", Answer: "forwarded upstream"}},
			{"client=127.0.0.1&name=www.example.test&type=txt", policy.Explanation{Client: "127.0.0.1", Name: "www.example.test", Type: "TXT",
				Group: "default", Action: "resolved", Answer: "forwarded upstream"}},
		}
		for _, tt := range tests {
			code, body := httpGet(t, base+"/explain?"+tt.query)
			var got policy.Explanation
			if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
				t.Errorf("/explain?%s: %d %v\n%s", tt.query, code, err, body)
				continue
			}
			if tt.want.App != "" && !regexp.MustCompile(`^builtin:tiktok\.toml:\d+$`).MatchString(got.Origin) {
				t.Errorf("/explain?%s: origin %q, want the catalog file and line", tt.query, got.Origin)
			}
			if tt.want.Action == "blocked" && !strings.HasPrefix(got.Answer, "NXDOMAIN") {
				t.Errorf("/explain?%s: answer %q, want NXDOMAIN", tt.query, got.Answer)
			}
			got.Origin, tt.want.Origin = "", ""
			if tt.want.Answer == "" {
				got.Answer = ""
			}
			if got != tt.want {
				t.Errorf("/explain?%s:\n got %+v\nwant %+v", tt.query, got, tt.want)
			}
		}
		for _, q := range []string{"client=nope&name=a.test", "client=127.0.0.1", "client=127.0.0.1&name=a.test&type=BOGUS"} {
			code, body := httpGet(t, base+"/explain?"+q)
			var e map[string]string
			if code != 400 || json.Unmarshal([]byte(body), &e) != nil || e["error"] == "" {
				t.Errorf("/explain?%s: %d %s, want 400 with a JSON error", q, code, body)
			}
		}
	})

	t.Run("dashboard and alert metrics are exported", func(t *testing.T) {
		fams := scrapeAfter(t, base, 4)
		used := map[string][]string{} // metric -> where
		for _, f := range []string{"../../deploy/grafana/appfence.json", "../../deploy/prometheus/alerts.yml"} {
			for _, expr := range expressions(t, f) {
				checkExpression(t, fams, f, expr)
				for _, m := range metricName.FindAllString(expr, -1) {
					used[m] = append(used[m], f)
				}
			}
		}
		for _, want := range []string{"appfence_queries_total", "appfence_app_queries_total", "appfence_query_duration_seconds_bucket",
			"appfence_cache_requests_total", "appfence_upstream_duration_seconds_bucket", "appfence_upstream_errors_total",
			"appfence_upstream_up", "appfence_config_last_reload_successful", "appfence_responses_total"} {
			if used[want] == nil {
				t.Errorf("%s is used by neither the dashboard nor the alerts", want)
			}
		}
	})

	readLog := func(path string, n int) []map[string]any {
		t.Helper()
		var lines []map[string]any
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			lines = lines[:0]
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if l == "" {
					continue
				}
				var v map[string]any
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Fatalf("%s: line %q: %v", path, l, err)
				}
				lines = append(lines, v)
			}
			if len(lines) >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if len(lines) != n {
			t.Fatalf("%s: %d lines, want %d", path, len(lines), n)
		}
		return lines
	}
	logged := func(l map[string]any) string {
		return fmt.Sprintf("%v %v %v %v %v %v %v", l["client"], l["group"], l["name"], l["action"], l["app"], l["rule"], l["rcode"])
	}

	t.Run("query log", func(t *testing.T) {
		// scope "blocked": the blocked query of waitServing (maybe more
		// than one) and the exempted one; not the resolved ones.
		b, _ := os.ReadFile(qlog)
		n := strings.Count(string(b), "\n")
		lines := readLog(qlog, max(n, 2))
		var got []string
		for _, l := range lines {
			got = append(got, logged(l))
			if d, ok := l["duration_ms"].(float64); !ok || d < 0 {
				t.Errorf("duration_ms %v", l["duration_ms"])
			}
		}
		got = slices.Compact(slices.Sorted(slices.Values(got)))
		want := []string{
			"127.0.0.1 default www.tiktok.com blocked tiktok tiktok.com NXDOMAIN",
			"127.0.0.2 investigators www.tiktok.com exempted tiktok tiktok.com NOERROR",
		}
		if !slices.Equal(got, want) {
			t.Errorf("query log:\n got %q\nwant %q", got, want)
		}

		// logrotate: move the file away, SIGUSR1, and the next line goes
		// to a new file.
		if err := os.Rename(qlog, qlog+".1"); err != nil {
			t.Fatal(err)
		}
		srv.cmd.Process.Signal(syscall.SIGUSR1)
		waitLog(t, srv.stderr, "query log reopened")
		ask("127.0.0.2", "www.tiktok.com.")
		lines = readLog(qlog, 1)
		if got := logged(lines[0]); got != want[1] {
			t.Errorf("after reopening: %q, want %q", got, want[1])
		}
		if n := len(readLog(qlog+".1", len(lines)+1)); n < 2 {
			t.Errorf("the rotated file has %d lines", n)
		}
	})

	t.Run("reload", func(t *testing.T) {
		// SIGHUP with anonymize_clients: the next line has 127.0.0.0.
		writeConfig("anonymize_clients = true")
		srv.cmd.Process.Signal(syscall.SIGHUP)
		waitLog(t, srv.stderr, `"msg":"reloaded"`)
		before := len(readLog(qlog, 1))
		ask("127.0.0.2", "www.tiktok.com.")
		lines := readLog(qlog, before+1)
		if got, want := logged(lines[before]), "127.0.0.0 investigators www.tiktok.com exempted tiktok tiktok.com NOERROR"; got != want {
			t.Errorf("after reload: %q, want %q", got, want)
		}
		fams := promtest.Scrape(t, base+"/metrics")
		if got := fams.Values("appfence_config_reloads_total", "result"); got["success"] != 1 || got["failure"] != 0 {
			t.Errorf("reloads: %v, want one success", got)
		}

		// A broken config: the reload fails, the policy keeps serving.
		if err := os.WriteFile(cfgPath, []byte("[blocking]\nblock = [\"no-such-app\"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		srv.cmd.Process.Signal(syscall.SIGHUP)
		waitLog(t, srv.stderr, "reload failed")
		fams = promtest.Scrape(t, base+"/metrics")
		if got := fams.Values("appfence_config_reloads_total", "result"); got["success"] != 1 || got["failure"] != 1 {
			t.Errorf("reloads: %v, want one success and one failure", got)
		}
		if got := fams.Values("appfence_config_last_reload_successful"); got[""] != 0 {
			t.Errorf("appfence_config_last_reload_successful %v, want 0", got)
		}
		if r := ask("127.0.0.1", "www.tiktok.com."); r.Rcode != dns.RcodeNameError {
			t.Errorf("after a failed reload: %s, want the old policy's NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
		if code, _ := httpGet(t, base+"/readyz"); code != 200 {
			t.Errorf("/readyz after a failed reload: %d, want 200 (the old policy serves)", code)
		}
	})

	srv.stop(t)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog waits until the process's log contains s.
func waitLog(t *testing.T, log fmt.Stringer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", s, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrapeAfter scrapes /metrics once n queries have been observed (the
// observe step runs after the answer is sent).
func scrapeAfter(t *testing.T, base string, n uint64) promtest.Families {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams := promtest.Scrape(t, base+"/metrics")
		var got uint64
		for _, c := range fams.Counts("appfence_query_duration_seconds", "group") {
			got += c
		}
		if got >= n || time.Now().After(deadline) {
			return fams
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	metricName = regexp.MustCompile(`\b(?:appfence|go|process)_[a-zA-Z0-9_]+`)
	selector   = regexp.MustCompile(`\b((?:appfence|go|process)_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// expressions returns the PromQL of a deploy file: every string of the
// dashboard's JSON (queries, variable definitions) or every expr of the
// alert rules.
func expressions(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".yml") {
		// Rules are "expr: one line" or "expr: |" and an indented block.
		var out []string
		lines := strings.Split(string(b), "\n")
		for i := 0; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			if !strings.HasPrefix(l, "expr:") {
				continue
			}
			expr := strings.TrimSpace(strings.TrimPrefix(l, "expr:"))
			if expr == "|" {
				indent := len(lines[i+1]) - len(strings.TrimLeft(lines[i+1], " "))
				expr = ""
				for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) >= indent) {
					i++
					expr += lines[i] + "\n"
				}
			}
			out = append(out, expr)
		}
		if len(out) == 0 {
			t.Fatalf("%s: no expressions", path)
		}
		return out
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if metricName.MatchString(v) {
				out = append(out, v)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// checkExpression fails the test when expr uses a metric the scrape lacks,
// a label its series do not carry, or an exact label value no series has.
func checkExpression(t *testing.T, fams promtest.Families, file, expr string) {
	t.Helper()
	family := func(name string) (string, bool) {
		if fams[name] != nil {
			return name, true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base := strings.TrimSuffix(name, suffix)
			if base != name && fams[base] != nil && fams[base].GetType().String() == "HISTOGRAM" {
				return base, true
			}
		}
		return "", false
	}
	// Labels every series has once scraped by Prometheus.
	labels := map[string]bool{"instance": true, "job": true}
	for _, name := range metricName.FindAllString(expr, -1) {
		fam, ok := family(name)
		if !ok {
			t.Errorf("%s: %s is not exported by a running appfence", file, name)
			continue
		}
		for l := range fams.LabelNames(fam) {
			labels[l] = true
		}
		if fam != name {
			labels["le"] = true
		}
	}
	for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
		fam, ok := family(sel[1])
		if !ok {
			continue
		}
		own := fams.LabelNames(fam)
		for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
			name, op, value := m[1], m[2], m[3]
			if name == "instance" || name == "job" {
				continue
			}
			if !own[name] {
				t.Errorf("%s: %s: %s has no label %q", file, sel[0], fam, name)
				continue
			}
			if op == "=" && !strings.Contains(value, "$") && !slices.Contains(slices.Collect(maps.Keys(fams.Values(fam, name))), value) {
				t.Errorf("%s: %s: no series of %s has %s=%q", file, sel[0], fam, name, value)
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				t.Errorf("%s: %q groups by %q, which none of its metrics has", file, strings.TrimSpace(expr), l)
			}
		}
	}
}

// TestReadyzThroughUpstreamOutage runs the binary with an upstream that
// stops answering: /readyz stays 200 (SPEC, Readiness) while
// /readyz?verbose reports the upstream down and appfence_upstream_up goes
// to 0, so that the AppFenceUpstreamsDown expression of the alert rules,
// evaluated by promtool on the scraped samples, is true; and healthy again
// when its prober finds it answering.
func TestReadyzThroughUpstreamOutage(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	port, mport := freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]
[upstream]
servers = ["%s"]
timeout = "200ms"
[cache]
size = 0
[metrics]
listen = "127.0.0.1:%d"
`, port, up.Addr, mport)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startServe(t, bin, cfg, addr)
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)
	verbose := func() (int, httpapi.Readiness) {
		t.Helper()
		code, body := httpGet(t, base+"/readyz?verbose")
		var v httpapi.Readiness
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("/readyz?verbose: %d %q: %v", code, body, err)
		}
		return code, v
	}
	if code, _ := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz with a healthy upstream: %d", code)
	}
	healthy := promtest.Scrape(t, base+"/metrics")

	up.SetSilent(true)
	for i := 0; i < 4; i++ {
		resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery(fmt.Sprintf("q%d.example.test.", i), dns.TypeA, false, false))
		if err != nil || resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("query %d to a silent upstream: %v %v, want SERVFAIL", i, resp, err)
		}
	}
	// Blocks are still answered: they need no upstream.
	resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Errorf("a blocked name with every upstream down: %v %v, want NXDOMAIN", resp, err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz with every upstream down: %d %q, want 200", code, body)
	}
	want := httpapi.Readiness{Ready: true, Upstream: httpapi.Health{Reason: "every upstream server of the default pool is down"}}
	if code, v := verbose(); code != 200 || v != want {
		t.Errorf("/readyz?verbose with every upstream down: %d %+v, want 200 %+v", code, v, want)
	}
	down := promtest.Scrape(t, base+"/metrics")
	if got := down.Values("appfence_upstream_up", "upstream"); len(got) != 1 || got[up.Addr] != 0 {
		t.Errorf("appfence_upstream_up during the outage: %v, want %s at 0", got, up.Addr)
	}
	alertFires(t, healthy, down)

	up.SetSilent(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, v := verbose()
		if code == 200 && v.Upstream.Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz?verbose still %d %+v after the upstream recovered", code, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alertFires has promtool evaluate the expression of AppFenceUpstreamsDown
// (deploy/prometheus/alerts.yml) on the appfence_upstream_up samples of two
// real scrapes, one a minute: false on the first, true on the second.
func alertFires(t *testing.T, before, after promtest.Families) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run `make test-deps` (installs Debian's prometheus package)")
	}
	const instance = "replica1:9153"
	var expr string
	for _, e := range expressions(t, "../../deploy/prometheus/alerts.yml") {
		if strings.Contains(e, "appfence_upstream_up") {
			expr = strings.TrimSpace(e)
		}
	}
	if expr == "" {
		t.Fatal("alerts.yml has no rule on appfence_upstream_up")
	}
	var series strings.Builder
	for key, v := range after.Values("appfence_upstream_up", "upstream") {
		fmt.Fprintf(&series, "      - series: 'appfence_upstream_up{instance=%q, job=\"appfence\", upstream=%q}'\n        values: '%v %v %v'\n",
			instance, key, before.Values("appfence_upstream_up", "upstream")[key], v, v)
	}
	test := fmt.Sprintf(`evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
%s    promql_expr_test:
      - expr: %q
        eval_time: 0m
        exp_samples: []
      - expr: %q
        eval_time: 1m
        exp_samples:
          - labels: '{instance=%q}'
            value: 0
`, series.String(), expr, expr, instance)
	file := filepath.Join(t.TempDir(), "outage_test.yml")
	os.WriteFile(file, []byte(test), 0o644)
	if out, err := exec.Command(promtool, "test", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool test rules on the scraped samples: %v\n%s\n%s", err, out, test)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := daemon.NewLogger(config.Log{Level: "warn", Format: "json"}, &buf)
	log.Info("hidden")
	log.Warn("shown", "n", 1)
	var v map[string]any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil || v["msg"] != "shown" || v["level"] != "WARN" || v["n"] != 1.0 {
		t.Errorf("json at warn: %q (%v)", buf.String(), err)
	}
	buf.Reset()
	log = daemon.NewLogger(config.Log{Level: "debug", Format: "text"}, &buf)
	log.Debug("detail", "k", "v")
	if !strings.Contains(buf.String(), "level=DEBUG msg=detail k=v") {
		t.Errorf("text at debug: %q", buf.String())
	}
}
