package cache

import (
	"context"
	"hash/maphash"
	"sync"
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
	ctx context.Context
	// shards hold the entries, by a hash of the name (seed): one LRU, or
	// shardCount of them for a large cache, so that queries on several
	// cores do not all wait for one lock. Each shard evicts its own least
	// recently used entry.
	shards   []*lru.Cache[Key, *Entry]
	seed     maphash.Seed
	settings atomic.Pointer[config.Cache]
	flights  flights
	packers  sync.Pool // *packer: scratch space for new entries

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
	shards := 1
	if cfg.Size >= shardFrom {
		shards = shardCount
	}
	return newSharded(ctx, cfg, reg, shards)
}

// A cache of shardFrom entries or more (at New) has shardCount shards.
const (
	shardFrom  = 4096
	shardCount = 16
)

// newSharded is New with the number of shards given.
func newSharded(ctx context.Context, cfg config.Cache, reg prometheus.Registerer, shards int) *Cache {
	c := &Cache{Now: time.Now, ctx: ctx, flights: flights{m: map[Key]*flight{}}, seed: maphash.MakeSeed()}
	c.flights.fill = c.fill
	c.packers.New = func() any { return new(packer) }
	c.shards = make([]*lru.Cache[Key, *Entry], shards)
	for i := range c.shards {
		// lru.New fails only for a size below 1.
		c.shards[i], _ = lru.New[Key, *Entry](c.shardSize(cfg.Size))
	}
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

// shardSize is the size of each shard for a cache of size entries: the
// shards together hold size entries, up to one less than a shard more.
func (c *Cache) shardSize(size int) int {
	return max((size+len(c.shards)-1)/len(c.shards), 1)
}

// shard returns the shard of k.
func (c *Cache) shard(k Key) *lru.Cache[Key, *Entry] {
	if len(c.shards) == 1 {
		return c.shards[0]
	}
	return c.shards[maphash.String(c.seed, k.Name)%uint64(len(c.shards))]
}

// Configure applies the [cache] section of a reloaded configuration. A new
// size applies at once: a smaller one evicts the least recently used
// entries, 0 empties the cache and stops storing. The TTL limits and
// serve_stale apply to answers stored from then on and to lookups; entries
// already stored keep the TTLs they were stored with. prefetch applies to
// the next hit.
func (c *Cache) Configure(cfg config.Cache) {
	old := c.settings.Swap(&cfg)
	for _, sh := range c.shards {
		switch {
		case cfg.Size == 0:
			sh.Purge()
		case cfg.Size != old.Size:
			sh.Resize(c.shardSize(cfg.Size))
		}
	}
	c.countEntries()
}

// Enabled reports whether c stores answers; false for a nil cache.
func (c *Cache) Enabled() bool { return c != nil && c.settings.Load().Size > 0 }

// Len returns the number of entries, expired ones included.
func (c *Cache) Len() int {
	n := 0
	for _, sh := range c.shards {
		n += sh.Len()
	}
	return n
}

// Lookup returns the entry for k at now. fresh is true while the entry's
// TTL runs; an expired entry is returned with fresh false as long as it
// may still be served stale (serve_stale after its expiry), and dropped
// after that.
func (c *Cache) Lookup(k Key, now time.Time) (e *Entry, fresh bool) {
	sh := c.shard(k)
	e, ok := sh.Get(k)
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
	sh.Remove(k)
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
	c.shard(k).Add(k, e)
	c.countEntries()
}

func (c *Cache) countEntries() {
	if c.entries != nil {
		c.entries.Set(float64(c.Len()))
	}
}

func count(counter prometheus.Counter) {
	if counter != nil {
		counter.Inc()
	}
}
