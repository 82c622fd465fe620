package resolver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
)

// startCached starts the resolver with cacheKeys in its [cache] section and
// the cache on a test clock, over an upstream answering records.
func startCached(t *testing.T, cacheKeys string, records ...string) (*env, *dnstest.Clock) {
	t.Helper()
	up := dnstest.NewUpstream(t, records...)
	clk := dnstest.NewClock()
	cfg := fmt.Sprintf(testConfig, up.Addr, "") + "\n[cache]\n" + cacheKeys + "\n"
	return startEnvClock(t, up, cfg, clk.Now), clk
}

// cacheCount returns appfence_cache_requests_total{result}.
func (e *env) cacheCount(result string) float64 {
	return promtest.Gather(e.t, e.metrics.Registry).Values("appfence_cache_requests_total", "result")[result]
}

func (e *env) cacheEntries() float64 {
	return promtest.Gather(e.t, e.metrics.Registry).Values("appfence_cache_entries")[""]
}

// ttls returns the TTLs of every record of resp but OPT, in order.
func ttls(resp *dns.Msg) []uint32 {
	var out []uint32
	for _, section := range [][]dns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for _, rr := range section {
			if rr.Header().Rrtype != dns.TypeOPT {
				out = append(out, rr.Header().Ttl)
			}
		}
	}
	return out
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCacheAnswersRepeatWithoutUpstream(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	for i, netw := range []string{"udp", "tcp", "udp"} {
		resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.20" {
			t.Fatalf("query %d (%s): %v", i, netw, resp)
		}
	}
	if n := e.upstream.Total(); n != 1 {
		t.Errorf("upstream got %d queries, want 1", n)
	}
	if hit, miss, entries := e.cacheCount("hit"), e.cacheCount("miss"), e.cacheEntries(); hit != 2 || miss != 1 || entries != 1 {
		t.Errorf("hit %v miss %v entries %v, want 2, 1, 1", hit, miss, entries)
	}
}

func TestCacheTTLCountsDownAndExpires(t *testing.T) {
	e, clk := startCached(t, "",
		"chain.example.test. 600 IN CNAME www2.example.test.",
		"www2.example.test. 300 IN A 192.0.2.21")
	ask := func() []uint32 {
		t.Helper()
		return ttls(e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("chain.example.test.", dns.TypeA, false, false)))
	}
	steps := []struct {
		advance  time.Duration
		want     []uint32 // CNAME, A
		upstream int64
	}{
		{0, []uint32{600, 300}, 1},
		{7900 * time.Millisecond, []uint32{593, 293}, 1}, // whole seconds elapsed
		{291600 * time.Millisecond, []uint32{301, 1}, 1}, // 299.5 s: the last second
		{500 * time.Millisecond, []uint32{600, 300}, 2},  // 300 s: expired, asked again
		{time.Second, []uint32{599, 299}, 2},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		got := ask()
		if fmt.Sprint(got) != fmt.Sprint(s.want) || e.upstream.Total() != s.upstream {
			t.Errorf("step %d: TTLs %v after %d upstream queries, want %v after %d", i, got, e.upstream.Total(), s.want, s.upstream)
		}
	}
}

func TestCacheTTLLimits(t *testing.T) {
	tests := []struct {
		name, keys string
		record     string
		want       uint32 // served and cached TTL
	}{
		{"min_ttl raises", `min_ttl = "10s"`, "short.example.test. 3 IN A 192.0.2.1", 10},
		{"max_ttl caps", `max_ttl = "60s"`, "short.example.test. 300 IN A 192.0.2.1", 60},
		{"in range", `min_ttl = "1s"` + "\n" + `max_ttl = "60s"`, "short.example.test. 30 IN A 192.0.2.1", 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := startCached(t, tt.keys, tt.record)
			q := dnstest.NewQuery("short.example.test.", dns.TypeA, false, false)
			if got := ttls(e.ask(t, "udp", "127.0.0.1", q)); len(got) != 1 || got[0] != tt.want {
				t.Errorf("first reply TTL %v, want %d", got, tt.want)
			}
			clk.Advance(time.Duration(tt.want)*time.Second - time.Millisecond)
			if got := ttls(e.ask(t, "udp", "127.0.0.1", q)); len(got) != 1 || got[0] != 1 || e.upstream.Total() != 1 {
				t.Errorf("just before expiry: TTL %v after %d upstream queries, want 1 after 1", got, e.upstream.Total())
			}
			clk.Advance(time.Millisecond)
			e.ask(t, "udp", "127.0.0.1", q)
			if e.upstream.Total() != 2 {
				t.Errorf("at expiry: %d upstream queries, want 2", e.upstream.Total())
			}
		})
	}
}

