package cache

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
)

// newTestCache returns a cache with cfg on a test clock.
func newTestCache(cfg config.Cache) (*Cache, *dnstest.Clock) {
	clk := dnstest.NewClock()
	c := New(context.Background(), cfg, nil)
	c.Now = clk.Now
	return c, clk
}

// fetchFrom asks u for name over UDP, as the resolver's upstream would.
func fetchFrom(u *dnstest.Upstream, name string) Fetch {
	return func(ctx context.Context) (*dns.Msg, error) {
		return dnstest.Client{}.Exchange(ctx, "udp", u.Addr, dnstest.NewQuery(name, dns.TypeA, true, false))
	}
}

func keyOf(name string) Key { return Key{Name: name, Type: dns.TypeA, Class: dns.ClassINET} }

func TestLookupKeepsExpiredEntriesForServeStale(t *testing.T) {
	up := dnstest.NewUpstream(t, "a.example.test. 3 IN A 192.0.2.1")
	for _, staleFor := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprint("serve_stale=", staleFor), func(t *testing.T) {
			cfg := defaults
			cfg.ServeStale = staleFor
			c, clk := newTestCache(cfg)
			k := keyOf("a.example.test")
			if a := c.Resolve(context.Background(), k, nil, fetchFrom(up, "a.example.test.")); a.Entry == nil {
				t.Fatalf("not stored: %+v", a)
			}
			steps := []struct {
				advance      time.Duration
				found, fresh bool
			}{
				{2999 * time.Millisecond, true, true},
				{time.Millisecond, staleFor > 0, false}, // expired
				{staleFor - time.Millisecond, staleFor > 0, false},
				{time.Millisecond, false, false}, // past serve_stale: dropped
			}
			for i, s := range steps {
				clk.Advance(s.advance)
				e, fresh := c.Lookup(k, clk.Now())
				if (e != nil) != s.found || fresh != s.fresh {
					t.Errorf("step %d: found %v fresh %v, want %v %v", i, e != nil, fresh, s.found, s.fresh)
				}
			}
			if c.Len() != 0 {
				t.Errorf("%d entries after serve_stale, want 0", c.Len())
			}
		})
	}
}

func TestConfigureResizes(t *testing.T) {
	cfg := defaults
	cfg.Size = 3
	c, clk := newTestCache(cfg)
	for _, name := range []string{"a", "b", "c"} {
		e := stored(t, keyOf(name), answer(t, name+".", dns.TypeA, 0, name+". 60 IN A 192.0.2.1"), clk.Now())
		c.store(keyOf(name), e)
	}
	c.Lookup(keyOf("a"), clk.Now()) // b is now the least recently used
	cfg.Size = 2
	c.Configure(cfg)
	if _, ok := c.shard(keyOf("b")).Peek(keyOf("b")); ok || c.Len() != 2 {
		t.Errorf("after shrinking to 2: %d entries, b kept %v", c.Len(), ok)
	}
	cfg.Size = 0
	c.Configure(cfg)
	if c.Enabled() || c.Len() != 0 {
		t.Errorf("size 0: enabled %v with %d entries", c.Enabled(), c.Len())
	}
	cfg.Size = 5
	c.Configure(cfg)
	if !c.Enabled() {
		t.Error("size 5 again: not enabled")
	}
	var none *Cache
	if none.Enabled() {
		t.Error("a nil cache is enabled")
	}
}

func TestResolveCoalesces(t *testing.T) {
	up := dnstest.NewUpstream(t, "a.example.test. 60 IN A 192.0.2.1")
	up.SetDelay(100 * time.Millisecond)
	c, _ := newTestCache(defaults)
	k := keyOf("a.example.test")
	const n = 20
	entries := make([]*Entry, n)
	var wg sync.WaitGroup
	for i := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			entries[i] = c.Resolve(context.Background(), k, nil, fetchFrom(up, "a.example.test.")).Entry
		}()
	}
	wg.Wait()
	for i, e := range entries {
		if e == nil || e != entries[0] {
			t.Fatalf("waiter %d got entry %v, want the one entry stored", i, e)
		}
	}
	if up.Total() != 1 {
		t.Errorf("%d upstream queries, want 1", up.Total())
	}
}

