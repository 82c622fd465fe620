package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// buildTool builds the Go program in src (../shared/tools/flood or
// trivial) into dir and returns the binary's path.
func buildTool(ctx context.Context, goBin, src, dir string) (string, error) {
	out := filepath.Join(dir, filepath.Base(src))
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", src, err, tail(b, 10))
	}
	return out, nil
}

// flood runs flood, the cheaper UDP generator (one thread, sendmmsg and
// recvmmsg, a 1 µs latency histogram), for r: a closed loop of 100 queries
// outstanding, or an open loop at r.rate.
func (o options) flood(ctx context.Context, r genRun) (loadResult, error) {
	if r.mode != "udp" {
		return loadResult{}, fmt.Errorf("flood speaks UDP only, not %s", r.mode)
	}
	args := []string{"-c", r.cpus, o.floodBin, "-s", r.addr, "-d", r.file,
		"-c", strconv.Itoa(r.clients), "-q", strconv.Itoa(outstanding), "-l", seconds(r.d)}
	if r.source != "" {
		args = append(args, "-a", r.source)
	}
	if r.rate > 0 {
		args = append(args, "-Q", strconv.Itoa(r.rate))
	}
	out, err := exec.CommandContext(ctx, "taskset", args...).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("flood %s: %v\n%s", strings.Join(args[2:], " "), err, tail(out, 10))
	}
	return parseFlood(out)
}

// outstanding is the closed loop's queries in flight, dnsperf's default.
const outstanding = 100

// parseFlood reads flood's report:
//
//	sent 1190845 received 1190845 lost 0 duration 5.000
//	qps 238168.1 sent_qps 238168.1
//	latency_us avg 412.4 p50 398 p90 520 p99 812 p999 1203 max 2210
//	gen_cpu_s 2.973 gen_us_q 2.497 polls 10
//	rcodes NOERROR 1190845
func parseFlood(out []byte) (loadResult, error) {
	r := loadResult{rcodes: map[string]int64{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		// "latency_us" and "rcodes" name their line; the other lines
		// are pairs of key and value from the start.
		first := 0
		if f[0] == "latency_us" || f[0] == "rcodes" {
			first = 1
		}
		kv := map[string]string{}
		for i := first; i+1 < len(f); i += 2 {
			kv[f[i]] = f[i+1]
		}
		if f[0] == "rcodes" {
			for k, v := range kv {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return r, fmt.Errorf("flood output %q: %w", sc.Text(), err)
				}
				r.rcodes[k] = n
			}
			seen[f[0]] = true
			continue
		}
		var err error
		num := func(key string) float64 {
			v, e := strconv.ParseFloat(kv[key], 64)
			if e != nil && err == nil {
				err = fmt.Errorf("%s %q", key, kv[key])
			}
			return v
		}
		switch f[0] {
		case "sent":
			r.sent, r.answered, r.lost = int64(num("sent")), int64(num("received")), int64(num("lost"))
		case "qps":
			r.qps = num("qps")
		case "latency_us":
			r.avgUS, r.p50US, r.p99US = num("avg"), num("p50"), num("p99")
		case "gen_cpu_s":
			r.genUSPerQuery = num("gen_us_q")
		default:
			continue
		}
		if err != nil {
			return r, fmt.Errorf("flood output %q: %w", sc.Text(), err)
		}
		seen[f[0]] = true
	}
	for _, k := range []string{"sent", "qps", "latency_us", "rcodes"} {
		if !seen[k] {
			return r, fmt.Errorf("no %q line in flood's output:\n%s", k, tail(out, 10))
		}
	}
	return r, nil
}
