package cache

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// fillNames stores n entries n0.example.test ... in c and returns their keys.
func fillNames(t testing.TB, c *Cache, n int) []Key {
	t.Helper()
	now := c.Now()
	keys := make([]Key, n)
	for i := range keys {
		name := "n" + strconv.Itoa(i) + ".example.test"
		keys[i] = keyOf(name)
		e, ok := newEntry(keys[i], answer(t, name+".", dns.TypeA, dns.RcodeSuccess, name+". 300 IN A 192.0.2.1"), c.settings.Load(), now)
		if !ok {
			t.Fatal("not cacheable")
		}
		c.store(keys[i], e)
	}
	return keys
}

// TestLargeCacheIsSharded: a cache of 4096 entries or more is split into
// shards by name, which together keep the size: every entry stored is
// found, a smaller size bounds them all, and 0 empties every shard.
func TestLargeCacheIsSharded(t *testing.T) {
	for _, tt := range []struct {
		size, shards int
	}{{shardFrom - 1, 1}, {shardFrom, shardCount}, {100000, shardCount}} {
		cfg := defaults
		cfg.Size = tt.size
		c := New(context.Background(), cfg, nil)
		if len(c.shards) != tt.shards {
			t.Errorf("size %d: %d shards, want %d", tt.size, len(c.shards), tt.shards)
		}
	}
	cfg := defaults
	cfg.Size = 100000
	c := New(context.Background(), cfg, nil)
	keys := fillNames(t, c, 2000)
	for _, k := range keys {
		if _, fresh := c.Lookup(k, c.Now()); !fresh {
			t.Fatalf("%s not found", k.Name)
		}
	}
	used := 0
	for _, sh := range c.shards {
		if sh.Len() > 0 {
			used++
		}
	}
	if used != shardCount || c.Len() != len(keys) {
		t.Errorf("%d entries in %d shards, want %d in %d", c.Len(), used, len(keys), shardCount)
	}
	cfg.Size = 32
	c.Configure(cfg)
	if c.Len() > 32 {
		t.Errorf("%d entries after a resize to 32", c.Len())
	}
	fillNames(t, c, 200)
	if c.Len() > 32 {
		t.Errorf("%d entries in a cache of 32", c.Len())
	}
	cfg.Size = 0
	c.Configure(cfg)
	if c.Len() != 0 {
		t.Errorf("%d entries after a resize to 0", c.Len())
	}
}

// BenchmarkCacheLookupParallel measures lookups of cached names from every
// core at once, in one LRU and in shards:
//
//	go test -run '^$' -bench CacheLookupParallel -cpu 1,2,4 ./resolver/cache/
func BenchmarkCacheLookupParallel(b *testing.B) {
	for _, shards := range []int{1, shardCount} {
		b.Run("shards="+strconv.Itoa(shards), func(b *testing.B) {
			cfg := defaults
			cfg.Size = 100000
			c := newSharded(context.Background(), cfg, nil, shards)
			keys := fillNames(b, c, 10000)
			now := c.Now()
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(7919) // each goroutine from elsewhere in the keys
				for pb.Next() {
					i++
					if _, fresh := c.Lookup(keys[i%uint64(len(keys))], now); !fresh {
						b.Fatal("not found")
					}
				}
			})
		})
	}
}
