// Command soak runs AppFence under load and faults for a few minutes, on
// loopback only, and fails when it crashes, leaks memory or goroutines, or
// fails queries outside the upstream's outages. `make soak` builds AppFence
// and runs it for 3 minutes.
//
//	soak -appfence bin/appfence [-duration 3m]
//
// It starts an upstream (a miekg/dns server on 127.0.0.1 that can stop and
// start) and `appfence serve` as a child process, then, for -duration:
//
//   - ordinary clients ask over UDP (127.0.0.10..) and TCP (127.0.0.3),
//     from the default group and an exempted one (127.0.0.2), names of a pool
//     larger than the cache, blocked names and names that do not exist, and
//     check every answer (the addresses the upstream gives a name, the block
//     answer, NXDOMAIN);
//   - a client outside allow_clients (127.0.0.200) must get REFUSED;
//   - malformed packets (runts, responses, compressed or cut-short
//     questions, garbage) must never be answered; parseable bad queries get
//     FORMERR or NOTIMP; TCP connections carrying garbage must be closed;
//   - one address (127.0.0.66) floods: server.rate_limit must hold;
//   - TCP clients that send half a query and stall must be cut off;
//   - the upstream is stopped for a while three times (failures of queries
//     during an outage and 3 s after are expected: SERVFAIL);
//   - the configuration is rewritten and reloaded with SIGHUP every few
//     seconds, one reload in four with an invalid file (the running policy
//     must stay).
//
// RSS and goroutines are read from /metrics in a quiet moment after a
// warm-up and after a quiet period at the end; the growth must stay within
// -max-rss-growth and -max-goroutine-growth. Finally SIGTERM must stop
// AppFence with exit status 0.
//
// Then the attacks of issue 17 (-attacks, all by default) run one after
// the other against a fresh AppFence (upstream.timeout and
// tcp_idle_timeout at their defaults, the zone slow.test forwarded to two
// servers that answer after 3 s), each for -attack-ramp before and
// -attack-time beside ordinary clients (the exempt 127.0.0.2 and four
// default ones over UDP; 127.0.0.2 and 127.0.0.3 over TCP):
//
//   - tcp-hog: 127.0.0.9 holds -hog-conns idle TCP connections, more than
//     max_tcp_connections (100), reopening each one the server closes;
//   - slow-zone: random names under slow.test at -slow-qps from four
//     addresses (127.0.0.30..33), without waiting for the answers;
//   - spoof: -spoof-pps packets a second from the ordinary clients' own
//     addresses (other ports): responses, runts, compressed questions and
//     queries cut after the name; none may be answered.
//
// For each attack the ordinary clients' right answers must be at least
// -min-answered % of their questions over UDP and over TCP, the 99th
// percentile of their latency within -max-p99, and the ban must hold (the
// default clients get the block answer for www.tiktok.com, the exempt one
// the real addresses, never the other way round). The attacks write only
// configuration keys that AppFence had before their fixes, so that the
// same run can measure an older binary:
//
//	soak -appfence /tmp/appfence-before -duration 0 -attack-time 45s
//
// (-duration 0 skips the soak and runs the attacks only.)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/appfence/appfence/internal/synthetic"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

type options struct {
	bin           string
	duration      time.Duration
	warmup, quiet time.Duration
	reloadEvery   time.Duration
	outage        time.Duration
	udpClients    int
	qps           int // per ordinary client
	floodPPS      int
	maxRSSGrowth  float64 // MiB
	maxGoroutines float64

	// The attacks (attacks.go).
	attacks                           string // comma-separated names, "all" or "none"
	attackTime, attackRamp, attackGap time.Duration
	hogConns, slowQPS, spoofPPS       int
	minAnswered                       float64 // % of right answers, UDP and TCP
	maxP99                            time.Duration
}

