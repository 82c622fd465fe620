package reload

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// reloads returns the reload counters by result.
func (e *env) reloads() map[string]float64 {
	got := map[string]float64{}
	for _, r := range []string{"success", "unchanged", "failure"} {
		got[r] = testutil.ToFloat64(e.metrics.Reloads.WithLabelValues(r))
	}
	return got
}

// TestReloadCountedOncePerChange: each reload increments one counter, and
// a change of the files is counted as a success once, whatever number of
// reloads follow it; the reloads that find the files as they were count
// as unchanged, and still install (a SIGHUP rebuilds the upstreams).
func TestReloadCountedOncePerChange(t *testing.T) {
	e := newEnv(t, `block = ["tiktok"]`, map[string]string{"apps/video.toml": videoApp, "video.txt": "chat.test\n"})
	appFile := filepath.Join(e.dir, "apps", "video.toml")
	tests := []struct {
		name  string
		write func()
		want  string // the counter incremented
	}{
		{"nothing changed", func() {}, "unchanged"},
		{"the config", func() { e.writeConfig(`block = ["video"]`) }, "success"},
		{"again", func() {}, "unchanged"},
		{"the same bytes rewritten", func() { e.writeConfig(`block = ["video"]`) }, "unchanged"},
		{"a comment in the config", func() { e.writeConfig("block = [\"video\"]\n# a comment") }, "success"},
		{"an app file", func() { writeFile(t, appFile, videoApp+"exact = [\"chat.test\"]\n") }, "success"},
		{"a list file the app names", func() {
			writeFile(t, appFile, videoApp+"sources = [{ file = \"../video.txt\", format = \"domains\" }]\n")
		}, "success"},
		{"the list's content", func() { writeFile(t, filepath.Join(e.dir, "video.txt"), "chat.test\nwww.example.test\n") }, "success"},
		{"a new app file the glob matches", func() {
			writeFile(t, filepath.Join(e.dir, "apps", "x.toml"), "[[app]]\nname = \"x\"\ndomains = [\"x.test\"]\n")
		}, "success"},
		{"broken", func() { e.writeConfig(`block = ["no-such-app"]`) }, "failure"},
		{"broken again", func() {}, "failure"},
		// Back to the files of the serving policy: the reload succeeds and
		// is counted, since the failure is what the metrics showed last.
		{"fixed as before", func() { e.writeConfig("block = [\"video\"]\n# a comment") }, "success"},
		{"then nothing", func() {}, "unchanged"},
	}
	for _, tt := range tests {
		before, installs := e.reloads(), e.installs.Load()
		tt.write()
		err := e.reloader.Reload(tt.name)
		if (err != nil) != (tt.want == "failure") {
			t.Fatalf("%s: reload error %v", tt.name, err)
		}
		after := e.reloads()
		for r, n := range after {
			want := before[r]
			if r == tt.want {
				want++
			}
			if n != want {
				t.Errorf("%s: reloads_total{result=%q} went from %v to %v, want %v", tt.name, r, before[r], n, want)
			}
		}
		if wantInstall := tt.want != "failure"; (e.installs.Load() > installs) != wantInstall {
			t.Errorf("%s: installed %d times", tt.name, e.installs.Load()-installs)
		}
		if got := testutil.ToFloat64(e.metrics.LastReloadOK); got != map[bool]float64{true: 0, false: 1}[tt.want == "failure"] {
			t.Errorf("%s: last_reload_successful %v", tt.name, got)
		}
	}
	e.expect("chat.test.", "", blocked, 0)
}

// TestEditAndSIGHUPCountOnce is the operator's case: blocking.watch reloads
// an edit, then `systemctl reload` sends SIGHUP for the same edit. The
// metrics count one successful reload.
func TestEditAndSIGHUPCountOnce(t *testing.T) {
	e := newEnv(t, "watch = true\nblock = [\"tiktok\"]", map[string]string{"apps/video.toml": videoApp})
	e.run()
	e.writeConfig("watch = true\nblock = [\"video\"]")
	e.expect("www.video.test.", "", blocked, 5*time.Second)
	e.reloader.Trigger("SIGHUP")
	// The "reloaded" line of the SIGHUP's reload (merged with a pending
	// trigger, the reason is quoted).
	deadline := time.Now().Add(5 * time.Second)
	for l := e.logs.String(); !strings.Contains(l, `SIGHUP took=`) && !strings.Contains(l, `SIGHUP" took=`); l = e.logs.String() {
		if time.Now().After(deadline) {
			t.Fatalf("no reload for the SIGHUP:\n%s", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A write can come as more than one event, and so as more than one
	// reload by the watcher: those count as unchanged too.
	if got := e.reloads(); got["success"] != 1 || got["unchanged"] < 1 || got["failure"] != 0 {
		t.Errorf("an edit reloaded by the watcher, then SIGHUP: %v, want one success, the rest unchanged", got)
	}
}
