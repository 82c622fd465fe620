package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// systemdAnalyze returns the path of systemd-analyze, or fails the test
// with the way to install it.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed: run `make test-deps` (installs Debian's systemd package)")
	}
	return p
}

// TestSystemdUnit checks deploy/systemd/appfence.service offline: that it
// parses (systemd-analyze verify) and that its sandbox keeps the exposure
// score of systemd-analyze security at 2.0 or below ("OK"; 1.4 when
// written). The binary path is pointed at an existing executable, since
// verify checks it.
func TestSystemdUnit(t *testing.T) {
	sa := systemdAnalyze(t)
	unit, err := os.ReadFile("systemd/appfence.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"DynamicUser=yes", "AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID",
		"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=", "Before=nss-lookup.target\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "appfence.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/appfence", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=20", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure over 2.0: %v\n%s", err, out)
	}
	t.Logf("%s", out[strings.LastIndex(string(out), "→"):])
}
