// Package httpapi serves AppFence's HTTP endpoints on metrics.listen:
// /metrics (the collectors of a Prometheus registry), /healthz, /readyz
// (with ?verbose, the upstream health beside readiness) and /explain (the
// policy's decision for a client and name), behind the bearer token of
// metrics.bearer_token_file.
//
// It takes plain values and functions (a prometheus.Gatherer, readiness
// and explanation callbacks): it may import the Prometheus client and the
// standard library, no AppFence package; internal/daemon wires it.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoints are the HTTP endpoints on metrics.listen.
type Endpoints struct {
	// Metrics is what /metrics exports: a registry's collectors.
	Metrics prometheus.Gatherer
	// Ready returns nil when the resolver is ready to answer, or why not.
	Ready func() error
	// Upstream reports upstream health for /readyz?verbose: nil when it is
	// healthy, or why not. It never makes /readyz fail (SPEC, Readiness).
	Upstream func() error
	// Explain returns the decision for a client, name and type as a value
	// that encodes to JSON, or an error for bad parameters.
	Explain func(client, name, qtype string) (any, error)
	// Token returns the bearer token that /metrics, /explain and
	// /readyz?verbose require: nil when they are open, or an error when a
	// token is configured but cannot be read, and then they refuse every
	// request. /healthz and plain /readyz are always open, for probes.
	// A nil Token leaves every endpoint open.
	Token func() ([]byte, error)
}

// Readiness is the body of /readyz?verbose.
type Readiness struct {
	// Ready is what /readyz answers: listening and a policy loaded.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Upstream is the health of the default upstream pool, its own signal:
	// it never makes Ready false (SPEC, Readiness).
	Upstream Health `json:"upstream"`
}

// Health is one signal of /readyz?verbose.
type Health struct {
	Up     bool   `json:"up"`
	Reason string `json:"reason,omitempty"`
}

// Handler returns the mux: /metrics, /healthz, /readyz, /explain. With a
// Token, /metrics, /explain and /readyz?verbose require it.
func (e *Endpoints) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", e.protect(promhttp.HandlerFor(e.Metrics, promhttp.HandlerOpts{EnableOpenMetrics: true})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var notReady error
		if e.Ready != nil {
			notReady = e.Ready()
		}
		if r.URL.Query().Has("verbose") {
			if e.authorize(w, r) {
				e.verbose(w, notReady)
			}
			return
		}
		if notReady != nil {
			http.Error(w, "not ready: "+notReady.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
		if !e.authorize(w, r) {
			return
		}
		if e.Explain == nil {
			http.Error(w, "explain is not available", http.StatusNotFound)
			return
		}
		q := r.URL.Query()
		v, err := e.Explain(q.Get("client"), q.Get("name"), q.Get("type"))
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			enc.Encode(map[string]string{"error": err.Error()})
			return
		}
		enc.Encode(v)
	})
	return mux
}

// verbose writes the JSON of /readyz?verbose: 200 when ready, 503 when
// not, whatever the upstreams do.
func (e *Endpoints) verbose(w http.ResponseWriter, notReady error) {
	v := Readiness{Ready: notReady == nil, Upstream: Health{Up: true}}
	if notReady != nil {
		v.Reason = notReady.Error()
	}
	if e.Upstream != nil {
		if err := e.Upstream(); err != nil {
			v.Upstream = Health{Reason: err.Error()}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !v.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// protect wraps h with authorize.
func (e *Endpoints) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.authorize(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// authorize reports whether r may see a protected endpoint; when not, it
// has written the answer: 401 without the right bearer token, 503 when the
// configured token cannot be read. The tokens are compared as SHA-256
// digests in constant time, so neither their content nor their length
// shows in the time taken.
func (e *Endpoints) authorize(w http.ResponseWriter, r *http.Request) bool {
	if e.Token == nil {
		return true
	}
	want, err := e.Token()
	if err != nil {
		http.Error(w, "the bearer token is unavailable: see the log", http.StatusServiceUnavailable)
		return false
	}
	if want == nil {
		return true
	}
	got, ok := bearer(r.Header.Get("Authorization"))
	wantSum, gotSum := sha256.Sum256(want), sha256.Sum256([]byte(got))
	if subtle.ConstantTimeCompare(wantSum[:], gotSum[:]) != 1 || !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="appfence"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

// bearer returns the token of an Authorization header of the Bearer
// scheme (RFC 6750; the scheme is case-insensitive).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Serve listens on addr and serves the endpoints until ctx is done. The
// listener is bound before Serve returns its channel, so a bad address is
// reported at once.
func (e *Endpoints) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, <-chan error, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() {
		err := srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("metrics listening", "addr", l.Addr().String())
	return l.Addr(), errc, nil
}
