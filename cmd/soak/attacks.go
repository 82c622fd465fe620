package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/synthetic"
)

// The attacks of issue 17, each run beside ordinary clients against a
// fresh AppFence (runAttacks): the ordinary clients must keep their
// answers and the ban must hold.
var attacks = []attack{
	{"tcp-hog", "TCP hog: one address holds idle TCP connections beyond max_tcp_connections", tcpHog},
	{"tcp-hog-spread", "spread TCP hog: ten addresses, each under max_tcp_connections_per_client, hold idle TCP connections beyond max_tcp_connections", tcpHogSpread},
	{"slow-zone", "slow-zone flood: random names of a zone whose two servers take 3 s", slowZoneFlood},
	{"spoof", "spoofed-source flood: responses and malformed queries from the clients' own addresses", spoofFlood},
}

// attack is one attack: run sends it until ctx is done.
type attack struct {
	name  string
	title string
	run   func(ctx context.Context, e *attackEnv)
}

// attackEnv is what an attack needs: the server, the options and a tally
// for what the attack itself saw (info counts, failures of the server such
// as a spoofed packet answered).
type attackEnv struct {
	o      options
	server string
	t      *tally
}

// slowZone is the zone the slow-zone flood asks; AppFence forwards it to
// two servers that answer after slowDelay.
const (
	slowZone  = "slow.test."
	slowDelay = 3 * time.Second
)

// phaseResult is what the ordinary clients saw during one attack.
type phaseResult struct {
	name            string
	udp, tcp        float64 // right answers / questions asked, in %
	asked           int64
	p50, p99        time.Duration
	ban             map[string]int64
	banHeld         bool
	failures        string
	examples        []string
	attackFailures  int64
	attackExamples  []string
	info            map[string]int64
	shed, dropped   float64 // from /metrics during the phase
	haveShedCounter bool
}

// runAttacks starts AppFence with the attacks' configuration and runs the
// chosen attacks one after the other, each beside the ordinary clients,
// and returns the exit code: 1 when a target is missed.
func runAttacks(o options, out io.Writer) int {
	chosen, err := chooseAttacks(o.attacks)
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 2
	}
	if len(chosen) == 0 {
		return 0
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "appfence-attacks-")
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	up, err := synthetic.Start(upstreamTTL)
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	defer up.Stop()
	var slow []string
	for range 2 {
		s, err := startSlowServer(slowDelay)
		if err != nil {
			fmt.Fprintf(out, "soak: slow server: %v\n", err)
			return 1
		}
		defer s.Close()
		slow = append(slow, s.Addr())
	}
	dnsAddr, err := synthetic.FreeAddr()
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	metricsAddr, err := synthetic.FreeAddr()
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	// upstream.timeout and tcp_idle_timeout are the defaults, not the
	// soak's short ones: a query of the slow zone holds an upstream place
	// for two attempts of 2 s, and the hog's connections stay 10 s.
	cfg := configFile{dnsAddr: dnsAddr, metricsAddr: metricsAddr, upstreamAddr: up.Addr, dir: dir,
		timeout: "2s", idleTimeout: 10 * time.Second, slowZone: slowZone, slowServers: slow}
	cfgPath := filepath.Join(dir, "appfence.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.text()), 0o644); err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	af, err := startAppfence(bin, cfgPath, metricsAddr)
	if err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "\nattacks: %s on %s, each for %s beside ordinary clients (after a %s head start)\n",
		o.bin, dnsAddr, o.attackTime, o.attackRamp)

	var results []phaseResult
	for i, a := range chosen {
		if i > 0 {
			time.Sleep(o.attackGap) // what the last attack left in flight ends
		}
		fmt.Fprintf(out, "  %s\n", a.title)
		results = append(results, runPhase(o, af, dnsAddr, a))
		if af.crashed() {
			fmt.Fprintf(out, "FAIL: appfence exited during %s: %v\n%s\n", a.name, af.err, tail(af.log.String(), 30))
			return 1
		}
	}
	stopErr := af.stop(20 * time.Second)
	return reportAttacks(out, o, results, stopErr, af.log.String())
}

