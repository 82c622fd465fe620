package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// workload is a kind of traffic: the queries, the transport, the client
// address, the rcodes its answers may have and what is measured of it.
type workload struct {
	name   string   // as -workloads names it
	title  string   // as the tables name it
	mode   string   // udp, tcp, dot or doh
	source string   // client address (dnsperf -a); "" is 127.0.0.1
	rcodes []string // the answers' rcodes, as dnsperf names them
	// rates are the fixed offered rates (queries per second) at which the
	// CPU per answered query is compared.
	rates []int
	// saturate: the queries per second and CPU per query of a closed loop.
	saturate bool
	// latency: p50/p99 at 50% and 90% of Unbound's saturation rate.
	latency bool
	// bothCores: servers not pinned, on every core (AppFence GOMAXPROCS 2,
	// Unbound num-threads 2 with so-reuseport).
	bothCores bool
	// warm is put in every cache before the runs; nil: no warm-up.
	warm func() []byte
	// queries returns at least n queries (a fixed set is cycled through);
	// names that must be distinct are made distinct with nonce.
	queries func(n int, nonce int) []byte
	// satNames is how many queries a second of a saturation run needs
	// when every name must be new: more than any server answers.
	satNames int
}

// expectsMiss reports whether the workload has names that must be new.
func (w workload) expectsMiss() bool { return w.satNames > 0 }

// allWorkloads are every workload, in the order they run. The rates are
// those of issue #18's table.
func allWorkloads() []workload {
	fixed := func(q []byte) func(int, int) []byte { return func(int, int) []byte { return q } }
	hot, blk := cacheHot(), blocked()
	return []workload{
		{name: "hot", title: "cache-hot", mode: "udp", rcodes: []string{"NOERROR"},
			rates: []int{60000, 200000}, saturate: true, latency: true, warm: cacheHot, queries: fixed(hot)},
		{name: "blocked", title: "blocked", mode: "udp", rcodes: []string{"NXDOMAIN"},
			rates: []int{30000, 200000}, saturate: true, queries: fixed(blk)},
		{name: "exempt", title: "exempt client", mode: "udp", source: exemptClient, rcodes: []string{"NOERROR"},
			rates: []int{30000, 200000}, saturate: true, warm: blocked, queries: fixed(blk)},
		{name: "miss", title: "cache miss", mode: "udp", rcodes: []string{"NOERROR"},
			rates: []int{8000}, saturate: true, latency: true, queries: misses, satNames: 100000},
		{name: "mixed", title: "mixed 80/10/10", mode: "udp", rcodes: []string{"NOERROR", "NXDOMAIN"},
			rates: []int{25000}, saturate: true, warm: cacheHot, queries: mixed, satNames: 250000},
		{name: "tcp", title: "TCP cache-hot", mode: "tcp", rcodes: []string{"NOERROR"},
			rates: []int{20000}, saturate: true, warm: cacheHot, queries: fixed(hot)},
		{name: "both-hot", title: "cache-hot, both cores", mode: "udp", rcodes: []string{"NOERROR"},
			saturate: true, bothCores: true, warm: cacheHot, queries: fixed(hot)},
		{name: "both-blocked", title: "blocked, both cores", mode: "udp", rcodes: []string{"NXDOMAIN"},
			saturate: true, bothCores: true, queries: fixed(blk)},
		{name: "dot-hot", title: "DoT cache-hot", mode: "dot", rcodes: []string{"NOERROR"},
			rates: []int{20000}, saturate: true, warm: cacheHot, queries: fixed(hot)},
		{name: "dot-blocked", title: "DoT blocked", mode: "dot", rcodes: []string{"NXDOMAIN"},
			rates: []int{20000}, saturate: true, queries: fixed(blk)},
		{name: "doh-hot", title: "DoH cache-hot", mode: "doh", rcodes: []string{"NOERROR"},
			rates: []int{20000}, saturate: true, warm: cacheHot, queries: fixed(hot)},
		{name: "doh-blocked", title: "DoH blocked", mode: "doh", rcodes: []string{"NXDOMAIN"},
			rates: []int{20000}, saturate: true, queries: fixed(blk)},
	}
}

// Steps that are not workloads of queries but are chosen the same way.
const (
	stepHandshakes = "handshakes" // TLS handshakes per second (DoT)
	stepMemory     = "memory"     // RSS per cached name
)

