package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// testConfig is a daemon on loopback with a local upstream (%s) and its
// endpoints on a random port.
const testConfig = `
[server]
listen = ["127.0.0.1:0"]
allow_clients = ["127.0.0.0/8"]

[upstream]
servers = ["%s"]
timeout = "%s"

[blocking]
lists = ["apps/*.toml"]
block = ["video"]
watch = false # reloads come from Reload only

[metrics]
listen = "127.0.0.1:0"
`

// start writes the config and an app file to a directory and starts a
// daemon on them; it is shut down at the end of the test.
func start(t *testing.T, up *dnstest.Upstream, timeout string) *Daemon {
	t.Helper()
	d, _ := startIn(t, up, timeout)
	return d
}

// startIn is start that also returns the config file's path.
func startIn(t *testing.T, up *dnstest.Upstream, timeout string) (*Daemon, string) {
	t.Helper()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "apps"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "apps", "video.toml"), []byte("[[app]]\nname = \"video\"\ndomains = [\"video.test\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(testConfig, up.Addr, timeout)), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(context.Background(), path, Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d, path
}

// TestDaemon: New loads the policy and binds; the daemon answers over UDP
// and TCP (blocked and resolved names), and /readyz is ready.
func TestDaemon(t *testing.T) {
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20", "www.video.test. 300 IN A 192.0.2.30")
	d := start(t, up, "1s")
	addr := d.UDPAddrs()[0].String()
	for _, netw := range []string{"udp", "tcp"} {
		for _, tt := range []struct {
			name  string
			rcode int
			a     string
		}{
			{"www.example.test.", dns.RcodeSuccess, "192.0.2.20"},
			{"www.video.test.", dns.RcodeNameError, ""}, // blocked
		} {
			resp, err := dnstest.Client{}.Exchange(context.Background(), netw, addr, dnstest.NewQuery(tt.name, dns.TypeA, true, false))
			if err != nil {
				t.Fatalf("%s %s: %v", netw, tt.name, err)
			}
			got := ""
			if len(resp.Answer) == 1 {
				got = resp.Answer[0].(*dns.A).A.String()
			}
			if resp.Rcode != tt.rcode || got != tt.a || len(resp.Answer) > 1 {
				t.Errorf("%s %s: %v, want %s %s", netw, tt.name, resp, dns.RcodeToString[tt.rcode], tt.a)
			}
		}
	}
	if d.HTTPAddr() == nil {
		t.Fatal("no HTTP address")
	}
	res, err := http.Get("http://" + d.HTTPAddr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/readyz: %s", res.Status)
	}
	if err := d.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// TestShutdownCancelsUpstreamWaits: Shutdown's grace bounds a query that
// waits for an upstream that never answers: it is answered SERVFAIL when
// the grace ends, long before upstream.timeout, and Run returns nil.
func TestShutdownCancelsUpstreamWaits(t *testing.T) {
	up := dnstest.NewUpstream(t)
	up.SetSilent(true)
	d := start(t, up, "25s")
	ctx, cancel := context.WithCancel(context.Background())
	run := make(chan error, 1)
	go func() { run <- d.Run(ctx) }()
	dnstest.ServfailAtShutdown(t, up, func(sctx context.Context) error {
		cancel()
		if err := <-run; err != nil {
			t.Errorf("Run = %v", err)
		}
		return d.Shutdown(sctx)
	}, func() (*dns.Msg, error) {
		c := dnstest.Client{Timeout: 20 * time.Second}
		return c.Exchange(context.Background(), "udp", d.UDPAddrs()[0].String(), dnstest.NewQuery("slow.example.test.", dns.TypeA, true, false))
	})
}

// TestDaemonReload: Reload (SIGHUP) rebuilds the policy from the file
// while Run runs; the cache and the listeners stay.
func TestDaemonReload(t *testing.T) {
	up := dnstest.NewUpstream(t, "www.video.test. 300 IN A 192.0.2.30")
	d, path := startIn(t, up, "1s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	blocked := func() bool {
		resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", d.UDPAddrs()[0].String(), dnstest.NewQuery("www.video.test.", dns.TypeA, true, false))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Rcode == dns.RcodeNameError
	}
	if !blocked() {
		t.Fatal("www.video.test is not blocked before the reload")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(text, []byte(`block = ["video"]`), []byte(`block = []`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := d.stack.Cache()
	d.Reload("test")
	for deadline := time.Now().Add(5 * time.Second); blocked(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("www.video.test still blocked 5 s after the reload")
		}
	}
	if d.stack.Cache() != cache {
		t.Error("the reload made a new cache")
	}
}