// chooseAttacks returns the attacks named in list (comma-separated, "all"
// or "none").
func chooseAttacks(list string) ([]attack, error) {
	switch list {
	case "all":
		return attacks, nil
	case "", "none":
		return nil, nil
	}
	var chosen []attack
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(attacks, func(a attack) bool { return a.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("-attacks: no attack %q (tcp-hog, tcp-hog-spread, slow-zone, spoof, all, none)", name)
		}
		chosen = append(chosen, attacks[i])
	}
	return chosen, nil
}

// runPhase runs attack a for o.attackRamp, then beside the ordinary
// clients for o.attackTime, and returns what the clients saw.
func runPhase(o options, af *appfence, server string, a attack) phaseResult {
	env := &attackEnv{o: o, server: server, t: newTally()}
	before, _ := af.scrape(context.Background())
	actx, stopAttack := context.WithCancel(context.Background())
	attackDone := make(chan struct{})
	go func() { defer close(attackDone); a.run(actx, env) }()
	time.Sleep(o.attackRamp)

	t := newTally()
	ctx, cancel := context.WithTimeout(context.Background(), o.attackTime)
	var wg sync.WaitGroup
	attackClients(ctx, &wg, t, server, o.qps)
	wg.Wait()
	cancel()
	after, _ := af.scrape(context.Background())
	stopAttack()
	<-attackDone

	r := summarize(a.name, t)
	r.attackFailures = sum(env.t.failOut)
	r.attackExamples = env.t.examples
	r.info = env.t.info
	r.shed = after.shed - before.shed
	r.haveShedCounter = after.haveShed
	r.dropped = after.queries["dropped"] - before.queries["dropped"]
	return r
}

// attackClients starts the ordinary clients of an attack phase: the exempt
// client (127.0.0.2) and four default ones over UDP, the exempt client and
// two default connections (127.0.0.3) over TCP.
func attackClients(ctx context.Context, wg *sync.WaitGroup, t *tally, server string, qps int) {
	clients := []func(){
		func() { udpClient(ctx, t, server, clientExempt, true, qps) },
		func() { tcpClient(ctx, t, server, clientExempt, true, qps/2) },
		func() { tcpClient(ctx, t, server, clientTCP, false, qps/2) },
		func() { tcpClient(ctx, t, server, clientTCP, false, qps/2) },
	}
	for i := range attackUDPClients {
		local := clientUDP(i)
		clients = append(clients, func() { udpClient(ctx, t, server, local, false, qps) })
	}
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c() }()
	}
}

// attackUDPClients is the number of default-group UDP clients beside each
// attack.
const attackUDPClients = 4

// attackVictims are the addresses of attackClients: the spoofed-source
// flood uses them all.
func attackVictims() []string {
	v := []string{clientExempt, clientTCP}
	for i := range attackUDPClients {
		v = append(v, clientUDP(i))
	}
	return v
}

// summarize computes a phase's figures from the ordinary clients' tally.
func summarize(name string, t *tally) phaseResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := phaseResult{name: name, ban: maps(t.ban), failures: format(t.failOut), examples: t.examples}
	r.udp = percent(t.correct["udp"], t.asked["udp"])
	r.tcp = percent(t.correct["tcp"], t.asked["tcp"])
	r.asked = t.asked["udp"] + t.asked["tcp"]
	r.p50 = percentile(t.latency, 0.50)
	r.p99 = percentile(t.latency, 0.99)
	r.banHeld = banHeld(t.ban)
	return r
}

