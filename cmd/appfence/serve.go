package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists/remote"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
	"github.com/appfence/appfence/reload"
	"github.com/appfence/appfence/resolver"
	"github.com/appfence/appfence/resolver/cache"
	"github.com/appfence/appfence/resolver/upstream"
)

// shutdownGrace bounds how long serve waits for queries in flight at exit.
const shutdownGrace = 10 * time.Second

func serve(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := policy.LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "appfence: %v\n", err)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	m := metrics.New(buildVersion())
	// life is the daemon's lifetime, the parent of every query's context:
	// not ctx, whose end (a signal) starts the shutdown, but its end, when
	// the queries in flight have had shutdownGrace to finish.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	d := &daemon{ctx: life, log: log, metrics: m}
	sd := notifier{log: log}
	rl := reload.New(reload.Options{Path: *cfgPath, Install: d.install, Metrics: m, Log: log,
		Downloader: &remote.Downloader{UserAgent: "appfence/" + buildVersion()},
		Reloading:  sd.reloading, Reloaded: sd.reloaded})
	p, err := rl.Load()
	if err != nil {
		fmt.Fprintf(stderr, "appfence: %v\n", err)
		return 1
	}
	defer d.closeObservers() // after the queries in flight are answered

	srv := resolver.NewServer(d.handler, log)
	transport := metrics.NewTransport(m.Registry)
	srv.CountTransports(transport)
	if err := srv.Start(life, p.Config.Server); err != nil {
		log.Error("start", "err", err)
		return 1
	}
	tlsSrv := resolver.NewTLSServer(srv, transport, log)
	if err := tlsSrv.Start(life, p.Config.Server.TLS); err != nil {
		log.Error("start encrypted listeners", "err", err)
		srv.Shutdown(context.Background())
		return 1
	}
	d.listening.Store(true)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var httpErr <-chan error
	if l := p.Config.Metrics.Listen; l != "" {
		ep := &metrics.Endpoints{Metrics: m, Ready: d.ready, Upstream: d.upstreamHealth, Explain: d.explain, Token: d.bearerToken}
		if _, httpErr, err = ep.Serve(ctx, l, log); err != nil {
			log.Error("metrics", "err", err)
			srv.Shutdown(context.Background())
			return 1
		}
	}
	log.Info("appfence started", "version", buildVersion(), "config", p.Config.File,
		"apps", len(p.Set.Apps), "groups", len(p.Groups))
	// Every socket is bound and the policy loaded: systemd may start the
	// units ordered after this one (nss-lookup.target).
	sd.ready("serving")
	go sd.watchdog(ctx, d.ready)

	rctx, stopReloads := context.WithCancel(ctx)
	reloads := make(chan struct{})
	go func() {
		rl.Run(rctx)
		close(reloads)
	}()
	hup, usr1 := make(chan os.Signal, 1), make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(hup)
	defer signal.Stop(usr1)
	code := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			rl.Trigger("SIGHUP")
		case <-usr1:
			d.reopenQueryLog()
		case err := <-srv.Err():
			log.Error("dns server failed", "err", err)
			code = 1
			break loop
		case err := <-tlsSrv.Err():
			log.Error("encrypted dns server failed", "err", err)
			code = 1
			break loop
		case err := <-httpErr:
			if err != nil {
				log.Error("metrics server failed", "err", err)
				code = 1
				break loop
			}
		}
	}
	sd.stopping()
	stopReloads()
	<-reloads
	log.Info("shutting down: finishing queries in flight")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if err := tlsSrv.Shutdown(sctx); err != nil {
		log.Warn("shutdown of the encrypted listeners", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	d.handler.State().Upstream.Close()
	log.Info("stopped")
	return code
}

// daemon is the running resolver's state that outlives one policy.
type daemon struct {
	ctx       context.Context // its lifetime
	log       *slog.Logger
	metrics   *metrics.Metrics
	handler   *resolver.Handler
	cache     *cache.Cache
	listening atomic.Bool
	querylog  *querylog.Logger // nil when off
	// obsMu guards the query log and dnstap fields: reloads set them, and
	// SIGUSR1 reopens the query log.
	obsMu sync.Mutex
	// queryLogPath is the configured query log, which querylog may not be
	// when it could not be opened.
	queryLogPath   string
	dnstap         *dnstap.Writer // nil when off
	dnstapSettings dnstapSettings
	token          atomic.Pointer[tokenState]
}

// tokenState is the token of metrics.bearer_token_file as last read.
type tokenState struct {
	token []byte // nil: the endpoints are open
	err   error  // the file could not be read: the endpoints refuse all
}

// newState builds what queries need from a policy.
func newState(ctx context.Context, p *policy.Policy, m *metrics.Metrics, log *slog.Logger) (*resolver.State, error) {
	router, err := upstream.NewRouter(ctx, p.Config.Upstream, m, upstream.WithLogger(log))
	if err != nil {
		return nil, err
	}
	return &resolver.State{Policy: p, Upstream: router}, nil
}

// install builds what queries need from p and swaps it in (the reloader
// calls it with a policy built and validated completely). Queries in
// flight finish with the state they started with.
func (d *daemon) install(p *policy.Policy) error {
	st, err := newState(d.ctx, p, d.metrics, d.log)
	if err != nil {
		return err
	}
	d.loadToken(p.Config.Metrics.BearerTokenFile)
	if d.handler == nil {
		// The cache is made once: reloads swap the handler's state and keep it.
		d.cache = cache.New(d.ctx, p.Config.Cache, d.metrics)
		d.handler = resolver.NewHandler(d.ctx, st, d.cache, d.metrics, d.log)
		d.setQueryLog(p.Config.Log.QueryLog)
		d.setDnstap(p.Config.Log)
		return nil
	}
	old := d.handler.Swap(st)
	// Stop the old upstreams' probers; its queries in flight finish.
	old.Upstream.Close()
	d.cache.Configure(p.Config.Cache)
	if !slices.Equal(old.Policy.Config.Server.Listen, p.Config.Server.Listen) {
		d.log.Warn("server.listen changed: restart appfence to listen on the new addresses")
	}
	d.setQueryLog(p.Config.Log.QueryLog)
	d.setDnstap(p.Config.Log)
	return nil
}

// loadToken reads the bearer token of the HTTP endpoints from file ("" is
// none). A token that cannot be read closes the protected endpoints rather
// than opening them.
func (d *daemon) loadToken(file string) {
	t := &tokenState{}
	if file != "" {
		t.token, t.err = config.ReadTokenFile(file)
		if t.err != nil {
			d.log.Error("metrics.bearer_token_file: /metrics, /explain and /readyz?verbose refuse every request", "err", t.err)
		}
	}
	d.token.Store(t)
}

// bearerToken is metrics.Endpoints.Token.
func (d *daemon) bearerToken() ([]byte, error) {
	t := d.token.Load()
	if t == nil {
		return nil, nil
	}
	return t.token, t.err
}

// ready is /readyz: listening and a policy loaded. Upstream health never
// makes a replica unready (SPEC, Readiness): it is d.upstreamHealth.
func (d *daemon) ready() error {
	if !d.listening.Load() {
		return errors.New("not listening yet")
	}
	st := d.handler.State()
	if st == nil || st.Policy == nil {
		return errors.New("no policy loaded")
	}
	return nil
}

// upstreamHealth is the upstream line of /readyz?verbose.
func (d *daemon) upstreamHealth() error {
	st := d.handler.State()
	if st == nil {
		return errors.New("no policy loaded")
	}
	return upstreamReady(st.Upstream)
}

func (d *daemon) explain(client, name, qtype string) (any, error) {
	addr, err := netip.ParseAddr(client)
	if err != nil {
		return nil, fmt.Errorf("client: %q is not an IP address", client)
	}
	if name == "" {
		return nil, errors.New("name: missing")
	}
	t, err := parseType(qtype)
	if err != nil {
		return nil, err
	}
	return d.handler.State().Policy.Explain(addr, name, t), nil
}

// parseType parses a query type mnemonic ("A", "https") or "TYPE65";
// "" is A.
func parseType(s string) (uint16, error) {
	if s == "" {
		return dns.TypeA, nil
	}
	if t, ok := dns.StringToType[strings.ToUpper(s)]; ok {
		return t, nil
	}
	var n uint16
	if _, err := fmt.Sscanf(strings.ToUpper(s), "TYPE%d", &n); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("type: %q is not a DNS type", s)
}

// newLogger returns the slog logger of the [log] section.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
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
