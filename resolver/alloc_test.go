//go:build !race

package resolver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestCacheHitDoesNotAllocate: answering from the cache, with the answer's
// findings checked against the client's group, allocates nothing, for a
// clean answer and for one whose CNAME belongs to an app the client's
// group is exempted from. (Not under the race detector, whose sync.Pool
// drops buffers on purpose.)
func TestCacheHitDoesNotAllocate(t *testing.T) {
	e := startInspect(t, "", "")
	for _, tt := range []struct{ name, client string }{
		{"www.example.test.", "127.0.0.1"},
		{"chain.example.test.", "127.0.0.3"},
		{"video.example.test.", "127.0.0.2"},
		{"lark.example.test.", "127.0.0.1"},
	} {
		w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(tt.client), Port: 40000}}
		req := dnstest.NewQuery(tt.name, dns.TypeA, true, false)
		e.handler.ServeDNS(w, req) // the miss that stores the answer
		if m := unpackReply(t, w); m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
			t.Fatalf("%s from %s: %v", tt.name, tt.client, m)
		}
		if n := testing.AllocsPerRun(200, func() { e.handler.ServeDNS(w, req) }); n != 0 {
			t.Errorf("%s from %s: a hit allocates %v times", tt.name, tt.client, n)
		}
	}
}

// TestFastPathAllocatesOnce: the fast path answers a cache hit (clean, or
// replaced by the block answer because of its CNAME) and a blocked name
// with one allocation: the canonical name.
func TestFastPathAllocatesOnce(t *testing.T) {
	e := startInspect(t, "", "")
	var scratch fastScratch
	reply := make([]byte, 0, ednsSize)
	for _, tt := range []struct{ name, client string }{
		{"www.example.test.", "127.0.0.1"},
		{"video.example.test.", "127.0.0.1"},
		{"video.example.test.", "127.0.0.2"},
		{"www.tiktok.com.", "127.0.0.1"},
		{"use-application-dns.net.", "127.0.0.2"},
	} {
		req := dnstest.NewQuery(tt.name, dns.TypeA, true, false)
		e.handler.ServeDNS(newRecorder(), req) // stores a name resolved
		raw, err := req.Pack()
		if err != nil {
			t.Fatal(err)
		}
		client := netip.MustParseAddr(tt.client)
		n := testing.AllocsPerRun(200, func() {
			var ok bool
			if reply, ok = e.handler.serveWire(raw, client, source{transport: "udp"}, reply[:0], &scratch); !ok {
				t.Fatalf("%s from %s: left to the full pipeline", tt.name, tt.client)
			}
		})
		if n > 1 {
			t.Errorf("%s from %s: the fast path allocates %v times", tt.name, tt.client, n)
		}
	}
}