// aliases name groups of workloads for -workloads.
var aliases = map[string][]string{
	"both": {"both-hot", "both-blocked"},
	"dot":  {"dot-hot", "dot-blocked"},
	"doh":  {"doh-hot", "doh-blocked"},
	"all":  nil, // every workload and step
}

// selectWorkloads returns the workloads and steps a -workloads list names,
// in their order of allWorkloads, and an error for an unknown name.
func selectWorkloads(list string) (loads []workload, steps []string, err error) {
	all := allWorkloads()
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
		case n == "all":
			for _, w := range all {
				want[w.name] = true
			}
			want[stepHandshakes], want[stepMemory] = true, true
		case aliases[n] != nil:
			for _, a := range aliases[n] {
				want[a] = true
			}
		case n == stepHandshakes || n == stepMemory || slices.ContainsFunc(all, func(w workload) bool { return w.name == n }):
			want[n] = true
		default:
			return nil, nil, fmt.Errorf("unknown workload %q (known: %s)", n, knownWorkloads())
		}
	}
	for _, w := range all {
		if want[w.name] {
			loads = append(loads, w)
		}
	}
	for _, s := range []string{stepHandshakes, stepMemory} {
		if want[s] {
			steps = append(steps, s)
		}
	}
	if len(loads) == 0 && len(steps) == 0 {
		return nil, nil, fmt.Errorf("no workload chosen (known: %s)", knownWorkloads())
	}
	return loads, steps, nil
}

func knownWorkloads() string {
	var names []string
	for _, w := range allWorkloads() {
		names = append(names, w.name)
	}
	names = append(names, stepHandshakes, stepMemory, "both", "dot", "doh", "all")
	return strings.Join(names, ",")
}

// exemptClient is the client address of the exempt workload: a group of
// its own in AppFence's configuration that TikTok is allowed for, a tag
// in Unbound's, a view in CoreDNS's.
const exemptClient = "127.0.0.2"

// hotNames is how many names the cache-hot workload cycles through.
const hotNames = 1000

// cacheHot is 1,000 names, type A, answered by the upstream.
func cacheHot() []byte {
	var b bytes.Buffer
	for i := 0; i < hotNames; i++ {
		fmt.Fprintf(&b, "n%03d.bench.test A\n", i)
	}
	return b.Bytes()
}

// blocked is 1,000 names under the blocked zones, types A, AAAA and HTTPS
// in turn.
func blocked() []byte {
	var b bytes.Buffer
	types := []string{"A", "AAAA", "HTTPS"}
	for i := 0; i < 1000; i++ {
		zone := blockedZones[i%len(blockedZones)]
		name := fmt.Sprintf("h%d.%s", i, zone)
		if i < len(blockedZones) {
			name = "www." + zone
		}
		fmt.Fprintf(&b, "%s %s\n", name, types[i%len(types)])
	}
	return b.Bytes()
}

// missName is the i-th name of a run whose names no server has seen: the
// nonce is new for every run. The upstream answers it NOERROR (a name
// starting with "nx" would get NXDOMAIN).
func missName(nonce, i int) string {
	return fmt.Sprintf("m%d-%d.miss.bench.test", nonce, i)
}

// misses is n distinct names of type A: every one is forwarded.
func misses(n, nonce int) []byte {
	var b bytes.Buffer
	b.Grow(n * 32)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s A\n", missName(nonce, i))
	}
	return b.Bytes()
}

// mixed is n queries, in every ten 8 cache-hot names, one blocked name and
// one distinct name that is forwarded.
func mixed(n, nonce int) []byte {
	hot := strings.Split(strings.TrimSpace(string(cacheHot())), "\n")
	blk := strings.Split(strings.TrimSpace(string(blocked())), "\n")
	var b bytes.Buffer
	b.Grow(n * 24)
	h := 0
	for i := 0; i < n; i++ {
		switch i % 10 {
		case 4:
			b.WriteString(blk[(i/10)%len(blk)])
		case 9:
			b.WriteString(missName(nonce, i/10) + " A")
		default:
			b.WriteString(hot[h%len(hot)])
			h++
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// namesFor is how many queries a run of secs seconds at rate needs so that
// a workload with names that must be new never cycles: 10% more than
// rate × secs, and at least 1,000.
func namesFor(rate int, secs float64) int {
	return max(1000, int(float64(rate)*secs*1.1))
}
