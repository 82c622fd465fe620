package resolver

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestNamesWithSpecialBytes resolves names whose labels hold bytes that
// presentation format escapes (DNS-SD instance names such as "Office
// Printer", "John's iPhone"): the upstream's answer, which miekg/dns
// unpacks as "office\ printer...", must match the question AppFence sent,
// be cached, and count as no upstream failure.
func TestNamesWithSpecialBytes(t *testing.T) {
	names := []string{
		`office\ printer._ipp._tcp.example.test.`,
		`john\'s\ iphone._device-info._tcp.example.test.`,
		`a\.b.example.test.`,
		`quote\".example.test.`,
		`paren\(1\).example.test.`,
		`semi\;colon.example.test.`,
		`at\@sign.example.test.`,
		`back\\slash.example.test.`,
		`Mixed\ CASE.example.test.`,
	}
	records := make([]string, 0, len(names))
	for i, n := range names {
		records = append(records, fmt.Sprintf("%s 300 IN A 192.0.2.%d", n, i+1))
	}
	up := dnstest.NewUpstream(t, records...)
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, ""))
	for round := range 2 { // a miss, then a hit from the cache
		for i, n := range names {
			for _, netw := range []string{"udp", "tcp"} {
				resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(n, dns.TypeA, true, false))
				if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
					t.Fatalf("round %d %s %s: %v", round, netw, n, resp)
				}
				if got, want := resp.Answer[0].(*dns.A).A.String(), fmt.Sprintf("192.0.2.%d", i+1); got != want {
					t.Errorf("%s: address %s, want %s", n, got, want)
				}
				if resp.Question[0].Name != n {
					t.Errorf("question %q, want the client's %q", resp.Question[0].Name, n)
				}
			}
		}
	}
	for _, n := range names {
		if asked := up.Asked(dns.CanonicalName(n)); asked != 1 {
			t.Errorf("upstream asked %s %d times, want 1: the answer is cached", n, asked)
		}
	}
	if !e.handler.State().Upstream.Up() {
		t.Error("the upstream is marked down after answering names with escaped bytes")
	}
}
