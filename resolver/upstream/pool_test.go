package upstream

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

// twoUpstreams starts two upstreams that answer www.example.test with
// different addresses (192.0.2.1 and 192.0.2.2), to tell who answered.
func twoUpstreams(t *testing.T) (first, second *dnstest.Upstream) {
	return dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.1"),
		dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.2")
}

func TestFailoverPastDeadUpstream(t *testing.T) {
	dead, live := twoUpstreams(t)
	live.Add(t, "w2.example.test. 300 IN A 192.0.2.2")
	dead.SetSilent(true)
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{dead.Addr, live.Addr})
	names := []string{"www.example.test.", "w2.example.test."}
	for i := 1; i <= 4; i++ {
		if ip := answerIP(mustExchange(t, r, names[i%2])); ip != "192.0.2.2" {
			t.Fatalf("query %d: answer %s, want the live upstream's", i, ip)
		}
	}
	// Failures for two names mark the dead one down (failAfter = 2 in
	// tests): the next queries skip it.
	if n := dead.Total(); n != 2 {
		t.Errorf("dead upstream asked %d times, want 2 (then skipped while down)", n)
	}
	if n := live.Total(); n != 4 {
		t.Errorf("live upstream asked %d times, want 4", n)
	}
	if v := metric(t, m, "appfence_upstream_up", "upstream", dead.Addr); v != 0 {
		t.Errorf("appfence_upstream_up{dead} = %v, want 0", v)
	}
	if v := metric(t, m, "appfence_upstream_errors_total", "upstream", dead.Addr, "kind", "timeout"); v != 2 {
		t.Errorf("appfence_upstream_errors_total{dead,timeout} = %v, want 2", v)
	}
	if !r.Up() {
		t.Error("Up() = false with the live upstream up")
	}
}

func TestFailoverOnSERVFAIL(t *testing.T) {
	broken, good := twoUpstreams(t)
	broken.SetRcode(dns.RcodeServerFailure)
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{broken.Addr, good.Addr})
	if ip := answerIP(mustExchange(t, r, "www.example.test.")); ip != "192.0.2.2" {
		t.Errorf("answer %s, want the second upstream's after SERVFAIL", ip)
	}
	if v := metric(t, m, "appfence_upstream_requests_total", "upstream", broken.Addr, "rcode", "SERVFAIL"); v != 1 {
		t.Errorf("requests_total{SERVFAIL} = %v, want 1", v)
	}
	// Every server SERVFAIL: the answer is SERVFAIL, not an error.
	good.SetRcode(dns.RcodeServerFailure)
	resp, err := r.Exchange(context.Background(), query("www.example.test."), "www.example.test")
	if err != nil || resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("all SERVFAIL: %v, %v; want the SERVFAIL answer", resp, err)
	}
}

func TestAllDownStillTried(t *testing.T) {
	a, b := twoUpstreams(t)
	a.SetSilent(true)
	b.SetSilent(true)
	cfg := upstreamConfig(t, "failover", a.Addr, b.Addr)
	cfg.Timeout = 100 * time.Millisecond
	// Probes far apart: this test watches queries, not probes.
	r := routerFor(t, nil, cfg, func(s *settings) { s.probeMin, s.probeMax = time.Hour, time.Hour })
	for _, name := range []string{"www.example.test.", "a.example.test."} {
		if _, err := r.Exchange(context.Background(), query(name), name); err == nil {
			t.Fatal("silent upstreams answered")
		}
	}
	if r.Up() {
		t.Fatal("Up() = true with every upstream down")
	}
	// Every server is down: they are still asked, in order.
	b.SetSilent(false)
	if ip := answerIP(mustExchange(t, r, "www.example.test.")); ip != "192.0.2.2" {
		t.Errorf("answer %s, want b's", ip)
	}
	if a.Total() != 3 || b.Total() != 3 {
		t.Errorf("a asked %d, b %d times; want 3 each", a.Total(), b.Total())
	}
	// b's answer brought it up without waiting for a probe.
	if !r.Up() || r.def.endpoints[1].isDown() {
		t.Error("b still down after answering")
	}
}

