package resolver

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// recorder is a dns.ResponseWriter that keeps the bytes of the last reply.
// Benchmarks use it to measure the handler alone, without the sockets that
// the tests exercise; WriteMsg packs as miekg/dns's own writer does.
type recorder struct {
	remote net.Addr
	reply  []byte
	writes int
}

func (r *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	r.reply = b
	r.writes++
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	r.reply = append(r.reply[:0], b...)
	r.writes++
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// newRecorder returns a writer for a UDP client at 127.0.0.1.
func newRecorder() *recorder {
	return &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
}

// serve runs one query through h and returns the reply.
func serve(b testing.TB, h *Handler, w *recorder, req *dns.Msg) *dns.Msg {
	b.Helper()
	h.ServeDNS(w, req)
	return unpackReply(b, w)
}

// unpackReply parses the last reply w recorded.
func unpackReply(b testing.TB, w *recorder) *dns.Msg {
	b.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(w.reply); err != nil {
		b.Fatalf("reply: %v", err)
	}
	return m
}

// BenchmarkServeDNS measures a query through the whole Handler.ServeDNS
// (ACL, decision, cache, reply, metrics) with the reply written to a
// recorder:
//
//   - hit: answered from the cache (A, EDNS client, as dig asks); the
//     answer is inspected once, when stored, and has no findings.
//   - hit-noedns: the same without EDNS (as glibc's stub asks).
//   - hit-cname-exempted: a cached answer whose CNAME is a TikTok name,
//     for the exempted group: its findings are checked and it is served.
//   - hit-cname-blocked: the same answer for the default group: replaced
//     by the block answer.
//   - blocked: the block answer, built without the cache or upstream; the
//     reference for a hit.
//   - miss: a new name each time, answered by a loopback upstream and
//     stored.
//   - nocache: the same with the cache off; the reference for a miss.
func BenchmarkServeDNS(b *testing.B) {
	records := append(slices.Clone(upstreamRecords),
		"video.example.test. 300 IN CNAME tiktokv.com.edgekey.net.",
		"tiktokv.com.edgekey.net. 300 IN A 192.0.2.40")
	cfgFor := func(up *dnstest.Upstream, extra string) string {
		return fmt.Sprintf(testConfig, up.Addr, "") + extra
	}
	hit := func(name, client string, edns bool, answers int) func(b *testing.B) {
		return func(b *testing.B) {
			up := dnstest.NewUpstream(b, records...)
			e := startEnvWith(b, up, cfgFor(up, ""))
			w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(client), Port: 40000}}
			req := dnstest.NewQuery(name, dns.TypeA, edns, false)
			if m := serve(b, e.handler, w, req); len(m.Answer) != answers {
				b.Fatalf("warm-up reply %v", m)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.handler.ServeDNS(w, req)
			}
			b.StopTimer()
			if up.Total() != 1 {
				b.Fatalf("upstream got %d queries, want 1", up.Total())
			}
			if m := unpackReply(b, w); m.Id != req.Id || len(m.Answer) != answers || (m.IsEdns0() != nil) != edns {
				b.Fatalf("hit reply %v", m)
			}
		}
	}
	b.Run("hit", hit("www.example.test.", "127.0.0.1", true, 1))
	b.Run("hit-noedns", hit("www.example.test.", "127.0.0.1", false, 1))
	b.Run("hit-cname-exempted", hit("video.example.test.", "127.0.0.2", true, 2))
	b.Run("hit-cname-blocked", hit("video.example.test.", "127.0.0.1", true, 0))
	b.Run("blocked", func(b *testing.B) {
		up := dnstest.NewUpstream(b, records...)
		e := startEnvWith(b, up, cfgFor(up, ""))
		w := newRecorder()
		req := dnstest.NewQuery("www.tiktok.com.", dns.TypeA, true, false)
		if m := serve(b, e.handler, w, req); m.Rcode != dns.RcodeNameError {
			b.Fatalf("reply %v, want NXDOMAIN", m)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			e.handler.ServeDNS(w, req)
		}
	})
	miss := func(cacheSize string) func(b *testing.B) {
		return func(b *testing.B) {
			up := dnstest.NewUpstream(b, records...)
			e := startEnvWith(b, up, cfgFor(up, "\n[cache]\nsize = "+cacheSize+"\n"))
			w := newRecorder()
			reqs := make([]*dns.Msg, b.N)
			for i := range reqs {
				reqs[i] = dnstest.NewQuery(fmt.Sprintf("n%d.example.test.", i), dns.TypeA, true, false)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.handler.ServeDNS(w, reqs[i])
			}
			b.StopTimer()
			if up.Total() != int64(b.N) {
				b.Fatalf("upstream got %d queries, want %d", up.Total(), b.N)
			}
		}
	}
	b.Run("miss", miss("100000"))
	b.Run("nocache", miss("0"))
}

