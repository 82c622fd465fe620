package cache

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// Fetch asks the upstream for the answer to a key's question.
type Fetch func(ctx context.Context) (*dns.Msg, error)

// Serve-stale timers of RFC 8767, section 5.
const (
	// staleAnswerWait is the client response timer: how long a query with
	// a stale entry waits for the upstream before it is answered stale.
	// The resolution goes on and refreshes the entry if it succeeds.
	staleAnswerWait = 1800 * time.Millisecond
	// failureRecheck is how long after a failed refresh queries are
	// answered stale at once, without asking the upstream again.
	failureRecheck = 30 * time.Second
)

// Answer is the outcome of Resolve. Exactly one of Entry and Msg is set,
// or neither when Err is.
type Answer struct {
	// Entry is the answer to serve: just stored (a miss), or an expired
	// entry when Stale.
	Entry *Entry
	Stale bool
	// Msg is the upstream's answer when it could not be cached (SERVFAIL,
	// truncated, ...). Other queries share it: copy it before changing it.
	Msg *dns.Msg
	// Source is, on a miss stored as Entry, the upstream's answer Entry was
	// made of, so that it need not be unpacked again to be inspected. Other
	// queries share it: it is read only.
	Source *dns.Msg
	// Err is why there is no answer: the upstream failed, or ctx ended.
	Err error
}

// Resolve answers a query that found no fresh entry for k: it joins or
// starts the resolution of k (one upstream query however many ask at
// once), stores a cacheable answer, and counts a miss. stale is the
// expired entry Lookup returned, or nil: it is served instead, counted as
// stale, when the upstream fails (an error, SERVFAIL or REFUSED), when it
// has not answered within staleAnswerWait, when a refresh of it failed less
// than failureRecheck ago, or when ctx ends first. Without a stale entry,
// Resolve returns when the resolution ends or ctx does.
func (c *Cache) Resolve(ctx context.Context, k Key, stale *Entry, fetch Fetch) Answer {
	if stale != nil && stale.recentlyFailed(c.Now()) {
		count(c.stale)
		return Answer{Entry: stale, Stale: true}
	}
	f := c.flights.start(k, fetch)
	var timeout <-chan time.Time
	if stale != nil {
		t := time.NewTimer(staleAnswerWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.done:
		r := f.res
		if stale != nil && failed(r) {
			stale.failedAt.Store(c.Now().UnixNano())
			count(c.stale)
			return Answer{Entry: stale, Stale: true}
		}
		count(c.misses)
		return Answer{Entry: r.entry, Msg: r.msg, Source: r.source, Err: r.err}
	case <-timeout:
		count(c.stale)
		return Answer{Entry: stale, Stale: true}
	case <-ctx.Done():
		if stale != nil {
			count(c.stale)
			return Answer{Entry: stale, Stale: true}
		}
		count(c.misses)
		return Answer{Err: ctx.Err()}
	}
}

// fill runs one resolution of k and stores its answer when it can be
// cached. It runs for every query that waits for it, and for the cache:
// within the cache's lifetime, not that of the query that started it.
func (c *Cache) fill(k Key, fetch Fetch) result {
	m, err := fetch(c.ctx)
	if err != nil {
		return result{err: err}
	}
	s := c.settings.Load()
	if s.Size == 0 {
		return result{msg: m}
	}
	pk := c.packers.Get().(*packer)
	e, ok := newEntryWith(pk, k, m, s, c.Now())
	c.packers.Put(pk)
	if !ok {
		return result{msg: m}
	}
	c.store(k, e)
	return result{entry: e, source: m}
}

// failed reports whether a resolution failed in the sense of RFC 8767: no
// answer, or SERVFAIL or REFUSED from every upstream.
func failed(r result) bool {
	if r.err != nil {
		return true
	}
	return r.entry == nil && r.msg != nil && (r.msg.Rcode == dns.RcodeServerFailure || r.msg.Rcode == dns.RcodeRefused)
}

// recentlyFailed reports whether a refresh of e failed less than
// failureRecheck before now.
func (e *Entry) recentlyFailed(now time.Time) bool {
	at := e.failedAt.Load()
	return at != 0 && now.Sub(time.Unix(0, at)) < failureRecheck
}
