//go:build !race

package resolver

import (
	"net"
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
