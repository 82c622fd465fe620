package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
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

// opsConfig writes a config listening on 127.0.0.1:port, with the metrics
// on mport (0: off), and returns its path.
func opsConfig(t *testing.T, upstream string, port, mport int) string {
	t.Helper()
	metrics := `""`
	if mport != 0 {
		metrics = fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", mport))
	}
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	text := fmt.Sprintf("[server]\nlisten = [\"127.0.0.1:%d\"]\n[upstream]\nservers = [%q]\n[blocking]\nwatch = false\n[metrics]\nlisten = %s\n",
		port, upstream, metrics)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSystemdNotify runs the binary as systemd runs a Type=notify unit
// with WatchdogSec: $NOTIFY_SOCKET is a unix datagram socket of the test,
// and $WATCHDOG_USEC set. READY=1 comes once DNS is answered (the first
// query after it needs no retry), RELOADING=1 with MONOTONIC_USEC and
// READY=1 frame a SIGHUP reload, WATCHDOG=1 pings arrive at half the
// watchdog time, and STOPPING=1 precedes the exit.
func TestSystemdNotify(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	port := freePort(t)
	cfg := opsConfig(t, up.Addr, port, 0)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()

	cmd, stderr := exec.Command(bin, "serve", "-config", cfg), &lockedBuffer{}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var log []string // every message, in order
	// next returns the next message that is not a watchdog ping.
	next := func(what string) string {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("waiting for %s: the socket closed", what)
				}
				log = append(log, m)
				if m != "WATCHDOG=1" {
					return m
				}
			case <-exited:
				t.Fatalf("waiting for %s: appfence exited: %v\n%s", what, exitErr, stderr)
			case <-timeout:
				t.Fatalf("no %s in 10 s; got %q\n%s", what, log, stderr)
			}
		}
	}
	if m := next("READY=1"); m != "READY=1\nSTATUS=serving" {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	resp, err := dnstest.Client{Timeout: time.Second}.Exchange(context.Background(), "udp", fmt.Sprintf("127.0.0.1:%d", port),
		dnstest.NewQuery("www.tiktok.com.", dns.TypeA, false, false))
	if err != nil || resp.Rcode != dns.RcodeNameError {
		t.Fatalf("the first query after READY=1: %v %v, want NXDOMAIN", resp, err)
	}

	cmd.Process.Signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("at the reload: %q, want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if m := next("READY=1 after the reload"); m != "READY=1\nSTATUS=serving; the last reload worked" {
		t.Errorf("after the reload: %q", m)
	}

	// A broken file: the reload fails, the service is ready again with
	// the previous policy.
	if err := os.WriteFile(cfg, []byte("[blocking]\nblock = [\"no-such-app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.HasPrefix(m, "RELOADING=1\n") {
		t.Errorf("at the failed reload: %q", m)
	}
	if m := next("READY=1 after the failed reload"); !strings.HasPrefix(m, "READY=1\nSTATUS=serving the previous policy") {
		t.Errorf("after the failed reload: %q", m)
	}

	// Watchdog pings: every 150 ms; wait for three more.
	pings := 0
	deadline := time.After(10 * time.Second)
	for pings < 3 {
		select {
		case m := <-msgs:
			log = append(log, m)
			if m == "WATCHDOG=1" {
				pings++
			}
		case <-deadline:
			t.Fatalf("%d watchdog pings in 10 s with WATCHDOG_USEC=300000: %q", pings, log)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if m := next("STOPPING=1"); m != "STOPPING=1" {
		t.Errorf("at SIGTERM: %q", m)
	}
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("exit: %v\n%s", exitErr, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// TestHealthcheck runs `appfence healthcheck` against a running instance:
// 0 with its config (both /readyz and DNS), with -url and with -dns alone;
// 1 when the DNS port or the URL does not answer, when /readyz is 503, and
// once the instance stopped.
func TestHealthcheck(t *testing.T) {
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	port, mport := freePort(t), freePort(t)
	cfg := opsConfig(t, up.Addr, port, mport)
	s := startServe(t, bin, cfg, fmt.Sprintf("127.0.0.1:%d", port))

	unready := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready: no policy loaded", http.StatusServiceUnavailable)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go unready.Serve(l)
	defer unready.Close()
	closed := freePort(t)

	check := func(args ...string) (int, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"healthcheck", "-timeout", "500ms"}, args...), nil, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"the instance's config", []string{"-config", cfg}, 0, "ok"},
		{"readyz", []string{"-url", fmt.Sprintf("http://127.0.0.1:%d/readyz", mport)}, 0, "ok"},
		{"dns", []string{"-dns", fmt.Sprintf("127.0.0.1:%d", port)}, 0, "ok"},
		{"dns not answering", []string{"-dns", fmt.Sprintf("127.0.0.1:%d", closed)}, 1, "dns 127.0.0.1"},
		{"http not answering", []string{"-url", fmt.Sprintf("http://127.0.0.1:%d/readyz", closed)}, 1, "connection refused"},
		{"not ready", []string{"-url", "http://" + l.Addr().String() + "/readyz"}, 1, "503 Service Unavailable"},
		{"bad flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"a bad config", []string{"-config", filepath.Join(t.TempDir(), "missing.toml")}, 1, "missing.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := check(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("healthcheck %q: %d %q, want %d and %q", tt.args, code, out, tt.code, tt.want)
			}
		})
	}
	// The binary itself, as a HEALTHCHECK runs it.
	if out, err := exec.Command(bin, "healthcheck", "-config", cfg).CombinedOutput(); err != nil {
		t.Errorf("%s healthcheck: %v %s", bin, err, out)
	}
	s.stop(t)
	if code, out := check("-config", cfg); code != 1 {
		t.Errorf("healthcheck of a stopped instance: %d %q, want 1", code, out)
	}
}

func TestLoopback(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{":5053", "127.0.0.1:5053"},
		{"0.0.0.0:53", "127.0.0.1:53"},
		{"[::]:53", "[::1]:53"},
		{"10.1.2.3:53", "10.1.2.3:53"},
		{"[::1]:9153", "[::1]:9153"},
		{"no-port", "no-port"},
	} {
		if got := loopback(tt.in); got != tt.want {
			t.Errorf("loopback(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