func maps(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// percent is 100·n/of, 0 when nothing was asked.
func percent(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// percentile returns the p-quantile (0 < p ≤ 1) of d by the nearest-rank
// method; 0 for none. d is not changed.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// banHeld reports whether the answers to the banned name (by banKind) show
// the ban in force: some default clients' answers blocked and none
// resolved, some exempt client's answers resolved and none blocked.
func banHeld(ban map[string]int64) bool {
	return ban["default blocked"] > 0 && ban["default resolved"] == 0 &&
		ban["exempt resolved"] > 0 && ban["exempt blocked"] == 0
}

// reportAttacks prints each phase's figures, a Markdown table of them, and
// returns the exit code.
func reportAttacks(out io.Writer, o options, results []phaseResult, stopErr error, log string) int {
	var fails []string
	for _, r := range results {
		fmt.Fprintf(out, "\n%s: %d questions; right answers UDP %.2f %%, TCP %.2f %%; latency p50 %s, p99 %s\n",
			r.name, r.asked, r.udp, r.tcp, round(r.p50), round(r.p99))
		fmt.Fprintf(out, "  banned name            %s (held: %v)\n", format(r.ban), r.banHeld)
		fmt.Fprintf(out, "  failures               %s\n", r.failures)
		for _, e := range r.examples {
			fmt.Fprintf(out, "    %s\n", e)
		}
		fmt.Fprintf(out, "  attack                 %s\n", format(r.info))
		shed := "none (no series)"
		if r.haveShedCounter {
			shed = fmt.Sprintf("%.0f", r.shed)
		}
		fmt.Fprintf(out, "  metrics                dropped %.0f, upstream shed %s\n", r.dropped, shed)
		if r.attackFailures > 0 {
			fmt.Fprintf(out, "  attack failures        %d\n", r.attackFailures)
			for _, e := range r.attackExamples {
				fmt.Fprintf(out, "    %s\n", e)
			}
			fails = append(fails, fmt.Sprintf("%s: the server misbehaved towards the attacker (%d)", r.name, r.attackFailures))
		}
		if r.udp < o.minAnswered || r.tcp < o.minAnswered {
			fails = append(fails, fmt.Sprintf("%s: right answers UDP %.2f %%, TCP %.2f %%, below %.0f %%", r.name, r.udp, r.tcp, o.minAnswered))
		}
		if r.p99 > o.maxP99 {
			fails = append(fails, fmt.Sprintf("%s: latency p99 %s over %s", r.name, round(r.p99), o.maxP99))
		}
		if !r.banHeld {
			fails = append(fails, fmt.Sprintf("%s: the ban did not hold (%s)", r.name, format(r.ban)))
		}
	}
	fmt.Fprintf(out, "\n| attack | binary | UDP answered | TCP answered | p99 | ban held |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(out, "| %s | %s | %.2f %% | %.2f %% | %s | %s |\n", r.name, o.bin, r.udp, r.tcp, round(r.p99),
			map[bool]string{true: "yes", false: "no"}[r.banHeld])
	}
	if stopErr != nil {
		fails = append(fails, fmt.Sprintf("stop: %v", stopErr))
	}
	if strings.Contains(log, "panic") {
		fails = append(fails, "the log has a panic")
	}
	if len(fails) > 0 {
		fmt.Fprintf(out, "\nFAIL (attacks)\n  %s\n", strings.Join(fails, "\n  "))
		return 1
	}
	fmt.Fprintf(out, "\nPASS (attacks)\n")
	return 0
}

// round rounds d for printing: to 0.1 ms below a second.
func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

// tcpHog opens TCP connections from one address (clientHog), up to
// o.hogConns at once (more than max_tcp_connections), sends nothing on
// them and holds each until the server closes it, then opens another; at
// most 200 connection attempts a second. The per-client bound stops it.
func tcpHog(ctx context.Context, e *attackEnv) { hogFrom(ctx, e, []string{clientHog}) }

// tcpHogSpread is tcpHog from ten addresses (clientHogSpread) in turn,
// each under max_tcp_connections_per_client: only the closing of the
// connection idle the longest keeps room for the ordinary clients.
func tcpHogSpread(ctx context.Context, e *attackEnv) {
	var from []string
	for i := range 10 {
		from = append(from, clientHogSpread(i))
	}
	hogFrom(ctx, e, from)
}

// hogFrom is the TCP hog from the addresses from, in turn.
func hogFrom(ctx context.Context, e *attackEnv, from []string) {
	held := make(chan struct{}, e.o.hogConns)
	next := 0
	var open, most atomic.Int64
	var wg sync.WaitGroup
	pace(ctx, 200, func() {
		select {
		case held <- struct{}{}:
		default:
			return
		}
		c, err := dialFrom("tcp", from[next%len(from)], e.server)
		next++
		if err != nil {
			<-held
			e.t.note("hog: connections not made", 1)
			return
		}
		n := open.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		e.t.note("hog: connections", 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { open.Add(-1); <-held }()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			defer c.Close()
			var b [512]byte
			if n, _ := c.Read(b[:]); n > 0 {
				e.t.fail("hog-answered", time.Now(), "the server sent data on an idle connection")
			}
		}()
	})
	wg.Wait()
	e.t.note("hog: most held at once", most.Load())
}

// slowZoneFlood sends o.slowQPS queries a second for random names under
// slowZone, from four addresses (clientSlowFlood), without waiting for the
// answers, and counts them.
func slowZoneFlood(ctx context.Context, e *attackEnv) {
	var conns []net.Conn
	for i := range 4 {
		c, err := dialFrom("udp", clientSlowFlood(i), e.server)
		if err != nil {
			e.t.fail("dial", time.Now(), err.Error())
			return
		}
		defer c.Close()
		conns = append(conns, c)
		go countReplies(c, e.t, "slow-zone flood: answered")
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	m := new(dns.Msg)
	i := 0
	pace(ctx, e.o.slowQPS, func() {
		m.SetQuestion(fmt.Sprintf("r%08x.%s", r.Uint32(), slowZone), dns.TypeA)
		out, _ := m.Pack()
		conns[i%len(conns)].Write(out)
		i++
		e.t.note("slow-zone flood: sent", 1)
	})
}

// countReplies reads from c until it is closed and counts what arrives.
func countReplies(c net.Conn, t *tally, kind string) {
	buf := make([]byte, 65535)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
		t.note(kind, 1)
	}
}

// spoofFlood sends, from each of the ordinary clients' addresses (a socket
// of its own on the same address, which the rate limiter cannot tell from
// the client's), o.spoofPPS packets a second in all that must never be
// answered nor charged to the address's rate limit: responses (QR=1),
// runts, and queries whose question is compressed, cut before its type or
// has a reserved label type.
func spoofFlood(ctx context.Context, e *attackEnv) {
	var conns []net.Conn
	for _, v := range attackVictims() {
		c, err := dialFrom("udp", v, e.server)
		if err != nil {
			e.t.fail("dial", time.Now(), err.Error())
			return
		}
		defer c.Close()
		conns = append(conns, c)
		go func() {
			buf := make([]byte, 65535)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				e.t.fail("answered-spoofed", time.Now(), fmt.Sprintf("%d bytes to %s", n, c.LocalAddr()))
			}
		}()
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), 4))
	i := 0
	pace(ctx, e.o.spoofPPS, func() {
		conns[i%len(conns)].Write(spoofPacket(r, i))
		i++
		e.t.note("spoof: sent", 1)
	})
	time.Sleep(500 * time.Millisecond) // replies that should not come
}

