package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
)

// Kinds of test.
const (
	kindRate       = "rate"       // CPU per query at a fixed offered rate
	kindSaturation = "saturation" // qps and CPU per query of a closed loop
	kindLatency    = "latency"    // percentiles at a fraction of Unbound's saturation
	kindHandshake  = "handshakes" // new TLS connections per second
)

// test is one measurement of a workload, made of a run of each server,
// -runs times.
type test struct {
	w    workload
	kind string
	rate int     // kindRate: the offered rate
	frac float64 // kindLatency: of Unbound's saturation rate
}

// id names the test in the results and the progress lines.
func (t test) id() string {
	switch t.kind {
	case kindRate:
		return fmt.Sprintf("%s@%d", t.w.name, t.rate)
	case kindLatency:
		return fmt.Sprintf("%s@%.0f%%", t.w.name, t.frac*100)
	}
	return t.w.name + "/" + t.kind
}

// measure is one run of one server.
type measure struct {
	load  loadResult
	rate  int     // the offered rate, 0 for a closed loop
	gen   string  // the generator
	cpuUS float64 // the server's CPU (user + system) per answered query, µs
	busy  float64 // the server's CPU over the run's wall time (1 = one core)
}

type cell struct{ test, server string }

// results are the runs of every test and server, the reasons of the cells
// without any, and the memory step's figures.
type results struct {
	runs   map[cell][]measure
	notes  map[cell]string
	memory map[string]memory
}

// memory is the memory step's figures of one server.
type memory struct {
	before, after int64 // VmRSS, bytes
	names         int64 // distinct names answered between them
	note          string
}

func newResults() *results {
	return &results{runs: map[cell][]measure{}, notes: map[cell]string{}, memory: map[string]memory{}}
}

func (r *results) add(t, server string, m measure) {
	k := cell{t, server}
	r.runs[k] = append(r.runs[k], m)
}

// fail keeps the first reason a cell has no figure or lost a run.
func (r *results) fail(t, server string, err error) {
	k := cell{t, server}
	if _, ok := r.notes[k]; !ok {
		r.notes[k] = strings.SplitN(err.Error(), "\n", 2)[0]
	}
}

