package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestParsePerf reads the statistics of a real dnsperf 2.10 run (against
// AppFence, blocked names).
func TestParsePerf(t *testing.T) {
	out, err := os.ReadFile("testdata/dnsperf.out")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parsePerf(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.sent != 48927 || r.lost != 0 || r.qps != 48805.571738 || r.rcodes["NXDOMAIN"] != 48927 || len(r.rcodes) != 1 {
		t.Errorf("parsed %+v", r)
	}
	if err := r.check("NXDOMAIN"); err != nil {
		t.Errorf("check: %v", err)
	}
	if err := r.check("NOERROR"); err == nil {
		t.Error("NXDOMAIN answers pass a NOERROR workload")
	}
	r.lost = 100
	if err := r.check("NXDOMAIN"); err == nil {
		t.Error("0.2% lost passes")
	}
	if _, err := parsePerf([]byte("Error: input file contains no data\n")); err == nil {
		t.Error("output without statistics parsed")
	}
}

// TestTable: medians of odd and even run counts, failed runs counted, the
// ratios of AppFence's median to the others'.
func TestTable(t *testing.T) {
	r := newResults()
	for _, q := range []float64{100, 300, 200} {
		r.add("cache-hot", "appfence", q, nil)
	}
	for _, q := range []float64{100, 150} {
		r.add("cache-hot", "unbound", q, nil)
	}
	r.add("cache-hot", "unbound", 0, os.ErrDeadlineExceeded)
	if m := r.median("cache-hot", "appfence"); m != 200 {
		t.Errorf("median %v, want 200", m)
	}
	if m := r.median("cache-hot", "unbound"); m != 125 {
		t.Errorf("median %v, want 125", m)
	}
	var b bytes.Buffer
	r.table(&b, []workload{{name: "cache-hot"}}, []server{{name: "appfence"}, {name: "unbound"}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "1.60x") || !strings.HasSuffix(strings.TrimSpace(lines[2]), "1") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestWorkloads: a thousand queries each; every blocked name is under a
// zone the built-in catalog blocks (checked with appfence explain, built
// for the test).
func TestWorkloads(t *testing.T) {
	for _, w := range workloads() {
		if n := bytes.Count(w.queries(), []byte("\n")); n != 1000 {
			t.Errorf("%s: %d queries", w.name, n)
		}
	}
	bin := filepath.Join(t.TempDir(), "appfence")
	if out, err := exec.Command("go", "build", "-o", bin, "../appfence").CombinedOutput(); err != nil {
		t.Fatalf("build appfence: %v\n%s", err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(blocked())), "\n")[:len(blockedZones)*2] {
		names = append(names, strings.Fields(line)[0])
	}
	cmd := exec.Command(bin, append([]string{"explain", "-client", "127.0.0.1"}, names...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), " blocked "); n != len(names) {
		t.Errorf("%d of %d names blocked:\n%s", n, len(names), out)
	}
}

// TestUnboundConfig: unbound-checkconf accepts the configuration.
func TestUnboundConfig(t *testing.T) {
	check, err := exec.LookPath("unbound-checkconf")
	if err != nil {
		t.Skip("unbound-checkconf not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(unboundConfig(dir, "127.0.0.1:5399", "127.0.0.1:5398")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(check, path).CombinedOutput(); err != nil {
		t.Errorf("unbound-checkconf: %v\n%s", err, out)
	}
}
