package reload

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/appfence/appfence/config"
)

// TestRemoteSourceSurvivesRestart: a remote source is downloaded in the
// background from a loopback HTTP server and, once there, blocks; after a
// restart with the server gone, the cached copy still blocks.
func TestRemoteSourceSurvivesRestart(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"1"`)
		if r.Header.Get("If-None-Match") == `"1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "# a hosts list\n0.0.0.0 remote-only.test\n")
	}))
	apps := map[string]string{"apps/remote.toml": fmt.Sprintf(`[[app]]
name = "remote"
sources = [{ url = "%s/list.txt", format = "hosts", refresh = "1h" }]
`, srv.URL)}
	e := newEnv(t, `block = ["remote"]`, apps)
	// Not downloaded yet: reported, and the rest of the policy serves.
	if !strings.Contains(e.logs.String(), "not loaded: not downloaded yet") {
		t.Errorf("the missing copy is not reported:\n%s", e.logs.String())
	}
	e.expect("www.tiktok.com.", "192.0.2.10", resolved, 0)
	e.expect("remote-only.test.", "", wrong, 0) // the upstream's own NXDOMAIN, no EDE

	e.run()
	e.expect("remote-only.test.", "", blocked, 5*time.Second)
	cacheDir := filepath.Join(e.dir, config.DefaultCacheDir)
	if files, _ := os.ReadDir(cacheDir); len(files) != 2 {
		t.Errorf("cache %s holds %d files, want the list and its meta", cacheDir, len(files))
	}
	// The new policy serves before the reload's log line is written: wait
	// for the line rather than read the log once.
	logged := func() bool {
		l := e.logs.String()
		return strings.Contains(l, "reason=\"downloaded: "+srv.URL+"/list.txt\"") && strings.Contains(l, "rules_added=1")
	}
	for wait := time.Now().Add(5 * time.Second); !logged() && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	if !logged() {
		t.Errorf("the log does not show the reload the download caused:\n%s", e.logs.String())
	}

	// Restart with the server unreachable.
	srv.Close()
	restarted := newEnvIn(t, e.dir, `block = ["remote"]`, nil)
	restarted.expect("remote-only.test.", "", blocked, 0) // from the copy, at start
	restarted.run()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(restarted.logs.String(), "download failed; the last good copy stays in use") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(restarted.logs.String(), "the last good copy stays in use") {
		t.Errorf("the failed download is not logged:\n%s", restarted.logs.String())
	}
	restarted.expect("remote-only.test.", "", blocked, 0)
}
