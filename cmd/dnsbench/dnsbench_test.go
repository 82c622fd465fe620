package main

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestParsePerf reads the statistics of real dnsperf 2.10 runs: UDP
// against AppFence (blocked names), TCP with reconnections, DoH.
func TestParsePerf(t *testing.T) {
	for _, tc := range []struct {
		file                       string
		sent, answered, lost, reco int64
		qps, avgUS                 float64
		rcodes                     map[string]int64
		p50, p99                   float64 // from -v
	}{
		{"dnsperf.out", 48927, 48927, 0, 0, 48805.571738, 1671, map[string]int64{"NXDOMAIN": 48927}, 0, 0},
		{"dnsperf-tcp.out", 14400, 14400, 0, 44, 7131.932833, 12130, map[string]int64{"NOERROR": 14400}, 0, 0},
		{"dnsperf-doh.out", 39753, 39753, 0, 0, 18969.782344, 3269, map[string]int64{"NOERROR": 39753}, 0, 0},
		{"dnsperf-v.out", 200, 200, 0, 0, 999.345429, 112, map[string]int64{"NOERROR": 200}, 72, 1295},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := parsePerf(out)
			if err != nil {
				t.Fatal(err)
			}
			if r.sent != tc.sent || r.answered != tc.answered || r.lost != tc.lost || r.reconnects != tc.reco || r.qps != tc.qps {
				t.Errorf("parsed %+v", r)
			}
			if tc.avgUS != 0 && (r.avgUS < tc.avgUS-0.01 || r.avgUS > tc.avgUS+0.01) {
				t.Errorf("average latency %v µs, want %v", r.avgUS, tc.avgUS)
			}
			if r.p50US != tc.p50 || r.p99US != tc.p99 {
				t.Errorf("p50/p99 %v/%v µs, want %v/%v", r.p50US, r.p99US, tc.p50, tc.p99)
			}
			if len(r.rcodes) != len(tc.rcodes) {
				t.Errorf("rcodes %v, want %v", r.rcodes, tc.rcodes)
			}
			for k, v := range tc.rcodes {
				if r.rcodes[k] != v {
					t.Errorf("rcodes %v, want %v", r.rcodes, tc.rcodes)
				}
			}
		})
	}
	if _, err := parsePerf([]byte("Error: input file contains no data\n")); err == nil {
		t.Error("output without statistics parsed")
	}
}

// TestPerfModes: the transports of the dnsperf installed, from its -h.
func TestPerfModes(t *testing.T) {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		t.Skip("dnsperf not installed")
	}
	modes := perfModes("dnsperf")
	if len(modes) < 2 || modes[0] != "udp" || !slices.Contains(modes, "tcp") {
		t.Errorf("modes %v", modes)
	}
	t.Logf("dnsperf -m: %v", modes)
}

// TestPercentile: the smallest value with at least p of the values at or
// below it.
func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{0.5: 5, 0.99: 10, 0.1: 1, 0: 1, 1: 10} {
		if got := percentile(v, p); got != want {
			t.Errorf("percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if got := percentile([]float64{7}, 0.99); got != 7 {
		t.Errorf("one value: %v", got)
	}
}

// TestCheck: answers with an rcode the workload does not expect, or none
// at all, fail the run.
func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		rcodes map[string]int64
		want   []string
		ok     bool
	}{
		{map[string]int64{"NXDOMAIN": 10}, []string{"NXDOMAIN"}, true},
		{map[string]int64{"NXDOMAIN": 10}, []string{"NOERROR"}, false},
		{map[string]int64{"NOERROR": 8, "NXDOMAIN": 2}, []string{"NOERROR", "NXDOMAIN"}, true},
		{map[string]int64{"NOERROR": 8, "SERVFAIL": 1}, []string{"NOERROR", "NXDOMAIN"}, false},
		{map[string]int64{}, []string{"NOERROR"}, false},
	} {
		var n int64
		for _, v := range tc.rcodes {
			n += v
		}
		err := loadResult{sent: n, answered: n, rcodes: tc.rcodes}.check(tc.want)
		if (err == nil) != tc.ok {
			t.Errorf("check(%v, %v) = %v", tc.rcodes, tc.want, err)
		}
	}
}