// spoofPacket returns the i-th packet of the spoofed-source flood: a
// response to a query for a name of the soak, a runt, a query whose
// question name is a compression pointer, a query cut after its name, or
// one whose name has a reserved label type (0x40).
func spoofPacket(r *rand.Rand, i int) []byte {
	m := new(dns.Msg)
	m.SetQuestion(fmt.Sprintf("n%d.soak.test.", r.IntN(20000)), dns.TypeA)
	m.Id = uint16(r.Uint32())
	switch i % 5 {
	case 0: // a response, as an upstream or another resolver would send
		m.Response = true
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.IPv4(198, 18, 0, 1)}}
		p, _ := m.Pack()
		return p
	case 1: // a runt
		p, _ := m.Pack()
		return p[:r.IntN(12)]
	case 2: // compressed question
		p, _ := m.Pack()
		return append(p[:12:12], 0xC0, 0x0C, 0, 1, 0, 1)
	case 3: // cut after the name: no type and class
		p, _ := m.Pack()
		return p[:len(p)-4]
	default: // a reserved label type, which does not parse
		p, _ := m.Pack()
		return append(p[:12:12], 0x40, 'x', 0, 0, 1, 0, 1)
	}
}

// slowServer is a UDP DNS server on loopback that answers every query
// NXDOMAIN after a delay: a server of the slow zone.
type slowServer struct {
	srv  *dns.Server
	done chan struct{}
}

func startSlowServer(delay time.Duration) (*slowServer, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &slowServer{done: make(chan struct{})}
	s.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		select {
		case <-time.After(delay):
		case <-s.done:
			return
		}
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeNameError)
		w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	s.srv.NotifyStartedFunc = func() { close(started) }
	go s.srv.ActivateAndServe()
	<-started
	return s, nil
}

// Addr is the server's address.
func (s *slowServer) Addr() string { return s.srv.PacketConn.LocalAddr().String() }

// Close stops the server; the queries it holds get no answer.
func (s *slowServer) Close() {
	close(s.done)
	s.srv.Shutdown()
}
