package cache

import "time"

// Prefetch refreshes popular entries shortly before they expire, so that
// names asked for all the time never miss. Like Unbound (prefetch: yes) it
// triggers on a hit in the last tenth of the entry's TTL, and like CoreDNS
// (prefetch AMOUNT) only for entries asked for more than once: an entry is
// popular when it was served from the cache at least prefetchHits times,
// counting the current hit. The refresh goes through the same flights as
// misses, so a miss for the same key while it runs waits for it instead of
// asking again, and it is started at most once per entry.
const (
	prefetchHits = 3
	// prefetchShare is the part of the TTL, at its end, in which a hit
	// triggers the refresh: a tenth, and at least the last second.
	prefetchShare = 10
)

// shouldPrefetch counts a hit on e and reports whether it triggers e's
// refresh; true claims it, so at most one refresh per entry is started.
func (c *Cache) shouldPrefetch(e *Entry, now time.Time) bool {
	hits := e.hits.Add(1)
	if !c.settings.Load().Prefetch || hits < prefetchHits {
		return false
	}
	window := max(e.expires.Sub(e.stored)/prefetchShare, time.Second)
	if e.expires.Sub(now) > window {
		return false
	}
	return e.refreshing.CompareAndSwap(false, true)
}

// Refresh starts resolving k again in the background and stores the answer,
// unless a resolution of k is already running. It does not wait.
func (c *Cache) Refresh(k Key, fetch Fetch) {
	c.flights.start(k, fetch)
}