// BenchmarkPacket measures the server's packet path before the handler:
// checkPacket alone (the checks made on every packet without parsing it),
// and request (those checks and the parse, as each UDP and TCP query
// costs), for a query as dig sends it.
func BenchmarkPacket(b *testing.B) {
	raw, err := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false).Pack()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if checkPacket(raw) != nil {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("request", func(b *testing.B) {
		up := dnstest.NewUpstream(b, upstreamRecords...)
		e := startEnvWith(b, up, fmt.Sprintf(testConfig, up.Addr, ""))
		client := netip.MustParseAddr("127.0.0.1")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if e.srv.request(raw, client) == nil {
				b.Fatal("dropped")
			}
		}
	})
}

// BenchmarkServeWire measures the fast path (serveWire): a query read from
// the packet and answered into a reused buffer, as the UDP and TCP loops
// call it. "hit" and "blocked" are the queries of BenchmarkServeDNS's
// subtests of the same names, which are the reference.
func BenchmarkServeWire(b *testing.B) {
	for _, tt := range []struct {
		name  string
		query string
		rcode int
	}{
		{"hit", "www.example.test.", dns.RcodeSuccess},
		{"blocked", "www.tiktok.com.", dns.RcodeNameError},
	} {
		b.Run(tt.name, func(b *testing.B) {
			up := dnstest.NewUpstream(b, upstreamRecords...)
			e := startEnvWith(b, up, fmt.Sprintf(testConfig, up.Addr, ""))
			req := dnstest.NewQuery(tt.query, dns.TypeA, true, false)
			serve(b, e.handler, newRecorder(), req) // stores a name resolved
			raw, err := req.Pack()
			if err != nil {
				b.Fatal(err)
			}
			client := netip.MustParseAddr("127.0.0.1")
			var scratch fastScratch
			reply := make([]byte, 0, ednsSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var ok bool
				if reply, ok = e.handler.serveWire(raw, client, source{transport: "udp"}, reply[:0], &scratch); !ok {
					b.Fatal("left to the full pipeline")
				}
			}
			b.StopTimer()
			m := new(dns.Msg)
			if err := m.Unpack(reply); err != nil || m.Rcode != tt.rcode || m.Id != req.Id {
				b.Fatalf("reply %v (%v)", m, err)
			}
		})
	}
}

// BenchmarkEncrypted measures a query over a real encrypted connection on
// loopback, client included: DoT on one connection, one query at a time,
// and DoH over HTTP/2 (POST). "hit" is a cached name and "blocked" a
// TikTok name, both answered by the fast path; with EDNS, so the reply is
// padded (RFC 8467).
func BenchmarkEncrypted(b *testing.B) {
	e := startTLSEnv(b)
	names := map[string]string{"hit": "www.example.test.", "blocked": "www.tiktok.com."}
	for _, what := range []string{"hit", "blocked"} {
		q := new(dns.Msg).SetQuestion(names[what], dns.TypeA)
		q.SetEdns0(1232, false)
		b.Run("dot/"+what, func(b *testing.B) {
			c, err := e.dialDoT(b, "dns.test", nil)
			if err != nil {
				b.Fatal(err)
			}
			c.SetDeadline(time.Time{})                // dialDoT's is for its handshake
			if _, err := exchange(c, q); err != nil { // stores the answer
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := exchange(c, q); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("doh/"+what, func(b *testing.B) {
			client := e.dohClient(true, nil)
			body, err := q.Pack()
			if err != nil {
				b.Fatal(err)
			}
			post := func() {
				resp, err := client.Post(e.dohURL("/dns-query"), "application/dns-message", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			post() // stores the answer
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				post()
			}
		})
	}
}