func TestRoundRobinSpreadsQueries(t *testing.T) {
	ups := []*dnstest.Upstream{
		dnstest.NewUpstream(t, records...), dnstest.NewUpstream(t, records...), dnstest.NewUpstream(t, records...),
	}
	r := newRouter(t, nil, "round_robin", []string{ups[0].Addr, ups[1].Addr, ups[2].Addr})
	for range 30 {
		mustExchange(t, r, "www.example.test.")
	}
	for i, u := range ups {
		if n := u.Total(); n != 10 {
			t.Errorf("upstream %d got %d of 30 queries, want 10", i, n)
		}
	}
}

func TestRoundRobinFailsOverToTheNext(t *testing.T) {
	dead, live := twoUpstreams(t)
	dead.SetSilent(true)
	r := newRouter(t, nil, "round_robin", []string{dead.Addr, live.Addr})
	for range 6 {
		if ip := answerIP(mustExchange(t, r, "www.example.test.")); ip != "192.0.2.2" {
			t.Fatalf("answer %s, want the live upstream's", ip)
		}
	}
}

func TestFastestSettlesOnTheFaster(t *testing.T) {
	slow, fast := twoUpstreams(t)
	slow.SetDelay(20 * time.Millisecond)
	r := newRouter(t, nil, "fastest", []string{slow.Addr, fast.Addr})
	const n = 100
	for range n {
		mustExchange(t, r, "www.example.test.")
	}
	// Let the background measures finish.
	waitFor(t, "background measures", func() bool { return len(ourGoroutines()) == 0 })
	if f := fast.Total(); f < n-2 {
		t.Errorf("fast upstream answered %d of %d queries", f, n)
	}
	// Slow: the first query (nothing measured yet, configured order) and
	// one measure every probeEvery (20) queries.
	if s := slow.Total(); s < 1+n/20-1 || s > 1+n/20+1 {
		t.Errorf("slow upstream got %d queries, want about %d (first query + measures)", s, 1+n/20)
	}
	if ls, lf := r.def.endpoints[0].latency.get(), r.def.endpoints[1].latency.get(); ls <= lf {
		t.Errorf("smoothed latency slow %s, fast %s", ls, lf)
	}
}

func TestFastestMovesAwayFromAServerThatSlowsDown(t *testing.T) {
	a, b := twoUpstreams(t)
	r := newRouter(t, nil, "fastest", []string{a.Addr, b.Addr})
	for range 10 {
		mustExchange(t, r, "www.example.test.")
	}
	first := r.def.order(nil, 0)[0]
	slowed := a
	if first == r.def.endpoints[1] {
		slowed = b
	}
	slowed.SetDelay(30 * time.Millisecond)
	for range 20 {
		mustExchange(t, r, "www.example.test.")
	}
	if now := r.def.order(nil, 0)[0]; now == first {
		t.Errorf("still asking %s first after it slowed down", first.Name())
	}
}

func TestParallelAnswersFromTheFirst(t *testing.T) {
	slow, fast := twoUpstreams(t)
	slow.SetDelay(400 * time.Millisecond)
	fast.SetDelay(50 * time.Millisecond) // so the slow one surely got its query too
	third := dnstest.NewUpstream(t, records...)
	m := metrics.New("test")
	// Measures off: this test counts every query each server gets.
	r := newRouter(t, m, "parallel", []string{slow.Addr, fast.Addr, third.Addr}, func(s *settings) { s.probeEvery = 0 })
	// Make slow and fast the two best: the third looks slow.
	r.def.endpoints[2].latency.observe(time.Second)
	start := time.Now()
	a := mustExchange(t, r, "www.example.test.")
	took := time.Since(start)
	if answerIP(a) != "192.0.2.2" {
		t.Errorf("answer %s, want the fast upstream's", answerIP(a))
	}
	if took >= 300*time.Millisecond {
		t.Errorf("answered after %s: the slow upstream was waited for", took)
	}
	if slow.Total() != 1 || fast.Total() != 1 || third.Total() != 0 {
		t.Errorf("queries: slow %d, fast %d, third %d; want 1, 1, 0", slow.Total(), fast.Total(), third.Total())
	}
	// The loser was cancelled: no goroutine left, and no error counted
	// against it.
	waitFor(t, "the losing attempt to end", func() bool { return len(ourGoroutines()) == 0 })
	for _, k := range ErrorKinds {
		if v := metric(t, m, "appfence_upstream_errors_total", "upstream", slow.Addr, "kind", k); v != 0 {
			t.Errorf("slow upstream: errors_total{kind=%s} = %v, want 0 (it was cancelled, not failing)", k, v)
		}
	}
	if e := r.def.endpoints[0]; e.failedFor("probe.invalid.") != 1 {
		t.Error("the cancelled attempt counted as a failure")
	}
}