// TestParseFlood reads real reports of ../shared/tools/flood, closed and
// open loop.
func TestParseFlood(t *testing.T) {
	for _, tc := range []struct {
		file                 string
		sent, answered, lost int64
		qps, p50, p99, gen   float64
	}{
		{"flood.out", 377421, 377421, 0, 377349.7, 88, 254, 2.318},
		{"flood-rate.out", 19999, 19999, 0, 19999.0, 25, 1882, 47.854},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := parseFlood(out)
			if err != nil {
				t.Fatal(err)
			}
			if r.sent != tc.sent || r.answered != tc.answered || r.lost != tc.lost || r.qps != tc.qps ||
				r.p50US != tc.p50 || r.p99US != tc.p99 || r.genUSPerQuery != tc.gen || r.rcodes["NXDOMAIN"] != tc.answered {
				t.Errorf("parsed %+v", r)
			}
		})
	}
	if _, err := parseFlood([]byte("panic: open : no such file or directory\n")); err == nil {
		t.Error("output without a report parsed")
	}
}

// TestParseStat reads utime and stime of a real /proc/PID/stat, and of
// lines whose command name holds spaces and parentheses.
func TestParseStat(t *testing.T) {
	real, err := os.ReadFile("testdata/stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		line         string
		user, system int64
		ok           bool
	}{
		{"real", string(real), 108, 436, true},
		{"spaces", "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 7 0 10 1000 100", 1234, 567, true},
		{"parentheses", "42 (x) (y)) R 1 42 42 0 -1 0 0 0 0 0 9 8 0 0 20 0 1 0 1 1 1", 9, 8, true},
		{"short", "42 (x) R 1 2 3", 0, 0, false},
		{"no name", "42 x R 1 42 42 0 -1 0 0 0 0 0 9 8 0 0", 0, 0, false},
		{"not a number", "42 (x) R 1 42 42 0 -1 0 0 0 0 0 a 8 0 0 20 0", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseStat([]byte(tc.line))
			if (err == nil) != tc.ok {
				t.Fatalf("parseStat: %v", err)
			}
			if c.user != tc.user || c.system != tc.system {
				t.Errorf("user %d system %d, want %d %d", c.user, c.system, tc.user, tc.system)
			}
		})
	}
	if got := (cpuTime{user: 30, system: 20}).sub(cpuTime{user: 10, system: 5}).total(10 * time.Millisecond); got != 350*time.Millisecond {
		t.Errorf("35 ticks of 10ms = %v", got)
	}
	// The bench's own process, read the way the servers' are.
	if _, err := readCPU(os.Getpid()); err != nil {
		t.Error(err)
	}
}

// TestParseRSS reads VmRSS of a real /proc/PID/status.
func TestParseRSS(t *testing.T) {
	data, err := os.ReadFile("testdata/status")
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseRSS(data)
	if err != nil || n != 1728*1024 {
		t.Errorf("parseRSS = %d, %v; want %d", n, err, 1728*1024)
	}
	for _, bad := range []string{"Name:\tcat\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseRSS([]byte(bad)); err == nil {
			t.Errorf("parseRSS(%q) passed", bad)
		}
	}
}

