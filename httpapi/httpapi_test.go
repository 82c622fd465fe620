package httpapi

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
	"github.com/appfence/appfence/metrics"
)

// TestEndpoints exercises every endpoint over real HTTP on loopback.
func TestEndpoints(t *testing.T) {
	m := metrics.New("v1.2.3")
	var notReady atomic.Pointer[error]
	why := errors.New("no policy loaded")
	notReady.Store(&why)
	ep := &Endpoints{
		Metrics: m.Registry,
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
	ep := &Endpoints{Metrics: metrics.New("test").Registry}
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

// TestReadyzVerbose checks /readyz?verbose: JSON with readiness and the
// upstream health as separate signals, 200 whatever the upstreams do.
func TestReadyzVerbose(t *testing.T) {
	var ready, upstream atomic.Pointer[error]
	load := func(p *atomic.Pointer[error]) error {
		if e := p.Load(); e != nil {
			return *e
		}
		return nil
	}
	ep := &Endpoints{Metrics: metrics.New("test").Registry,
		Ready:    func() error { return load(&ready) },
		Upstream: func() error { return load(&upstream) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := ep.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("every upstream server of the default pool is down")
	notListening := errors.New("not listening yet")
	tests := []struct {
		name            string
		ready, upstream error
		code            int
		want            Readiness
	}{
		{"healthy", nil, nil, 200, Readiness{Ready: true, Upstream: Health{Up: true}}},
		{"upstream down", nil, down, 200, Readiness{Ready: true, Upstream: Health{Reason: down.Error()}}},
		{"not ready", notListening, nil, 503, Readiness{Reason: notListening.Error(), Upstream: Health{Up: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(&tt.ready)
			upstream.Store(&tt.upstream)
			resp, err := http.Get("http://" + addr.String() + "/readyz?verbose")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got Readiness
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if resp.StatusCode != tt.code || resp.Header.Get("Content-Type") != "application/json" || got != tt.want {
				t.Errorf("%d %q %+v, want %d %+v", resp.StatusCode, resp.Header.Get("Content-Type"), got, tt.code, tt.want)
			}
			// Plain /readyz follows readiness only.
			plain, err := http.Get("http://" + addr.String() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			plain.Body.Close()
			if plain.StatusCode != tt.code {
				t.Errorf("/readyz: %d, want %d", plain.StatusCode, tt.code)
			}
		})
	}
}

// TestEndpointsBearerToken checks the bearer token over real HTTP: the
// protected endpoints answer 401 without it or with a wrong one, 200 with
// it; the probes' endpoints stay open; an unreadable token closes them.
func TestEndpointsBearerToken(t *testing.T) {
	const token = "s3cret-token-0123456789"
	var tokenErr atomic.Pointer[error]
	ep := &Endpoints{Metrics: metrics.New("test").Registry,
		Ready:    func() error { return nil },
		Upstream: func() error { return nil },
		Explain:  func(client, name, qtype string) (any, error) { return map[string]string{"client": client}, nil },
		Token: func() ([]byte, error) {
			if e := tokenErr.Load(); e != nil {
				return nil, *e
			}
			return []byte(token), nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, err := ep.Serve(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, auth string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr.String()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	protected := []string{"/metrics", "/explain?client=10.1.2.3&name=a", "/readyz?verbose"}
	tests := []struct {
		auth string
		code int
	}{
		{"", 401},
		{"Bearer wrong-token-0123456789", 401},
		{"Bearer " + token[:len(token)-1], 401}, // a prefix
		{"Bearer " + token + "x", 401},
		{"Basic " + token, 401},
		{"Bearer " + token, 200},
		{"bearer " + token, 200}, // the scheme is case-insensitive
	}
	for _, tt := range tests {
		for _, path := range protected {
			resp := get(path, tt.auth)
			if resp.StatusCode != tt.code {
				t.Errorf("GET %s with %q: %d, want %d", path, tt.auth, resp.StatusCode, tt.code)
			}
			if tt.code == 401 && resp.Header.Get("WWW-Authenticate") != `Bearer realm="appfence"` {
				t.Errorf("GET %s with %q: WWW-Authenticate %q", path, tt.auth, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if resp := get(path, ""); resp.StatusCode != 200 {
			t.Errorf("GET %s without a token: %d, want 200 (probes)", path, resp.StatusCode)
		}
	}
	unreadable := errors.New("open token: permission denied")
	tokenErr.Store(&unreadable)
	for _, path := range protected {
		if resp := get(path, "Bearer "+token); resp.StatusCode != 503 {
			t.Errorf("GET %s with the token unreadable: %d, want 503 (fail closed)", path, resp.StatusCode)
		}
	}
	if resp := get("/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz with the token unreadable: %d", resp.StatusCode)
	}
}
