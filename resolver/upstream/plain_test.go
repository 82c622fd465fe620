package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

func TestPlainUDP(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	r := newRouter(t, nil, "failover", []string{up.Addr})
	a := mustExchange(t, r, "www.example.test.")
	if answerIP(a) != "192.0.2.1" {
		t.Errorf("answer %v", a)
	}
	mustExchange(t, r, "www.example.test.")
	if udp, tcp := up.Count(); udp != 2 || tcp != 0 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 2 and 0", udp, tcp)
	}
	// A fresh socket per query: a fresh source port, and a fresh ID.
	q := up.Queries()
	if q[0].Remote == q[1].Remote {
		t.Errorf("both UDP queries came from %s: want a new source port per query", q[0].Remote)
	}
	if q[0].Msg.Id == q[1].Msg.Id {
		t.Errorf("both UDP queries had ID %d", q[0].Msg.Id)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	up.SetTruncateUDP(true)
	r := newRouter(t, nil, "failover", []string{up.Addr})
	a := mustExchange(t, r, "www.example.test.")
	if a.Truncated || answerIP(a) != "192.0.2.1" {
		t.Errorf("answer %v, want the full answer from TCP", a)
	}
	if udp, tcp := up.Count(); udp != 1 || tcp != 1 {
		t.Errorf("upstream got %d UDP and %d TCP queries, want 1 and 1", udp, tcp)
	}
	// The TCP connection is kept for the next truncated answer.
	mustExchange(t, r, "a.example.test.")
	var remotes []string
	for _, q := range up.Queries() {
		if q.Net == "tcp" {
			remotes = append(remotes, q.Remote)
		}
	}
	if len(remotes) != 2 || remotes[0] != remotes[1] {
		t.Errorf("TCP queries came from %v: want one reused connection", remotes)
	}
}

func TestUDPIgnoresAnswersWithAnotherID(t *testing.T) {
	// The server first sends a forged answer with the wrong ID, then the
	// real one: the forged one must be ignored.
	addr := udpServer(t, func(q *dns.Msg) []*dns.Msg {
		forged := answerFor(q)
		forged.Id = q.Id + 1
		forged.Answer[0].(*dns.A).A = net.ParseIP("203.0.113.66")
		return []*dns.Msg{forged, answerFor(q)}
	})
	r := newRouter(t, nil, "failover", []string{addr})
	a := mustExchange(t, r, "www.example.test.")
	if got := answerIP(a); got != "192.0.2.17" {
		t.Errorf("answer %s, want 192.0.2.17 (the forged 203.0.113.66 has another ID)", got)
	}
}

func TestTCPPipelinesAndMatchesByID(t *testing.T) {
	// A server that reads two queries before answering, and answers them in
	// reverse order: both must be in flight on one connection, and each
	// answer must reach its own query.
	addr, conns := rawTCPServer(t, func(c net.Conn, _ int) {
		for {
			q1, err := readFramed(c)
			if err != nil {
				return
			}
			q2, err := readFramed(c)
			if err != nil {
				return
			}
			writeFramed(c, answerFor(q2))
			writeFramed(c, answerFor(q1))
		}
	})
	p := tcpPool(t, addr)
	names := []string{"a.example.test.", "bb.example.test.", "ccc.example.test.", "dddd.example.test."}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			q := query(name)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			resp, err := p.exchange(ctx, q)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return
			}
			if resp.Id != q.Id || resp.Question[0].Name != name || answerIP(resp) != answerIP(answerFor(q)) {
				t.Errorf("%s: got answer %v", name, resp)
			}
		})
	}
	wg.Wait()
	if n := conns(); n != 1 {
		t.Errorf("%d connections, want 1 carrying every query", n)
	}
}

func TestTCPConnectionDroppedAfterTimeout(t *testing.T) {
	// The first connection swallows queries (a hung server, or a NAT that
	// forgot the connection); later connections answer. After a timeout
	// the next query must not wait on the dead connection.
	addr, conns := rawTCPServer(t, func(c net.Conn, n int) {
		for {
			q, err := readFramed(c)
			if err != nil {
				return
			}
			if n > 1 {
				writeFramed(c, answerFor(q))
			}
		}
	})
	p := tcpPool(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.exchange(ctx, query("a.example.test.")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a timeout", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := p.exchange(ctx, query("b.example.test."))
	if err != nil || answerIP(resp) != answerIP(answerFor(query("b.example.test."))) {
		t.Fatalf("after the timeout: %v, %v", resp, err)
	}
	if n := conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestTCPIdleConnectionClosed(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	up.SetTruncateUDP(true)
	r := newRouter(t, nil, "failover", []string{up.Addr}, func(s *settings) { s.streamIdle = 100 * time.Millisecond })
	mustExchange(t, r, "a.example.test.")
	mustExchange(t, r, "b.example.test.")
	time.Sleep(300 * time.Millisecond) // past the idle timeout
	if g := ourGoroutines(); len(g) != 0 {
		t.Errorf("idle connection still read:\n%s", g)
	}
	mustExchange(t, r, "www.example.test.")
	var remotes []string
	for _, q := range up.Queries() {
		if q.Net == "tcp" {
			remotes = append(remotes, q.Remote)
		}
	}
	if len(remotes) != 3 || remotes[0] != remotes[1] || remotes[1] == remotes[2] {
		t.Errorf("TCP sources %v: want the first two on one connection, the third on a new one", remotes)
	}
}

func TestCancelAbortsExchange(t *testing.T) {
	ca := dnstest.NewCA(t)
	up := dnstest.NewUpstream(t, records...)
	up.SetSilent(true)
	dotAddr := up.StartTLS(t, ca.Issue(t, "dns.test"))
	doh := up.StartHTTPS(t, ca.Issue(t, "dns.test"))
	cfg := upstreamConfig(t, "failover", up.Addr, "tls://"+dotAddr+"#dns.test", dnstest.DoHURL(doh, "dns.test"))
	cfg.CAFile = ca.WriteFile(t)
	cfg.Timeout = time.Minute
	r := routerFor(t, nil, cfg)
	tcp := newPlain(cfg.Servers[0], &settings{streamIdle: time.Second, streamConns: 1})
	t.Cleanup(tcp.CloseIdleConnections)
	servers := map[string]func(context.Context, *dns.Msg) (*dns.Msg, error){
		"udp":   r.def.endpoints[0].Exchange,
		"tcp":   tcp.tcp.exchange,
		"tls":   r.def.endpoints[1].Exchange,
		"https": r.def.endpoints[2].Exchange,
	}
	for name, exchange := range servers {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			start := time.Now()
			_, err := exchange(ctx, query("www.example.test."))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v, want context.Canceled", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("returned %s after the cancel, want promptly", took)
			}
		})
	}
}

