// Command dnsbench measures AppFence side by side with Unbound and
// CoreDNS, all forwarding to one synthetic upstream on loopback, in CPU
// per answered query and not only in queries per second. `make bench` runs
// it after the Go benchmarks.
//
//	dnsbench -appfence bin/appfence [-unbound unbound] [-coredns coredns]
//	         [-workloads all] [-duration 10s] [-runs 3] [-markdown FILE]
//	         [-tools ../shared/tools] [-server-cpu 1] [-client-cpu 0]
//	         [-doh-method GET]
//
// The bench runs pinned to -client-cpu: the synthetic upstream (package
// synthetic), the load generators and the TLS handshake client are there.
// Each server is pinned to -server-cpu with taskset (one core: Go's
// GOMAXPROCS follows), except for the both-cores workloads, where nothing
// is pinned (AppFence GOMAXPROCS 2, Unbound num-threads 2 with
// so-reuseport, CoreDNS as it starts). The server's CPU time (utime +
// stime of /proc/PID/stat) is read before and after each run and divided
// by the answered queries.
//
// Workloads (-workloads, comma-separated): hot (1,000 cached names), blocked
// (TikTok names, NXDOMAIN), exempt (the same names from 127.0.0.2, a client
// TikTok is allowed for), miss (every name new, so forwarded), mixed
// (80/10/10 hot/blocked/miss), tcp (hot over TCP), both-hot and
// both-blocked (both cores), dot-hot, dot-blocked, doh-hot, doh-blocked;
// and the steps handshakes (new DoT connections per second) and memory
// (RSS per cached name after 200,000 new names). "both", "dot" and "doh"
// name pairs, "all" everything. Each workload is measured at the fixed
// offered rates of issue #18 (dnsperf -Q; flood -Q above -dnsperf-max) and
// at saturation (flood's closed loop over UDP, dnsperf's over TCP and DoT),
// with the trivial responder (../shared/tools/trivial) beside the servers
// at saturation over UDP; hot and miss also at 50% and 90% of Unbound's
// saturation rate for flood's p50/p99. DoH is loaded by the bench's own
// HTTP/2 client (go-doh, doh.go) for every server, open loop at the fixed
// rate and closed loop at saturation: dnsperf 2.10's DoH loses answers of
// Go's HTTP/2 servers.
//
// Runs are interleaved server by server, -runs times; the median is
// reported. A run whose answers have another rcode than the workload's is
// left out, with the reason in the notes. Every process it starts is
// stopped by its PID at the end; all traffic is on loopback.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/appfence/appfence/internal/synthetic"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

// options are the command line flags.
type options struct {
	appfence, unbound, coredns, dnsperfBin string
	goBin, tools                           string
	floodBin, trivialBin                   string   // built from tools
	perfModes                              []string // dnsperf's -m transports
	workloads, markdown                    string
	duration, warmup                       time.Duration
	runs, clients, dnsperfMax, hsWorkers   int
	serverCPU, clientCPU                   string
	dohMethod                              string // go-doh: GET or POST
}

