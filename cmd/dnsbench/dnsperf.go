package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// perfResult is what one dnsperf run reports.
type perfResult struct {
	sent, lost int64
	qps        float64
	rcodes     map[string]int64
}

// perf runs dnsperf against addr with the queries in file for d, pinned to
// the client CPU.
func (o options) perf(ctx context.Context, addr, file string, d time.Duration) (perfResult, error) {
	host, port, _ := net.SplitHostPort(addr)
	secs := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	cmd := exec.CommandContext(ctx, "taskset", "-c", o.clientCPU, o.dnsperf,
		"-s", host, "-p", port, "-d", file, "-c", strconv.Itoa(o.clients), "-l", secs)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return perfResult{}, fmt.Errorf("dnsperf: %v\n%s", err, out)
	}
	return parsePerf(out)
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
func parsePerf(out []byte) (perfResult, error) {
	r := perfResult{rcodes: map[string]int64{}}
	var haveQPS bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
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
		case "Queries lost":
			r.lost, err = strconv.ParseInt(fields[0], 10, 64)
		case "Queries per second":
			r.qps, err = strconv.ParseFloat(fields[0], 64)
			haveQPS = true
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
	if !haveQPS || r.sent == 0 {
		return r, fmt.Errorf("no statistics in dnsperf's output:\n%s", out)
	}
	return r, nil
}

// check reports an error when an answer had another rcode than want, or
// more than 0.1% of the queries were lost.
func (r perfResult) check(want string) error {
	for code, n := range r.rcodes {
		if code != want && n > 0 {
			return fmt.Errorf("%d answers %s, want only %s", n, code, want)
		}
	}
	if r.lost*1000 > r.sent {
		return fmt.Errorf("%d of %d queries lost", r.lost, r.sent)
	}
	return nil
}
