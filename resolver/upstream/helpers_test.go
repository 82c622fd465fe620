package upstream

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

// records answer the names the tests ask.
var records = []string{
	"www.example.test. 300 IN A 192.0.2.1",
	"a.example.test. 300 IN A 192.0.2.11",
	"b.example.test. 300 IN A 192.0.2.12",
}

// quick shortens health and connection timers so tests run fast.
func quick(s *settings) {
	s.failAfter = 2
	s.probeMin = 20 * time.Millisecond
	s.probeMax = 80 * time.Millisecond
}

// newRouter builds a Router over servers (upstream.servers entries) with
// strategy, a 250ms attempt timeout and quick timers; it is closed when the
// test ends.
func newRouter(t testing.TB, m *metrics.Metrics, strategy string, servers []string, opts ...Option) *Router {
	t.Helper()
	return routerFor(t, m, upstreamConfig(t, strategy, servers...), opts...)
}

func routerFor(t testing.TB, m *metrics.Metrics, cfg config.Upstream, opts ...Option) *Router {
	t.Helper()
	var reg prometheus.Registerer // nil, not a nil *Registry, without metrics
	if m != nil {
		reg = m.Registry
	}
	r, err := NewRouter(context.Background(), cfg, reg, append([]Option{quick}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func upstreamConfig(t testing.TB, strategy string, servers ...string) config.Upstream {
	t.Helper()
	cfg := config.Upstream{Strategy: strategy, Timeout: 250 * time.Millisecond}
	for _, s := range servers {
		us, err := config.ParseUpstream(s)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Servers = append(cfg.Servers, us)
	}
	return cfg
}

// query builds an A query for name with EDNS, as the handler sends them.
func query(name string) *dns.Msg {
	return dnstest.NewQuery(name, dns.TypeA, true, false)
}

// mustExchange asks r for name and checks the answer is the A record the
// test upstreams hold.
func mustExchange(t testing.TB, r *Router, name string) *dns.Msg {
	t.Helper()
	q := query(name)
	resp, err := r.Exchange(context.Background(), q, strings.TrimSuffix(name, "."))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if resp.Id != q.Id || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("%s: answer %v, want one record with ID %d", name, resp, q.Id)
	}
	return resp
}

// answerIP returns the address of the first A record of resp.
func answerIP(resp *dns.Msg) string {
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// metricValue returns the value of the series name{labels} (a counter, a
// gauge, or a histogram's sample count) and whether it exists.
func metricValue(t testing.TB, m *metrics.Metrics, name string, labels ...string) (float64, bool) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case s.GetCounter() != nil:
				return s.GetCounter().GetValue(), true
			case s.GetGauge() != nil:
				return s.GetGauge().GetValue(), true
			case s.GetHistogram() != nil:
				return float64(s.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// metric is metricValue for a series that must exist.
func metric(t testing.TB, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(t, m, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ourGoroutines returns the stacks of goroutines this package or the DoH
// HTTP transport started: connection readers, probers, races and
// measures, HTTP client connections.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, mark := range []string{"(*streamConn).read", "(*monitor).", "(*Pool).race", "(*Pool).attempt",
			"net/http.(*persistConn)", "http2clientConnReadLoop", "http2ClientConn"} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// udpReaders returns how many UDP sockets of plain servers are being
// read (udp.go), in every router of the test binary.
func udpReaders() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "(*udpSock).read(")
}

// rawTCPServer accepts connections on 127.0.0.1 and runs serve on each,
// with the connection's number (1 for the first). accepted returns how
// many connections were accepted.
func rawTCPServer(t testing.TB, serve func(c net.Conn, n int)) (addr string, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var count atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := int(count.Add(1))
			go func() {
				defer c.Close()
				serve(c, n)
			}()
		}
	}()
	return l.Addr().String(), func() int { return int(count.Load()) }
}

// tcpPool is a pool of at most one TCP connection to addr, closed when the
// test ends.
func tcpPool(t testing.TB, addr string) *streamPool {
	p := newStreamPool(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, &settings{streamIdle: time.Minute, streamConns: 1})
	t.Cleanup(p.closeIdle)
	return p
}

// rawUDPServer sends the datagrams reply(query) returns for each query
// received on 127.0.0.1.
func rawUDPServer(t testing.TB, reply func(query []byte) [][]byte) string {
	t.Helper()
	return rawUDPServerFrom(t, func(query []byte, _ net.Addr) [][]byte { return reply(query) })
}

// udpServer answers each UDP query with the messages answer returns.
func udpServer(t testing.TB, answer func(*dns.Msg) []*dns.Msg) string {
	t.Helper()
	return rawUDPServer(t, func(query []byte) [][]byte {
		q := new(dns.Msg)
		if q.Unpack(query) != nil {
			return nil
		}
		var out [][]byte
		for _, m := range answer(q) {
			if b, err := m.Pack(); err == nil {
				out = append(out, b)
			}
		}
		return out
	})
}

// readFramed reads one length-prefixed DNS message from a stream.
func readFramed(r io.Reader) (*dns.Msg, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(buf)
}

// writeFramed writes one length-prefixed DNS message.
func writeFramed(w io.Writer, m *dns.Msg) error {
	buf, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(buf))), buf...))
	return err
}

// answerFor answers q with an A record whose last octet is the length of
// the query name, so each name gets a distinct, checkable answer.
func answerFor(q *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(q)
	rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A 192.0.2." + strconv.Itoa(len(q.Question[0].Name)))
	resp.Answer = append(resp.Answer, rr)
	return resp
}