// The upstream's negative answers carry an SOA with TTL 3600 and MINIMUM
// 300: RFC 2308 caches them for the smaller, 300 s, unless capped.
func TestCacheNegativeAnswers(t *testing.T) {
	tests := []struct {
		name  string
		keys  string
		qname string
		qtype uint16
		rcode int
		want  uint32
	}{
		{"NXDOMAIN", "", "missing.example.test.", dns.TypeA, dns.RcodeNameError, 300},
		{"NODATA", "", "www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, 300},
		{"NXDOMAIN capped", `max_negative_ttl = "60s"`, "missing.example.test.", dns.TypeA, dns.RcodeNameError, 60},
		{"NODATA capped", `max_negative_ttl = "60s"`, "www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := startCached(t, tt.keys, upstreamRecords...)
			q := dnstest.NewQuery(tt.qname, tt.qtype, true, false)
			for i, advance := range []time.Duration{0, time.Duration(tt.want-1) * time.Second} {
				clk.Advance(advance)
				resp := e.ask(t, "udp", "127.0.0.1", q)
				if resp.Rcode != tt.rcode || len(resp.Answer) != 0 {
					t.Fatalf("reply %d: %v", i, resp)
				}
				if soa := soaOf(t, resp); soa.Hdr.Ttl != tt.want-uint32(advance/time.Second) {
					t.Errorf("reply %d: SOA TTL %d, want %d", i, soa.Hdr.Ttl, tt.want-uint32(advance/time.Second))
				}
			}
			if e.upstream.Total() != 1 {
				t.Errorf("upstream got %d queries within the negative TTL, want 1", e.upstream.Total())
			}
			clk.Advance(time.Second)
			e.ask(t, "udp", "127.0.0.1", q)
			if e.upstream.Total() != 2 {
				t.Errorf("after the negative TTL: %d upstream queries, want 2", e.upstream.Total())
			}
		})
	}
}

func TestCachePrefetchRefreshesBeforeExpiry(t *testing.T) {
	e, clk := startCached(t, "prefetch = true",
		"pop.example.test. 10 IN A 192.0.2.40",
		"rare.example.test. 10 IN A 192.0.2.41")
	pop := dnstest.NewQuery("pop.example.test.", dns.TypeA, false, false)
	rare := dnstest.NewQuery("rare.example.test.", dns.TypeA, false, false)
	askTTL := func(q *dns.Msg) uint32 {
		t.Helper()
		resp := e.ask(t, "udp", "127.0.0.1", q)
		if len(resp.Answer) != 1 {
			t.Fatalf("reply %v", resp)
		}
		return resp.Answer[0].Header().Ttl
	}
	askTTL(pop)
	askTTL(rare)
	for i := 0; i < prefetchTestHits; i++ {
		askTTL(pop) // popular, but far from expiry: no refresh
	}
	if e.upstream.Total() != 2 {
		t.Fatalf("upstream got %d queries before the prefetch window, want 2", e.upstream.Total())
	}
	// The last second of 10: inside the prefetch window (a tenth of the
	// TTL, at least a second). A slow upstream keeps the refresh running
	// while more hits arrive; they start no second refresh.
	clk.Advance(9500 * time.Millisecond)
	e.upstream.SetDelay(300 * time.Millisecond)
	for i := 0; i < 5; i++ {
		if ttl := askTTL(pop); ttl != 1 {
			t.Errorf("hit during the refresh: TTL %d, want 1 (the old entry)", ttl)
		}
	}
	askTTL(rare) // one hit in its lifetime: not popular, not refreshed
	waitFor(t, "the refreshed entry", func() bool { return askTTL(pop) == 10 })
	// Past the first entry's expiry: still a hit, from the refreshed entry.
	clk.Advance(time.Second)
	if ttl := askTTL(pop); ttl != 9 {
		t.Errorf("after the old entry's expiry: TTL %d, want 9", ttl)
	}
	var popQueries, rareQueries int
	for _, q := range e.upstream.Queries() {
		switch q.Name {
		case "pop.example.test.":
			popQueries++
		case "rare.example.test.":
			rareQueries++
		}
	}
	if popQueries != 2 || rareQueries != 1 {
		t.Errorf("upstream got %d queries for pop and %d for rare, want 2 (one refresh) and 1", popQueries, rareQueries)
	}
	if miss := e.cacheCount("miss"); miss != 2 {
		t.Errorf("%v misses, want 2 (the first query of each name)", miss)
	}
}

