package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestCacheAcrossReloads runs the binary: dig's repeat is answered from the
// cache, a SIGHUP reload keeps the cache, and a reload that sets
// cache.size = 0 empties it and turns it off.
func TestCacheAcrossReloads(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	writeConfig := func(size int) {
		t.Helper()
		text := fmt.Sprintf("[server]\nlisten = [\"127.0.0.1:%d\"]\n\n[upstream]\nservers = [%q]\n\n"+
			"[cache]\nsize = %d\n\n[blocking]\nwatch = false\n\n[metrics]\nlisten = \"\"\n", port, up.Addr, size)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(1000)

	s := startServe(t, bin, cfg, fmt.Sprintf("127.0.0.1:%d", port)) // asks a blocked name: never upstream

	p := fmt.Sprintf("-p%d", port)
	askA := func(step string, wantUpstream int64) {
		t.Helper()
		out := digRun(t, dig, "@127.0.0.1", p, "+noall", "+answer", "www.example.test", "A")
		if !strings.Contains(out, "192.0.2.20") {
			t.Errorf("%s: dig output lacks the answer:\n%s", step, out)
		}
		if got := up.Total(); got != wantUpstream {
			t.Errorf("%s: upstream got %d queries, want %d", step, got, wantUpstream)
		}
	}
	reload := func(n int) {
		t.Helper()
		s.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(s.stderr.String(), "msg=reloaded") < n {
			if time.Now().After(deadline) {
				t.Fatalf("no reload %d logged:\n%s", n, s.stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	askA("first query", 1)
	askA("repeat", 1)
	reload(1)
	askA("after a reload", 1)
	writeConfig(0)
	reload(2)
	askA("cache turned off by a reload", 2)
	askA("cache still off", 3)
}
