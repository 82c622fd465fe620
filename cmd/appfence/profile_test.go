package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/appfence/appfence/internal/dnstest"
)

// profileConfig writes a config with DoT and DoH listeners and returns its
// path.
func profileConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca := dnstest.NewCA(t)
	certFile, keyFile := dnstest.WritePair(t, dir, ca.Issue(t, "dns.agency.test", "*.dns.agency.test"))
	cfg := filepath.Join(dir, "appfence.toml")
	text := fmt.Sprintf("[server.tls]\ncert_file = %q\nkey_file = %q\nserver_name = \"dns.agency.test\"\ndot_listen = [\"127.0.0.1:853\"]\ndoh_listen = [\"127.0.0.1:8443\"]\n", certFile, keyFile)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestProfile: the .mobileconfig is a property list that Python's plistlib
// reads, with the com.apple.dnsSettings.managed payload of the device.
func TestProfile(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 is needed to parse the property list")
	}
	cfg := profileConfig(t)
	const check = `import plistlib, sys, json
p = plistlib.load(open(sys.argv[1], "rb"))
d = p["PayloadContent"][0]
assert p["PayloadType"] == "Configuration" and p["PayloadVersion"] == 1
assert d["PayloadType"] == "com.apple.dnsSettings.managed"
print(json.dumps(d["DNSSettings"], sort_keys=True))`
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"https", []string{"-client-id", "Officer-017"},
			`{"DNSProtocol": "HTTPS", "ServerURL": "https://dns.agency.test:8443/dns-query/officer-017"}`},
		{"tls with certificate", []string{"-client-id", "officer-017", "-protocol", "tls", "-cert-uuid", "9F3C0C5E-0C4B-4B8E-9D5E-2A1B3C4D5E6F"},
			`{"DNSProtocol": "TLS", "PayloadCertificateUUID": "9F3C0C5E-0C4B-4B8E-9D5E-2A1B3C4D5E6F", "ServerName": "officer-017.dns.agency.test"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"profile", "-config", cfg}, tt.args...), nil, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			f := filepath.Join(t.TempDir(), "p.mobileconfig")
			os.WriteFile(f, stdout.Bytes(), 0o644)
			out, err := exec.Command(py, "-c", check, f).CombinedOutput()
			if err != nil {
				t.Fatalf("plistlib: %v\n%s\n%s", err, out, stdout.String())
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("DNSSettings %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestProfileAndroidAndErrors(t *testing.T) {
	cfg := profileConfig(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"profile", "-config", cfg, "-client-id", "officer-017", "-android"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "officer-017.dns.agency.test" {
		t.Errorf("android hostname %q", got)
	}
	for _, args := range [][]string{
		{"-client-id", "bad_id"},
		{"-client-id", "x", "-protocol", "quic"},
		{"-client-id", "x", "-cert-uuid", "nope"},
	} {
		stderr.Reset()
		if code := run(context.Background(), append([]string{"profile", "-config", cfg}, args...), nil, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
