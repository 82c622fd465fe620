package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoints are the HTTP endpoints on metrics.listen.
type Endpoints struct {
	Metrics *Metrics
	// Ready returns nil when the resolver is ready to answer, or why not.
	Ready func() error
	// Upstream reports upstream health for /readyz?verbose: nil when it is
	// healthy, or why not. It never makes /readyz fail (SPEC, Readiness).
	Upstream func() error
	// Explain returns the decision for a client, name and type as a value
	// that encodes to JSON, or an error for bad parameters.
	Explain func(client, name, qtype string) (any, error)
}

// Handler returns the mux: /metrics, /healthz, /readyz, /explain.
func (e *Endpoints) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.Metrics.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if e.Ready != nil {
			if err := e.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		if r.URL.Query().Has("verbose") {
			up := "ok"
			if e.Upstream != nil {
				if err := e.Upstream(); err != nil {
					up = err.Error()
				}
			}
			w.Write([]byte("ready: ok\nupstream: " + up + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /explain", func(w http.ResponseWriter, r *http.Request) {
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
