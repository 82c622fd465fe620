package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/promtest"
)

// TestEndpoints exercises every endpoint over real HTTP on loopback.
func TestEndpoints(t *testing.T) {
	m := New("v1.2.3")
	var notReady atomic.Pointer[error]
	why := errors.New("no policy loaded")
	notReady.Store(&why)
	ep := &Endpoints{
		Metrics: m,
		Ready: func() error {
			if e := notReady.Load(); e != nil {
				return *e
			}
			return nil
		},
		Explain: func(client, name, qtype string) (any, error) {
			if client == "" {
				return nil, errors.New("client: missing")
			}
			return map[string]string{"client": client, "name": name, "type": qtype}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, errc, err := ep.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String()
	c := &http.Client{Timeout: 5 * time.Second}
	get := func(method, path string) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}

	if code, _, body := get("GET", "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _, body := get("GET", "/readyz"); code != 503 || !strings.Contains(body, "no policy loaded") {
		t.Errorf("/readyz not ready: %d %q, want 503 with the reason", code, body)
	}
	notReady.Store(nil)
	if code, _, body := get("GET", "/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz ready: %d %q", code, body)
	}

	code, ct, body := get("GET", "/explain?client=10.1.2.3&name=www.tiktok.com&type=AAAA")
	var v map[string]string
	if code != 200 || ct != "application/json" || json.Unmarshal([]byte(body), &v) != nil ||
		v["client"] != "10.1.2.3" || v["name"] != "www.tiktok.com" || v["type"] != "AAAA" {
		t.Errorf("/explain: %d %q %s", code, ct, body)
	}
	code, ct, body = get("GET", "/explain?name=www.tiktok.com")
	if code != 400 || ct != "application/json" || json.Unmarshal([]byte(body), &v) != nil || v["error"] != "client: missing" {
		t.Errorf("/explain without client: %d %q %s, want 400 with a JSON error", code, ct, body)
	}
	if code, _, _ := get("POST", "/explain?client=10.1.2.3&name=a"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /explain: %d, want 405", code)
	}
	if code, _, _ := get("GET", "/nothing"); code != 404 {
		t.Errorf("/nothing: %d, want 404", code)
	}

	fams := promtest.Scrape(t, base+"/metrics")
	if got := fams.Values("appfence_build_info", "version", "goversion"); got["v1.2.3/"+runtime.Version()] != 1 || len(got) != 1 {
		t.Errorf("appfence_build_info: %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "appfence_querylog_dropped_total", "appfence_config_last_reload_successful"} {
		if fams[name] == nil {
			t.Errorf("%s is not exported", name)
		}
	}
	if got := fams.Values("appfence_cache_requests_total", "result"); len(got) != 3 {
		t.Errorf("appfence_cache_requests_total: %v, want hit, miss and stale at zero", got)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the HTTP server did not stop with its context")
	}
}

func TestEndpointsExplainOff(t *testing.T) {
	ep := &Endpoints{Metrics: New("test")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := ep.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/explain?client=10.1.2.3&name=a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/explain without an Explain func: %d, want 404", resp.StatusCode)
	}
	if _, _, err := ep.Serve(ctx, addr.String(), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Serve on a port in use: no error")
	}
}
