package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestEndToEndAllowlist runs the binary with an allowlist group holding
// 127.0.0.2 that approves only tiktok, and asks from 127.0.0.2 over UDP:
// an approved name resolves, an approved name whose answer CNAMEs to a CDN
// name outside the app resolves, and any other name gets the block answer
// with EDE 15 "not approved: group=managed".
func TestEndToEndAllowlist(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t,
		"tiktok.com. 300 IN A 192.0.2.10",
		"www.tiktok.com. 300 IN CNAME www.tiktok.com.edgekey.net.",
		"www.tiktok.com.edgekey.net. 300 IN CNAME e1.a.akamaiedge.net.",
		"e1.a.akamaiedge.net. 300 IN A 192.0.2.11",
		"random.example.test. 300 IN A 192.0.2.12",
	)
	port := freePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]

[upstream]
servers = ["%s"]

[blocking]
lists = []
block = []

[[group]]
name = "managed"
clients = ["127.0.0.2"]
mode = "allowlist"
allow = ["tiktok"]

[metrics]
listen = ""
`, port, up.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := startServe(t, bin, cfg, addr)
	defer s.stop(t)

	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}}}
	ask := func(name string) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, false)
		r, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	for _, tc := range []struct{ name, want string }{
		{"tiktok.com.", "192.0.2.10"},
		{"www.tiktok.com.", "192.0.2.11"},
	} {
		r := ask(tc.name)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 ||
			!strings.Contains(r.Answer[len(r.Answer)-1].String(), tc.want) {
			t.Errorf("%s: got %v, want an answer with %s", tc.name, r, tc.want)
		}
	}
	r := ask("random.example.test.")
	if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
		t.Fatalf("random.example.test: got %v, want the NXDOMAIN block answer", r)
	}
	var text string
	if o := r.IsEdns0(); o != nil {
		for _, e := range o.Option {
			if ede, ok := e.(*dns.EDNS0_EDE); ok && ede.InfoCode == dns.ExtendedErrorCodeBlocked {
				text = ede.ExtraText
			}
		}
	}
	if text != "not approved: group=managed" {
		t.Errorf("EDE text = %q, want %q", text, "not approved: group=managed")
	}
}
