package upstream

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

func TestDownThenUpAgain(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{up.Addr})
	gauge := func() float64 { return metric(t, m, "appfence_upstream_up", "upstream", up.Addr) }
	if gauge() != 1 || !r.Up() {
		t.Fatalf("a new upstream: up gauge %v, Up() %v; want 1, true", gauge(), r.Up())
	}
	up.SetSilent(true)
	for _, name := range []string{"www.example.test.", "a.example.test."} { // failAfter in tests
		if _, err := r.Exchange(context.Background(), query(name), name); err == nil {
			t.Fatal("a silent upstream answered")
		}
	}
	if gauge() != 0 || r.Up() {
		t.Fatalf("after 2 failures: up gauge %v, Up() %v; want 0, false", gauge(), r.Up())
	}
	// The prober keeps asking "." NS; once the upstream answers, it is up.
	up.SetSilent(false)
	waitFor(t, "the upstream to be up again", func() bool { return r.Up() && gauge() == 1 })
	if up.Asked(".") == 0 {
		t.Error("no probe reached the upstream")
	}
	if up.Asked("www.example.test.") != 1 {
		t.Errorf("the upstream was asked www.example.test %d times, want 1: probes are not client queries", up.Asked("www.example.test."))
	}
	// Probes are not client traffic: only the two failed queries count.
	if v := metric(t, m, "appfence_upstream_requests_total", "upstream", up.Addr, "rcode", "NXDOMAIN"); v != 0 {
		t.Errorf("a probe's answer counted in requests_total: %v", v)
	}
	mustExchange(t, r, "www.example.test.")
}

// TestProbesBackOff: the waits between probes of a down server double
// from probeMin to probeMax (20, 40, 80, 80 ms with quick). Only lower
// bounds are checked: a timer never fires early, but a busy machine may
// fire it late.
func TestProbesBackOff(t *testing.T) {
	// A server that answers garbage at once: each probe fails fast, so the
	// times between probes are the waits.
	var mu sync.Mutex
	var probes []time.Time
	addr := rawUDPServer(t, func(query []byte) [][]byte {
		if len(query) < 13 {
			return nil
		}
		if query[12] == 0 { // the question is the root's: a probe
			mu.Lock()
			probes = append(probes, time.Now())
			mu.Unlock()
		}
		reply := append([]byte(nil), query[:12]...)
		reply[2] |= 0x80 // QR, and a question count the body does not hold
		return [][]byte{reply}
	})
	r := newRouter(t, nil, "failover", []string{addr})
	for _, name := range []string{"www.example.test.", "a.example.test."} {
		r.Exchange(context.Background(), query(name), name)
	}
	if r.Up() {
		t.Fatal("still up after 2 failures")
	}
	want := []time.Duration{40, 80, 80, 80} // between probes 1-2, 2-3, ...
	waitFor(t, "five probes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(probes) >= len(want)+1
	})
	mu.Lock()
	defer mu.Unlock()
	got := probes
	for i, w := range want {
		if gap := got[i+1].Sub(got[i]); gap < w*time.Millisecond*85/100 {
			t.Errorf("wait before probe %d: %v, want at least %v (backoff doubling to probeMax)", i+2, gap, w*time.Millisecond)
		}
	}
}

func TestCloseStopsProbersAndConnections(t *testing.T) {
	before := len(ourGoroutines())
	ca := dnstest.NewCA(t)
	up := dnstest.NewUpstream(t, records...)
	dead := dnstest.NewUpstream(t)
	dead.SetSilent(true)
	dotAddr := up.StartTLS(t, ca.Issue(t, "dns.test"))
	doh := up.StartHTTPS(t, ca.Issue(t, "dns.test"))
	cfg := upstreamConfig(t, "fastest", dead.Addr, "tls://"+dotAddr+"#dns.test", dnstest.DoHURL(doh, "dns.test"))
	cfg.CAFile = ca.WriteFile(t)
	r, err := NewRouter(t.Context(), cfg, metrics.New("test").Registry, quick)
	if err != nil {
		t.Fatal(err)
	}
	// Fail the dead one twice (a down server and its prober) and use the
	// DoT and DoH connections.
	for _, e := range r.def.endpoints {
		for _, name := range []string{"www.example.test.", "a.example.test."} {
			r.def.attempt(context.Background(), e, query(name), time.Time{})
		}
	}
	if !r.def.endpoints[0].isDown() || !r.def.endpoints[0].probing.Load() {
		t.Fatal("the dead upstream is not down and probed")
	}
	if len(ourGoroutines()) == before {
		t.Fatal("no connection or prober goroutine to stop")
	}
	if udpReaders() == 0 {
		t.Fatal("no UDP socket read")
	}
	r.Close()
	r.Close() // idempotent
	waitFor(t, "every goroutine to end", func() bool { return len(ourGoroutines()) == before })
	waitFor(t, "the UDP sockets to close", func() bool { return udpReaders() == 0 })
	probes := dead.Asked(".")
	time.Sleep(200 * time.Millisecond) // several probe intervals
	if n := dead.Asked("."); n != probes {
		t.Errorf("%d probes after Close", n-probes)
	}
	// A closed Router still answers queries that started before a swap.
	mustExchange(t, r, "a.example.test.")
}

func TestAnswerWithAnyRcodeKeepsServerUp(t *testing.T) {
	up := dnstest.NewUpstream(t)
	up.SetRcode(dns.RcodeRefused)
	r := newRouter(t, nil, "failover", []string{up.Addr})
	for range 5 {
		resp, err := r.Exchange(context.Background(), query("www.example.test."), "www.example.test")
		if err != nil || resp.Rcode != dns.RcodeRefused {
			t.Fatalf("%v, %v; want the REFUSED answer", resp, err)
		}
	}
	if !r.Up() {
		t.Error("a server that answers was marked down")
	}
}

// TestOneUnansweredNameKeepsServerUp: timeouts for one name that is never
// answered judge the name, not the server; failures for distinct names
// mark it down.
func TestOneUnansweredNameKeepsServerUp(t *testing.T) {
	addr := udpServer(t, func(q *dns.Msg) []*dns.Msg {
		if strings.HasSuffix(q.Question[0].Name, "dead.test.") {
			return nil // the name's authoritative servers never answer
		}
		return []*dns.Msg{answerFor(q)}
	})
	m := metrics.New("test")
	r := newRouter(t, m, "failover", []string{addr})
	for range 5 {
		if _, err := r.Exchange(context.Background(), query("x.dead.test."), "x.dead.test"); err == nil {
			t.Fatal("x.dead.test answered")
		}
	}
	if !r.Up() {
		t.Fatal("five timeouts for one name marked the only upstream down")
	}
	mustExchange(t, r, "www.example.test.")
	for _, name := range []string{"a.dead.test.", "b.dead.test."} { // failAfter distinct names
		r.Exchange(context.Background(), query(name), name)
	}
	if r.Up() {
		t.Error("failures for two distinct names in a row left the upstream up")
	}
}
