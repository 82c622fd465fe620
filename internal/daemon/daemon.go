// Package daemon is AppFence's composition root: from a configuration
// file it builds the policy (reading the file once), the metrics, what
// answers queries (internal/stack), the DNS listeners, the reloader and
// the HTTP endpoints, and wires them together. `appfence serve` is its
// flags and signals around it, and the tests start the same daemon.
//
// It may import every package of AppFence but cmd/; none imports it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/appfence/appfence/blocklists/remote"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/httpapi"
	"github.com/appfence/appfence/internal/dnswire"
	"github.com/appfence/appfence/internal/stack"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/reload"
	"github.com/appfence/appfence/resolver"
)

// Options configure a Daemon.
type Options struct {
	// Version is the build version: the metrics' build info, the dnstap
	// version and the user agent of downloads.
	Version string
	// Stderr receives the log, as [log] formats it; nil discards it.
	Stderr io.Writer
	// Reloading and Reloaded, when set, are called as each reload begins
	// and ends (sd_notify's RELOADING=1 and READY=1).
	Reloading func()
	Reloaded  func(err error)
}

// Daemon is a running AppFence: its listeners are bound and its policy
// loaded from New on.
type Daemon struct {
	// life is the daemon's lifetime, the parent of every query's context;
	// Shutdown ends it when the queries in flight have had its grace.
	life    context.Context
	endLife context.CancelFunc

	log      *slog.Logger
	metrics  *metrics.Metrics
	stack    *stack.Stack
	reloader *reload.Reloader
	srv      *resolver.Server
	tlsSrv   *resolver.TLSServer

	httpAddr net.Addr
	httpErr  <-chan error
	stopHTTP context.CancelFunc

	listening atomic.Bool
	token     atomic.Pointer[tokenState]
}

// tokenState is the token of metrics.bearer_token_file as last read.
type tokenState struct {
	token []byte // nil: the endpoints are open
	err   error  // the file could not be read: the endpoints refuse all
}

// New reads the configuration at cfgPath ("" is the built-in one), builds
// the policy and everything that serves it, and binds the DNS and HTTP
// listeners. ctx is the parent of the daemon's lifetime: when it is done,
// every query in flight is cancelled at once (Shutdown cancels them
// gracefully).
func New(ctx context.Context, cfgPath string, opts Options) (*Daemon, error) {
	cfg, err := policy.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	w := opts.Stderr
	if w == nil {
		w = io.Discard
	}
	d := &Daemon{log: NewLogger(cfg.Log, w), metrics: metrics.New(opts.Version)}
	d.life, d.endLife = context.WithCancel(ctx)
	d.stack = stack.New(d.life, stack.Options{Metrics: d.metrics, Log: d.log, Version: opts.Version})
	d.reloader = reload.New(reload.Options{Path: cfgPath, Install: d.install, Metrics: d.metrics, Log: d.log,
		Downloader: &remote.Downloader{UserAgent: "appfence/" + opts.Version},
		Reloading:  opts.Reloading, Reloaded: opts.Reloaded})
	p, err := d.reloader.LoadConfig(cfg)
	if err != nil {
		d.endLife()
		return nil, err
	}
	if err := d.listen(p); err != nil {
		d.stack.Close()
		d.endLife()
		return nil, err
	}
	d.log.Info("appfence started", "version", opts.Version, "config", p.Config.File,
		"apps", len(p.Set.Apps), "groups", len(p.Groups))
	return d, nil
}

// listen binds the DNS listeners and the HTTP endpoints of p.
func (d *Daemon) listen(p *policy.Policy) error {
	h := d.stack.Handler()
	d.srv = resolver.NewServer(h, d.log)
	transport := metrics.NewTransport(d.metrics.Registry)
	d.srv.CountTransports(transport)
	if err := d.srv.Start(d.life, p.Config.Server); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	d.tlsSrv = resolver.NewTLSServer(d.srv, transport, d.log)
	if err := d.tlsSrv.Start(d.life, p.Config.Server.TLS); err != nil {
		d.srv.Shutdown(d.life)
		return fmt.Errorf("start encrypted listeners: %w", err)
	}
	d.listening.Store(true)
	var hctx context.Context
	hctx, d.stopHTTP = context.WithCancel(d.life)
	if l := p.Config.Metrics.Listen; l != "" {
		ep := &httpapi.Endpoints{Metrics: d.metrics.Registry, Ready: d.Ready, Upstream: d.stack.UpstreamHealth, Explain: d.explain, Token: d.bearerToken}
		addr, errc, err := ep.Serve(hctx, l, d.log)
		if err != nil {
			d.tlsSrv.Shutdown(d.life)
			d.srv.Shutdown(d.life)
			return fmt.Errorf("metrics: %w", err)
		}
		d.httpAddr, d.httpErr = addr, errc
	}
	return nil
}

