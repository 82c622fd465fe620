package main

import (
	"bytes"
	"fmt"
)

// workload is a dnsperf input file and the rcode every answer must have.
type workload struct {
	name    string
	rcode   string // as dnsperf names it
	queries func() []byte
}

func workloads() []workload {
	return []workload{
		{name: "cache-hot", rcode: "NOERROR", queries: cacheHot},
		{name: "blocked", rcode: "NXDOMAIN", queries: blocked},
	}
}

// cacheHot is 1,000 names, type A, answered by the upstream.
func cacheHot() []byte {
	var b bytes.Buffer
	for i := 0; i < 1000; i++ {
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
