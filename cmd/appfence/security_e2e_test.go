package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestEndToEndRequestHandling asks the built binary with dig what an
// attacker would ask: ANY (answered with RFC 8482's HINFO, or blocked; the
// upstream is asked for A, never ANY), a zone transfer (REFUSED), the
// server's identity (CHAOS TXT id.server, answered here), an EDNS version
// it does not know (BADVERS), from
// outside allow_clients (REFUSED), and over rate_limit (REFUSED over TCP,
// nothing over UDP). Each dig uses its own source address: rate_limit = 1
// applies to every client.
func TestEndToEndRequestHandling(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]
allow_clients = ["127.0.0.0/29"]
rate_limit = 1

[upstream]
servers = [%q]

[metrics]
listen = ""
`, port, up.Addr)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startServe(t, bin, cfg, addr)
	p := fmt.Sprintf("-p%d", port)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-b", "127.0.0.2", "www.example.test", "ANY"}, []string{"status: NOERROR", "www.example.test.\t3600\tIN\tHINFO\t\"RFC8482\" \"\""}},
		{[]string{"-b", "127.0.0.3", "www.tiktok.com", "ANY"}, []string{"status: NXDOMAIN", "EDE: 15 (Blocked)"}},
		{[]string{"-b", "127.0.0.4", "+tcp", "example.test", "AXFR"}, []string{"Transfer failed"}},
		{[]string{"-b", "127.0.0.5", "+edns=1", "+noednsneg", "www.example.test"}, []string{"status: BADVERS", "EDNS: version: 0"}},
		{[]string{"-b", "127.0.0.9", "www.example.test"}, []string{"status: REFUSED"}},
		{[]string{"-b", "127.0.0.7", "id.server", "CH", "TXT"}, []string{"status: NOERROR", "\t0\tCH\tTXT\t\""}},
	}
	for _, tt := range tests {
		out := digRun(t, dig, append([]string{"@127.0.0.1", p}, tt.args...)...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("dig %s: output lacks %q:\n%s", strings.Join(tt.args, " "), w, out)
			}
		}
	}
	for _, q := range up.Queries() {
		if q.Name != "www.example.test." || q.Type != dns.TypeA {
			t.Errorf("the upstream was asked %s %s, want only A for the ANY query's name", q.Name, dns.TypeToString[q.Type])
		}
	}
	// From 127.0.0.6 at rate_limit = 1: the first query is answered, the
	// next one (within the second) is refused over TCP and dropped over UDP.
	out := digRun(t, dig, "@127.0.0.1", p, "-b", "127.0.0.6", "www.example.test")
	if !strings.Contains(out, "status: NOERROR") {
		t.Errorf("first query: want NOERROR:\n%s", out)
	}
	out = digRun(t, dig, "@127.0.0.1", p, "-b", "127.0.0.6", "+tcp", "www.example.test")
	if !strings.Contains(out, "status: REFUSED") {
		t.Errorf("TCP over rate_limit: want REFUSED:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, dig, "+tries=1", "+time=1", "@127.0.0.1", p, "-b", "127.0.0.6", "www.example.test").CombinedOutput()
	if err == nil || strings.Contains(string(b), "status:") {
		t.Errorf("UDP over rate_limit: want no answer, dig said (%v):\n%s", err, b)
	}
}
