package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// genRun is one run of a load generator.
type genRun struct {
	addr    string // server, host:port
	mode    string // udp, tcp, dot, doh
	file    string // queries, "name type" lines
	source  string // client address; "" is the generator's default
	rate    int    // offered queries per second; 0 is a closed loop
	d       time.Duration
	once    bool   // dnsperf: stop after one pass through file (-n 1)
	verbose bool   // dnsperf: a line per query (-v), for the percentiles
	cpus    string // taskset -c
	clients int    // sockets or connections
	method  string // go-doh: GET or POST
}

// loadResult is what a load generator reports of one run.
type loadResult struct {
	sent, answered, lost int64
	qps                  float64 // answered per second
	rcodes               map[string]int64
	avgUS, p50US, p99US  float64 // latency in µs; p50 and p99 from flood, dnsperf -v and go-doh
	reconnects           int64   // dnsperf over TCP, DoT and DoH
	genUSPerQuery        float64 // flood, go-doh: the generator's own CPU per answer
	firstLoss            error   // go-doh: why the first query lost was
}

// dnsperf runs dnsperf for r.
func (o options) dnsperf(ctx context.Context, r genRun) (loadResult, error) {
	if o.perfModes != nil && !slices.Contains(o.perfModes, r.mode) {
		return loadResult{}, fmt.Errorf("this dnsperf has no -m %s (dnsperf -h)", r.mode)
	}
	host, port, _ := net.SplitHostPort(r.addr)
	args := []string{"-c", r.cpus, o.dnsperfBin, "-s", host, "-p", port, "-d", r.file,
		"-c", strconv.Itoa(r.clients), "-l", seconds(r.d)}
	if r.mode != "udp" {
		args = append(args, "-m", r.mode)
	}
	if r.source != "" {
		args = append(args, "-a", r.source)
	}
	if r.rate > 0 {
		args = append(args, "-Q", strconv.Itoa(r.rate))
	}
	if r.once {
		args = append(args, "-n", "1")
	}
	if r.verbose {
		args = append(args, "-v")
	}
	out, err := exec.CommandContext(ctx, "taskset", args...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("dnsperf %s: %v\n%s", strings.Join(args[2:], " "), err, tail(out, 10))
	}
	return parsePerf(out)
}

// perfModes returns the transports this dnsperf has (-m), from its -h.
func perfModes(bin string) []string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	modes := []string{"udp"}
	for _, line := range strings.Split(string(out), "\n") {
		if _, list, ok := strings.Cut(line, "set transport mode:"); ok {
			list, _, _ = strings.Cut(list, "(")
			for _, m := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' }) {
				if m != "or" && m != "udp" {
					modes = append(modes, m)
				}
			}
		}
	}
	return modes
}

// seconds formats d for -l.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(max(d.Seconds(), 0.1), 'f', -1, 64)
}

// parsePerf reads dnsperf's statistics:
//
//	Queries sent:         1392131
//	Queries completed:    1392131 (100.00%)
//	Queries lost:         0 (0.00%)
//
//	Response codes:       NOERROR 1392131 (100.00%)
//	...
//	Queries per second:   139206.573962
//
//	Average Latency (s):  0.001671 (min 0.000020, max 0.006959)
//
// with -v a line per answer ("> NOERROR name A 0.000161", its latency in
// seconds) from which the p50 and p99 are taken, and over TCP, DoT and DoH "Reconnections: N" and the connections'
// average latency after the queries'.
func parsePerf(out []byte) (loadResult, error) {
	r := loadResult{rcodes: map[string]int64{}}
	var haveQPS, haveCompleted bool
	var latencies []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "> ") {
			// -v: "> NOERROR n000.bench.test A 0.000161"
			f := strings.Fields(line)
			s, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil || len(f) < 3 {
				return r, fmt.Errorf("dnsperf output %q: no latency", line)
			}
			latencies = append(latencies, s*1e6)
			continue
		}
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		var err error
		switch strings.TrimSpace(key) {
		case "Queries sent":
			r.sent, err = strconv.ParseInt(fields[0], 10, 64)
		case "Queries completed":
			r.answered, err = strconv.ParseInt(fields[0], 10, 64)
			haveCompleted = true
		case "Queries lost":
			r.lost, err = strconv.ParseInt(fields[0], 10, 64)
		case "Reconnections":
			r.reconnects, err = strconv.ParseInt(fields[0], 10, 64)
		case "Queries per second":
			r.qps, err = strconv.ParseFloat(fields[0], 64)
			haveQPS = true
		case "Average Latency (s)":
			// The queries' first; the second (TCP, DoT, DoH) is the
			// connections'.
			if r.avgUS == 0 {
				var s float64
				s, err = strconv.ParseFloat(fields[0], 64)
				r.avgUS = s * 1e6
			}
		case "Response codes":
			for _, code := range strings.Split(value, ",") {
				f := strings.Fields(code)
				if len(f) < 2 {
					return r, fmt.Errorf("response codes %q", value)
				}
				var n int64
				if n, err = strconv.ParseInt(f[1], 10, 64); err != nil {
					break
				}
				r.rcodes[f[0]] = n
			}
		}
		if err != nil {
			return r, fmt.Errorf("dnsperf output %q: %w", sc.Text(), err)
		}
	}
	if !haveQPS || !haveCompleted || r.sent == 0 {
		return r, fmt.Errorf("no statistics in dnsperf's output:\n%s", tail(out, 10))
	}
	if len(latencies) > 0 {
		slices.Sort(latencies)
		r.p50US, r.p99US = percentile(latencies, 0.5), percentile(latencies, 0.99)
	}
	return r, nil
}

// percentile returns the p-th quantile of sorted values: the smallest
// value with at least p of the values at or below it.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// check reports an error when an answer had an rcode not in want.
func (r loadResult) check(want []string) error {
	for code, n := range r.rcodes {
		if n > 0 && !slices.Contains(want, code) {
			return fmt.Errorf("%d answers %s, want only %s", n, code, strings.Join(want, ", "))
		}
	}
	if r.answered == 0 {
		return fmt.Errorf("no answers (%d sent)", r.sent)
	}
	return nil
}

// tail returns the last n lines of out.
func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