// median returns the median of f over a cell's runs; ok is false without
// any run.
func (r *results) median(t, server string, f func(measure) float64) (float64, bool) {
	var v []float64
	for _, m := range r.runs[cell{t, server}] {
		v = append(v, f(m))
	}
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func cpuOf(m measure) float64  { return m.cpuUS }
func qpsOf(m measure) float64  { return m.load.qps }
func busyOf(m measure) float64 { return m.busy }
func p50Of(m measure) float64  { return m.load.p50US }
func p99Of(m measure) float64  { return m.load.p99US }
func avgOf(m measure) float64  { return m.load.avgUS }
func lostOf(m measure) float64 { return float64(m.load.lost) }
func sentOf(m measure) float64 { return float64(m.load.sent) }
func reconnectsOf(m measure) float64 {
	return float64(m.load.reconnects)
}

// report writes the tables in markdown: CPU per query at fixed rates, at
// saturation with the trivial responder's ceiling, latency, TLS
// handshakes, memory; ratios of the other servers' CPU per query to
// AppFence's (above 1: AppFence uses less), and notes for every "—".
func (r *results) report(out io.Writer, tests []test, servers []string, header string) {
	var others []string
	for _, s := range servers {
		if s != "appfence" && s != "trivial" {
			others = append(others, s)
		}
	}
	fmt.Fprintln(out, header)
	of := func(kind string) []test {
		var v []test
		for _, t := range tests {
			if t.kind == kind {
				v = append(v, t)
			}
		}
		return v
	}
	title := func(s string) string { return serverTitle[s] }
	names := func(list []string, suffix string) string {
		var b strings.Builder
		for _, s := range list {
			b.WriteString(" " + title(s) + suffix + " |")
		}
		return b.String()
	}
	seps := func(n int) string { return strings.Repeat("---:|", n) }
	main := append([]string{"appfence"}, others...)

	if ts := of(kindRate); len(ts) > 0 {
		fmt.Fprintln(out, "\n### CPU per answered query at a fixed offered rate (µs)")
		fmt.Fprintln(out)
		fmt.Fprintf(out, "| workload @ rate | generator |%s%s\n", names(main, ""), names(others, " / AppFence"))
		fmt.Fprintf(out, "|---|---|%s%s\n", seps(len(main)), seps(len(others)))
		for _, t := range ts {
			fmt.Fprintf(out, "| %s @ %s | %s |", t.w.title, thousands(float64(t.rate)), r.generator(t, main))
			for _, s := range main {
				fmt.Fprintf(out, " %s |", r.cpuCell(t.id(), s, t.rate))
			}
			for _, s := range others {
				fmt.Fprintf(out, " %s |", r.ratio(t.id(), s, "appfence", cpuOf))
			}
			fmt.Fprintln(out)
		}
	}
	if ts := of(kindSaturation); len(ts) > 0 {
		all := main
		if slices.Contains(servers, "trivial") {
			all = append(slices.Clone(main), "trivial")
		}
		fmt.Fprintln(out, "\n### At saturation: answered qps, CPU per query (µs) and the server's core busy")
		fmt.Fprintln(out)
		var qpsRatios strings.Builder
		for _, s := range others {
			qpsRatios.WriteString(" AppFence / " + title(s) + " qps |")
		}
		fmt.Fprintf(out, "| workload | generator |%s%s%s\n", names(all, ""), qpsRatios.String(), names(others, " / AppFence CPU"))
		fmt.Fprintf(out, "|---|---|%s%s%s\n", seps(len(all)), seps(len(others)), seps(len(others)))
		for _, t := range ts {
			fmt.Fprintf(out, "| %s | %s |", t.w.title, r.generator(t, main))
			for _, s := range all {
				fmt.Fprintf(out, " %s |", r.satCell(t.id(), s))
			}
			for _, s := range others {
				fmt.Fprintf(out, " %s |", r.ratio(t.id(), "appfence", s, qpsOf))
			}
			for _, s := range others {
				fmt.Fprintf(out, " %s |", r.ratio(t.id(), s, "appfence", cpuOf))
			}
			fmt.Fprintln(out)
		}
	}
	if ts := of(kindLatency); len(ts) > 0 {
		fmt.Fprintln(out, "\n### Latency: p50 / p99 (average) in µs at a share of Unbound's saturation rate")
		fmt.Fprintln(out)
		fmt.Fprintf(out, "| workload @ rate | generator |%s\n", names(main, ""))
		fmt.Fprintf(out, "|---|---|%s\n", seps(len(main)))
		for _, t := range ts {
			var rate float64
			for _, s := range main {
				if v, ok := r.median(t.id(), s, func(m measure) float64 { return float64(m.rate) }); ok {
					rate = v
					break
				}
			}
			fmt.Fprintf(out, "| %s @ %.0f%% (%s qps) | %s |", t.w.title, t.frac*100, thousands(rate), r.generator(t, main))
			for _, s := range main {
				fmt.Fprintf(out, " %s |", r.latencyCell(t.id(), s))
			}
			fmt.Fprintln(out)
		}
	}
	if ts := of(kindHandshake); len(ts) > 0 {
		t := ts[0]
		fmt.Fprintln(out, "\n### TLS handshakes (DoT: new connection, one query, close)")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| server | handshakes/s | server CPU µs per handshake | core busy | CPU / AppFence's |")
		fmt.Fprintln(out, "|---|---:|---:|---:|---:|")
		for _, s := range main {
			q, ok := r.median(t.id(), s, qpsOf)
			if !ok {
				fmt.Fprintf(out, "| %s | — | — | — | |\n", title(s))
				continue
			}
			c, _ := r.median(t.id(), s, cpuOf)
			b, _ := r.median(t.id(), s, busyOf)
			ratio := ""
			if s != "appfence" {
				ratio = r.ratio(t.id(), s, "appfence", cpuOf)
			}
			fmt.Fprintf(out, "| %s | %s | %.1f | %.0f %% | %s |\n", title(s), thousands(q), c, b*100, ratio)
		}
	}
	if len(r.memory) > 0 {
		fmt.Fprintln(out, "\n### Memory: VmRSS before and after the cache holds distinct names")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "| server | RSS before | RSS after | names | KB per name | per name / AppFence's |")
		fmt.Fprintln(out, "|---|---:|---:|---:|---:|---:|")
		af := r.memory["appfence"]
		for _, s := range main {
			m, ok := r.memory[s]
			if !ok || m.names == 0 {
				fmt.Fprintf(out, "| %s | — | — | — | — | |\n", title(s))
				continue
			}
			ratio := ""
			if s != "appfence" && af.names > 0 && af.after > af.before {
				ratio = fmt.Sprintf("%.2f", perName(m)/perName(af))
			}
			fmt.Fprintf(out, "| %s | %.1f MB | %.1f MB | %s | %.2f | %s |\n", title(s),
				float64(m.before)/1e6, float64(m.after)/1e6, thousands(float64(m.names)), perName(m)/1024, ratio)
		}
	}
	var notes []string
	for _, t := range tests {
		for _, s := range servers {
			if n, ok := r.notes[cell{t.id(), s}]; ok {
				notes = append(notes, fmt.Sprintf("- %s, %s: %s", t.id(), title(s), n))
			}
		}
	}
	for _, s := range servers {
		if m, ok := r.memory[s]; ok && m.note != "" {
			notes = append(notes, fmt.Sprintf("- memory, %s: %s", title(s), m.note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(out, "\nNotes (a \"—\" or a run left out):")
		fmt.Fprintln(out)
		fmt.Fprintln(out, strings.Join(notes, "\n"))
	}
}

// serverTitle is how the tables name each server.
var serverTitle = map[string]string{"appfence": "AppFence", "unbound": "Unbound", "coredns": "CoreDNS", "trivial": "trivial responder"}

// generator names the generator of a test's runs.
func (r *results) generator(t test, servers []string) string {
	for _, s := range servers {
		if ms := r.runs[cell{t.id(), s}]; len(ms) > 0 {
			return ms[0].gen
		}
	}
	return "—"
}

// cpuCell is the median CPU per query, with the losses and reconnections
// when there were any, and the rate answered when it was below 95% of the
// rate offered (dnsperf keeps at most 100 queries outstanding: a slow
// server gets fewer).
func (r *results) cpuCell(t, s string, rate int) string {
	c, ok := r.median(t, s, cpuOf)
	if !ok {
		return "—"
	}
	cell := fmt.Sprintf("%.2f", c)
	if q, _ := r.median(t, s, qpsOf); q < 0.95*float64(rate) {
		cell += " (at " + thousands(q) + " qps)"
	}
	return cell + r.trouble(t, s)
}

// trouble says "(N lost, M reconnects)" for a cell's median run when more
// than 0.1% of the queries were lost or there were reconnections.
func (r *results) trouble(t, s string) string {
	lost, _ := r.median(t, s, lostOf)
	sent, _ := r.median(t, s, sentOf)
	rc, _ := r.median(t, s, reconnectsOf)
	var v []string
	if lost*1000 > sent {
		v = append(v, thousands(lost)+" lost")
	}
	if rc > 0 {
		v = append(v, thousands(rc)+" reconnects")
	}
	if len(v) == 0 {
		return ""
	}
	return " (" + strings.Join(v, ", ") + ")"
}

func (r *results) satCell(t, s string) string {
	q, ok := r.median(t, s, qpsOf)
	if !ok {
		return "—"
	}
	c, _ := r.median(t, s, cpuOf)
	b, _ := r.median(t, s, busyOf)
	return fmt.Sprintf("%s, %.2f µs, %.0f %%", thousands(q), c, b*100) + r.trouble(t, s)
}

func (r *results) latencyCell(t, s string) string {
	avg, ok := r.median(t, s, avgOf)
	if !ok {
		return "—"
	}
	p50, _ := r.median(t, s, p50Of)
	p99, _ := r.median(t, s, p99Of)
	if p50 == 0 && p99 == 0 {
		return fmt.Sprintf("— / — (%.0f)", avg) + r.trouble(t, s)
	}
	return fmt.Sprintf("%s / %s (%.0f)", overflow(p50), overflow(p99), avg) + r.trouble(t, s)
}

// overflow formats a latency in µs; flood's histogram ends at 200 ms, and
// its last bucket holds everything slower.
func overflow(us float64) string {
	if us >= floodHistogramEnd {
		return fmt.Sprintf("≥%.0f", floodHistogramEnd)
	}
	return fmt.Sprintf("%.0f", us)
}

// ratio is the median of f of a over b's, "—" when either is missing.
func (r *results) ratio(t, a, b string, f func(measure) float64) string {
	x, ok1 := r.median(t, a, f)
	y, ok2 := r.median(t, b, f)
	if !ok1 || !ok2 || x == 0 || y == 0 {
		return "—"
	}
	return fmt.Sprintf("**%.2f**", x/y)
}

// floodHistogramEnd is the last bucket of flood's latency histogram, µs.
const floodHistogramEnd = 200000.0

func perName(m memory) float64 { return float64(m.after-m.before) / float64(m.names) }

// thousands formats a count with commas: 120289 → "120,289".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// describe says what was measured, where and how.
func describe(o options, servers []server, tick string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %s, %s CPUs online, %s; clock tick %s\n", cpuModel(), onlineCPUs(), runtime.Version(), tick)
	fmt.Fprintf(&b, "servers pinned to CPU %s (both-cores workloads: not pinned); generators and upstream on CPU %s; %s per run, %d runs, interleaved, medians\n",
		o.serverCPU, o.clientCPU, o.duration, o.runs)
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