// prefetchTestHits is enough hits to make an entry popular.
const prefetchTestHits = 3

func TestCacheServeStale(t *testing.T) {
	tests := []struct {
		name string
		down func(u *dnstest.Upstream, down bool)
	}{
		{"upstream silent", func(u *dnstest.Upstream, down bool) { u.SetSilent(down) }},
		{"upstream SERVFAIL", func(u *dnstest.Upstream, down bool) {
			if down {
				u.SetRcode(dns.RcodeServerFailure)
			} else {
				u.SetRcode(-1)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk := startCached(t, `serve_stale = "1h"`, "st.example.test. 3 IN A 192.0.2.50")
			q := dnstest.NewQuery("st.example.test.", dns.TypeA, true, false)
			e.ask(t, "udp", "127.0.0.1", q)
			tt.down(e.upstream, true)
			clk.Advance(4 * time.Second) // expired a second ago
			resp := e.ask(t, "udp", "127.0.0.1", q)
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
				t.Fatalf("while the upstream is down: %v, want the stale answer with TTL 30", resp)
			}
			if x := ede(resp); x == nil || x.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
				t.Errorf("stale answer EDE %v, want 3 (Stale Answer)", x)
			}
			// A refresh just failed: the next query is answered stale at
			// once, without asking again (RFC 8767 failure recheck).
			asked := e.upstream.Total()
			resp = e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("st.example.test.", dns.TypeA, false, false))
			if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 || e.upstream.Total() != asked {
				t.Errorf("second stale query: %v after %d new upstream queries", resp, e.upstream.Total()-asked)
			}
			if stale := e.cacheCount("stale"); stale != 2 {
				t.Errorf("%v stale answers counted, want 2", stale)
			}
			// Past serve_stale: no answer from the cache.
			clk.Advance(time.Hour)
			resp = e.ask(t, "udp", "127.0.0.1", q)
			if resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
				t.Errorf("past serve_stale: %v, want SERVFAIL", resp)
			}
			if n := e.cacheEntries(); n != 0 {
				t.Errorf("%v entries past serve_stale, want 0", n)
			}
		})
	}
}

// expireWhileDown caches st.example.test (TTL 3 s) with serve_stale, then
// silences the upstream and moves the clock to past after the answer was
// stored. It returns the query.
func expireWhileDown(t *testing.T, e *env, clk *dnstest.Clock, past time.Duration) *dns.Msg {
	t.Helper()
	q := dnstest.NewQuery("st.example.test.", dns.TypeA, false, false)
	e.ask(t, "udp", "127.0.0.1", q)
	e.upstream.SetSilent(true)
	clk.Advance(past)
	return q
}

func TestCacheStaleEntryRefreshedWhenUpstreamRecovers(t *testing.T) {
	e, clk := startCached(t, `serve_stale = "1h"`, "st.example.test. 3 IN A 192.0.2.50")
	q := expireWhileDown(t, e, clk, 4*time.Second)
	if resp := e.ask(t, "udp", "127.0.0.1", q); len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
		t.Fatalf("stale answer %v", resp)
	}
	e.upstream.SetSilent(false)
	clk.Advance(31 * time.Second) // past the failure recheck
	if resp := e.ask(t, "udp", "127.0.0.1", q); len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 3 {
		t.Errorf("after the upstream recovered: %v, want a fresh answer with TTL 3", resp)
	}
}

func TestCacheNoStaleWithoutServeStale(t *testing.T) {
	e, clk := startCached(t, `serve_stale = "0s"`, "st.example.test. 3 IN A 192.0.2.50")
	q := expireWhileDown(t, e, clk, 3*time.Second)
	if resp := e.ask(t, "udp", "127.0.0.1", q); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("expired, upstream down, serve_stale off: %v, want SERVFAIL", resp)
	}
	if stale := e.cacheCount("stale"); stale != 0 {
		t.Errorf("%v stale answers, want 0", stale)
	}
}

