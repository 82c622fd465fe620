package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestEndToEndEncryptedUpstreams runs the binary with a DoT upstream and a
// forward zone on a DoH upstream, both with certificates from a private CA
// named by upstream.ca_file, asks with dig, reloads, and asks again.
func TestEndToEndEncryptedUpstreams(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	ca := dnstest.NewCA(t)
	public := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	dotAddr := public.StartTLS(t, ca.Issue(t, "dns.test"))
	corp := dnstest.NewUpstream(t, "db.corp.test. 300 IN A 10.0.0.7")
	doh := corp.StartHTTPS(t, ca.Issue(t, "doh.corp.test"))

	port := freePort(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "corp-ca.pem"), ca.PEM, 0o644)
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]

[upstream]
servers = ["tls://%s#dns.test"]
ca_file = "corp-ca.pem"

[[upstream.forward]]
zones = ["corp.test"]
servers = ["%s"]

[metrics]
listen = ""
`, port, dotAddr, dnstest.DoHURL(doh, "doh.corp.test"))), 0o644)

	proc := startServe(t, bin, cfg, fmt.Sprintf("127.0.0.1:%d", port))

	p := fmt.Sprintf("-p%d", port)
	ask := func() {
		t.Helper()
		if out := digRun(t, dig, "@127.0.0.1", p, "www.example.test"); !strings.Contains(out, "192.0.2.20") {
			t.Errorf("dig www.example.test: want the DoT upstream's answer:\n%s", out)
		}
		if out := digRun(t, dig, "@127.0.0.1", p, "db.corp.test"); !strings.Contains(out, "10.0.0.7") {
			t.Errorf("dig db.corp.test: want the DoH upstream's answer:\n%s", out)
		}
	}
	ask()
	if tls, _ := public.CountEncrypted(); public.Asked("www.example.test.") != 1 || tls < 1 {
		t.Errorf("DoT upstream: asked %d times, %d TLS queries", public.Asked("www.example.test."), tls)
	}
	if _, https := corp.CountEncrypted(); corp.Asked("db.corp.test.") != 1 || https < 1 || public.Asked("db.corp.test.") != 0 {
		t.Errorf("DoH upstream asked %d times (%d over HTTPS); DoT upstream asked %d times for the corp name",
			corp.Asked("db.corp.test."), https, public.Asked("db.corp.test."))
	}

	// SIGHUP: a new router replaces the old one, which is closed.
	proc.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(proc.stderr.String(), "reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload in the log:\n%s", proc.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ask()
	proc.stop(t)
}
