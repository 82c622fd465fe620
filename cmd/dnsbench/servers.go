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
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/synthetic"
	"github.com/appfence/appfence/internal/unbound"
)

// server is one DNS server under test: how to write its configuration and
// start it.
type server struct {
	name    string
	version string
	addr    string   // 127.0.0.1:port it serves on
	argv    []string // command line, its configuration written already
}

// servers returns the servers to measure, with their configuration written
// to dir, and the reasons the others are left out.
func (o options) servers(dir, upstream string) (out []server, skipped []string) {
	add := func(name, bin string, configure func(bin, addr string) ([]string, error), versionArgs ...string) {
		if bin == "" {
			skipped = append(skipped, name+": not asked for")
			return
		}
		path, err := exec.LookPath(bin)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
			return
		}
		addr, err := synthetic.FreeAddr()
		if err == nil {
			var argv []string
			if argv, err = configure(path, addr); err == nil {
				out = append(out, server{name: name, version: versionOf(path, versionArgs...), addr: addr, argv: argv})
				return
			}
		}
		skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
	}
	add("appfence", o.appfence, func(bin, addr string) ([]string, error) {
		return write(dir, "appfence.toml", appfenceConfig(addr, upstream), bin, "serve", "-config")
	}, "version")
	add("unbound", o.unbound, func(bin, addr string) ([]string, error) {
		return write(dir, "unbound.conf", unboundConfig(dir, addr, upstream), bin, "-d", "-c")
	}, "-V")
	add("coredns", o.coredns, func(bin, addr string) ([]string, error) {
		return write(dir, "Corefile", corednsConfig(addr, upstream), bin, "-conf")
	}, "-version")
	return out, skipped
}

// write writes a configuration file and returns the command line that
// starts the server with it: argv followed by the file's path.
func write(dir, name, text string, argv ...string) ([]string, error) {
	path := filepath.Join(dir, name)
	return append(argv, path), os.WriteFile(path, []byte(text), 0o644)
}

// blockedZones are the TikTok zones of the blocked workload, blocked by
// AppFence's built-in catalog and configured for the others.
var blockedZones = []string{"tiktok.com", "tiktokv.com", "tiktokcdn.com", "byteoversea.com", "musical.ly", "ibytedtos.com", "ttwstatic.com", "ibyteimg.com"}

// appfenceConfig serves on addr with the built-in catalog (tiktok blocked
// by default), forwarding to upstream, with what is not measured off:
// metrics on a free port are kept (they are part of every query's work),
// watching files and the query log are off.
func appfenceConfig(addr, upstream string) string {
	metrics, _ := synthetic.FreeAddr()
	return fmt.Sprintf(`[server]
listen = [%q]
[upstream]
servers = [%q]
[blocking]
lists = []
watch = false
[metrics]
listen = %q
[log]
level = "warn"
`, addr, upstream, metrics)
}

// unboundConfig is Unbound with one thread, forwarding everything to
// upstream, the blocked zones answered NXDOMAIN. Unbound answers names
// under test. itself (RFC 6761) unless told not to.
func unboundConfig(dir, addr, upstream string) string {
	var zones strings.Builder
	for _, z := range blockedZones {
		fmt.Fprintf(&zones, "  local-zone: %q always_nxdomain\n", z+".")
	}
	return unbound.ForwarderConfig(dir, addr, upstream, zones.String())
}

// corednsConfig is CoreDNS with forward and cache, the blocked zones in a
// server block of their own answered NXDOMAIN by the template plugin.
func corednsConfig(addr, upstream string) string {
	host, port, _ := net.SplitHostPort(addr)
	var zones []string
	for _, z := range blockedZones {
		zones = append(zones, z+":"+port)
	}
	return fmt.Sprintf(`.:%[1]s {
  bind %[2]s
  cache
  forward . %[3]s
}
%[4]s {
  bind %[2]s
  template ANY ANY {
    rcode NXDOMAIN
  }
}
`, port, host, upstream, strings.Join(zones, " "))
}

// versionOf returns the first line a binary prints of its version.
func versionOf(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return "?"
}

// process is a server started by start.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    *logBuffer
	exited chan struct{}
}

// start runs the server pinned to cpu and waits until it answers.
func (s server) start(ctx context.Context, cpu string) (*process, error) {
	p := &process{name: s.name, log: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("taskset", append([]string{"-c", cpu}, s.argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("ready.bench.test.", dns.TypeA)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r, _, err := c.ExchangeContext(ctx, m, s.addr); err == nil && r.Rcode == dns.RcodeSuccess {
			return p, nil
		}
		if p.crashed() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("not answering:\n%s", p.log.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// crashed reports whether the process has exited.
func (p *process) crashed() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop stops the process by its PID: SIGTERM, then SIGKILL after 5 s.
func (p *process) stop() {
	if p.crashed() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// logBuffer keeps what a process writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// tail returns the last n lines written.
func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