// install is the reloader's Install: the stack's, and the bearer token of
// the HTTP endpoints, read again.
func (d *Daemon) install(p *policy.Policy) error {
	if err := d.stack.Install(p); err != nil {
		return err
	}
	d.loadToken(p.Config.Metrics.BearerTokenFile)
	return nil
}

// Run runs the reloader (file watching, remote refreshes, Reload) until
// ctx is done, and returns nil then, or the error of a listener that
// failed.
func (d *Daemon) Run(ctx context.Context) error {
	rctx, stopReloads := context.WithCancel(ctx)
	reloads := make(chan struct{})
	go func() {
		d.reloader.Run(rctx)
		close(reloads)
	}()
	defer func() {
		stopReloads()
		<-reloads
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-d.srv.Err():
			return fmt.Errorf("dns server failed: %w", err)
		case err := <-d.tlsSrv.Err():
			return fmt.Errorf("encrypted dns server failed: %w", err)
		case err := <-d.httpErr:
			if err != nil {
				return fmt.Errorf("metrics server failed: %w", err)
			}
			d.httpErr = nil // closed without error: no longer selected
		}
	}
}

// Shutdown stops accepting queries, waits for those in flight until ctx
// is done (then cancels them: they are answered SERVFAIL), closes the
// query log and dnstap after them, and ends the daemon's lifetime.
func (d *Daemon) Shutdown(ctx context.Context) error {
	defer d.endLife()
	d.log.Info("shutting down: finishing queries in flight")
	var errs []error
	if err := d.tlsSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown of the encrypted listeners: %w", err))
	}
	if err := d.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	d.stopHTTP()
	d.stack.Close()
	d.log.Info("stopped")
	return errors.Join(errs...)
}

// Reload asks for a reload in the background (SIGHUP); reason is logged.
func (d *Daemon) Reload(reason string) { d.reloader.Trigger(reason) }

// ReopenQueryLog reopens the query log file (SIGUSR1, after logrotate).
func (d *Daemon) ReopenQueryLog() { d.stack.ReopenQueryLog() }

// Logger returns the daemon's logger, as [log] configures it.
func (d *Daemon) Logger() *slog.Logger { return d.log }

// Metrics returns the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Handler returns the Handler that answers the queries.
func (d *Daemon) Handler() *resolver.Handler { return d.stack.Handler() }

// Policy returns the policy in use.
func (d *Daemon) Policy() *policy.Policy { return d.stack.Policy() }

// UDPAddrs returns the bound UDP (and TCP: the same ports) addresses of
// server.listen, in listen order.
func (d *Daemon) UDPAddrs() []net.Addr { return d.srv.UDPAddrs() }

// DoTAddrs, DoHAddrs and DoQAddrs return the bound addresses of the
// encrypted listeners, in listen order.
func (d *Daemon) DoTAddrs() []net.Addr { return d.tlsSrv.DoTAddrs() }

// DoHAddrs returns the bound DoH addresses, in listen order.
func (d *Daemon) DoHAddrs() []net.Addr { return d.tlsSrv.DoHAddrs() }

// DoQAddrs returns the bound DoQ addresses, in listen order.
func (d *Daemon) DoQAddrs() []net.Addr { return d.tlsSrv.DoQAddrs() }

// HTTPAddr returns the bound address of metrics.listen, nil when off.
func (d *Daemon) HTTPAddr() net.Addr { return d.httpAddr }

// Ready is /readyz: listening and a policy loaded. Upstream health never
// makes a replica unready (SPEC, Readiness): it is the verbose line.
func (d *Daemon) Ready() error {
	if !d.listening.Load() {
		return errors.New("not listening yet")
	}
	if d.stack.Policy() == nil {
		return errors.New("no policy loaded")
	}
	return nil
}

// loadToken reads the bearer token of the HTTP endpoints from file ("" is
// none). A token that cannot be read closes the protected endpoints rather
// than opening them.
func (d *Daemon) loadToken(file string) {
	t := &tokenState{}
	if file != "" {
		t.token, t.err = config.ReadTokenFile(file)
		if t.err != nil {
			d.log.Error("metrics.bearer_token_file: /metrics, /explain and /readyz?verbose refuse every request", "err", t.err)
		}
	}
	d.token.Store(t)
}

// bearerToken is the token of the HTTP endpoints.
func (d *Daemon) bearerToken() ([]byte, error) {
	t := d.token.Load()
	if t == nil {
		return nil, nil
	}
	return t.token, t.err
}

// explain is /explain: the policy's explanation of a query.
func (d *Daemon) explain(client, name, qtype string) (any, error) {
	addr, err := netip.ParseAddr(client)
	if err != nil {
		return nil, fmt.Errorf("client: %q is not an IP address", client)
	}
	if name == "" {
		return nil, errors.New("name: missing")
	}
	t, err := dnswire.ParseType(qtype)
	if err != nil {
		return nil, err
	}
	return d.stack.Policy().Explain(addr, name, t), nil
}

// NewLogger returns the slog logger of the [log] section, writing to w.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