func run(args []string, out io.Writer) int {
	var o options
	fs := flag.NewFlagSet("dnsbench", flag.ContinueOnError)
	fs.StringVar(&o.appfence, "appfence", "bin/appfence", "the appfence binary")
	fs.StringVar(&o.unbound, "unbound", "unbound", "the unbound binary (\"\": leave out)")
	fs.StringVar(&o.coredns, "coredns", "coredns", "the coredns binary (\"\": leave out)")
	fs.StringVar(&o.dnsperfBin, "dnsperf", "dnsperf", "the dnsperf binary")
	fs.StringVar(&o.goBin, "go", "go", "the go command, to build flood and the trivial responder")
	fs.StringVar(&o.tools, "tools", "../shared/tools", "folder with flood/ and trivial/ (\"\": dnsperf only, no trivial responder)")
	fs.StringVar(&o.workloads, "workloads", "all", "workloads and steps, comma-separated: "+knownWorkloads())
	fs.StringVar(&o.markdown, "markdown", "", "also write the tables to this file (markdown)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each run")
	fs.IntVar(&o.runs, "runs", 3, "runs of each server and test; the median is reported")
	fs.IntVar(&o.clients, "clients", 20, "generator sockets or connections (dnsperf -c, flood -c, go-doh connections)")
	fs.IntVar(&o.dnsperfMax, "dnsperf-max", 100000, "fixed rates above this (qps) are offered by flood, not dnsperf")
	fs.IntVar(&o.hsWorkers, "handshake-workers", 16, "parallel connections of the TLS handshake client")
	fs.StringVar(&o.dohMethod, "doh-method", "GET", "go-doh's HTTP method: GET (?dns=) or POST (application/dns-message)")
	fs.StringVar(&o.serverCPU, "server-cpu", "1", "CPU the servers are pinned to (taskset -c)")
	fs.StringVar(&o.clientCPU, "client-cpu", "0", "CPU of the bench, its upstream and the generators (taskset -c)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, _, err := selectWorkloads(o.workloads); err != nil {
		fmt.Fprintln(out, "dnsbench:", err)
		return 2
	}
	if o.dohMethod = strings.ToUpper(o.dohMethod); o.dohMethod != "GET" && o.dohMethod != "POST" {
		fmt.Fprintf(out, "dnsbench: -doh-method %s: GET or POST\n", o.dohMethod)
		return 2
	}
	if err := pinSelf(o.clientCPU, args); err != nil {
		fmt.Fprintln(out, "dnsbench:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, out); err != nil {
		fmt.Fprintln(out, "dnsbench:", err)
		return 1
	}
	return 0
}

// pinnedEnv marks the bench as started again under taskset by pinSelf.
const pinnedEnv = "DNSBENCH_PINNED"

// pinSelf starts the bench again pinned to cpus, so that every thread of
// it (the upstream, the handshake client) and every process it starts
// without another taskset is there.
func pinSelf(cpus string, args []string) error {
	if os.Getenv(pinnedEnv) == cpus {
		return nil
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("taskset not found (apt-get install -y util-linux)")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("pin to CPU %s: %w", cpus, err)
	}
	env := append(os.Environ(), pinnedEnv+"="+cpus)
	argv := append([]string{"taskset", "-c", cpus, self}, args...)
	return fmt.Errorf("pin to CPU %s: %w", cpus, syscall.Exec(taskset, argv, env))
}

// bencher runs the tests; it holds what every run needs.
type bencher struct {
	o     options
	dir   string
	tick  time.Duration
	up    *synthetic.Upstream
	certs tlsFiles
	res   *results
	out   io.Writer
	files map[string]string // fixed query files by workload
	nonce int               // makes the names of each run of new names new
}

func bench(ctx context.Context, o options, out io.Writer) error {
	if _, err := exec.LookPath(o.dnsperfBin); err != nil {
		return fmt.Errorf("%s not found (apt-get install -y dnsperf)", o.dnsperfBin)
	}
	loads, steps, err := selectWorkloads(o.workloads)
	if err != nil {
		return err
	}
	o.perfModes = perfModes(o.dnsperfBin)
	dir, err := os.MkdirTemp("", "dnsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.tools != "" {
		for _, t := range []struct {
			bin  *string
			name string
		}{{&o.floodBin, "flood"}, {&o.trivialBin, "trivial"}} {
			if *t.bin, err = buildTool(ctx, o.goBin, filepath.Join(o.tools, t.name), dir); err != nil {
				fmt.Fprintf(out, "left out: %s: %v\n", t.name, err)
			}
		}
	}
	up, err := synthetic.Start(upstreamTTL)
	if err != nil {
		return err
	}
	defer up.Stop()
	certs, err := writeCert(dir)
	if err != nil {
		return err
	}
	b := &bencher{o: o, dir: dir, tick: clockTick(), up: up, certs: certs, res: newResults(), out: out, files: map[string]string{}}

	var one, both []workload
	for _, w := range loads {
		if w.bothCores {
			both = append(both, w)
		} else {
			one = append(one, w)
		}
	}
	var tests []test
	var names []string
	seen := map[string]bool{}
	group := func(ws []workload, bothCores bool, handshake bool) error {
		if len(ws) == 0 && !handshake {
			return nil
		}
		cpus := o.serverCPU
		if bothCores {
			cpus = onlineCPUs()
		}
		servers, skipped := o.servers(setup{dir: dir, upstream: up.Addr, tls: certs, bothCores: bothCores})
		for _, s := range skipped {
			fmt.Fprintln(out, "left out:", s)
		}
		procs, stopAll, err := startAll(ctx, servers, cpus)
		defer stopAll()
		if err != nil {
			return err
		}
		fmt.Fprint(out, describe(o, servers, b.tick.String()))
		for _, s := range servers {
			if !seen[s.name] {
				seen[s.name] = true
				names = append(names, s.name)
			}
		}
		for _, w := range ws {
			ts, err := b.workload(ctx, w, servers, procs)
			tests = append(tests, ts...)
			if err != nil {
				return err
			}
		}
		if handshake {
			tests = append(tests, b.handshakes(ctx, servers, procs))
		}
		for _, p := range procs {
			if p.crashed() {
				return fmt.Errorf("%s exited during the run:\n%s", p.name, p.log.tail(20))
			}
		}
		return nil
	}
	if err := group(one, false, slices.Contains(steps, stepHandshakes)); err != nil {
		return err
	}
	if err := group(both, true, false); err != nil {
		return err
	}
	if slices.Contains(steps, stepMemory) {
		if err := b.memory(ctx); err != nil {
			return err
		}
		for _, s := range []string{"appfence", "unbound", "coredns"} {
			if _, ok := b.res.memory[s]; ok && !seen[s] {
				seen[s] = true
				names = append(names, s)
			}
		}
	}
	var report bytes.Buffer
	header := fmt.Sprintf("Measured %s; %s per run, %d runs interleaved, medians. Servers on CPU %s, generators and upstream on CPU %s.",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), o.duration, o.runs, o.serverCPU, o.clientCPU)
	b.res.report(&report, tests, names, header)
	fmt.Fprintln(out)
	out.Write(report.Bytes())
	if o.markdown != "" {
		if err := os.WriteFile(o.markdown, report.Bytes(), 0o644); err != nil {
			return fmt.Errorf("markdown: %w", err)
		}
	}
	return nil
}

