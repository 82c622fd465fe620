package reload

import (
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
)

// liveCount counts the tracked objects the garbage collector has not
// collected yet.
type liveCount struct{ n atomic.Int64 }

// track counts ptr as live until it is collected.
func track[T any](c *liveCount, ptr *T) {
	c.n.Add(1)
	runtime.AddCleanup(ptr, func(c *liveCount) { c.n.Add(-1) }, c)
}

// settle collects garbage until at most want tracked objects are live, or
// for two seconds, and returns how many are.
func (c *liveCount) settle(want int64) int64 {
	deadline := time.Now().Add(2 * time.Second)
	for {
		runtime.GC()
		n := c.n.Load()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond) // cleanups run on their own goroutine
	}
}

// arena returns a pointer into the name arena of p's matcher (the bytes
// of its first name rule), or nil when it has none.
func arena(p *policy.Policy) *byte {
	for r := range p.Set.Matcher.All() {
		if r.Kind != blocklists.KindPattern {
			return unsafe.StringData(r.Rule)
		}
	}
	return nil
}

// TestReloadHoldsAtMostTwoPolicies: while a reload builds a policy, only
// the serving one and the new one are alive, and once it is installed (or
// has failed) only one is. It runs the daemon's install path on real
// sockets (a handler with a cache, metrics, a query log, the watcher and
// the refresher of Run), answers queries between reloads so that the
// cache, the findings of CNAME inspection, the query series and the query
// log all see each policy, and fails a reload on the way. Both the Policy
// values and the name arenas of their matchers (the bulk of a large
// policy) are counted, with cleanups the garbage collector runs once they
// are unreachable.
func TestReloadHoldsAtMostTwoPolicies(t *testing.T) {
	e := newEnv(t, `block = ["video"]`, map[string]string{"apps/video.toml": videoApp})
	e.upstream.Add(t, "alias.example.test. 300 IN CNAME www.video.test.")
	ql := querylog.New(io.Discard, querylog.Options{})
	e.handler.SetQueryLog(ql)
	t.Cleanup(func() { ql.Close() })

	var (
		policies, arenas liveCount
		mu               sync.Mutex
		most             [2]int64 // policies and arenas live at an install: the serving one and the new one
		installs         int
	)
	// A reloader of its own, whose policies are all counted; the env's
	// first one and its policy are let go.
	e.reloader = New(Options{Path: e.cfgPath, Metrics: e.metrics, Debounce: 50 * time.Millisecond, Install: func(p *policy.Policy) error {
		track(&policies, p)
		track(&arenas, arena(p))
		mu.Lock()
		most[0] = max(most[0], policies.settle(2))
		most[1] = max(most[1], arenas.settle(2))
		installs++
		mu.Unlock()
		return e.install(p)
	}})
	if _, err := e.reloader.Load(); err != nil {
		t.Fatal(err)
	}
	e.run()
	r := e.reloader

	appFile := filepath.Join(e.dir, "apps", "video.toml")
	for i := 1; i <= 12; i++ {
		video := blocked
		if i%2 == 1 {
			e.writeConfig(`block = ["tiktok"]`)
			video = resolved
		} else {
			e.writeConfig(`block = ["video"]`)
		}
		if i%4 == 0 {
			writeFile(t, appFile, "[[app]]\nname = \"video\"\ndomains = [\"video..test\"]\n")
			if err := r.Reload("broken"); err == nil {
				t.Fatalf("reload %d: a broken app file loaded", i)
			}
			writeFile(t, appFile, videoApp)
		}
		if err := r.Reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		e.expect("www.video.test.", "192.0.2.30", video, 0)
		for range 2 { // through its CNAME, from the cache the second time
			if got, detail := e.ask("alias.example.test.", ""); (got == blocked) != (video == blocked) {
				t.Fatalf("after reload %d: alias.example.test %s, want it blocked only when video is %s", i, got, detail)
			}
		}
		e.expect("www.example.test.", "192.0.2.20", resolved, 0)
		if n := policies.settle(1); n != 1 {
			t.Errorf("after reload %d: %d policies alive, want 1", i, n)
		}
		if n := arenas.settle(1); n != 1 {
			t.Errorf("after reload %d: %d name arenas alive, want 1", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// The watcher reloads too, after each edit: at least the 12 asked for.
	if installs < 13 {
		t.Errorf("%d installs, want at least 13", installs)
	}
	if most[0] > 2 || most[1] > 2 {
		t.Errorf("%d policies and %d name arenas alive while one was installed, want at most 2", most[0], most[1])
	}
}
