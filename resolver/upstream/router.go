package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
)

// Router sends each query to the pool of the most specific forward zone
// that contains its name, or to the default pool: a forward zone's queries
// go to its servers and nowhere else.
type Router struct {
	def       *Pool
	zones     map[string]*Pool // canonical zone -> pool
	endpoints []*endpoint      // every distinct server, in config order
	mon       *monitor
	closeOnce sync.Once
}

// Option adjusts a Router.
type Option func(*settings)

// WithLogger makes the Router log health changes (a server marked down, up
// again) to log.
func WithLogger(log *slog.Logger) Option {
	return func(s *settings) {
		if log != nil {
			s.log = log
		}
	}
}

// settings are a Router's tunables. Tests shorten them.
type settings struct {
	log *slog.Logger
	// failAfter consecutive failed attempts mark a server down.
	failAfter int
	// A down server is probed after probeMin, then twice as long after
	// each failed probe, up to probeMax.
	probeMin, probeMax time.Duration
	// fastest and parallel measure one of the servers they do not ask on
	// one query in probeEvery (0: never).
	probeEvery uint64
	// TCP and TLS connections: closed after streamIdle without traffic, at
	// most streamConns per server before queries are pipelined.
	streamIdle  time.Duration
	streamConns int
	// httpIdle closes DoH connections unused this long.
	httpIdle time.Duration
}

func defaultSettings() settings {
	return settings{
		log:         slog.New(slog.DiscardHandler),
		failAfter:   3,
		probeMin:    time.Second,
		probeMax:    30 * time.Second,
		probeEvery:  20,
		streamIdle:  10 * time.Second,
		streamConns: 4,
		httpIdle:    30 * time.Second,
	}
}

// NewRouter builds the pools of an [upstream] section: the default pool of
// upstream.servers and one per [[upstream.forward]]. A server listed in
// several pools is one server, with one health and one set of connections.
// Its collectors (appfence_upstream_*) are registered on reg, which may be
// nil (no metrics); the Routers of successive reloads share them. Close
// the Router when it is no longer used. ctx is the
// lifetime of its background work (the probers of down servers, the
// measuring queries): it ends when ctx is done, or at Close.
func NewRouter(ctx context.Context, cfg config.Upstream, reg prometheus.Registerer, opts ...Option) (*Router, error) {
	st := defaultSettings()
	for _, o := range opts {
		o(&st)
	}
	strat, err := parseStrategy(cfg.Strategy)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("upstream.timeout: %s: must be more than zero", cfg.Timeout)
	}
	roots, err := rootCAs(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	r := &Router{zones: map[string]*Pool{}, mon: newMonitor(ctx, &st, cfg.Timeout)}
	byName := map[string]*endpoint{}
	newPool := func(servers []config.UpstreamServer) (*Pool, error) {
		p := &Pool{strategy: strat, timeout: cfg.Timeout, mon: r.mon}
		for _, s := range servers {
			e := byName[s.Raw]
			if e == nil {
				srv, err := newServer(s, roots, &st)
				if err != nil {
					return nil, err
				}
				e = &endpoint{Server: srv, trustAD: s.TrustAD}
				byName[s.Raw] = e
				r.endpoints = append(r.endpoints, e)
			}
			p.endpoints = append(p.endpoints, e)
		}
		if len(p.endpoints) == 0 {
			return nil, ErrNoServers
		}
		return p, nil
	}
	if r.def, err = newPool(cfg.Servers); err != nil {
		return nil, err
	}
	for _, f := range cfg.Forward {
		p, err := newPool(f.Servers)
		if err != nil {
			return nil, fmt.Errorf("forward %s: %w", strings.Join(f.Zones, ", "), err)
		}
		for _, z := range f.Zones {
			r.zones[z] = p
		}
	}
	var m *collectors
	if reg != nil {
		m = newCollectors(reg)
		// Drop the servers of a previous Router: a server removed from the
		// config must not stay "down" forever. The previous Router's
		// gauges are detached by this and can no longer be exported.
		m.up.Reset()
	}
	for _, e := range r.endpoints {
		e.metrics = newEndpointMetrics(m, e.Name())
		if p, ok := e.Server.(*plain); ok {
			p.mismatched = e.metrics.mismatched
		}
	}
	return r, nil
}

// Pool returns the pool for a canonical name (lower case, no trailing
// dot): the pool of the longest forward zone that is the name or a parent
// of it, else the default pool.
func (r *Router) Pool(name string) *Pool {
	if len(r.zones) > 0 {
		for s := name; ; {
			if p, ok := r.zones[s]; ok {
				return p
			}
			i := strings.IndexByte(s, '.')
			if i < 0 {
				break
			}
			s = s[i+1:]
		}
	}
	return r.def
}

// Exchange sends req, whose question has the canonical name name, to its
// pool.
func (r *Router) Exchange(ctx context.Context, req *dns.Msg, name string) (*dns.Msg, error) {
	return r.Pool(name).Exchange(ctx, req)
}

// ExchangeWithin is Exchange ending at deadline too: a bound that costs no
// timer of its own, where a context.WithDeadline would make one per query.
// The error at the deadline is context.DeadlineExceeded.
func (r *Router) ExchangeWithin(ctx context.Context, req *dns.Msg, name string, deadline time.Time) (*dns.Msg, error) {
	return r.Pool(name).exchange(ctx, req, deadline)
}

// Up reports whether at least one server of the default pool is up (not
// marked down by failures). It is cheap: readiness checks may call it on
// every request.
func (r *Router) Up() bool {
	for _, e := range r.def.endpoints {
		if !e.isDown() {
			return true
		}
	}
	return false
}

// Close stops the Router's probers and background measures, waits for them,
// and closes idle connections; connections with queries in flight close
// after their last answer. Queries still being answered with the Router
// finish normally. Close is for the Router a reload replaced, and may be
// called more than once.
func (r *Router) Close() {
	r.closeOnce.Do(func() {
		r.mon.close()
		for _, e := range r.endpoints {
			e.CloseIdleConnections()
		}
	})
}