// startAll starts every server pinned to cpus; stop stops those started.
func startAll(ctx context.Context, servers []server, cpus string) (map[string]*process, func(), error) {
	procs := map[string]*process{}
	stop := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	for _, s := range servers {
		p, err := s.start(ctx, cpus)
		if err != nil {
			return procs, stop, fmt.Errorf("start %s: %w", s.name, err)
		}
		procs[s.name] = p
	}
	return procs, stop, nil
}

// tests returns the tests of a workload, in the order they run.
func (w workload) tests() []test {
	var ts []test
	for _, r := range w.rates {
		ts = append(ts, test{w: w, kind: kindRate, rate: r})
	}
	if w.saturate {
		ts = append(ts, test{w: w, kind: kindSaturation})
	}
	if w.latency {
		ts = append(ts, test{w: w, kind: kindLatency, frac: 0.5}, test{w: w, kind: kindLatency, frac: 0.9})
	}
	return ts
}

// workload warms the servers' caches and runs every test of w.
func (b *bencher) workload(ctx context.Context, w workload, servers []server, procs map[string]*process) ([]test, error) {
	if w.warm != nil {
		file := filepath.Join(b.dir, w.name+"-warm.txt")
		if err := os.WriteFile(file, w.warm(), 0o644); err != nil {
			return nil, err
		}
		for _, s := range servers {
			if s.udpOnly {
				continue
			}
			r := genRun{addr: s.addr, mode: "udp", file: file, source: w.source, d: time.Minute, once: true, cpus: b.o.clientCPU, clients: b.o.clients}
			if _, err := b.o.dnsperf(ctx, r); err != nil {
				return nil, fmt.Errorf("warm-up of %s: %w", s.name, err)
			}
		}
	}
	ts := w.tests()
	for _, t := range ts {
		for run := 1; run <= b.o.runs; run++ {
			for _, s := range servers {
				if err := ctx.Err(); err != nil {
					return ts, err
				}
				if s.udpOnly && (t.kind != kindSaturation || w.mode != "udp") {
					continue
				}
				m, err := b.measure(ctx, t, s, procs[s.name])
				if err != nil {
					if errors.Is(err, context.Canceled) {
						return ts, err
					}
					b.res.fail(t.id(), s.name, err)
					fmt.Fprintf(b.out, "%s %s run %d: %v\n", t.id(), s.name, run, err)
					continue
				}
				b.res.add(t.id(), s.name, m)
				fmt.Fprintf(b.out, "%s %s run %d: %s %s qps, %.2f µs/query, core %.0f %%, %d lost, p50/p99 %.0f/%.0f µs%s\n",
					t.id(), s.name, run, m.gen, thousands(m.load.qps), m.cpuUS, m.busy*100, m.load.lost, m.load.p50US, m.load.p99US, genNote(m.load))
			}
		}
	}
	return ts, nil
}