func TestParallelFallsBackWhenBothFail(t *testing.T) {
	a, b := twoUpstreams(t)
	a.SetRcode(dns.RcodeServerFailure)
	b.SetSilent(true)
	c := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.3")
	r := newRouter(t, nil, "parallel", []string{a.Addr, b.Addr, c.Addr})
	if ip := answerIP(mustExchange(t, r, "www.example.test.")); ip != "192.0.2.3" {
		t.Errorf("answer %s, want the third upstream's after both raced ones failed", ip)
	}
}

func TestOrder(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name     string
		strategy strategy
		latency  []time.Duration // per endpoint, 0 = never measured
		down     []bool
		n        uint64
		want     []int
	}{
		{"failover", strategyFailover, nil, nil, 0, []int{0, 1, 2}},
		{"failover skips down", strategyFailover, nil, []bool{true, false, false}, 0, []int{1, 2, 0}},
		{"failover all down", strategyFailover, nil, []bool{true, true, true}, 0, []int{0, 1, 2}},
		{"round robin 0", strategyRoundRobin, nil, nil, 0, []int{0, 1, 2}},
		{"round robin 1", strategyRoundRobin, nil, nil, 1, []int{1, 2, 0}},
		{"round robin 5", strategyRoundRobin, nil, nil, 5, []int{2, 0, 1}},
		{"round robin down", strategyRoundRobin, nil, []bool{false, true, false}, 1, []int{2, 0, 1}},
		{"fastest", strategyFastest, []time.Duration{5 * ms, 1 * ms, 3 * ms}, nil, 0, []int{1, 2, 0}},
		{"fastest unmeasured first", strategyFastest, []time.Duration{5 * ms, 1 * ms, 0}, nil, 0, []int{2, 1, 0}},
		{"fastest ties keep order", strategyFastest, []time.Duration{2 * ms, 1 * ms, 1 * ms}, nil, 0, []int{1, 2, 0}},
		{"fastest down last", strategyFastest, []time.Duration{5 * ms, 1 * ms, 3 * ms}, []bool{false, true, false}, 0, []int{2, 0, 1}},
		{"parallel", strategyParallel, []time.Duration{5 * ms, 1 * ms, 3 * ms}, nil, 0, []int{1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Pool{strategy: tt.strategy}
			for i := range 3 {
				e := &endpoint{}
				if tt.latency != nil {
					e.latency.ns.Store(int64(tt.latency[i]))
				}
				if tt.down != nil {
					e.down.Store(tt.down[i])
				}
				p.endpoints = append(p.endpoints, e)
			}
			got := p.order(nil, tt.n)
			for i, w := range tt.want {
				if got[i] != p.endpoints[w] {
					t.Errorf("position %d: endpoint %d, want %d", i, index(p.endpoints, got[i]), w)
				}
			}
		})
	}
}

func index(s []*endpoint, e *endpoint) int {
	for i, o := range s {
		if o == e {
			return i
		}
	}
	return -1
}

// TestFailoverOnErrorRcodes: FORMERR, NOTIMP and REFUSED (with an OPT
// record: the server knows EDNS) send the query to the next server, as
// SERVFAIL does; they count as answers for health.
func TestFailoverOnErrorRcodes(t *testing.T) {
	for _, rcode := range []int{dns.RcodeFormatError, dns.RcodeNotImplemented, dns.RcodeRefused} {
		t.Run(dns.RcodeToString[rcode], func(t *testing.T) {
			broken, good := twoUpstreams(t)
			broken.SetRcode(rcode)
			m := metrics.New("test")
			r := newRouter(t, m, "failover", []string{broken.Addr, good.Addr})
			if ip := answerIP(mustExchange(t, r, "www.example.test.")); ip != "192.0.2.2" {
				t.Errorf("answer %s, want the second upstream's", ip)
			}
			if n := broken.Total(); n != 1 {
				t.Errorf("first upstream asked %d times, want once (no retry without EDNS: its answer had OPT)", n)
			}
			if v := metric(t, m, "appfence_upstream_up", "upstream", broken.Addr); v != 1 {
				t.Errorf("appfence_upstream_up = %v: an answer is no failure", v)
			}
		})
	}
}