// TestNames: the names of runs that must miss are distinct within a run
// and between runs; the mixed workload is 80/10/10; namesFor covers the
// run with room to spare.
func TestNames(t *testing.T) {
	seen := map[string]bool{}
	for nonce := 1; nonce <= 2; nonce++ {
		lines := strings.Split(strings.TrimSpace(string(misses(5000, nonce))), "\n")
		if len(lines) != 5000 {
			t.Fatalf("%d names", len(lines))
		}
		for _, l := range lines {
			name, typ, _ := strings.Cut(l, " ")
			if seen[name] || typ != "A" || strings.HasPrefix(name, "nx") {
				t.Fatalf("name %q: seen, not of type A, or NXDOMAIN at the upstream", l)
			}
			seen[name] = true
		}
	}
	lines := strings.Split(strings.TrimSpace(string(mixed(10000, 7))), "\n")
	var hot, blk, miss int
	for _, l := range lines {
		switch {
		case strings.Contains(l, ".miss.bench.test"):
			miss++
		case strings.HasSuffix(strings.Fields(l)[0], ".bench.test"):
			hot++
		default:
			blk++
		}
	}
	if len(lines) != 10000 || hot != 8000 || blk != 1000 || miss != 1000 {
		t.Errorf("mixed: %d queries, %d hot, %d blocked, %d miss", len(lines), hot, blk, miss)
	}
	for _, tc := range []struct {
		rate int
		secs float64
		want int
	}{{8000, 10, 88000}, {100, 1, 1000}, {100000, 2, 220000}} {
		if got := namesFor(tc.rate, tc.secs); got != tc.want {
			t.Errorf("namesFor(%d, %v) = %d, want %d", tc.rate, tc.secs, got, tc.want)
		}
	}
}

// TestSelectWorkloads: names, aliases and "all"; an unknown name fails.
func TestSelectWorkloads(t *testing.T) {
	for _, tc := range []struct {
		list  string
		loads string
		steps string
		ok    bool
	}{
		{"hot", "hot", "", true},
		{"miss,hot", "hot,miss", "", true},
		{"dot,memory", "dot-hot,dot-blocked", "memory", true},
		{"both", "both-hot,both-blocked", "", true},
		{"all", "hot,blocked,exempt,miss,mixed,tcp,both-hot,both-blocked,dot-hot,dot-blocked,doh-hot,doh-blocked", "handshakes,memory", true},
		{"hot,cold", "", "", false},
		{"", "", "", false},
	} {
		loads, steps, err := selectWorkloads(tc.list)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.list, err)
			continue
		}
		var names []string
		for _, w := range loads {
			names = append(names, w.name)
		}
		if strings.Join(names, ",") != tc.loads || strings.Join(steps, ",") != tc.steps {
			t.Errorf("%q: %v %v", tc.list, names, steps)
		}
	}
}

