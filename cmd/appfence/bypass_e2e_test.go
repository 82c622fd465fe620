package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestEndToEndBypasses runs the binary and asks with dig, from the default
// group (127.0.0.1), the exempted group (127.0.0.2) and a group that blocks
// encrypted DNS (127.0.0.3): an allowed name behind TikTok's CDN, an HTTPS
// record pointing at TikTok, the Firefox canary and a public DoH
// resolver's name; then reads the query log and explains an address.
func TestEndToEndBypasses(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t,
		"video.example.test. 300 IN CNAME tiktokv.com.edgekey.net.",
		"tiktokv.com.edgekey.net. 300 IN CNAME e1234.a.akamaiedge.net.",
		"e1234.a.akamaiedge.net. 300 IN A 192.0.2.40",
		"svc.example.test. 300 IN HTTPS 1 v16.tiktokcdn.com. alpn=h2",
		"dns.google. 300 IN A 8.8.8.8",
		"use-application-dns.net. 300 IN A 192.0.2.70",
	)
	port := freePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	queryLog := filepath.Join(dir, "query.log")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]

[upstream]
servers = ["%s"]

[blocking]
lists = []
response = "nodata"

[[group]]
name = "investigators"
clients = ["127.0.0.2"]
allow = ["tiktok"]

[[group]]
name = "locked"
clients = ["127.0.0.3"]
block = ["encrypted-dns"]

[metrics]
listen = ""

[log]
query_log = %q
`, port, up.Addr, queryLog)), 0o644)
	srv := startServe(t, bin, cfg, fmt.Sprintf("127.0.0.1:%d", port))
	p := fmt.Sprintf("-p%d", port)

	expect := func(out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("dig output lacks %q:\n%s", w, out)
			}
		}
	}
	for range 2 { // the second round is answered from the cache
		expect(digRun(t, dig, "@127.0.0.1", p, "video.example.test"), "status: NOERROR", "ANSWER: 0,",
			"blocked: app=tiktok group=default via=cname:tiktokv.com.edgekey.net", "video.example.test.\t60\tIN\tSOA\tappfence.invalid.")
		expect(digRun(t, dig, "@127.0.0.1", p, "-b", "127.0.0.2", "+tcp", "video.example.test"), "status: NOERROR", "ANSWER: 3,", "192.0.2.40")
	}
	if n := up.Asked("video.example.test."); n != 1 {
		t.Errorf("upstream asked %d times for video.example.test, want once", n)
	}
	expect(digRun(t, dig, "@127.0.0.1", p, "svc.example.test", "HTTPS"), "ANSWER: 0,", "via=svcb:v16.tiktokcdn.com")
	// The canary is NXDOMAIN for every group, though blocks are NODATA here.
	for _, from := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		expect(digRun(t, dig, "@127.0.0.1", p, "-b", from, "use-application-dns.net"), "status: NXDOMAIN", "via=canary")
	}
	expect(digRun(t, dig, "@127.0.0.1", p, "-b", "127.0.0.3", "dns.google"), "ANSWER: 0,", "blocked: app=encrypted-dns group=locked)")
	expect(digRun(t, dig, "@127.0.0.1", p, "dns.google"), "status: NOERROR", "8.8.8.8")
	srv.stop(t)

	log, err := os.ReadFile(queryLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"name":"video.example.test","type":"A","action":"blocked","app":"tiktok","rule":"tiktokv.com.edgekey.net","via":"cname","found":"tiktokv.com.edgekey.net","rcode":"NOERROR"`,
		`"group":"investigators","name":"video.example.test","type":"A","action":"exempted","app":"tiktok"`,
		`"name":"use-application-dns.net","type":"A","action":"blocked","app":"encrypted-dns","rule":"use-application-dns.net","via":"canary","rcode":"NXDOMAIN"`,
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("query log lacks %s:\n%s", want, log)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"explain", "-config", cfg, "-client", "127.0.0.3", "9.9.9.9"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("explain: exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"locked", "blocked", "encrypted-dns", "9.9.9.9/32 (ip_range, via ip)", "replaced by the block answer"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("explain 9.9.9.9 lacks %q:\n%s", want, stdout.String())
		}
	}
}
