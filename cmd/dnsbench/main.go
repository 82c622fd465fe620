// Command dnsbench measures AppFence's throughput with dnsperf and, in the
// same run with the same workload, Unbound's and CoreDNS's, all forwarding to
// one upstream on loopback. `make bench` runs it after the Go benchmarks.
//
//	dnsbench -appfence bin/appfence [-unbound unbound] [-coredns coredns]
//	         [-duration 10s] [-runs 3] [-clients 20] [-server-cpu 1] [-client-cpu 0]
//
// It starts the upstream (package synthetic, on 127.0.0.1) in its own
// process and each server pinned to -server-cpu with taskset, one thread
// each, then runs dnsperf pinned to -client-cpu against each server in
// turn, -runs times, for each workload:
//
//   - cache-hot: 1,000 names asked over and over (type A, no EDNS, as
//     dnsperf sends by default), all in the servers' caches after a
//     warm-up;
//   - blocked: TikTok names (A, AAAA, HTTPS) that AppFence blocks with its
//     built-in catalog, Unbound with local-zone always_nxdomain and CoreDNS
//     with a template answering NXDOMAIN.
//
// Every run must get only the expected rcode (NOERROR, NXDOMAIN) and lose
// no more than 0.1% of its queries, or it is reported as failed. It prints
// the median queries per second of each server and workload and the ratio
// of AppFence's to each other server's. A server whose binary is missing is
// left out of the table, with the reason. Every process it starts is
// stopped by its PID at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/appfence/appfence/internal/synthetic"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

// options are the command line flags.
type options struct {
	appfence, unbound, coredns, dnsperf string
	duration                            time.Duration
	runs, clients                       int
	serverCPU, clientCPU                string
}

func run(args []string, out io.Writer) int {
	var o options
	fs := flag.NewFlagSet("dnsbench", flag.ContinueOnError)
	fs.StringVar(&o.appfence, "appfence", "bin/appfence", "the appfence binary")
	fs.StringVar(&o.unbound, "unbound", "unbound", "the unbound binary (\"\": leave out)")
	fs.StringVar(&o.coredns, "coredns", "coredns", "the coredns binary (\"\": leave out)")
	fs.StringVar(&o.dnsperf, "dnsperf", "dnsperf", "the dnsperf binary")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each dnsperf run")
	fs.IntVar(&o.runs, "runs", 3, "runs of each server and workload; the median is reported")
	fs.IntVar(&o.clients, "clients", 20, "dnsperf clients (-c)")
	fs.StringVar(&o.serverCPU, "server-cpu", "1", "CPU the servers are pinned to (taskset -c)")
	fs.StringVar(&o.clientCPU, "client-cpu", "0", "CPU dnsperf is pinned to (taskset -c)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, out); err != nil {
		fmt.Fprintln(out, "dnsbench:", err)
		return 1
	}
	return 0
}

func bench(ctx context.Context, o options, out io.Writer) error {
	for _, tool := range []string{"taskset", o.dnsperf} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y dnsperf util-linux)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "dnsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up, err := synthetic.Start(upstreamTTL)
	if err != nil {
		return err
	}
	defer up.Stop()

	loads := workloads()
	for _, w := range loads {
		if err := os.WriteFile(filepath.Join(dir, w.name+".txt"), w.queries(), 0o644); err != nil {
			return err
		}
	}
	servers, skipped := o.servers(dir, up.Addr)
	for _, s := range skipped {
		fmt.Fprintln(out, "left out:", s)
	}
	var running []*process
	defer func() {
		for _, p := range running {
			p.stop()
		}
	}()
	for _, s := range servers {
		p, err := s.start(ctx, o.serverCPU)
		if err != nil {
			return fmt.Errorf("start %s: %w", s.name, err)
		}
		running = append(running, p)
	}
	fmt.Fprint(out, describe(o, servers))

	results := newResults()
	for _, w := range loads {
		file := filepath.Join(dir, w.name+".txt")
		for _, s := range servers { // warm-up: every name in the cache
			if _, err := o.perf(ctx, s.addr, file, 2*time.Second); err != nil {
				return fmt.Errorf("warm-up of %s: %w", s.name, err)
			}
		}
		for r := 0; r < o.runs; r++ {
			for _, s := range servers {
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := o.perf(ctx, s.addr, file, o.duration)
				if err == nil {
					err = res.check(w.rcode)
				}
				if err != nil {
					fmt.Fprintf(out, "%s %s run %d failed: %v\n", w.name, s.name, r+1, err)
				} else {
					fmt.Fprintf(out, "%s %s run %d: %.0f qps\n", w.name, s.name, r+1, res.qps)
				}
				results.add(w.name, s.name, res.qps, err)
			}
		}
	}
	for _, p := range running {
		if p.crashed() {
			return fmt.Errorf("%s exited during the run:\n%s", p.name, p.log.tail(20))
		}
	}
	fmt.Fprintln(out)
	results.table(out, loads, servers)
	return nil
}

// upstreamTTL is the TTL of the upstream's answers: longer than the whole
// run, so that the cache-hot workload is answered from the caches.
const upstreamTTL = 86400