func run(args []string, out io.Writer) int {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.StringVar(&o.bin, "appfence", "bin/appfence", "the appfence binary to test")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long the load and faults last")
	fs.DurationVar(&o.warmup, "warmup", 15*time.Second, "load before the first measurement")
	fs.DurationVar(&o.quiet, "quiet", 10*time.Second, "quiet time before each measurement")
	fs.DurationVar(&o.reloadEvery, "reload-every", 5*time.Second, "time between reloads (SIGHUP)")
	fs.DurationVar(&o.outage, "outage", 10*time.Second, "length of each of the 3 upstream outages")
	fs.IntVar(&o.udpClients, "udp-clients", 8, "ordinary UDP clients of the default group")
	fs.IntVar(&o.qps, "qps", 150, "queries per second of each ordinary client")
	fs.IntVar(&o.floodPPS, "flood", 3000, "packets per second of the flooding client")
	fs.Float64Var(&o.maxRSSGrowth, "max-rss-growth", 16, "MiB the resident memory may grow between the measurements")
	fs.Float64Var(&o.maxGoroutines, "max-goroutine-growth", 10, "goroutines that may be added between the measurements")
	fs.StringVar(&o.attacks, "attacks", "all", "attacks run after the soak, beside ordinary clients: tcp-hog,slow-zone,spoof, all or none")
	fs.DurationVar(&o.attackTime, "attack-time", 45*time.Second, "how long the ordinary clients are measured during each attack")
	fs.DurationVar(&o.attackRamp, "attack-ramp", 5*time.Second, "how long each attack runs before the measurement starts")
	fs.DurationVar(&o.attackGap, "attack-gap", 5*time.Second, "pause between two attacks")
	fs.IntVar(&o.hogConns, "hog-conns", 3*maxTCPConnections/2, "idle TCP connections the TCP hog holds (max_tcp_connections is 100)")
	fs.IntVar(&o.slowQPS, "slow-qps", 400, "queries per second of the slow-zone flood (from 4 addresses)")
	fs.IntVar(&o.spoofPPS, "spoof-pps", 6000, "packets per second of the spoofed-source flood (over the 6 ordinary addresses; rate_limit is 500)")
	fs.Float64Var(&o.minAnswered, "min-answered", 99, "% of the ordinary clients' questions that must get a right answer during each attack, UDP and TCP")
	fs.DurationVar(&o.maxP99, "max-p99", time.Second, "bound on the 99th percentile of the ordinary clients' latency during each attack")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := chooseAttacks(o.attacks); err != nil {
		fmt.Fprintf(out, "soak: %v\n", err)
		return 2
	}
	code := 0
	if o.duration > 0 {
		s, err := setUp(o, out)
		if err != nil {
			fmt.Fprintf(out, "soak: %v\n", err)
			return 1
		}
		code = s.soak()
		os.RemoveAll(s.dir)
	}
	return max(code, runAttacks(o, out))
}

// soak is one run.
type soak struct {
	o        options
	out      io.Writer
	dir      string
	dnsAddr  string
	metrics  string
	up       *synthetic.Upstream
	af       *appfence
	t        *tally
	reloads  map[string]int // "ok", "broken": what was sent
	floodAns atomic.Int64
}

func setUp(o options, out io.Writer) (*soak, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("appfence binary: %w (run `make build`)", err)
	}
	s := &soak{o: o, out: out, t: newTally(), reloads: map[string]int{}}
	if s.dir, err = os.MkdirTemp("", "appfence-soak-"); err != nil {
		return nil, err
	}
	if s.up, err = synthetic.Start(upstreamTTL); err != nil {
		return nil, err
	}
	if s.dnsAddr, err = synthetic.FreeAddr(); err != nil {
		return nil, err
	}
	if s.metrics, err = synthetic.FreeAddr(); err != nil {
		return nil, err
	}
	cfg := filepath.Join(s.dir, "appfence.toml")
	if err := os.WriteFile(cfg, []byte(s.config(0, false)), 0o644); err != nil {
		return nil, err
	}
	if s.af, err = startAppfence(bin, cfg, s.metrics); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *soak) config(variant int, broken bool) string {
	return configFile{dnsAddr: s.dnsAddr, metricsAddr: s.metrics, upstreamAddr: s.up.Addr, dir: s.dir, variant: variant, broken: broken}.text()
}

func (s *soak) printf(format string, args ...any) { fmt.Fprintf(s.out, format, args...) }

