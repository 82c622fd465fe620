package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// buildBinary builds appfence once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "appfence")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a port free for UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func needDig(t *testing.T) string {
	t.Helper()
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig is not installed: run `make test-deps` (installs bind9-dnsutils)")
	}
	return dig
}

// digRun runs dig and returns its output.
func digRun(t *testing.T, dig string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dig, append([]string{"+tries=1", "+time=3"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestEndToEndWithDig(t *testing.T) {
	dig := needDig(t)
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t,
		"www.tiktok.com. 300 IN A 192.0.2.10",
		"www.example.test. 300 IN A 192.0.2.20",
	)
	port := freePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]

[upstream]
servers = ["%s"]

[metrics]
listen = ""

[[group]]
name = "investigators"
clients = ["127.0.0.2"]
allow = ["tiktok"]
`, port, up.Addr)), 0o644)

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	proc := startServe(t, bin, cfg, addr)

	p := fmt.Sprintf("-p%d", port)
	out := digRun(t, dig, "@127.0.0.1", p, "www.tiktok.com")
	for _, want := range []string{"status: NXDOMAIN", "EDE: 15 (Blocked)", "blocked: app=tiktok group=default", "tiktok.com.\t\t60\tIN\tSOA"} {
		if !strings.Contains(out, want) {
			t.Errorf("dig www.tiktok.com: output lacks %q:\n%s", want, out)
		}
	}
	out = digRun(t, dig, "@127.0.0.1", p, "-b", "127.0.0.2", "www.tiktok.com")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.10") {
		t.Errorf("dig -b 127.0.0.2 www.tiktok.com: want the upstream's answer:\n%s", out)
	}
	out = digRun(t, dig, "@127.0.0.1", p, "+tcp", "WWW.Example.TEST", "A")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "WWW.Example.TEST.\t300\tIN\tA\t192.0.2.20") {
		t.Errorf("dig +tcp WWW.Example.TEST: want the answer in the asked case:\n%s", out)
	}
	out = digRun(t, dig, "@127.0.0.1", p, "+short", "www.tiktok.com", "HTTPS")
	if strings.TrimSpace(out) != "" {
		t.Errorf("dig www.tiktok.com HTTPS: want no records, got %q", out)
	}

	proc.stop(t)
	if !strings.Contains(proc.stderr.String(), "stopped") {
		t.Errorf("log lacks the stop message:\n%s", proc.stderr.String())
	}
}

// process is a running `appfence serve`.
type process struct {
	cmd    *exec.Cmd
	exited chan error
	stderr *syncBuffer
}

// startServe runs `appfence serve -config cfg` and waits until it answers
// on addr; it is killed when the test ends.
func startServe(t *testing.T, bin, cfg, addr string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, "serve", "-config", cfg), exited: make(chan error, 1), stderr: &syncBuffer{}}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	waitServing(t, addr, p.exited, p.stderr)
	return p
}

// stop sends SIGTERM and expects a graceful exit with status 0.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, p.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("appfence did not stop after SIGTERM")
	}
	p.exited <- nil // for the cleanup
}

// waitServing waits until the resolver answers on addr.
func waitServing(t *testing.T, addr string, exited <-chan error, stderr fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("appfence exited: %v\n%s", err, stderr.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := dnstest.Client{Timeout: 300 * time.Millisecond}.Exchange(ctx, "udp", addr, dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
		cancel()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("appfence did not answer on %s\n%s", addr, stderr.String())
}

func TestCheckMisspeltKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte("[upstream]\nservers = [\"127.0.0.1:53\"]\n\n[blocking]\nrespones = \"nodata\"\n"), 0o644)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"check", "-config", cfg}, nil, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := cfg + ":5: blocking.respones: unknown key"
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
}

func TestCheckValid(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte(`
[upstream]
servers = ["127.0.0.1:53"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24"]
allow = ["tiktok"]
`), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", cfg}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{": OK", "tiktok", "investigators", "10.20.30.0/24", "exempted", "blocked"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appfence.toml")
	os.WriteFile(cfg, []byte(`
[upstream]
servers = ["127.0.0.1:53"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24"]
allow = ["tiktok"]
`), 0o644)
	tests := []struct {
		client string
		args   []string
		want   []string
	}{
		{"10.1.2.3", []string{"WWW.TikTok.com"}, []string{"www.tiktok.com", "default", "blocked", "tiktok", "tiktok.com (domain)", "builtin:tiktok.toml:", "NXDOMAIN"}},
		{"10.20.30.5", []string{"www.tiktok.com", "HTTPS"}, []string{"HTTPS", "investigators", "exempted", "forwarded upstream"}},
		{"10.1.2.3", []string{"www.example.org"}, []string{"www.example.org", "default", "resolved", "forwarded upstream"}},
		{"203.0.113.9", []string{"www.tiktok.com"}, []string{"refused", "REFUSED"}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		args := append([]string{"explain", "-config", cfg, "-client", tt.client}, tt.args...)
		if code := run(context.Background(), args, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("explain %s %v lacks %q:\n%s", tt.client, tt.args, w, stdout.String())
			}
		}
	}
	// several names from standard input
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"explain", "-config", cfg, "-client", "10.1.2.3"},
		strings.NewReader("www.tiktok.com\n# comment\nwww.example.org\n"), &stdout, &stderr)
	if code != 0 || strings.Count(stdout.String(), "\n") != 3 {
		t.Errorf("stdin names: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"version"}, nil, &stdout, &stdout); code != 0 || !strings.HasPrefix(stdout.String(), "appfence ") {
		t.Errorf("version: %d %q", code, stdout.String())
	}
}
