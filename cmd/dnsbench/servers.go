package main

import (
	"bytes"
	"context"
	"errors"
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
)

// server is one DNS server under test: how to write its configuration and
// start it.
type server struct {
	name    string
	version string
	addr    string   // 127.0.0.1:port of plain DNS, UDP and TCP
	dot     string   // 127.0.0.1:port of DNS over TLS; "" when none
	doh     string   // 127.0.0.1:port of DNS over HTTPS; "" when none
	argv    []string // command line, its configuration written already
	env     []string // added to the environment
	udpOnly bool     // the trivial responder
	// without says why a transport is not served ("doh": "built
	// without nghttp2").
	without map[string]string
}

// addrFor returns the address the server serves mode on, or why it does
// not.
func (s server) addrFor(mode string) (string, error) {
	if why, ok := s.without[mode]; ok {
		return "", errors.New(why)
	}
	switch {
	case mode == "udp":
		return s.addr, nil
	case s.udpOnly:
		return "", fmt.Errorf("UDP only")
	case mode == "tcp":
		return s.addr, nil
	case mode == "dot" && s.dot != "":
		return s.dot, nil
	case mode == "doh" && s.doh != "":
		return s.doh, nil
	}
	return "", fmt.Errorf("no %s listener", mode)
}

// setup is what every server's configuration needs.
type setup struct {
	dir      string // where configurations are written
	upstream string // the synthetic upstream, 127.0.0.1:port
	tls      tlsFiles
	// bothCores: AppFence with GOMAXPROCS 2, Unbound with two threads
	// and so-reuseport (the servers are not pinned).
	bothCores bool
}

// servers returns the servers to measure, with their configuration written
// to st.dir, and the reasons the others are left out.
func (o options) servers(st setup) (out []server, skipped []string) {
	suffix := ""
	if st.bothCores {
		suffix = "-2"
	}
	add := func(name, bin string, configure func(s *server) error, versionArgs ...string) {
		if bin == "" {
			skipped = append(skipped, name+": not asked for")
			return
		}
		path, err := exec.LookPath(bin)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
			return
		}
		s := server{name: name, argv: []string{path}}
		if len(versionArgs) > 0 {
			s.version = firstLine(versionOf(path, versionArgs...))
		}
		for _, a := range []*string{&s.addr, &s.dot, &s.doh} {
			if *a, err = synthetic.FreeAddr(); err != nil {
				break
			}
		}
		if err == nil {
			if err = configure(&s); err == nil {
				out = append(out, s)
				return
			}
		}
		skipped = append(skipped, fmt.Sprintf("%s: %v", name, err))
	}
	add("appfence", o.appfence, func(s *server) error {
		if st.bothCores {
			s.env = []string{"GOMAXPROCS=2"}
		}
		return s.write(st.dir, "appfence"+suffix+".toml", appfenceConfig(*s, st), "serve", "-config")
	}, "version")
	add("unbound", o.unbound, func(s *server) error {
		if !strings.Contains(versionOf(s.argv[0], "-V"), "nghttp2") {
			s.without = map[string]string{"doh": "Unbound built without nghttp2 (unbound -V): no https-port"}
		}
		return s.write(st.dir, "unbound"+suffix+".conf", unboundConfig(*s, st), "-d", "-c")
	}, "-V")
	add("coredns", o.coredns, func(s *server) error {
		return s.write(st.dir, "Corefile"+suffix, corednsConfig(*s, st), "-conf")
	}, "-version")
	if o.trivialBin != "" {
		add("trivial", o.trivialBin, func(s *server) error {
			s.dot, s.doh, s.udpOnly, s.version = "", "", true, "../shared/tools/trivial"
			s.argv = append(s.argv, "-addr", s.addr)
			return nil
		})
	}
	return out, skipped
}

// write writes a configuration file and adds to the command line the
// arguments that start the server with it: args followed by the file's
// path.
func (s *server) write(dir, name, text string, args ...string) error {
	path := filepath.Join(dir, name)
	s.argv = append(append(s.argv, args...), path)
	return os.WriteFile(path, []byte(text), 0o644)
}

// blockedZones are the TikTok zones of the blocked workload, blocked by
// AppFence's built-in catalog and configured for the others.
var blockedZones = []string{"tiktok.com", "tiktokv.com", "tiktokcdn.com", "byteoversea.com", "musical.ly", "ibytedtos.com", "ttwstatic.com", "ibyteimg.com"}

// cacheEntries is the cache size of every server: more than the names of
// the memory step (memoryNames), so that none is evicted.
const cacheEntries = 300000

// appfenceConfig serves on the server's addresses with the built-in
// catalog (TikTok blocked by default), an exempt group for exemptClient,
// forwarding to the upstream, the cache large enough for the memory step,
// no bound on the upstream queries in flight per client or zone (every
// name of the miss workload is in one zone, from one client; Unbound and
// CoreDNS have no such bound either).
// Metrics on a free port are kept (they are part of every query's work);
// watching files and the query log are off.
func appfenceConfig(s server, st setup) string {
	metrics, _ := synthetic.FreeAddr()
	return fmt.Sprintf(`[server]
listen = [%q]

[server.tls]
cert_file = %q
key_file = %q
server_name = %q
dot_listen = [%q]
doh_listen = [%q]

[upstream]
servers = [%q]
max_in_flight_per_client = 0
max_in_flight_per_zone = 0

[cache]
size = %d

[blocking]
lists = []
watch = false

[[group]]
name = "exempt"
clients = [%q]
allow = ["tiktok"]

[metrics]
listen = %q

[log]
level = "warn"
`, s.addr, st.tls.cert, st.tls.key, tlsName, s.dot, s.doh, st.upstream, cacheEntries, exemptClient, metrics)
}

