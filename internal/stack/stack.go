// Package stack builds what answers queries from a policy, and rebuilds it
// when a reload installs another: the upstream router of each policy, the
// cache and the Handler (made once, kept across reloads), the query log
// and dnstap writers. It is the part of the composition root that the
// reloader installs into; internal/daemon adds the listeners, the reloader
// and the HTTP endpoints around it, and the reload tests use it as the
// daemon does.
//
// It may import config, policy, metrics, querylog, resolver and its
// subpackages; not reload, internal/daemon or the HTTP endpoints, which
// import it.
package stack

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
	"github.com/appfence/appfence/resolver"
	"github.com/appfence/appfence/resolver/cache"
	"github.com/appfence/appfence/resolver/upstream"
)

// Options configure a Stack.
type Options struct {
	// Metrics receives the metrics of everything built; required.
	Metrics *metrics.Metrics
	// Log receives the logs; nil discards them.
	Log *slog.Logger
	// Version is the build version, the default dnstap version.
	Version string
}

// Stack is what answers queries. It is made empty; the first Install
// builds the Handler.
type Stack struct {
	ctx     context.Context
	log     *slog.Logger
	metrics *metrics.Metrics
	version string
	handler *resolver.Handler
	cache   *cache.Cache

	// obsMu guards the query log and dnstap fields: installs set them,
	// and ReopenQueryLog (SIGUSR1) reopens the query log.
	obsMu    sync.Mutex
	querylog *querylog.Logger // nil when off
	// queryLogPath is the configured query log, which querylog may not be
	// when it could not be opened.
	queryLogPath   string
	dnstap         *dnstap.Writer // nil when off
	dnstapSettings dnstapSettings
}

// New returns an empty stack. ctx is its lifetime: the queries that its
// Handler answers, and the upstream queries its cache and routers run in
// the background, end when ctx is done at the latest.
func New(ctx context.Context, opts Options) *Stack {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Stack{ctx: ctx, log: opts.Log, metrics: opts.Metrics, version: opts.Version}
}

// State builds what queries need from a policy: its upstream router,
// whose collectors are registered on m's registry (m may be nil).
func State(ctx context.Context, p *policy.Policy, m *metrics.Metrics, log *slog.Logger) (*resolver.State, error) {
	var reg prometheus.Registerer
	if m != nil {
		reg = m.Registry
	}
	router, err := upstream.NewRouter(ctx, p.Config.Upstream, reg, upstream.WithLogger(log))
	if err != nil {
		return nil, err
	}
	return &resolver.State{Policy: p, Upstream: router}, nil
}

// Install builds what queries need from p and swaps it in (the reloader
// calls it with a policy built and validated completely). Queries in
// flight finish with the state they started with. It is not safe for
// concurrent use: the reloader installs one policy at a time.
func (s *Stack) Install(p *policy.Policy) error {
	st, err := State(s.ctx, p, s.metrics, s.log)
	if err != nil {
		return err
	}
	if s.handler == nil {
		// The cache is made once: reloads swap the handler's state and keep it.
		s.cache = cache.New(s.ctx, p.Config.Cache, s.metrics.Registry)
		s.handler = resolver.NewHandler(s.ctx, st, s.cache, s.metrics, s.log)
	} else {
		old := s.handler.Swap(st)
		// Stop the old upstreams' probers; its queries in flight finish.
		old.Upstream.Close()
		s.cache.Configure(p.Config.Cache)
		if !slices.Equal(old.Policy.Config.Server.Listen, p.Config.Server.Listen) {
			s.log.Warn("server.listen changed: restart appfence to listen on the new addresses")
		}
	}
	s.setQueryLog(p.Config.Log.QueryLog)
	s.setDnstap(p.Config.Log)
	return nil
}

// Handler returns the Handler, nil before the first Install.
func (s *Stack) Handler() *resolver.Handler { return s.handler }

// Cache returns the cache, nil before the first Install.
func (s *Stack) Cache() *cache.Cache { return s.cache }

// Policy returns the policy in use, nil before the first Install.
func (s *Stack) Policy() *policy.Policy {
	if s.handler == nil {
		return nil
	}
	return s.handler.State().Policy
}

// UpstreamHealth fails when every server of the default upstream pool is
// marked down by the health checks.
func (s *Stack) UpstreamHealth() error {
	if s.handler == nil {
		return errors.New("no policy loaded")
	}
	if !s.handler.State().Upstream.Up() {
		return errors.New("every upstream server of the default pool is down")
	}
	return nil
}

// Close closes the query log and the dnstap writer, after the queries in
// flight are answered (what they queued is written), and the upstreams'
// background work.
func (s *Stack) Close() {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	if s.handler == nil {
		return
	}
	if old := s.handler.SetQueryLog(nil); old != nil {
		old.Close()
	}
	if old := s.handler.SetDnstap(nil); old != nil {
		old.Close()
	}
	s.handler.State().Upstream.Close()
}