// measure runs the generator of t against s once and reads the server's
// CPU time before and after.
func (b *bencher) measure(ctx context.Context, t test, s server, p *process) (measure, error) {
	addr, err := s.addrFor(t.w.mode)
	if err != nil {
		return measure{}, err
	}
	if p == nil || p.crashed() {
		return measure{}, fmt.Errorf("not running")
	}
	r := genRun{addr: addr, mode: t.w.mode, source: t.w.source, d: b.o.duration, cpus: b.o.clientCPU, clients: b.o.clients}
	if t.w.bothCores {
		r.cpus = onlineCPUs()
	}
	gen := "dnsperf"
	switch t.kind {
	case kindRate:
		r.rate = t.rate
		if t.w.mode == "udp" && t.rate > b.o.dnsperfMax && b.o.floodBin != "" {
			gen = "flood"
		}
	case kindSaturation:
		if t.w.mode == "udp" && b.o.floodBin != "" {
			gen = "flood"
		}
	case kindLatency:
		sat, ok := b.res.median(test{w: t.w, kind: kindSaturation}.id(), "unbound", qpsOf)
		if !ok {
			return measure{}, fmt.Errorf("no saturation rate of Unbound to take %.0f%% of", t.frac*100)
		}
		r.rate = int(sat * t.frac)
		// flood's open loop busy-polls its core, which the upstream
		// shares: where queries are forwarded, dnsperf -v, which sleeps.
		if b.o.floodBin != "" && !t.w.expectsMiss() {
			gen = "flood"
		} else {
			gen, r.verbose = "dnsperf -v", true
		}
	}
	if r.file, err = b.queryFile(t, r.rate); err != nil {
		return measure{}, err
	}
	before, err := readCPU(p.pid)
	if err != nil {
		return measure{}, err
	}
	if t.w.mode == "doh" {
		// dnsperf -m doh loses answers of Go's HTTP/2 servers (doh.go).
		gen, r.method = dohGenName+" "+b.o.dohMethod, b.o.dohMethod
	}
	var res loadResult
	switch gen {
	case "flood":
		res, err = b.o.flood(ctx, r)
	case dohGenName + " " + b.o.dohMethod:
		res, err = doh(ctx, r, b.certs.roots)
	default:
		res, err = b.o.dnsperf(ctx, r)
	}
	if err != nil {
		return measure{}, err
	}
	after, err := readCPU(p.pid)
	if err != nil {
		return measure{}, err
	}
	if t.w.expectsMiss() {
		os.Remove(r.file)
	}
	if !s.udpOnly { // the trivial responder answers NXDOMAIN to all
		if err := res.check(t.w.rcodes); err != nil {
			return measure{}, err
		}
	} else if res.answered == 0 {
		return measure{}, fmt.Errorf("no answers")
	}
	m := measure{load: res, rate: r.rate, gen: gen}
	m.cpuUS = float64(after.sub(before).total(b.tick).Microseconds()) / float64(max(res.answered, 1))
	// The share of a core while answering: CPU per query × answers per
	// second. (The wall time of a run is longer: dnsperf waits for the
	// queries lost at its end.)
	m.busy = m.cpuUS * res.qps / 1e6
	return m, nil
}

// queryFile returns the file of t's queries: the workload's fixed set, or
// new names for this run, as many as rate (or the workload's saturation
// estimate) needs for the run's duration.
func (b *bencher) queryFile(t test, rate int) (string, error) {
	if !t.w.expectsMiss() {
		if f, ok := b.files[t.w.name]; ok {
			return f, nil
		}
		f := filepath.Join(b.dir, t.w.name+".txt")
		b.files[t.w.name] = f
		return f, os.WriteFile(f, t.w.queries(0, 0), 0o644)
	}
	if rate == 0 {
		rate = t.w.satNames
	}
	b.nonce++
	f := filepath.Join(b.dir, fmt.Sprintf("%s-%d.txt", t.w.name, b.nonce))
	return f, os.WriteFile(f, t.w.queries(namesFor(rate, b.o.duration.Seconds()), b.nonce), 0o644)
}

