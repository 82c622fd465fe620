package resolver

import "sync/atomic"

// places is a counting semaphore that never waits: what is beyond its
// bound is refused at once (and answered SERVFAIL or dropped by the
// caller) rather than queued.
type places struct {
	n, max atomic.Int64
}

// take takes a place and reports whether there was one.
func (p *places) take() bool {
	if p.n.Add(1) > p.max.Load() {
		p.n.Add(-1)
		return false
	}
	return true
}

// give gives back a place taken.
func (p *places) give() { p.n.Add(-1) }