func TestExchangeErrorKinds(t *testing.T) {
	ca := dnstest.NewCA(t)
	other := dnstest.NewCA(t)
	up := dnstest.NewUpstream(t, records...)
	silent := dnstest.NewUpstream(t)
	silent.SetSilent(true)
	wrongCA := up.StartTLS(t, other.Issue(t, "dns.test"))
	goodTLS := up.StartTLS(t, ca.Issue(t, "dns.test"))
	failing := dnstest.NewUpstream(t)
	failing.SetHTTPStatus(500)
	doh := failing.StartHTTPS(t, ca.Issue(t, "dns.test"))
	notTLS, _ := rawTCPServer(t, func(c net.Conn, _ int) { c.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n")) })
	mismatch := udpServer(t, func(q *dns.Msg) []*dns.Msg {
		resp := answerFor(q)
		resp.Question[0].Name = "other.test."
		return []*dns.Msg{resp}
	})
	tests := []struct{ server, kind string }{
		{silent.Addr, KindTimeout},
		{closedPort(t), KindNetwork},
		{"tls://" + wrongCA + "#dns.test", KindTLS},
		{"tls://" + goodTLS + "#wrong.test", KindTLS},
		{"tls://" + notTLS + "#dns.test", KindTLS},
		{dnstest.DoHURL(doh, "dns.test"), KindHTTP},
		// A UDP answer to another question is ignored as a spoofing
		// attempt would be: the query times out waiting for the real one.
		{mismatch, KindTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.server, func(t *testing.T) {
			m := metrics.New("test")
			cfg := upstreamConfig(t, "failover", tt.server)
			cfg.CAFile = ca.WriteFile(t)
			cfg.Timeout = 300 * time.Millisecond
			r := routerFor(t, m, cfg)
			_, err := r.Exchange(context.Background(), query("www.example.test."), "www.example.test")
			if err == nil {
				t.Fatal("no error")
			}
			if got := ErrorKind(err); got != tt.kind {
				t.Errorf("kind %q of %v, want %q", got, err, tt.kind)
			}
			for _, k := range ErrorKinds {
				want := 0.0
				if k == tt.kind {
					want = 1
				}
				if v := metric(t, m, "appfence_upstream_errors_total", "upstream", tt.server, "kind", k); v != want {
					t.Errorf("appfence_upstream_errors_total{kind=%q} = %v, want %v", k, v, want)
				}
			}
		})
	}
}

// closedPort returns a loopback address where nothing listens, on UDP
// and TCP.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestAppendQuery: appendQuery writes a plain query as miekg/dns packs it,
// and leaves any other message to pack.
func TestAppendQuery(t *testing.T) {
	noEDNS := new(dns.Msg)
	noEDNS.SetQuestion("www.example.test.", dns.TypeAAAA)
	do := query("MiXeD.example.test.")
	do.IsEdns0().SetDo()
	do.CheckingDisabled, do.AuthenticatedData = true, true
	withOption := query("www.example.test.")
	withOption.IsEdns0().Option = append(withOption.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	withAnswer := query("www.example.test.")
	withAnswer.Answer = answerFor(withAnswer).Answer
	for _, tt := range []struct {
		name  string
		req   *dns.Msg
		plain bool
	}{
		{"edns", query("www.example.test."), true},
		{"no edns", noEDNS, true},
		{"do cd ad", do, true},
		{"root", query("."), true},
		{"escaped", query(`a\.b.example.test.`), true},
		{"option", withOption, false},
		{"answer", withAnswer, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf [512]byte
			got, ok := appendQuery(buf[:], tt.req, 0x1234)
			if ok != tt.plain {
				t.Fatalf("appendQuery ok = %v, want %v", ok, tt.plain)
			}
			if !ok {
				return
			}
			want, err := pack(tt.req, 0x1234)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want[2:]) {
				t.Errorf("appendQuery\n%x\nwant\n%x", got, want[2:])
			}
		})
	}
}