// handshakes runs the TLS handshake client against every server's DoT
// listener, interleaved, -runs times.
func (b *bencher) handshakes(ctx context.Context, servers []server, procs map[string]*process) test {
	t := test{w: workload{name: stepHandshakes, title: "TLS handshakes"}, kind: kindHandshake}
	for _, s := range servers { // warm-up, not counted
		if !s.udpOnly {
			handshakes(ctx, s.dot, b.certs.roots, b.o.hsWorkers, time.Second)
		}
	}
	for run := 1; run <= b.o.runs; run++ {
		for _, s := range servers {
			if s.udpOnly {
				continue
			}
			p := procs[s.name]
			before, err := readCPU(p.pid)
			if err != nil {
				b.res.fail(t.id(), s.name, err)
				continue
			}
			hs := handshakes(ctx, s.dot, b.certs.roots, b.o.hsWorkers, b.o.duration)
			after, err := readCPU(p.pid)
			if err == nil && hs.done == 0 {
				err = fmt.Errorf("no handshake: %v", hs.firstErr)
			}
			if err != nil {
				b.res.fail(t.id(), s.name, err)
				fmt.Fprintf(b.out, "%s %s run %d: %v\n", t.id(), s.name, run, err)
				continue
			}
			if hs.failed > 0 {
				b.res.fail(t.id(), s.name, fmt.Errorf("%d of %d connections failed in a run, the first: %v", hs.failed, hs.failed+hs.done, hs.firstErr))
			}
			used := after.sub(before).total(b.tick)
			m := measure{
				load:  loadResult{sent: hs.done + hs.failed, answered: hs.done, lost: hs.failed, qps: float64(hs.done) / hs.elapsed.Seconds()},
				gen:   "Go client",
				cpuUS: float64(used.Microseconds()) / float64(hs.done),
				busy:  used.Seconds() / hs.elapsed.Seconds(),
			}
			b.res.add(t.id(), s.name, m)
			fmt.Fprintf(b.out, "%s %s run %d: %s handshakes/s, %.1f µs CPU each, core %.0f %%, %d failed\n",
				t.id(), s.name, run, thousands(m.load.qps), m.cpuUS, m.busy*100, hs.failed)
		}
	}
	return t
}

// memoryNames is how many distinct names the memory step puts in each
// server's cache.
const memoryNames = 200000

// memory starts each server afresh, alone, pinned; reads its VmRSS after a
// warm-up, asks memoryNames distinct names once each (dnsperf -n 1), and
// reads VmRSS again.
func (b *bencher) memory(ctx context.Context) error {
	servers, _ := b.o.servers(setup{dir: b.dir, upstream: b.up.Addr, tls: b.certs})
	warm := filepath.Join(b.dir, "memory-warm.txt")
	if err := os.WriteFile(warm, cacheHot(), 0o644); err != nil {
		return err
	}
	for _, s := range servers {
		if s.udpOnly {
			continue
		}
		m, err := b.memoryOf(ctx, s, warm)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			m.note = strings.SplitN(err.Error(), "\n", 2)[0]
		}
		b.res.memory[s.name] = m
		fmt.Fprintf(b.out, "memory %s: RSS %.1f MB before, %.1f MB after %s names %s\n", s.name,
			float64(m.before)/1e6, float64(m.after)/1e6, thousands(float64(m.names)), m.note)
	}
	return nil
}

func (b *bencher) memoryOf(ctx context.Context, s server, warm string) (memory, error) {
	var m memory
	procs, stop, err := startAll(ctx, []server{s}, b.o.serverCPU)
	defer stop()
	if err != nil {
		return m, err
	}
	p := procs[s.name]
	r := genRun{addr: s.addr, mode: "udp", file: warm, d: time.Minute, once: true, cpus: b.o.clientCPU, clients: b.o.clients}
	if _, err := b.o.dnsperf(ctx, r); err != nil {
		return m, fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(time.Second)
	if m.before, err = readRSS(p.pid); err != nil {
		return m, err
	}
	b.nonce++
	r.file = filepath.Join(b.dir, fmt.Sprintf("memory-%d.txt", b.nonce))
	if err := os.WriteFile(r.file, misses(memoryNames, b.nonce), 0o644); err != nil {
		return m, err
	}
	defer os.Remove(r.file)
	r.d = 10 * time.Minute
	res, err := b.o.dnsperf(ctx, r)
	if err != nil {
		return m, err
	}
	if err := res.check([]string{"NOERROR"}); err != nil {
		return m, err
	}
	time.Sleep(time.Second)
	if m.after, err = readRSS(p.pid); err != nil {
		return m, err
	}
	m.names = res.answered
	if res.lost > 0 {
		m.note = fmt.Sprintf("%d of %d queries lost", res.lost, res.sent)
	}
	return m, nil
}

// upstreamTTL is the TTL of the upstream's answers: longer than the whole
// run, so that the cache-hot workload is answered from the caches.
const upstreamTTL = 86400