func (s *soak) soak() int {
	o := s.o
	s.printf("soak: appfence on %s (metrics %s), upstream %s; %s of load after %s of warm-up\n",
		s.dnsAddr, s.metrics, s.up.Addr, o.duration, o.warmup)

	// Warm-up: ordinary load only, then a quiet moment to measure.
	ctx, cancel := context.WithTimeout(context.Background(), o.warmup)
	var wg sync.WaitGroup
	s.ordinary(ctx, &wg)
	wg.Wait()
	cancel()
	time.Sleep(o.quiet)
	start, err := s.af.scrape(context.Background())
	if err != nil {
		return s.abort("scrape: %v", err)
	}
	s.t = newTally() // count the soak itself

	ctx, cancel = context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	began := time.Now()
	s.ordinary(ctx, &wg)
	for _, f := range []func(context.Context){
		func(ctx context.Context) { refusedClient(ctx, s.t, s.dnsAddr, 20) },
		func(ctx context.Context) { malformedClient(ctx, s.t, s.dnsAddr, 200) },
		func(ctx context.Context) { garbageTCP(ctx, s.t, s.dnsAddr, 5*time.Second) },
		func(ctx context.Context) { slowClients(ctx, s.t, s.dnsAddr, 7*time.Second) },
		func(ctx context.Context) { flood(ctx, s.t, s.dnsAddr, o.floodPPS, &s.floodAns) },
		s.reloader,
		s.outages,
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	crashed := s.watch(ctx, began)
	wg.Wait()
	loadTime := time.Since(began)
	if crashed || s.af.crashed() {
		return s.abort("appfence exited during the soak: %v", s.af.err)
	}
	time.Sleep(o.quiet)
	end, err := s.af.scrape(context.Background())
	if err != nil {
		return s.abort("scrape: %v", err)
	}
	stopErr := s.af.stop(20 * time.Second)
	return s.report(start, end, loadTime, stopErr)
}

// ordinary starts the clients whose every answer is checked.
func (s *soak) ordinary(ctx context.Context, wg *sync.WaitGroup) {
	clients := []func(){
		func() { udpClient(ctx, s.t, s.dnsAddr, clientExempt, true, s.o.qps) },
		func() { tcpClient(ctx, s.t, s.dnsAddr, clientTCP, false, s.o.qps/2) },
		func() { tcpClient(ctx, s.t, s.dnsAddr, clientTCP, false, s.o.qps/2) },
	}
	for i := 0; i < s.o.udpClients; i++ {
		local := clientUDP(i)
		clients = append(clients, func() { udpClient(ctx, s.t, s.dnsAddr, local, false, s.o.qps) })
	}
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c() }()
	}
}

// reloader rewrites the configuration and sends SIGHUP every
// reloadEvery; every fourth file is invalid.
func (s *soak) reloader(ctx context.Context) {
	n := 0
	tick(ctx, s.o.reloadEvery, func() {
		n++
		broken := n%4 == 0
		if err := s.af.reload(s.config(n, broken)); err != nil {
			s.t.fail("reload", time.Now(), err.Error())
			return
		}
		if broken {
			s.reloads["broken"]++
		} else {
			s.reloads["ok"]++
		}
	})
}

// outages stops the upstream three times, at 20%, 50% and 80% of the run.
func (s *soak) outages(ctx context.Context) {
	began := time.Now()
	for i, at := range []float64{0.2, 0.5, 0.8} {
		wait := time.Until(began.Add(time.Duration(at * float64(s.o.duration))))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		s.t.setOutage(outage{from: time.Now()}, i)
		s.up.Stop()
		time.Sleep(s.o.outage)
		if err := s.up.Restart(); err != nil {
			s.t.fail("upstream-restart", time.Now(), err.Error())
		}
		s.t.setOutage(outage{from: began.Add(time.Duration(at * float64(s.o.duration))), to: time.Now()}, i)
		s.printf("  upstream outage %d: %s to %s\n", i+1, time.Duration(at*float64(s.o.duration)).Round(time.Second),
			time.Since(began).Round(time.Second))
	}
}