// TestReport: medians of odd and even run counts, the ratios of the other
// servers' CPU per query to AppFence's, losses shown, a "—" with its
// reason, the trivial responder beside the servers at saturation, the
// memory table. The expected text is testdata/report.md.
func TestReport(t *testing.T) {
	hot := allWorkloads()[0]
	r := newResults()
	rate := test{w: hot, kind: kindRate, rate: 60000}
	sat := test{w: hot, kind: kindSaturation}
	lat := test{w: hot, kind: kindLatency, frac: 0.5}
	for _, c := range []float64{8, 7, 9} {
		r.add(rate.id(), "appfence", measure{cpuUS: c, gen: "dnsperf", load: loadResult{sent: 120000, lost: 0, qps: 60000}})
	}
	r.add(rate.id(), "unbound", measure{cpuUS: 6, gen: "dnsperf", load: loadResult{sent: 120000, lost: 1000, reconnects: 3, qps: 50000}})
	r.add(rate.id(), "unbound", measure{cpuUS: 4, gen: "dnsperf", load: loadResult{sent: 120000, lost: 1000, reconnects: 3, qps: 54000}})
	r.fail(rate.id(), "coredns", os.ErrNotExist)
	for _, s := range []struct {
		name     string
		qps, cpu float64
	}{{"appfence", 120000, 4}, {"unbound", 110000, 3}, {"coredns", 70000, 10}, {"trivial", 300000, 2}} {
		r.add(sat.id(), s.name, measure{cpuUS: s.cpu, busy: s.qps * s.cpu / 1e6, gen: "flood", load: loadResult{qps: s.qps, sent: 1}})
		p99 := 300.0
		if s.name == "coredns" {
			p99 = floodHistogramEnd // flood's last bucket: slower than that
		}
		r.add(lat.id(), s.name, measure{rate: 55000, gen: "flood", load: loadResult{sent: 1, p50US: 50, p99US: p99, avgUS: 80}})
	}
	r.memory["appfence"] = memory{before: 20e6, after: 220e6, names: 200000}
	r.memory["unbound"] = memory{before: 10e6, after: 150e6, names: 200000}
	var b bytes.Buffer
	r.report(&b, []test{rate, sat, lat}, []string{"appfence", "unbound", "coredns", "trivial"}, "header")
	want, err := os.ReadFile("testdata/report.md")
	if os.Getenv("UPDATE") != "" {
		os.WriteFile("testdata/report.md", b.Bytes(), 0o644)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestThousands: counts with commas.
func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 120289.4: "120,289", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestWorkloads: a thousand names each in the fixed sets; every blocked
// name is under a zone the built-in catalog blocks, and resolves for the
// exempt client (checked with appfence explain against the bench's
// configuration, built for the test).
func TestWorkloads(t *testing.T) {
	for _, q := range [][]byte{cacheHot(), blocked()} {
		if n := bytes.Count(q, []byte("\n")); n != 1000 {
			t.Errorf("%d queries", n)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "appfence")
	if out, err := exec.Command("go", "build", "-o", bin, "../appfence").CombinedOutput(); err != nil {
		t.Fatalf("build appfence: %v\n%s", err, out)
	}
	certs, err := writeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := server{addr: "127.0.0.1:5399", dot: "127.0.0.1:5400", doh: "127.0.0.1:5401"}
	config := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(config, []byte(appfenceConfig(s, setup{dir: dir, upstream: "127.0.0.1:5398", tls: certs})), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "-config", config).CombinedOutput(); err != nil {
		t.Fatalf("appfence check: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(blocked())), "\n")[:len(blockedZones)*2] {
		names = append(names, strings.Fields(line)[0])
	}
	for _, tc := range []struct {
		client, word string
	}{{"127.0.0.1", " blocked "}, {exemptClient, " exempted "}} {
		cmd := exec.Command(bin, append([]string{"explain", "-config", config, "-client", tc.client}, names...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("explain: %v\n%s", err, out)
		}
		if n := strings.Count(string(out), tc.word); n != len(names) {
			t.Errorf("client %s: %d of %d names%s:\n%s", tc.client, n, len(names), tc.word, out)
		}
	}
}

// TestServerConfigs: unbound-checkconf accepts Unbound's configuration, on
// one core and on both.
func TestServerConfigs(t *testing.T) {
	check, err := exec.LookPath("unbound-checkconf")
	if err != nil {
		t.Skip("unbound-checkconf not installed")
	}
	dir := t.TempDir()
	certs, err := writeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := server{addr: "127.0.0.1:5399", dot: "127.0.0.1:5400", doh: "127.0.0.1:5401"}
	for _, both := range []bool{false, true} {
		path := filepath.Join(dir, "unbound.conf")
		if err := os.WriteFile(path, []byte(unboundConfig(s, setup{dir: dir, upstream: "127.0.0.1:5398", tls: certs, bothCores: both})), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(check, path).CombinedOutput(); err != nil {
			t.Errorf("unbound-checkconf (both cores %v): %v\n%s", both, err, out)
		}
	}
}

// TestHandshakes: the handshake client against a DoT server on loopback
// (miekg/dns with the bench's certificate): connections complete, none
// fails, and none is counted failed at the end of the run.
func TestHandshakes(t *testing.T) {
	dir := t.TempDir()
	certs, err := writeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certs.cert, certs.key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"dot"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: l, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	res := handshakes(t.Context(), l.Addr().String(), certs.roots, 2, 300*time.Millisecond)
	if res.done == 0 || res.failed != 0 {
		t.Errorf("%d done, %d failed: %v", res.done, res.failed, res.firstErr)
	}
}