func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	e.upstream.SetDelay(200 * time.Millisecond)
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := dnstest.NewQuery("www.example.test.", dns.TypeA, i%2 == 0, false)
			resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", e.addr, q)
			switch {
			case err != nil:
				errs <- err
			case resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1:
				errs <- fmt.Errorf("reply %v", resp)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.upstream.Total(); got != 1 {
		t.Errorf("%d concurrent identical queries made %d upstream queries, want 1", n, got)
	}
	if hit, miss := e.cacheCount("hit"), e.cacheCount("miss"); hit+miss != n {
		t.Errorf("hit %v + miss %v, want %d", hit, miss, n)
	}
}

func TestCacheKeySeparatesDOAndCD(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	plain := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
	do := dnstest.NewQuery("www.example.test.", dns.TypeA, true, true)
	cd := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
	cd.CheckingDisabled = true
	for round := 1; round <= 2; round++ {
		for _, q := range []*dns.Msg{plain, do, cd} {
			resp := e.ask(t, "udp", "127.0.0.1", q)
			wantDO := q.IsEdns0().Do()
			if opt := resp.IsEdns0(); opt == nil || opt.Do() != wantDO || resp.CheckingDisabled != q.CheckingDisabled {
				t.Errorf("round %d: reply OPT %v CD %v for DO %v CD %v", round, opt, resp.CheckingDisabled, wantDO, q.CheckingDisabled)
			}
		}
		if e.upstream.Total() != 3 {
			t.Errorf("round %d: upstream got %d queries, want 3 (one per key)", round, e.upstream.Total())
		}
	}
	var doQueries int
	for _, q := range e.upstream.Queries() {
		if q.DO {
			doQueries++
		}
	}
	if doQueries != 1 {
		t.Errorf("upstream got %d DO queries, want 1", doQueries)
	}
}

func TestCacheSharesEntryAcrossLetterCase(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	for _, name := range []string{"wWw.ExAmPlE.test.", "www.example.test.", "WWW.EXAMPLE.TEST."} {
		for _, netw := range []string{"udp", "tcp"} {
			resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(name, dns.TypeA, true, false))
			if len(resp.Answer) != 1 || resp.Answer[0].Header().Name != name {
				t.Errorf("%s %s: answer %v, want its owner written %s", netw, name, resp.Answer, name)
			}
		}
	}
	if e.upstream.Total() != 1 {
		t.Errorf("upstream got %d queries, want 1", e.upstream.Total())
	}
}

func TestCacheDoesNotStoreFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(u *dnstest.Upstream)
		rcode int
	}{
		{"SERVFAIL", func(u *dnstest.Upstream) { u.SetRcode(dns.RcodeServerFailure) }, dns.RcodeServerFailure},
		// REFUSED is about AppFence's query: the client gets SERVFAIL.
		{"REFUSED", func(u *dnstest.Upstream) { u.SetRcode(dns.RcodeRefused) }, dns.RcodeServerFailure},
		{"truncated", func(u *dnstest.Upstream) { u.SetTruncateAll(true) }, dns.RcodeSuccess},
		{"no SOA in a negative answer", func(u *dnstest.Upstream) { u.SetRcode(dns.RcodeNameError) }, dns.RcodeNameError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := startCached(t, "", upstreamRecords...)
			tt.setup(e.upstream)
			q := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
			var asked []int64
			for i := 0; i < 2; i++ {
				before := e.upstream.Total()
				if resp := e.ask(t, "udp", "127.0.0.1", q); resp.Rcode != tt.rcode {
					t.Errorf("reply %d: %s, want %s", i, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				asked = append(asked, e.upstream.Total()-before)
			}
			if asked[0] == 0 || asked[1] != asked[0] {
				t.Errorf("upstream queries per client query: %v, want the second asked again like the first", asked)
			}
			if n := e.cacheEntries(); n != 0 {
				t.Errorf("%v entries, want 0", n)
			}
		})
	}
}

func TestCacheNeverHoldsBlockAnswers(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	q := dnstest.NewQuery("www.tiktok.com.", dns.TypeA, true, false)
	// The exempted group's answer is cached ...
	for i := 0; i < 2; i++ {
		if resp := e.ask(t, "udp", "127.0.0.2", q); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
			t.Fatalf("investigators: %v", resp)
		}
	}
	// ... and never reaches the default group, which stays blocked.
	if resp := e.ask(t, "udp", "127.0.0.1", q); resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
		t.Errorf("default group got %v, want the block answer", resp)
	}
	if e.upstream.Total() != 1 || e.cacheCount("hit") != 1 || e.cacheEntries() != 1 {
		t.Errorf("upstream %d, hits %v, entries %v; want 1, 1, 1", e.upstream.Total(), e.cacheCount("hit"), e.cacheEntries())
	}
}