// watch prints progress every 30 seconds and reports a crash.
func (s *soak) watch(ctx context.Context, began time.Time) bool {
	tk := time.NewTicker(30 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.af.exited:
			return true
		case <-tk.C:
			s.t.mu.Lock()
			s.printf("  %s: %d answered, %d failures outside outages\n", time.Since(began).Round(time.Second),
				s.t.answered["udp"]+s.t.answered["tcp"], sum(s.t.failOut))
			s.t.mu.Unlock()
		}
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func (s *soak) abort(format string, args ...any) int {
	s.printf("FAIL: "+format+"\n", args...)
	<-time.After(100 * time.Millisecond)
	if s.af.crashed() {
		s.printf("appfence's last log lines:\n%s\n", tail(s.af.log.String(), 30))
	} else {
		s.af.stop(5 * time.Second)
	}
	return 1
}

// report prints the results and returns the exit code.
func (s *soak) report(start, end sample, loadTime time.Duration, stopErr error) int {
	t := s.t
	var fails []string
	failIf := func(bad bool, format string, args ...any) {
		if bad {
			fails = append(fails, fmt.Sprintf(format, args...))
		}
	}
	const mib = 1 << 20
	answered := t.answered["udp"] + t.answered["tcp"]
	s.printf("\nqueries answered         %d in %s (%.0f/s): UDP %d, TCP %d\n", answered, loadTime.Round(time.Second),
		float64(answered)/loadTime.Seconds(), t.answered["udp"], t.answered["tcp"])
	s.printf("  by rcode               %s\n", format(t.rcodes))
	t.mu.Lock()
	s.printf("  latency (right ones)   p50 %s, p99 %s\n", round(percentile(t.latency, 0.5)), round(percentile(t.latency, 0.99)))
	t.mu.Unlock()
	s.printf("failures outside outages %s\n", format(t.failOut))
	for _, e := range t.examples {
		s.printf("  %s\n", e)
	}
	s.printf("failures during outages  %s\n", format(t.failIn))
	failIf(sum(t.failOut) > 0, "%d failures outside the upstream's outages", sum(t.failOut))

	sent, want, got := t.info["malformed: sent"], t.info["malformed: FORMERR/NOTIMP wanted"], t.info["malformed: FORMERR/NOTIMP answered"]
	s.printf("malformed packets        %d sent, %d that must be dropped answered; FORMERR/NOTIMP %d of %d; TCP garbage connections closed %d\n",
		sent, t.failOut["answered-malformed"]+t.failIn["answered-malformed"], got, want, t.info["tcp garbage connections closed"])
	failIf(got < want*99/100, "only %d of %d parseable bad queries answered FORMERR/NOTIMP", got, want)

	floodSent, floodAns := t.info["flood: sent"], s.floodAns.Load()
	limit := float64(rateLimit)*loadTime.Seconds() + rateLimit
	s.printf("flood (rate_limit %d/s)  %d sent, %d answered (%.0f/s)\n", rateLimit, floodSent, floodAns, float64(floodAns)/loadTime.Seconds())
	failIf(float64(floodAns) > limit*1.02, "the flooding client got %d answers, more than rate_limit allows (%.0f)", floodAns, limit)
	failIf(floodAns == 0, "the flooding client got no answer at all")
	dropped := end.queries["dropped"] - start.queries["dropped"]
	s.printf("dropped (metrics)        %.0f\n", dropped)
	failIf(dropped < float64(floodSent-floodAns), "appfence counted %.0f dropped, fewer than the flood's %d", dropped, floodSent-floodAns)

	s.printf("slow TCP clients         %d cut off\n", t.info["slow TCP clients cut off"])
	s.printf("TCP connections opened   %d (the server closes one after 128 queries)\n", t.info["tcp connections"])
	okReloads, brokenReloads := end.reloads["success"]-start.reloads["success"], end.reloads["failure"]-start.reloads["failure"]
	s.printf("reloads                  %d sent (%d with an invalid file); appfence counted %.0f successful, %.0f failed\n",
		s.reloads["ok"]+s.reloads["broken"], s.reloads["broken"], okReloads, brokenReloads)
	failIf(okReloads != float64(s.reloads["ok"]) || brokenReloads != float64(s.reloads["broken"]), "the reloads counted differ from those sent")

	rssGrowth := (end.rss - start.rss) / mib
	s.printf("RSS                      start %.1f MiB, end %.1f MiB (%+.1f MiB; bound %+.0f MiB)\n", start.rss/mib, end.rss/mib, rssGrowth, s.o.maxRSSGrowth)
	s.printf("goroutines               start %.0f, end %.0f (bound %+.0f)\n", start.goroutines, end.goroutines, s.o.maxGoroutines)
	failIf(rssGrowth > s.o.maxRSSGrowth, "RSS grew by %.1f MiB", rssGrowth)
	failIf(end.goroutines-start.goroutines > s.o.maxGoroutines, "goroutines grew from %.0f to %.0f", start.goroutines, end.goroutines)

	if stopErr != nil {
		fails = append(fails, fmt.Sprintf("stop: %v", stopErr))
	}
	s.printf("SIGTERM                  %s\n", map[bool]string{true: "exit status 0", false: fmt.Sprint(stopErr)}[stopErr == nil])
	if strings.Contains(s.af.log.String(), "panic") {
		fails = append(fails, "the log has a panic")
	}
	if len(fails) > 0 {
		s.printf("\nFAIL\n  %s\n", strings.Join(fails, "\n  "))
		return 1
	}
	s.printf("\nPASS\n")
	return 0
}

// upstreamTTL is the TTL of the upstream's answers: short, so that cached
// answers expire during the soak and the upstream keeps being asked.
const upstreamTTL = 5
