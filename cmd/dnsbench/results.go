package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// results are the queries per second of every run, by workload and server.
type results struct {
	qps    map[[2]string][]float64
	failed map[[2]string]int
}

func newResults() *results {
	return &results{qps: map[[2]string][]float64{}, failed: map[[2]string]int{}}
}

func (r *results) add(workload, server string, qps float64, err error) {
	k := [2]string{workload, server}
	if err != nil {
		r.failed[k]++
		return
	}
	r.qps[k] = append(r.qps[k], qps)
}

// median returns the median of a workload's runs on a server, 0 without
// any.
func (r *results) median(workload, server string) float64 {
	v := slices.Clone(r.qps[[2]string{workload, server}])
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// table prints the median of every workload and server and the ratio of
// AppFence's median to the others'.
func (r *results) table(out io.Writer, loads []workload, servers []server) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "workload\tserver\tqps (median)\truns\tfailed\t"
	var others []string
	for _, s := range servers {
		if s.name != "appfence" {
			others = append(others, s.name)
			header += "appfence / " + s.name + "\t"
		}
	}
	fmt.Fprintln(tw, header)
	for _, w := range loads {
		af := r.median(w.name, "appfence")
		for _, s := range servers {
			k := [2]string{w.name, s.name}
			m := r.median(w.name, s.name)
			line := fmt.Sprintf("%s\t%s\t%.0f\t%s\t%d\t", w.name, s.name, m, runs(r.qps[k]), r.failed[k])
			for _, o := range others {
				if s.name == "appfence" {
					line += ratio(af, r.median(w.name, o))
				}
				line += "\t"
			}
			fmt.Fprintln(tw, line)
		}
	}
	tw.Flush()
}

func runs(v []float64) string {
	s := make([]string, len(v))
	for i, q := range v {
		s[i] = fmt.Sprintf("%.0f", q)
	}
	return strings.Join(s, " ")
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// describe prints the machine and the servers measured.
func describe(o options, servers []server) string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s, %d CPUs, %s\n", cpuModel(), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "servers pinned to CPU %s, dnsperf -c %d on CPU %s, %s per run, %d runs\n",
		o.serverCPU, o.clients, o.clientCPU, o.duration, o.runs)
	for _, s := range servers {
		fmt.Fprintf(&b, "  %-9s %s (%s)\n", s.name, s.addr, s.version)
	}
	return b.String()
}

// cpuModel returns the CPU's model name from /proc/cpuinfo.
func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