// unboundConfig is Unbound forwarding everything to the upstream, one
// thread (two with so-reuseport on both cores), the blocked zones answered
// NXDOMAIN for every client but exemptClient (tags: every loopback client
// has "block", exemptClient "exempt", whose action makes the zones
// transparent), DoT and DoH (tls-port, https-port) with the bench's
// certificate, caches large enough for the memory step, and socket buffers
// of 4 MB (so-rcvbuf, so-sndbuf) as NLnet Labs' tuning guide advises for
// load, so that bursts of the open loop are not lost. Unbound answers
// names under test. itself (RFC 6761) unless told not to.
func unboundConfig(s server, st setup) string {
	host, port, _ := net.SplitHostPort(s.addr)
	_, dot, _ := net.SplitHostPort(s.dot)
	_, doh, _ := net.SplitHostPort(s.doh)
	uhost, uport, _ := net.SplitHostPort(st.upstream)
	threads, reuse := 1, "no"
	if st.bothCores {
		threads, reuse = 2, "yes"
	}
	var zones strings.Builder
	for _, z := range blockedZones {
		fmt.Fprintf(&zones, "  local-zone: %q always_nxdomain\n  local-zone-tag: %q \"block exempt\"\n", z+".", z+".")
	}
	return fmt.Sprintf(`server:
  interface: %[1]s@%[2]s
  interface: %[1]s@%[3]s
  interface: %[1]s@%[4]s
  tls-port: %[3]s
  https-port: %[4]s
  tls-service-key: %[5]q
  tls-service-pem: %[6]q
  num-threads: %[7]d
  so-reuseport: %[8]s
  incoming-num-tcp: 1000
  so-rcvbuf: 4m
  so-sndbuf: 4m
  msg-cache-size: 256m
  rrset-cache-size: 512m
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %[9]q
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  access-control: %[10]s/32 allow
  define-tag: "block exempt"
  access-control-tag: 127.0.0.0/8 "block"
  access-control-tag: %[10]s/32 "exempt"
  access-control-tag-action: %[10]s/32 "exempt" transparent
  do-not-query-localhost: no
  module-config: "iterator"
  local-zone: "test." nodefault
%[11]sremote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: %[12]s@%[13]s
`, host, port, dot, doh, st.tls.key, st.tls.cert, threads, reuse, st.dir, exemptClient, zones.String(), uhost, uport)
}

// corednsConfig is CoreDNS with forward and cache, for plain DNS, DoT
// (tls://) and DoH (https://): the blocked zones in a server block of
// their own answered NXDOMAIN by the template plugin, and before it the
// same zones for exemptClient (the view plugin) forwarded and cached.
func corednsConfig(s server, st setup) string {
	var b strings.Builder
	for _, l := range []struct{ scheme, addr string }{{"", s.addr}, {"tls://", s.dot}, {"https://", s.doh}} {
		host, port, _ := net.SplitHostPort(l.addr)
		tls := ""
		if l.scheme != "" {
			tls = fmt.Sprintf("  tls %s %s\n", st.tls.cert, st.tls.key)
		}
		var zones []string
		for _, z := range blockedZones {
			zones = append(zones, l.scheme+z+":"+port)
		}
		forward := fmt.Sprintf("  cache {\n    success %[1]d\n    denial %[1]d\n  }\n  forward . %[2]s\n", cacheEntries, st.upstream)
		fmt.Fprintf(&b, "%s.:%s {\n  bind %s\n%s%s}\n", l.scheme, port, host, tls, forward)
		fmt.Fprintf(&b, "%s {\n  bind %s\n%s  view exempt {\n    expr incidr(client_ip(), '%s/32')\n  }\n%s}\n",
			strings.Join(zones, " "), host, tls, exemptClient, forward)
		fmt.Fprintf(&b, "%s {\n  bind %s\n%s  template ANY ANY {\n    rcode NXDOMAIN\n  }\n}\n",
			strings.Join(zones, " "), host, tls)
	}
	return b.String()
}

// versionOf returns what a binary prints of its version.
func versionOf(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	return string(out)
}

// firstLine returns the first line of a version.
func firstLine(version string) string {
	for _, line := range strings.Split(version, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return "?"
}

// process is a server started by start.
type process struct {
	name   string
	pid    int
	cmd    *exec.Cmd
	log    *logBuffer
	exited chan struct{}
}

// start runs the server pinned to cpus (taskset -c, which execs the server:
// the PID is the server's) and waits until it answers on every listener.
func (s server) start(ctx context.Context, cpus string) (*process, error) {
	p := &process{name: s.name, log: &logBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("taskset", append([]string{"-c", cpus}, s.argv...)...)
	p.cmd.Env = append(os.Environ(), s.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	p.pid = p.cmd.Process.Pid
	go func() { p.cmd.Wait(); close(p.exited) }()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("ready.bench.test.", dns.TypeA)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Any answer will do: the trivial responder answers NXDOMAIN.
		_, _, err := c.ExchangeContext(ctx, m, s.addr)
		for _, a := range []string{s.dot, s.doh} {
			if a != "" && err == nil {
				var conn net.Conn
				if conn, err = net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
					conn.Close()
				}
			}
		}
		if err == nil {
			return p, nil
		}
		if p.crashed() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("not answering: %v\n%s", err, p.log.tail(20))
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
