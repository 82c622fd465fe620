package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The soak's client addresses, all on loopback. allow_clients is
// 127.0.0.0/25, so .200 is outside it.
const (
	clientExempt    = "127.0.0.2"  // group investigators: tiktok exempted
	clientTCP       = "127.0.0.3"  // TCP queries
	clientSlow      = "127.0.0.4"  // TCP clients that stall
	clientFlood     = "127.0.0.66" // over rate_limit
	clientMalformed = "127.0.0.77" // malformed packets
	clientRefused   = "127.0.0.200"
	clientHog       = "127.0.0.9" // holds idle TCP connections (attack)
	rateLimit       = 500
	tcpIdleTimeout  = 2 * time.Second
	// maxTCPConnections is server.max_tcp_connections; the TCP hog holds
	// more than that.
	maxTCPConnections = 100
)

// clientHogSpread returns the address of the i-th of the spread TCP hog's
// addresses (attack).
func clientHogSpread(i int) string { return fmt.Sprintf("127.0.0.%d", 40+i) }

// clientSlowFlood returns the address of the i-th sender of the slow-zone
// flood (attack).
func clientSlowFlood(i int) string { return fmt.Sprintf("127.0.0.%d", 30+i) }

// clientUDP returns the address of the i-th ordinary UDP client (default
// group): one address each, so that none is near rate_limit.
func clientUDP(i int) string { return fmt.Sprintf("127.0.0.%d", 10+i) }

// configFile is what AppFence's configuration for the soak is made of.
type configFile struct {
	dnsAddr, metricsAddr, upstreamAddr, dir string
	// variant changes the policy from reload to reload; broken makes the
	// file invalid, so that the reload fails and the running policy must
	// stay.
	variant int
	broken  bool
	// timeout is upstream.timeout; "" is the soak's 500ms.
	timeout string
	// idleTimeout is server.tcp_idle_timeout; 0 is tcpIdleTimeout.
	idleTimeout time.Duration
	// slowZone and slowServers, when set, forward slowZone to slowServers
	// (upstream.forward): the attacks' slow zone.
	slowZone    string
	slowServers []string
}

// text returns the configuration. It writes only keys that every AppFence
// since the soak was written knows, so that the attacks can run against a
// binary from before their fixes (-appfence); the newer bounds
// (max_tcp_connections_per_client, upstream.max_in_flight_per_*) keep
// their defaults.
func (c configFile) text() string {
	monitor, ttl := `[]`, "60s"
	if c.variant%2 == 1 {
		monitor, ttl = `["lark"]`, "30s"
	}
	extra := ""
	if c.broken {
		extra = "rate_limit_typo = 1\n"
	}
	timeout := c.timeout
	if timeout == "" {
		timeout = "500ms"
	}
	idle := c.idleTimeout
	if idle == 0 {
		idle = tcpIdleTimeout
	}
	forward := ""
	if c.slowZone != "" {
		servers := make([]string, len(c.slowServers))
		for i, s := range c.slowServers {
			servers[i] = fmt.Sprintf("%q", s)
		}
		forward = fmt.Sprintf("\n[[upstream.forward]]\nzones = [%q]\nservers = [%s]\n", c.slowZone, strings.Join(servers, ", "))
	}
	return fmt.Sprintf(`# appfence soak configuration, variant %d
[server]
listen = [%q]
allow_clients = ["127.0.0.0/25"]
rate_limit = %d
tcp_idle_timeout = %q
max_tcp_connections = %d
%s
[upstream]
servers = [%q]
timeout = %q
%s
[cache]
size = 5000

[blocking]
lists = []
watch = false
ttl = %q
monitor = %s

[[group]]
name = "investigators"
clients = [%q]
allow = ["tiktok"]

[metrics]
listen = %q

[log]
query_log = %q
`, c.variant, c.dnsAddr, rateLimit, idle.String(), maxTCPConnections, extra, c.upstreamAddr, timeout, forward,
		ttl, monitor, clientExempt, c.metricsAddr, filepath.Join(c.dir, "query.log"))
}

// appfence is the server under test, a child process.
type appfence struct {
	cmd     *exec.Cmd
	cfgPath string
	log     *bytes.Buffer
	exited  chan struct{}
	err     error // of Wait, once exited is closed
	metrics string
}

func startAppfence(bin, cfgPath, metricsAddr string) (*appfence, error) {
	a := &appfence{cfgPath: cfgPath, log: &bytes.Buffer{}, exited: make(chan struct{}), metrics: "http://" + metricsAddr}
	a.cmd = exec.Command(bin, "serve", "-config", cfgPath)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { a.err = a.cmd.Wait(); close(a.exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(a.metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		select {
		case <-a.exited:
			return nil, fmt.Errorf("appfence exited at start: %v\n%s", a.err, a.log)
		default:
		}
		if time.Now().After(deadline) {
			a.cmd.Process.Kill()
			return nil, fmt.Errorf("appfence not ready after 20s\n%s", a.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// crashed reports whether the process has exited.
func (a *appfence) crashed() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// reload writes the config and sends SIGHUP.
func (a *appfence) reload(text string) error {
	if err := os.WriteFile(a.cfgPath, []byte(text), 0o644); err != nil {
		return err
	}
	return a.cmd.Process.Signal(syscall.SIGHUP)
}

// stop sends SIGTERM and waits for the exit.
func (a *appfence) stop(wait time.Duration) error {
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-a.exited:
		return a.err
	case <-time.After(wait):
		a.cmd.Process.Kill()
		return fmt.Errorf("no exit %s after SIGTERM", wait)
	}
}

// sample is what the soak reads from /metrics.
type sample struct {
	rss        float64
	goroutines float64
	queries    map[string]float64 // by action, all groups
	reloads    map[string]float64 // by result
	shed       float64            // appfence_upstream_shed_total, all reasons
	haveShed   bool               // the binary has that counter
}

func (a *appfence) scrape(ctx context.Context) (sample, error) {
	s := sample{queries: map[string]float64{}, reloads: map[string]float64{}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.metrics+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return s, err
	}
	value := func(name string) float64 {
		if f := fams[name]; f != nil && len(f.GetMetric()) > 0 {
			m := f.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
		return 0
	}
	byLabel := func(name, label string, into map[string]float64) {
		if f := fams[name]; f != nil {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label {
						into[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	s.rss = value("process_resident_memory_bytes")
	s.goroutines = value("go_goroutines")
	byLabel("appfence_queries_total", "action", s.queries)
	byLabel("appfence_config_reloads_total", "result", s.reloads)
	if f := fams["appfence_upstream_shed_total"]; f != nil {
		s.haveShed = true
		for _, m := range f.GetMetric() {
			s.shed += m.GetCounter().GetValue()
		}
	}
	return s, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
