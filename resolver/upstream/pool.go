package upstream

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// endpoint is one upstream server of a Router with what the Router learns
// about it: its health and its smoothed latency. A server listed in several
// pools (the default one and a forward zone) is one endpoint.
type endpoint struct {
	Server
	// trustAD keeps the server's AD bit (upstream.trust_ad); it is cleared
	// otherwise.
	trustAD bool
	health
	latency latency
	metrics endpointMetrics
}

// Pool asks a set of servers according to a strategy. Each attempt with one
// server is bounded by the pool's timeout.
type Pool struct {
	endpoints []*endpoint
	strategy  strategy
	timeout   time.Duration
	mon       *monitor
	queries   atomic.Uint64 // queries asked: round robin turns, occasional measures
}

// Exchange asks the pool's servers in the strategy's order until one gives a
// good answer: the next server is asked when one fails, times out, or
// answers SERVFAIL or REFUSED. Servers marked down are asked last. When
// every server fails, the last SERVFAIL or REFUSED answer is returned if
// there was one, else the last error.
func (p *Pool) Exchange(ctx context.Context, req *dns.Msg) (*dns.Msg, error) {
	return p.exchange(ctx, req, time.Time{})
}

// exchange is Exchange, ending at budget too unless it is zero.
func (p *Pool) exchange(ctx context.Context, req *dns.Msg, budget time.Time) (*dns.Msg, error) {
	var buf [8]*endpoint
	n := p.queries.Add(1) - 1
	order := p.order(buf[:0], n)
	var last outcome
	// Race the two best, unless only the first is up: then asking a down
	// server at once would only add load.
	if p.strategy == strategyParallel && len(order) > 1 && (!order[1].isDown() || order[0].isDown()) {
		resp, err := p.race(ctx, req, order[0], order[1], budget)
		if good(resp, err) {
			p.measureOther(req, order[2:], n)
			return resp, nil
		}
		last.note(resp, err)
		order = order[2:]
	} else if p.strategy == strategyFastest && len(order) > 1 {
		p.measureOther(req, order[1:], n)
	}
	for _, e := range order {
		if err := spent(ctx, budget); err != nil {
			last.note(nil, err)
			break
		}
		resp, err := p.attempt(ctx, e, req, budget)
		if good(resp, err) {
			return resp, nil
		}
		last.note(resp, err)
	}
	return last.result()
}

// good reports whether an attempt ends the query: an answer other than
// SERVFAIL, REFUSED, FORMERR and NOTIMP, which another server may do
// better on.
func good(resp *dns.Msg, err error) bool {
	if err != nil {
		return false
	}
	switch resp.Rcode {
	case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented:
		return false
	}
	return true
}

// outcome keeps what the failed attempts of one query returned.
type outcome struct {
	resp *dns.Msg
	err  error
}

func (o *outcome) note(resp *dns.Msg, err error) {
	if err != nil {
		o.err = err
	} else {
		o.resp = resp
	}
}

func (o *outcome) result() (*dns.Msg, error) {
	if o.resp != nil {
		return o.resp, nil
	}
	if o.err == nil {
		return nil, ErrNoServers
	}
	return nil, o.err
}

// spent returns ctx's error, or context.DeadlineExceeded once budget (unless
// zero) has passed, or nil.
func spent(ctx context.Context, budget time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !budget.IsZero() && !time.Now().Before(budget) {
		return context.DeadlineExceeded
	}
	return nil
}

// deadliner is a Server that can bound an exchange by a deadline value,
// without the timer of a context.WithDeadline: plain DNS over UDP, which
// most misses take. It returns context.DeadlineExceeded at the deadline.
type deadliner interface {
	exchangeBy(ctx context.Context, req *dns.Msg, deadline time.Time) (*dns.Msg, error)
}

// exchangeBy asks s, bounded by ctx and by deadline.
func exchangeBy(ctx context.Context, s Server, req *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	if d, ok := s.(deadliner); ok {
		return d.exchangeBy(ctx, req, deadline)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return s.Exchange(ctx, req)
}

// attempt asks one server, bounded by the pool's timeout, checks that the
// answer belongs to the question, sanitizes it, and records what it
// learnt: metrics, health and latency. A server that answers FORMERR
// without an OPT record to a query with EDNS does not know EDNS: it is
// asked once more without (RFC 6891 7), within the same timeout. An
// attempt abandoned by its caller (ctx done: the client's deadline, or the
// other server won a parallel race) records nothing: it says nothing about
// the server.
//
// The attempt also ends at budget, unless it is zero.
func (p *Pool) attempt(ctx context.Context, e *endpoint, req *dns.Msg, budget time.Time) (*dns.Msg, error) {
	start := time.Now()
	deadline := start.Add(p.timeout)
	if !budget.IsZero() && budget.Before(deadline) {
		deadline = budget
	}
	resp, err := exchangeBy(ctx, e.Server, req, deadline)
	if err == nil {
		err = checkResponse(req, resp)
	}
	if err == nil && resp.Rcode == dns.RcodeFormatError && resp.IsEdns0() == nil && req.IsEdns0() != nil {
		plain := withoutEDNS(req)
		if resp, err = exchangeBy(ctx, e.Server, plain, deadline); err == nil {
			err = checkResponse(plain, resp)
		}
	}
	if err == nil {
		sanitize(req, resp, e.trustAD)
	}
	took := time.Since(start)
	if err != nil {
		if cerr := spent(ctx, budget); cerr != nil {
			return nil, fmt.Errorf("upstream %s: %w", e.Name(), cerr)
		}
	}
	var name string
	if len(req.Question) > 0 {
		name = req.Question[0].Name
	}
	p.mon.observe(e, name, resp, err, took)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", e.Name(), err)
	}
	return resp, nil
}

// withoutEDNS returns a copy of req without its OPT record.
func withoutEDNS(req *dns.Msg) *dns.Msg {
	m := req.Copy()
	m.Extra = scrub(m.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeOPT })
	return m
}

// race asks a and b at once; the first good answer wins and the other
// attempt is cancelled. When neither is good, the last outcome is returned.
func (p *Pool) race(ctx context.Context, req *dns.Msg, a, b *endpoint, budget time.Time) (*dns.Msg, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the loser
	results := make(chan outcome, 2)
	for _, e := range [2]*endpoint{a, b} {
		// Each attempt packs its own copy: packing writes the OPT record.
		q := req.Copy()
		go func() {
			resp, err := p.attempt(ctx, e, q, budget)
			results <- outcome{resp, err}
		}()
	}
	var last outcome
	for range 2 {
		r := <-results
		if good(r.resp, r.err) {
			return r.resp, nil
		}
		last.note(r.resp, r.err)
	}
	return last.result()
}

// measureOther keeps the latency of servers the fastest and parallel
// strategies do not ask: on one query in settings.probeEvery, a copy goes in
// the background to one of others that is up (rotating), and its answer
// only feeds the measures.
func (p *Pool) measureOther(req *dns.Msg, others []*endpoint, n uint64) {
	every := p.mon.st.probeEvery
	if len(others) == 0 || every == 0 || n%every != every-1 {
		return
	}
	start := int(n / every)
	for i := range others {
		e := others[(start+i)%len(others)]
		if e.isDown() {
			continue
		}
		q := req.Copy()
		p.mon.background(func(ctx context.Context) { p.attempt(ctx, e, q, time.Time{}) })
		return
	}
}
