package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/appfence/appfence/internal/dnstest"
)

// metric returns the value of the sample line that starts with series
// (name and labels, labels in alphabetical order), or -1.
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

// TestEndToEndMonitorAndReload runs the binary: a monitored app resolves
// and is counted as monitored; SIGHUP reloads a changed config; a broken
// app file leaves the old policy blocking and the metrics say so.
func TestEndToEndMonitorAndReload(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t,
		"www.larksuite.com. 300 IN A 192.0.2.50",
		"www.video.test. 300 IN A 192.0.2.30",
	)
	port, mport := freePort(t), freePort(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", mport)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	appFile := filepath.Join(dir, "apps", "video.toml")
	os.Mkdir(filepath.Join(dir, "apps"), 0o755)
	os.WriteFile(appFile, []byte("[[app]]\nname = \"video\"\ndomains = [\"video.test\"]\n"), 0o644)
	writeConfig := func(blocking string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]
[upstream]
servers = ["%s"]
[blocking]
lists = ["apps/*.toml"]
watch = false
%s
[metrics]
listen = "%s"
`, port, up.Addr, blocking, maddr)), 0o644)
	}
	writeConfig("block = [\"video\"]\nmonitor = [\"lark\"]")

	proc := startServe(t, bin, cfg, fmt.Sprintf("127.0.0.1:%d", port))
	cmd, stderr := proc.cmd, proc.stderr
	p := fmt.Sprintf("-p%d", port)

	// monitored: resolved, and counted
	out := digRun(t, dig, "@127.0.0.1", p, "www.larksuite.com")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.50") || strings.Contains(out, "EDE") {
		t.Errorf("monitored name: want the upstream's answer:\n%s", out)
	}
	if v := metric(t, maddr, `appfence_queries_total{action="monitored",group="default"}`); v != 1 {
		t.Errorf("queries_total monitored = %v, want 1", v)
	}
	if v := metric(t, maddr, `appfence_app_queries_total{action="monitored",app="lark",group="default"}`); v != 1 {
		t.Errorf("app_queries_total lark monitored = %v, want 1", v)
	}

	// SIGHUP: lark blocked now
	writeConfig("block = [\"video\", \"lark\"]")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return metric(t, maddr, `appfence_config_reloads_total{result="success"}`) == 1 }, stderr)
	out = digRun(t, dig, "@127.0.0.1", p, "www.larksuite.com")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "blocked: app=lark group=default") {
		t.Errorf("after the reload lark is not blocked:\n%s", out)
	}
	if !strings.Contains(stderr.String(), `actions="lark: monitored -> blocked"`) {
		t.Errorf("the log does not say what the reload changed:\n%s", stderr.String())
	}

	// a broken app file: the old policy keeps blocking
	os.WriteFile(appFile, []byte("[[app]]\nname = \"video\"\ndomains = [\"video..test\"]\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the failed reload", func() bool { return metric(t, maddr, `appfence_config_reloads_total{result="failure"}`) == 1 }, stderr)
	if v := metric(t, maddr, "appfence_config_last_reload_successful"); v != 0 {
		t.Errorf("last_reload_successful = %v, want 0", v)
	}
	if !strings.Contains(stderr.String(), appFile+`:3: app[0].domains[0]: \"video..test\"`) {
		t.Errorf("the log lacks the error with file:line:\n%s", stderr.String())
	}
	for _, name := range []string{"www.video.test", "www.larksuite.com"} {
		if out := digRun(t, dig, "@127.0.0.1", p, name); !strings.Contains(out, "status: NXDOMAIN") {
			t.Errorf("%s after the failed reload:\n%s", name, out)
		}
	}

	proc.stop(t)
}

func waitFor(t *testing.T, what string, ok func() bool, log *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