func TestResolveWaiterStopsWithItsContext(t *testing.T) {
	up := dnstest.NewUpstream(t, "a.example.test. 60 IN A 192.0.2.1")
	up.SetDelay(500 * time.Millisecond)
	c, clk := newTestCache(defaults)
	k := keyOf("a.example.test")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	a := c.Resolve(ctx, k, nil, fetchFrom(up, "a.example.test."))
	if a.Err == nil || a.Entry != nil || time.Since(start) > 400*time.Millisecond {
		t.Errorf("waiter with an ending context: %+v after %s, want its context's error before the upstream answers", a, time.Since(start))
	}
	waitFresh(t, c, k, clk, "the abandoned resolution stored nothing")
}

// waitFresh waits up to 5 seconds for a fresh entry for k, and fails the
// test with why when none comes.
func waitFresh(t *testing.T, c *Cache, k Key, clk *dnstest.Clock, why string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, fresh := c.Lookup(k, clk.Now()); fresh {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A stale entry answers when the upstream is slower than the client
// response timer (RFC 8767); the resolution goes on and refreshes it.
func TestResolveAnswersStaleWhenUpstreamIsSlow(t *testing.T) {
	t.Parallel()
	up := dnstest.NewUpstream(t, "a.example.test. 60 IN A 192.0.2.1")
	cfg := defaults
	cfg.ServeStale = time.Hour
	c, clk := newTestCache(cfg)
	k := keyOf("a.example.test")
	c.Resolve(context.Background(), k, nil, fetchFrom(up, "a.example.test."))
	clk.Advance(61 * time.Second)
	stale, fresh := c.Lookup(k, clk.Now())
	if stale == nil || fresh {
		t.Fatal("no stale entry")
	}
	up.SetDelay(staleAnswerWait + time.Second)
	start := time.Now()
	a := c.Resolve(context.Background(), k, stale, fetchFrom(up, "a.example.test."))
	if !a.Stale || a.Entry != stale || time.Since(start) >= staleAnswerWait+time.Second {
		t.Errorf("got %+v after %s, want the stale entry before the upstream answered", a, time.Since(start))
	}
	waitFresh(t, c, k, clk, "the resolution did not refresh the entry")
}

func TestPrefetchOncePerEntry(t *testing.T) {
	c, clk := newTestCache(func() config.Cache { cfg := defaults; cfg.Prefetch = true; return cfg }())
	k := keyOf("a")
	e := stored(t, k, answer(t, "a.", dns.TypeA, 0, "a. 100 IN A 192.0.2.1"), clk.Now())
	c.store(k, e)
	var triggers []int
	for i := 1; i <= 6; i++ {
		if i == 3 {
			clk.Advance(90 * time.Second) // the last tenth
		}
		if c.Hit(e, clk.Now()) {
			triggers = append(triggers, i)
		}
	}
	if fmt.Sprint(triggers) != "[3]" {
		t.Errorf("refresh triggered on hits %v, want [3] only (popular, last tenth, once)", triggers)
	}
	off, clk2 := newTestCache(defaults) // prefetch = false
	e2 := stored(t, k, answer(t, "a.", dns.TypeA, 0, "a. 100 IN A 192.0.2.1"), clk2.Now())
	clk2.Advance(95 * time.Second)
	for i := 0; i < 5; i++ {
		if off.Hit(e2, clk2.Now()) {
			t.Fatal("refresh triggered with prefetch off")
		}
	}
}

// TestCollectors: the cache registers its collectors on the registerer it
// is given, the request results at zero from the start; a second cache on
// the same registry counts on the same series.
func TestCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := config.Default().Cache
	New(context.Background(), cfg, reg)
	fams := promtest.Gather(t, reg)
	if got := fams.Values("appfence_cache_requests_total", "result"); len(got) != 3 || got["hit"] != 0 || got["miss"] != 0 || got["stale"] != 0 {
		t.Errorf("appfence_cache_requests_total: %v, want hit, miss and stale at zero", got)
	}
	if fams["appfence_cache_entries"] == nil {
		t.Error("appfence_cache_entries is not registered")
	}
	c := New(context.Background(), cfg, reg)
	count(c.hits)
	if got := promtest.Gather(t, reg).Values("appfence_cache_requests_total", "result")["hit"]; got != 1 {
		t.Errorf("hits of the second cache: %v, want 1", got)
	}
}
