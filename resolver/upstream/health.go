package upstream

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/dnswire"
)

// health is what a Router knows of a server's availability. A server is up
// until attempts for settings.failAfter distinct names fail in a row (an
// error or a timeout; any answer, whatever its rcode, counts as success):
// repeated failures for one name its authoritative servers never answer
// judge that name, not the server. Then it is down and a
// prober asks it "." NS with exponential backoff until it answers. A
// query's answer from a down server brings it up too.
type health struct {
	down    atomic.Bool
	probing atomic.Bool // a prober is running for the server

	mu       sync.Mutex
	failures []string // distinct names of the failed attempts since the last answer
}

// failedFor records a failed attempt for name and returns the number of
// distinct names that failed since the last answer.
func (h *health) failedFor(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.failures {
		if dnsname.Equal(n, name) {
			return len(h.failures)
		}
	}
	h.failures = append(h.failures, name)
	return len(h.failures)
}

// reset forgets the failures: the server answered.
func (h *health) reset() {
	h.mu.Lock()
	h.failures = h.failures[:0]
	h.mu.Unlock()
}

func (h *health) isDown() bool { return h.down.Load() }

// monitor records what attempts teach (metrics, health, latency) and runs a
// Router's background work: probers of down servers and the measuring
// queries of the fastest and parallel strategies. close stops it all.
type monitor struct {
	st      *settings
	timeout time.Duration
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// newMonitor returns the monitor of a Router; its background work ends
// when ctx is done or at close.
func newMonitor(ctx context.Context, st *settings, timeout time.Duration) *monitor {
	ctx, cancel := context.WithCancel(ctx)
	return &monitor{st: st, timeout: timeout, log: st.log, ctx: ctx, cancel: cancel}
}

// background runs f in a goroutine that close waits for; f's ctx is done
// when close is called. It reports false, without running f, after close.
func (m *monitor) background(f func(ctx context.Context)) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(m.ctx)
	}()
	return true
}

// close stops the background work and waits for it.
func (m *monitor) close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// observe records one attempt with a server: its metrics, health and
// latency. An error or an answer that sends the query on (SERVFAIL,
// REFUSED) counts as a whole timeout in the latency, so a failing server
// stops looking fast.
func (m *monitor) observe(e *endpoint, name string, resp *dns.Msg, err error, took time.Duration) {
	if err != nil {
		e.metrics.failed(err)
		e.latency.observe(m.timeout)
		m.failed(e, name, err)
		return
	}
	e.metrics.answered(resp.Rcode, took)
	if good(resp, nil) {
		e.latency.observe(took)
	} else {
		e.latency.observe(m.timeout)
	}
	m.answered(e, "answered a query")
}

// failed counts a failed attempt for name; the one that makes
// settings.failAfter distinct names marks the server down and starts its
// prober.
func (m *monitor) failed(e *endpoint, name string, err error) {
	n := e.failedFor(name)
	if n < m.st.failAfter || !e.down.CompareAndSwap(false, true) {
		return
	}
	e.metrics.setUp(false)
	m.log.Warn("upstream marked down", "upstream", e.Name(), "failures", n, "err", err)
	if e.probing.CompareAndSwap(false, true) {
		if !m.background(func(ctx context.Context) { m.probe(ctx, e) }) {
			e.probing.Store(false)
		}
	}
}

// answered records a successful exchange; a down server is up again.
func (m *monitor) answered(e *endpoint, how string) {
	e.reset()
	if e.down.Load() && e.down.CompareAndSwap(true, false) {
		e.metrics.setUp(true)
		m.log.Info("upstream up again", "upstream", e.Name(), "how", how)
	}
}

// probe asks a down server until it answers, waiting settings.probeMin
// before the first probe and twice as long after each failure, up to
// settings.probeMax.
func (m *monitor) probe(ctx context.Context, e *endpoint) {
	wait := m.st.probeMin
	for {
		t := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			e.probing.Store(false)
			return
		case <-t.C:
		}
		if e.isDown() {
			if err := m.probeOnce(ctx, e); err != nil {
				m.log.Debug("upstream probe failed", "upstream", e.Name(), "err", err)
				wait = min(2*wait, m.st.probeMax)
				continue
			}
			m.answered(e, "answered a probe")
		}
		// Up: stop, unless it went down again before this prober let go.
		e.probing.Store(false)
		if !e.isDown() || !e.probing.CompareAndSwap(false, true) {
			return
		}
		wait = m.st.probeMin
	}
}

// probeOnce asks the server for the root's NS records: any answer to the
// question, whatever its rcode, shows the server is reachable and serving.
// Probes are not counted in the request metrics.
func (m *monitor) probeOnce(ctx context.Context, e *endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeNS)
	q.SetEdns0(1232, false)
	resp, err := e.Exchange(ctx, q)
	if err == nil {
		err = checkResponse(q, resp)
	}
	return err
}

// jitter spreads d by ±10% so probers of many servers do not align.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()-0.5)*0.2*float64(d))
}

// endpointMetrics are a server's collectors, resolved once: the per-query
// path does no label lookup for the common cases.
type endpointMetrics struct {
	vec      *collectors // nil: no metrics
	name     string
	up       prometheus.Gauge
	duration prometheus.Observer
	errors   map[string]prometheus.Counter
	rcodes   [dns.RcodeRefused + 1]prometheus.Counter // NOERROR .. REFUSED

	// mismatched counts UDP datagrams that did not answer the query
	// waiting for them (nil without metrics).
	mismatched prometheus.Counter
}

// newEndpointMetrics resolves the collectors of server name and initializes
// every error kind and the common rcodes at zero, so dashboards see them
// before the first event.
func newEndpointMetrics(m *collectors, name string) endpointMetrics {
	em := endpointMetrics{vec: m, name: name}
	if m == nil {
		return em
	}
	em.up = m.up.WithLabelValues(name)
	em.up.Set(1)
	em.duration = m.duration.WithLabelValues(name)
	em.mismatched = m.mismatched.WithLabelValues(name)
	em.errors = make(map[string]prometheus.Counter, len(ErrorKinds))
	for _, k := range ErrorKinds {
		em.errors[k] = m.errors.WithLabelValues(name, k)
	}
	for rc := range em.rcodes {
		em.rcodes[rc] = m.requests.WithLabelValues(name, dnswire.RcodeName(rc))
	}
	return em
}

func (em *endpointMetrics) answered(rcode int, took time.Duration) {
	if em.vec == nil {
		return
	}
	em.duration.Observe(took.Seconds())
	if rcode >= 0 && rcode < len(em.rcodes) {
		em.rcodes[rcode].Inc()
	} else {
		em.vec.requests.WithLabelValues(em.name, dnswire.RcodeName(rcode)).Inc()
	}
}

func (em *endpointMetrics) failed(err error) {
	if em.vec != nil {
		em.errors[ErrorKind(err)].Inc()
	}
}

func (em *endpointMetrics) setUp(up bool) {
	if em.vec == nil {
		return
	}
	if up {
		em.up.Set(1)
	} else {
		em.up.Set(0)
	}
}
