package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestServeBadQueryLog runs the binary with query_log in a directory that
// does not exist (issue 17 item 7): it serves anyway, logs the error and
// reports it in the metrics; once the directory exists, SIGUSR1 opens the
// log and queries are logged; a reload to an unopenable path keeps the
// log open and counts the error again.
func TestServeBadQueryLog(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.tiktok.com. 300 IN A 192.0.2.10", "www.example.test. 300 IN A 192.0.2.20")
	silent := dnstest.NewUpstream(t)
	silent.SetSilent(true)
	port, mport := freePort(t), freePort(t)
	dir := t.TempDir()
	cfgPath, qlog := filepath.Join(dir, "appfence.toml"), filepath.Join(dir, "logs", "query.log")
	writeConfig := func(path string) {
		t.Helper()
		text := fmt.Sprintf(observeConfig, port, mport, up.Addr, silent.Addr, path, "")
		if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(qlog)
	addr, maddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", mport)
	srv := startServe(t, bin, cfgPath, addr)
	waitLog(t, srv.stderr, "query log: cannot open the file")
	waitFor(t, "the metrics endpoint", func() bool { return metric(t, maddr, "appfence_querylog_ok") == 0 }, srv.stderr)
	if n := metric(t, maddr, "appfence_querylog_open_errors_total"); n != 1 {
		t.Errorf("appfence_querylog_open_errors_total = %v, want 1", n)
	}
	ask := func(name string) {
		t.Helper()
		resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery(name, dns.TypeA, true, false))
		if err != nil || resp.Rcode != dns.RcodeNameError {
			t.Fatalf("%s: %v %v, want the block answer", name, resp, err)
		}
	}
	ask("www.tiktok.com.")

	if err := os.Mkdir(filepath.Dir(qlog), 0o755); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGUSR1)
	waitFor(t, "the query log opened", func() bool { return metric(t, maddr, "appfence_querylog_ok") == 1 }, srv.stderr)
	ask("v16.tiktok.com.")
	waitFor(t, "the query logged", func() bool {
		b, _ := os.ReadFile(qlog)
		return strings.Contains(string(b), `"name":"v16.tiktok.com"`)
	}, srv.stderr)

	writeConfig(filepath.Join(dir, "missing", "query.log"))
	srv.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, srv.stderr, "logged to the previous one")
	if n := metric(t, maddr, "appfence_querylog_open_errors_total"); n != 2 || metric(t, maddr, "appfence_querylog_ok") != 0 {
		t.Errorf("after the reload: open errors %v, ok %v; want 2 and 0", n, metric(t, maddr, "appfence_querylog_ok"))
	}
	ask("www2.tiktok.com.")
	waitFor(t, "the query logged to the previous file", func() bool {
		b, _ := os.ReadFile(qlog)
		return strings.Contains(string(b), `"name":"www2.tiktok.com"`)
	}, srv.stderr)
	srv.stop(t)
}

// TestServeDnstap runs the binary with [log] dnstap to fstrm_capture: a
// blocked query reaches the collector with the configured identity, and
// the metrics count it.
func TestServeDnstap(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.tiktok.com. 300 IN A 192.0.2.10")
	silent := dnstest.NewUpstream(t)
	silent.SetSilent(true)
	port, mport := freePort(t), freePort(t)
	dir := t.TempDir()
	collector := dnstest.StartFstrmCapture(t, dir, false)
	cfgPath := filepath.Join(dir, "appfence.toml")
	text := fmt.Sprintf(observeConfig, port, mport, up.Addr, silent.Addr, "", fmt.Sprintf("dnstap = %q\ndnstap_identity = \"dns1\"", collector.Target))
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, maddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", mport)
	srv := startServe(t, bin, cfgPath, addr) // its probe queries are tapped too
	waitFor(t, "connected to the collector", func() bool { return metric(t, maddr, "appfence_dnstap_connected") == 1 }, srv.stderr)
	resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", addr, dnstest.NewQuery("tapped.tiktok.com.", dns.TypeA, true, false))
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("%v %v, want the block answer", resp, err)
	}
	srv.stop(t) // writes what is queued, then ends the stream
	collector.Stop()
	var found bool
	for _, m := range dnstest.ReadDnstapFile(t, collector.File) {
		var msg dns.Msg
		if string(m.Identity) == "dns1" && msg.Unpack(m.GetMessage().GetResponseMessage()) == nil &&
			len(msg.Question) == 1 && msg.Question[0].Name == "tapped.tiktok.com." && msg.Rcode == dns.RcodeNameError &&
			strings.Contains(string(m.Extra), `"action":"blocked"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no CLIENT_RESPONSE for tapped.tiktok.com with identity dns1 in the collector's file\n%s", srv.stderr)
	}
}
