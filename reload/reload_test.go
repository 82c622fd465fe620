package reload

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/stack"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/resolver"
	"github.com/appfence/appfence/resolver/cache"
)

// configText is the config of these tests; %s is the upstream, then the
// extra lines of [blocking].
const configText = `
[server]
listen = ["127.0.0.1:0"]
allow_clients = ["127.0.0.0/8"]

[upstream]
servers = ["%s"]
timeout = "1s"

[blocking]
lists = ["apps/*.toml"]
%s

[metrics]
listen = ""
`

const videoApp = `[[app]]
name = "video"
domains = ["video.test"]
`

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a real resolver on loopback, with a local upstream, whose policy
// a Reloader installs from files in dir.
type env struct {
	t        *testing.T
	dir      string
	cfgPath  string
	upstream *dnstest.Upstream
	handler  *resolver.Handler
	cache    *cache.Cache
	addr     string
	metrics  *metrics.Metrics
	reloader *Reloader
	logs     *logBuffer
	installs atomic.Int64
	stack    *stack.Stack   // what the reloader installs into, as the daemon's
	clock    *dnstest.Clock // the reload timestamps' clock
}

func newEnv(t *testing.T, blocking string, apps map[string]string) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), blocking, apps)
}

// newEnvIn starts a resolver whose files are in dir.
func newEnvIn(t *testing.T, dir, blocking string, apps map[string]string) *env {
	t.Helper()
	os.Mkdir(filepath.Join(dir, "apps"), 0o755)
	for name, text := range apps {
		writeFile(t, filepath.Join(dir, name), text)
	}
	up := dnstest.NewUpstream(t,
		"www.tiktok.com. 300 IN A 192.0.2.10",
		"www.example.test. 300 IN A 192.0.2.20",
		"www.video.test. 300 IN A 192.0.2.30",
		"ok.video.test. 300 IN A 192.0.2.31",
		"chat.test. 300 IN A 192.0.2.40",
	)
	e := &env{t: t, dir: dir, cfgPath: filepath.Join(dir, "appfence.toml"), upstream: up, metrics: metrics.New("test"), logs: &logBuffer{}, clock: dnstest.NewClock()}
	e.stack = stack.New(context.Background(), stack.Options{Metrics: e.metrics})
	t.Cleanup(func() { e.stack.Close() })
	e.writeConfig(blocking)
	e.reloader = e.newReloader()
	if _, err := e.reloader.Load(); err != nil {
		t.Fatal(err)
	}
	srv := resolver.NewServer(e.handler, nil)
	if err := srv.Start(context.Background(), e.handler.State().Policy.Config.Server); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	e.addr = srv.UDPAddrs()[0].String()
	return e
}

