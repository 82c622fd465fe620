package cache

import (
	"context"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
)

// Cache holds upstream answers. It is made once per process and outlives
// reloads: Configure applies a reloaded [cache] section to it. It is safe
// for concurrent use.
type Cache struct {
	// Now returns the current time; it is time.Now unless a test sets it
	// before the cache is used, to control expiry without waiting.
	Now func() time.Time

	// ctx is the cache's lifetime: the resolutions it runs for its
	// entries (shared misses, refreshes, prefetches) end when it is done.
	ctx      context.Context
	lru      *lru.Cache[Key, *Entry]
	settings atomic.Pointer[config.Cache]
	flights  flights

	// Collectors; nil without metrics.
	hits, misses, stale prometheus.Counter
	entries             prometheus.Gauge
}

// New returns a cache with the settings of a [cache] section. Its
// collectors (appfence_cache_requests_total, appfence_cache_entries) are
// registered on reg; nil counts nothing.
// A size of 0 makes a cache that stores nothing (Enabled is false) until
// Configure gives it a size. ctx is the cache's lifetime: the upstream
// queries it runs in the background (a miss that others share, refreshes)
// end when ctx is done.
func New(ctx context.Context, cfg config.Cache, reg prometheus.Registerer) *Cache {
	c := &Cache{Now: time.Now, ctx: ctx, flights: flights{m: map[Key]*flight{}}}
	c.flights.fill = c.fill
	// lru.New fails only for a size below 1.
	c.lru, _ = lru.New[Key, *Entry](max(cfg.Size, 1))
	c.settings.Store(&cfg)
	if reg != nil {
		requests, entries := newCollectors(reg)
		c.hits = requests.WithLabelValues("hit")
		c.misses = requests.WithLabelValues("miss")
		c.stale = requests.WithLabelValues("stale")
		c.entries = entries
	}
	return c
}

// Configure applies the [cache] section of a reloaded configuration. A new
// size applies at once: a smaller one evicts the least recently used
// entries, 0 empties the cache and stops storing. The TTL limits and
// serve_stale apply to answers stored from then on and to lookups; entries
// already stored keep the TTLs they were stored with. prefetch applies to
// the next hit.
func (c *Cache) Configure(cfg config.Cache) {
	old := c.settings.Swap(&cfg)
	switch {
	case cfg.Size == 0:
		c.lru.Purge()
	case cfg.Size != old.Size:
		c.lru.Resize(cfg.Size)
	}
	c.countEntries()
}

// Enabled reports whether c stores answers; false for a nil cache.
func (c *Cache) Enabled() bool { return c != nil && c.settings.Load().Size > 0 }

// Len returns the number of entries, expired ones included.
func (c *Cache) Len() int { return c.lru.Len() }

// Lookup returns the entry for k at now. fresh is true while the entry's
// TTL runs; an expired entry is returned with fresh false as long as it
// may still be served stale (serve_stale after its expiry), and dropped
// after that.
func (c *Cache) Lookup(k Key, now time.Time) (e *Entry, fresh bool) {
	e, ok := c.lru.Get(k)
	if !ok {
		return nil, false
	}
	if !e.Expired(now) {
		return e, true
	}
	if now.Before(e.expires.Add(c.settings.Load().ServeStale)) {
		return e, false
	}
	// A fresh entry stored for k since the Get would be removed too; that
	// costs one upstream query, never a wrong answer.
	c.lru.Remove(k)
	c.countEntries()
	return nil, false
}

// Hit counts a query answered from the fresh entry e and reports whether
// e should be refreshed now (see prefetch.go); true claims the refresh,
// which the caller starts with Refresh.
func (c *Cache) Hit(e *Entry, now time.Time) (refresh bool) {
	count(c.hits)
	return c.shouldPrefetch(e, now)
}

// store adds e under k, replacing any entry for k.
func (c *Cache) store(k Key, e *Entry) {
	c.lru.Add(k, e)
	c.countEntries()
}

func (c *Cache) countEntries() {
	if c.entries != nil {
		c.entries.Set(float64(c.lru.Len()))
	}
}

func count(counter prometheus.Counter) {
	if counter != nil {
		counter.Inc()
	}
}
