package cache

import (
	"sync"

	"github.com/miekg/dns"
)

// flights coalesces resolutions: while one for a key runs, queries for the
// same key wait for its result instead of asking upstream again. It is our
// own small singleflight because the key is a Key (no string to build per
// query) and because every waiter, the first one included, waits with its
// own context while the resolution runs on in its own goroutine for the
// others and for the cache.
type flights struct {
	// fill resolves a key (Cache.fill): set once, so that starting a
	// flight makes no closure.
	fill func(Key, Fetch) result
	mu   sync.Mutex
	m    map[Key]*flight
}

// flight is one resolution shared by every query that asked for its key
// while it ran.
type flight struct {
	done chan struct{} // closed when res is set
	res  result
}

// result is what a resolution produced: the stored entry, or the
// upstream's answer when it could not be cached, or the error.
type result struct {
	entry  *Entry
	msg    *dns.Msg
	source *dns.Msg // what entry was made of
	err    error
}

// start returns the running flight for k, or starts a new one: fs.fill of
// k with fetch, in its own goroutine. The flight is removed when fill
// returns, after it has stored its answer, so a later query finds the
// entry.
func (fs *flights) start(k Key, fetch Fetch) *flight {
	fs.mu.Lock()
	if f, ok := fs.m[k]; ok {
		fs.mu.Unlock()
		return f
	}
	f := &flight{done: make(chan struct{})}
	fs.m[k] = f
	fs.mu.Unlock()
	go func() {
		f.res = fs.fill(k, fetch)
		fs.mu.Lock()
		delete(fs.m, k)
		fs.mu.Unlock()
		close(f.done)
	}()
	return f
}