func (e *env) newReloader() *Reloader {
	return New(Options{Path: e.cfgPath, Install: e.install, Metrics: e.metrics, Debounce: 100 * time.Millisecond, Now: e.clock.Now,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
}

// install is the daemon's install (internal/stack), counted.
func (e *env) install(p *policy.Policy) error {
	e.installs.Add(1)
	if err := e.stack.Install(p); err != nil {
		return err
	}
	e.handler, e.cache = e.stack.Handler(), e.stack.Cache()
	return nil
}

func (e *env) writeConfig(blocking string) {
	writeFile(e.t, e.cfgPath, fmt.Sprintf(configText, e.upstream.Addr, blocking))
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes path the way editors save: a new file renamed over
// the old one.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp~"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// run starts the reloader's loop until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.reloader.Run(ctx)
		close(done)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
	// Run watches the files before it reloads anything: wait for that, so
	// that a change the test makes next is seen.
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.reloader.mu.Lock()
		armed := e.reloader.fetcher != nil
		e.reloader.mu.Unlock()
		if armed {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("Run did not start watching within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// answer is what the resolver said about a name.
type answer int

const (
	failed answer = iota
	blocked
	resolved
	wrong
)

func (a answer) String() string { return [...]string{"failed", "blocked", "resolved", "wrong"}[a] }

// ask queries name over UDP and classifies the answer: blocked (NXDOMAIN
// with AppFence's EDE and SOA), resolved (the upstream's address want), or
// wrong.
func (e *env) ask(name, want string) (answer, string) {
	m := dnstest.NewQuery(name, dns.TypeA, true, false)
	resp, err := dnstest.Client{Timeout: 3 * time.Second}.Exchange(context.Background(), "udp", e.addr, m)
	switch {
	case err != nil:
		return failed, err.Error()
	case resp.Id != m.Id || len(resp.Question) != 1 || resp.Question[0] != m.Question[0]:
		return wrong, resp.String()
	case resp.Rcode == dns.RcodeNameError && len(resp.Answer) == 0 && len(resp.Ns) == 1 && isBlockEDE(resp):
		return blocked, ""
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) == 1 && !isBlockEDE(resp):
		if a, ok := resp.Answer[0].(*dns.A); ok && a.A.String() == want {
			return resolved, ""
		}
	}
	return wrong, resp.String()
}

func isBlockEDE(resp *dns.Msg) bool {
	if opt := resp.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if ede, ok := o.(*dns.EDNS0_EDE); ok && ede.InfoCode == dns.ExtendedErrorCodeBlocked {
				return true
			}
		}
	}
	return false
}

// expect fails the test unless name gets want within d (0: at once).
func (e *env) expect(name, addr string, want answer, d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, detail := e.ask(name, addr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %s, want %s %s\nlog:\n%s", name, got, want, detail, e.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReloadWhileServing reloads 20 times, flipping whether tiktok is
// blocked, while a client sends UDP queries without pause: every answer
// must be right for one of the two policies, none may fail, and both
// policies must be seen.
func TestReloadWhileServing(t *testing.T) {
	e := newEnv(t, `block = ["tiktok"]`, map[string]string{"apps/video.toml": videoApp})
	var (
		stop                   atomic.Bool
		sent, blockedN, resolv atomic.Int64
		mu                     sync.Mutex
		problems               []string
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			name, addr := "www.tiktok.com.", "192.0.2.10"
			if i%3 == 2 {
				name, addr = "www.example.test.", "192.0.2.20"
			}
			got, detail := e.ask(name, addr)
			sent.Add(1)
			switch {
			case got == resolved && name == "www.tiktok.com.":
				resolv.Add(1)
			case got == blocked && name == "www.tiktok.com.":
				blockedN.Add(1)
			case got == resolved:
			default:
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s %s", name, got, detail))
				mu.Unlock()
			}
		}
	}()
	for i := 1; i <= 20; i++ {
		want := blocked
		if i%2 == 1 {
			e.writeConfig(`block = ["video"]`)
			want = resolved
		} else {
			e.writeConfig(`block = ["tiktok"]`)
		}
		time.Sleep(20 * time.Millisecond) // let the client's queries overlap each policy
		if err := e.reloader.Reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// From now on the new policy answers.
		if got, detail := e.ask("www.tiktok.com.", "192.0.2.10"); got != want {
			t.Fatalf("after reload %d: tiktok %s, want %s %s", i, got, want, detail)
		}
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	<-done
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d queries during 20 reloads: tiktok blocked %d, resolved %d", sent.Load(), blockedN.Load(), resolv.Load())
	if blockedN.Load() == 0 || resolv.Load() == 0 || sent.Load() < 100 {
		t.Errorf("the client saw %d blocked and %d resolved answers in %d queries: want both policies", blockedN.Load(), resolv.Load(), sent.Load())
	}
	if n := testutil.ToFloat64(e.metrics.Reloads.WithLabelValues("success")); n != 20 {
		t.Errorf("reloads_total{success} = %v, want 20", n)
	}
	if !strings.Contains(e.logs.String(), "actions=\"tiktok: blocked -> resolved; video: resolved -> blocked\"") {
		t.Errorf("the log does not say what changed:\n%s", e.logs.String())
	}
}

// TestBrokenFileKeepsOldPolicy: a reload with a broken app file or config
// fails, says where, sets the metrics, and the old policy keeps blocking.
func TestBrokenFileKeepsOldPolicy(t *testing.T) {
	e := newEnv(t, `block = ["tiktok", "video"]`, map[string]string{"apps/video.toml": videoApp})
	e.expect("www.video.test.", "", blocked, 0)
	appFile := filepath.Join(e.dir, "apps", "video.toml")
	tests := []struct {
		name  string
		write func()
		want  string
	}{
		{"syntax", func() { writeFile(t, appFile, "[[app]]\nname = \"video\"\ndomains = [\"video.test\"\n") }, appFile + ":3: app[0].domains: expected a comma"},
		{"bad name", func() { writeFile(t, appFile, "[[app]]\nname = \"video\"\ndomains = [\"video..test\"]\n") }, appFile + ":3: app[0].domains[0]"},
		{"missing source", func() {
			writeFile(t, appFile, videoApp+"sources = [{ file = \"gone.txt\", format = \"domains\" }]\n")
		}, appFile + ":4: sources: open"},
		{"unknown app in the config", func() { e.writeConfig(`block = ["tiktok", "vidoe"]`) }, e.cfgPath + ":12: blocking.block[1]: unknown app \"vidoe\""},
	}
	for i, tt := range tests {
		tt.write()
		err := e.reloader.Reload(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: reload error %v, want %q", tt.name, err, tt.want)
		}
		if !strings.Contains(e.logs.String(), strings.ReplaceAll(tt.want, `"`, `\"`)) { // as slog quotes it
			t.Errorf("%s: the log lacks %q", tt.name, tt.want)
		}
		if got := testutil.ToFloat64(e.metrics.Reloads.WithLabelValues("failure")); got != float64(i+1) {
			t.Errorf("%s: reloads_total{failure} = %v", tt.name, got)
		}
		if got := testutil.ToFloat64(e.metrics.LastReloadOK); got != 0 {
			t.Errorf("%s: last_reload_successful = %v", tt.name, got)
		}
		e.expect("www.video.test.", "", blocked, 0)
		e.expect("www.tiktok.com.", "", blocked, 0)
		writeFile(t, appFile, videoApp)
		e.writeConfig(`block = ["tiktok", "video"]`)
	}
	before := testutil.ToFloat64(e.metrics.LastReloadTime)
	e.clock.Advance(time.Second) // the timestamp has a resolution of a second
	if err := e.reloader.Reload("fixed"); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(e.metrics.LastReloadOK) != 1 || testutil.ToFloat64(e.metrics.LastReloadTime) <= before {
		t.Error("a successful reload did not set the metrics")
	}
}

// TestWatcherPicksUpChanges: with blocking.watch, an edit of an app file
// (in place, or by rename as editors do), of a list it names and of the
// config, and a new file matching the glob, each reload the policy.
func TestWatcherPicksUpChanges(t *testing.T) {
	e := newEnv(t, "watch = true\nblock = [\"tiktok\", \"video\"]", map[string]string{
		"apps/video.toml": videoApp + "sources = [{ file = \"../video.txt\", format = \"domains\" }]\n",
		"video.txt":       "# nothing yet\n",
	})
	e.run()
	e.expect("chat.test.", "192.0.2.40", resolved, 0)
	appFile := filepath.Join(e.dir, "apps", "video.toml")

	// in place
	writeFile(t, appFile, videoApp+"exact = [\"chat.test\"]\nsources = [{ file = \"../video.txt\", format = \"domains\" }]\n")
	e.expect("chat.test.", "", blocked, 5*time.Second)
	// by rename
	replaceFile(t, appFile, videoApp+"sources = [{ file = \"../video.txt\", format = \"domains\" }]\n")
	e.expect("chat.test.", "192.0.2.40", resolved, 5*time.Second)
	// the list the app names
	writeFile(t, filepath.Join(e.dir, "video.txt"), "chat.test\n")
	e.expect("chat.test.", "", blocked, 5*time.Second)
	// a new file the glob matches: an exception
	e.expect("ok.video.test.", "", blocked, 0)
	writeFile(t, filepath.Join(e.dir, "apps", "exceptions.toml"), "[[app]]\nname = \"exceptions\"\nallow = [\"ok.video.test\"]\n")
	e.expect("ok.video.test.", "192.0.2.31", resolved, 5*time.Second)
	// ... and its removal
	os.Remove(filepath.Join(e.dir, "apps", "exceptions.toml"))
	e.expect("ok.video.test.", "", blocked, 5*time.Second)
	// a list that does not exist yet, in a folder nobody watched: the
	// reload fails, and making the file reloads again
	os.Mkdir(filepath.Join(e.dir, "more"), 0o755)
	writeFile(t, appFile, videoApp+"sources = [{ file = \"../more/extra.txt\", format = \"domains\" }]\n")
	waitLog(t, e.logs, "reload failed")
	e.expect("chat.test.", "", blocked, 0) // the old policy
	writeFile(t, filepath.Join(e.dir, "more", "extra.txt"), "www.example.test\n")
	e.expect("www.example.test.", "", blocked, 5*time.Second)
	e.expect("chat.test.", "192.0.2.40", resolved, 0)
	// the config
	e.writeConfig("watch = true\nblock = [\"video\"]")
	e.expect("www.tiktok.com.", "192.0.2.10", resolved, 5*time.Second)
	// a file the glob does not match: no reload (once the reloads of the
	// config's write are over: a write can come as more than one event)
	done := func() float64 { r := e.reloads(); return r["success"] + r["unchanged"] }
	n := done()
	for quiet := time.Now(); time.Since(quiet) < 300*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if m := done(); m != n {
			n, quiet = m, time.Now()
		}
	}
	writeFile(t, filepath.Join(e.dir, "apps", "notes.txt"), "not an app file\n")
	time.Sleep(500 * time.Millisecond)
	if got := done(); got != n {
		t.Errorf("%v reloads after writing a file nobody reads", got-n)
	}
	if !strings.Contains(e.logs.String(), "reason=\"changed: "+appFile) {
		t.Errorf("the log does not name the changed file:\n%s", e.logs.String())
	}
}

// waitLog waits until the log has text.
func waitLog(t *testing.T, logs *logBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", text, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatchOff: without blocking.watch, edits wait for a SIGHUP (Trigger).
// That no edit can start a reload is shown by what the watcher watches:
// nothing, so no file event can reach it (TestWatcherPicksUpChanges shows the events
// arrive when it watches the folders).
func TestWatchOff(t *testing.T) {
	e := newEnv(t, "watch = false\nblock = [\"tiktok\"]", map[string]string{"apps/video.toml": videoApp})
	e.run()
	e.reloader.mu.Lock()
	w := e.reloader.watcher
	e.reloader.mu.Unlock()
	if w == nil {
		t.Fatal("Run started no watcher")
	}
	w.mu.Lock()
	dirs, files, globs := len(w.dirs), len(w.files), len(w.globs)
	w.mu.Unlock()
	if dirs+files+globs != 0 {
		t.Fatalf("with watch = false the watcher watches %d folders, %d files, %d patterns", dirs, files, globs)
	}
	e.writeConfig("watch = false\nblock = [\"video\"]")
	e.expect("www.tiktok.com.", "", blocked, 0)
	e.reloader.Trigger("SIGHUP")
	e.expect("www.tiktok.com.", "192.0.2.10", resolved, 5*time.Second)
	e.expect("www.video.test.", "", blocked, 0)
}

// TestReloadsAreSerialized: reloads asked for at once from many goroutines
// build and install one at a time.
func TestReloadsAreSerialized(t *testing.T) {
	e := newEnv(t, `block = ["tiktok"]`, map[string]string{"apps/video.toml": videoApp})
	var active, most atomic.Int64
	inner := e.install
	r := New(Options{Path: e.cfgPath, Metrics: e.metrics, Install: func(p *policy.Policy) error {
		n := active.Add(1)
		defer active.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
		return inner(p)
	}})
	if _, err := r.Load(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 3 {
				if err := r.Reload("concurrent"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d installs ran at once", most.Load())
	}
	// Triggers merge while one is pending: Run does at least one reload and
	// no more than were asked for.
	done := func() float64 { r := e.reloads(); return r["success"] + r["unchanged"] }
	before := done()
	for range 50 {
		r.Trigger("burst")
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { r.Run(ctx); close(stopped) }()
	deadline := time.Now().Add(5 * time.Second)
	for done() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-stopped
	if got := done() - before; got != 1 {
		t.Errorf("50 triggers while none ran made %v reloads, want 1", got)
	}
}
