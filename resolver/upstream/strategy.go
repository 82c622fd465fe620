package upstream

import (
	"fmt"
	"sync/atomic"
	"time"
)

// strategy is how a pool orders its servers for a query.
type strategy int

const (
	// strategyFailover asks the servers in the configured order.
	strategyFailover strategy = iota
	// strategyRoundRobin starts each query at the next server in turn.
	strategyRoundRobin
	// strategyFastest asks the server with the lowest smoothed latency
	// first; one query in settings.probeEvery also measures another.
	strategyFastest
	// strategyParallel asks the two fastest at once; the first good answer
	// wins.
	strategyParallel
)

// parseStrategy maps upstream.strategy to a strategy.
func parseStrategy(s string) (strategy, error) {
	switch s {
	case "failover", "":
		return strategyFailover, nil
	case "round_robin":
		return strategyRoundRobin, nil
	case "fastest":
		return strategyFastest, nil
	case "parallel":
		return strategyParallel, nil
	}
	return 0, fmt.Errorf("upstream.strategy: unknown strategy %q", s)
}

// order appends the pool's servers to dst in the order query n asks them:
// the strategy's order, then servers marked down moved to the end (still
// asked when every server is down: an answer from a server marked down is
// better than none).
func (p *Pool) order(dst []*endpoint, n uint64) []*endpoint {
	dst = append(dst, p.endpoints...)
	switch p.strategy {
	case strategyRoundRobin:
		k := int(n % uint64(len(dst)))
		rotate(dst, k)
	case strategyFastest, strategyParallel:
		// Insertion sort: pools are small, and it is stable, so equal
		// latencies keep the configured order. Servers never measured
		// (latency 0) come first, so each gets measured.
		for i := 1; i < len(dst); i++ {
			for j := i; j > 0 && dst[j].latency.get() < dst[j-1].latency.get(); j-- {
				dst[j], dst[j-1] = dst[j-1], dst[j]
			}
		}
	}
	// Stable partition: up first, down after.
	up := 0
	for i := range dst {
		if e := dst[i]; !e.isDown() {
			copy(dst[up+1:i+1], dst[up:i])
			dst[up] = e
			up++
		}
	}
	return dst
}

// rotate rotates s left by k.
func rotate(s []*endpoint, k int) {
	if k == 0 {
		return
	}
	reverse(s[:k])
	reverse(s[k:])
	reverse(s)
}

func reverse(s []*endpoint) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// latency is a server's smoothed round-trip time: an exponentially weighted
// moving average giving each new sample a weight of 1/4. 0 means never
// measured.
type latency struct{ ns atomic.Int64 }

func (l *latency) get() time.Duration { return time.Duration(l.ns.Load()) }

func (l *latency) observe(d time.Duration) {
	sample := max(int64(d), 1)
	for {
		old := l.ns.Load()
		v := sample
		if old != 0 {
			v = max(old+(sample-old)/4, 1)
		}
		if l.ns.CompareAndSwap(old, v) {
			return
		}
	}
}