func TestCacheSurvivesStateSwap(t *testing.T) {
	e, _ := startCached(t, "", upstreamRecords...)
	q := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
	e.ask(t, "udp", "127.0.0.1", q)
	e.swapPolicy(t, "block = []")
	if resp := e.ask(t, "udp", "127.0.0.1", q); len(resp.Answer) != 1 || e.upstream.Total() != 1 {
		t.Errorf("after a swap: %v with %d upstream queries, want a hit", resp, e.upstream.Total())
	}
}

// TestCacheHitMatchesMiss checks the fast path against the reference: the
// reply built from an entry's bytes (a hit) equals the one finish makes
// from the same answer (the miss), field by field, for every kind of
// answer and client; apart from TTLs counting down.
func TestCacheHitMatchesMiss(t *testing.T) {
	records := append([]string{
		"CName.example.test. 300 IN CNAME x.cname.example.test.",
		"x.cname.example.test. 120 IN A 192.0.2.30",
	}, upstreamRecords...)
	for i := 0; i < 60; i++ {
		records = append(records, fmt.Sprintf("big.example.test. 300 IN TXT \"%s-%02d\"", strings.Repeat("x", 40), i))
	}
	edns := func(size uint16, do bool) func(*dns.Msg) {
		return func(m *dns.Msg) { m.SetEdns0(size, do) }
	}
	tests := []struct {
		name  string
		qname string
		qtype uint16
		set   []func(*dns.Msg)
	}{
		{"A", "www.example.test.", dns.TypeA, nil},
		{"mixed case, EDNS", "WwW.ExAmPlE.TeSt.", dns.TypeA, []func(*dns.Msg){edns(1232, false)}},
		{"DO", "www.example.test.", dns.TypeA, []func(*dns.Msg){edns(4096, true)}},
		{"CD", "www.example.test.", dns.TypeA, []func(*dns.Msg){edns(1232, false), func(m *dns.Msg) { m.CheckingDisabled = true }}},
		{"AD without DO", "www.example.test.", dns.TypeA, []func(*dns.Msg){func(m *dns.Msg) { m.AuthenticatedData = true }}},
		{"RD clear", "www.example.test.", dns.TypeA, []func(*dns.Msg){func(m *dns.Msg) { m.RecursionDesired = false }}},
		{"CNAME to a name below the question", "cNaMe.EXAMPLE.test.", dns.TypeA, []func(*dns.Msg){edns(1232, false)}},
		{"NXDOMAIN", "Missing.Example.Test.", dns.TypeA, []func(*dns.Msg){edns(1232, true)}},
		{"NODATA", "WWW.example.test.", dns.TypeAAAA, nil},
		{"TXT", "TXT.example.test.", dns.TypeTXT, []func(*dns.Msg){edns(1232, false)}},
		{"large, no EDNS", "big.example.test.", dns.TypeTXT, nil},
		{"large, EDNS 4096", "Big.Example.Test.", dns.TypeTXT, []func(*dns.Msg){edns(4096, false)}},
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+netw, func(t *testing.T) {
				e, clk := startCached(t, "", records...)
				e.upstream.SetValidated(true)
				q := new(dns.Msg)
				q.SetQuestion(tt.qname, tt.qtype)
				for _, set := range tt.set {
					set(q)
				}
				miss := e.ask(t, netw, "127.0.0.1", q)
				asked := e.upstream.Total() // 2 for the large answer: UDP, then TCP
				hit := e.ask(t, netw, "127.0.0.1", q)
				if e.upstream.Total() != asked || e.cacheCount("hit") != 1 {
					t.Fatalf("upstream %d queries, %v hits: the second query was not a hit", e.upstream.Total(), e.cacheCount("hit"))
				}
				if miss.String() != hit.String() {
					t.Errorf("hit differs from miss:\n--- miss\n%s\n--- hit\n%s", miss, hit)
				}
				clk.Advance(5 * time.Second)
				later := e.ask(t, netw, "127.0.0.1", q)
				for _, section := range [][]dns.RR{later.Answer, later.Ns, later.Extra} {
					for _, rr := range section {
						if rr.Header().Rrtype != dns.TypeOPT {
							rr.Header().Ttl += 5
						}
					}
				}
				if miss.String() != later.String() {
					t.Errorf("5 s later, TTLs put back, the hit differs from the miss:\n--- miss\n%s\n--- hit\n%s", miss, later)
				}
			})
		}
	}
}
