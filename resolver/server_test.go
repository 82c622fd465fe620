package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// startLimited starts the resolver with lines added to its [server]
// section and adjust applied to the server before it starts (may be nil).
func startLimited(t *testing.T, server string, adjust func(*Server)) *env {
	t.Helper()
	up := dnstest.NewUpstream(t, upstreamRecords...)
	cfg := insertServer(fmt.Sprintf(testConfig, up.Addr, ""), server)
	return startEnvServer(t, up, cfg, time.Now, adjust)
}

// insertServer adds lines to the [server] section of a config.
func insertServer(cfg, lines string) string {
	return strings.Replace(cfg, "[server]\n", "[server]\n"+lines+"\n", 1)
}

// burst sends n queries for name from local over one UDP socket as fast as
// it can, and returns the number of replies that arrive within wait.
func burst(t *testing.T, addr, local, name string, n int, wait time.Duration) int {
	t.Helper()
	c := dial(t, "udp", local, addr)
	defer c.Close()
	for i := 0; i < n; i++ {
		m := dnstest.NewQuery(name, dns.TypeA, false, false)
		m.Id = uint16(i + 1)
		if _, err := c.Write(pack(t, m)); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	deadline := time.Now().Add(wait)
	for readMsg(t, c, "udp", time.Until(deadline)) != nil {
		got++
	}
	return got
}

func TestRateLimit(t *testing.T) {
	// The clock moves only when told: no token comes back meanwhile. It
	// starts after the limiter's epoch (NewServer): a time before it
	// counts as the epoch, which a slow start would push past the refill.
	var clk *dnstest.Clock
	e := startLimited(t, "rate_limit = 2", func(s *Server) {
		clk = dnstest.NewClock()
		s.now = clk.Now
	})
	// A burst of 30: the bucket holds 2; the rest is dropped and counted.
	got := burst(t, e.addr, "127.0.0.1", "www.example.test.", 30, 300*time.Millisecond)
	if got != 2 {
		t.Errorf("burst of 30 at rate 2: %d answered, want 2", got)
	}
	if d := e.counter(t, "default", "dropped"); d != float64(30-got) {
		t.Errorf("dropped = %v, want %d", d, 30-got)
	}
	// Over TCP the limited client is told: REFUSED, counted as refused.
	resp := e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeRefused {
		t.Errorf("tcp over the limit: %s, want REFUSED", dns.RcodeToString[resp.Rcode])
	}
	if got := e.counter(t, "default", "refused"); got != 1 {
		t.Errorf("refused = %v, want 1", got)
	}
	// Another client has its own bucket.
	if got := burst(t, e.addr, "127.0.0.2", "www.example.test.", 2, time.Second); got != 2 {
		t.Errorf("another client: %d of 2 answered", got)
	}
	// A second later the bucket is full again.
	clk.Advance(time.Second)
	resp = e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeSuccess {
		t.Errorf("tcp a second later: %s, want NOERROR", dns.RcodeToString[resp.Rcode])
	}
	// A reload turns it off.
	e.swapPolicy(t, "")
	if got := burst(t, e.addr, "127.0.0.1", "www.example.test.", 30, time.Second); got != 30 {
		t.Errorf("rate_limit off after a reload: %d of 30 answered", got)
	}
}

// query sends one query on an open TCP connection and returns the reply,
// nil when there is none within wait.
func query(t *testing.T, c net.Conn, name string, wait time.Duration) *dns.Msg {
	t.Helper()
	m := dnstest.NewQuery(name, dns.TypeA, false, false)
	if err := writeFramed(c, "tcp", pack(t, m)); err != nil {
		return nil
	}
	b := readMsg(t, c, "tcp", wait)
	if b == nil {
		return nil
	}
	return unpack(t, b, m.Id)
}

// idleConns returns how many of s's TCP connections are idle.
func idleConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, tc := range s.conns {
		if tc.idleSince.Load() != 0 {
			n++
		}
	}
	return n
}

func TestMaxTCPConnections(t *testing.T) {
	e := startLimited(t, "max_tcp_connections = 2", nil)
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c := dial(t, "tcp", "", e.addr)
		defer c.Close()
		if query(t, c, "www.example.test.", 2*time.Second) == nil {
			t.Fatalf("connection %d not served", i+1)
		}
		conns = append(conns, c)
		// Which is idle the longest is decided by when the server saw each
		// become idle; under -race its goroutines may lag the client.
		waitFor(t, "the connection to be idle", func() bool { return idleConns(e.srv) == i+1 })
	}
	// The third is served, and the connection idle the longest, the first,
	// is closed to make room (RFC 7766, 6.2.3).
	third := dial(t, "tcp", "", e.addr)
	defer third.Close()
	if query(t, third, "www.example.test.", 2*time.Second) == nil {
		t.Error("connection 3 of 2 not served")
	}
	if !isClosed(conns[0], 2*time.Second) {
		t.Error("connection idle the longest still open")
	}
	if query(t, conns[1], "www.example.test.", 2*time.Second) == nil {
		t.Error("connection 2 no longer served")
	}
	conns[0] = third
	// When one closes, a new one is served.
	conns[1].Close()
	waitFor(t, "the closed connection to be released", func() bool { return e.srv.tcpActive.Load() == 1 })
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	if query(t, c, "www.example.test.", 2*time.Second) == nil {
		t.Error("a new connection after one closed is not served")
	}
}

func TestTCPSlowClients(t *testing.T) {
	e := startLimited(t, `tcp_idle_timeout = "300ms"`, nil)
	query := pack(t, dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	framed := append([]byte{0, byte(len(query))}, query...)
	tests := map[string][]byte{
		"silent":            nil,
		"half a length":     framed[:1],
		"length only":       framed[:2],
		"half a message":    framed[:len(framed)/2],
		"one byte too few":  framed[:len(framed)-1],
		"a query then idle": framed,
	}
	for name, sent := range tests {
		t.Run(name, func(t *testing.T) {
			c := dial(t, "tcp", "", e.addr)
			defer c.Close()
			c.Write(sent)
			if name == "a query then idle" {
				if readMsg(t, c, "tcp", 2*time.Second) == nil {
					t.Fatal("no reply")
				}
			}
			start := time.Now()
			if !isClosed(c, 5*time.Second) {
				t.Fatalf("connection still open after %s", time.Since(start))
			}
		})
	}
	waitFor(t, "every connection to be released", func() bool { return e.srv.tcpActive.Load() == 0 })
}

func TestTCPQueriesPerConnection(t *testing.T) {
	e := startLimited(t, "max_tcp_queries_per_connection = 3", nil)
	c := dial(t, "tcp", "", e.addr)
	defer c.Close()
	for i := 0; i < 3; i++ {
		if query(t, c, "www.example.test.", 2*time.Second) == nil {
			t.Fatalf("query %d not answered", i+1)
		}
	}
	if !isClosed(c, 2*time.Second) {
		t.Error("connection open after its 3 queries")
	}
	// By default a connection is not bounded in queries, as in Unbound
	// and CoreDNS: a client may keep using it.
	e = startLimited(t, "", nil)
	c = dial(t, "tcp", "", e.addr)
	defer c.Close()
	for i := 0; i < 300; i++ {
		if query(t, c, "www.example.test.", 2*time.Second) == nil {
			t.Fatalf("query %d of an unbounded connection not answered", i+1)
		}
	}
}

// TestTCPClientThatDoesNotRead pipelines queries for a large answer and
// never reads: once the socket buffers are full the server's write waits
// tcp_idle_timeout, then the connection is closed.
func TestTCPClientThatDoesNotRead(t *testing.T) {
	up := dnstest.NewUpstream(t)
	for i := 0; i < 200; i++ {
		up.Add(t, fmt.Sprintf("huge.example.test. 300 IN TXT \"%0250d\"", i))
	}
	cfg := insertServer(fmt.Sprintf(testConfig, up.Addr, ""), `tcp_idle_timeout = "500ms"`)
	e := startEnvServer(t, up, cfg, time.Now, nil)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var all []byte
	for i := 0; i < 100; i++ { // 100 replies of 50 KB: more than any socket buffer
		q := pack(t, dnstest.NewQuery("huge.example.test.", dns.TypeTXT, false, false))
		all = append(all, byte(len(q)>>8), byte(len(q)))
		all = append(all, q...)
	}
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the connection to be served", func() bool { return e.srv.tcpActive.Load() == 1 })
	waitFor(t, "the server to give up on the connection", func() bool { return e.srv.tcpActive.Load() == 0 })
}

// TestUpstreamInFlightBound: with every upstream place taken, further
// misses get SERVFAIL at once instead of waiting for the slow upstream.
func TestUpstreamInFlightBound(t *testing.T) {
	e := startEnv(t, "")
	e.handler.upstreamPlaces.max.Store(2)
	e.upstream.SetDelay(300 * time.Millisecond) // upstream.timeout is 500ms
	type result struct {
		rcode int
		at    time.Time
	}
	results := make(chan result, 6)
	for i := 0; i < 6; i++ {
		go func() {
			m := dnstest.NewQuery(fmt.Sprintf("n%d.example.test.", i), dns.TypeA, false, false)
			resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", e.addr, m)
			if err != nil {
				results <- result{-1, time.Now()}
				return
			}
			results <- result{resp.Rcode, time.Now()}
		}()
	}
	var fail, ok []time.Time
	for i := 0; i < 6; i++ {
		r := <-results
		switch r.rcode {
		case dns.RcodeServerFailure:
			fail = append(fail, r.at)
		case dns.RcodeNameError: // the upstream has no such names
			ok = append(ok, r.at)
		default:
			t.Errorf("rcode %d", r.rcode)
		}
	}
	if len(fail) != 4 || len(ok) != 2 {
		t.Fatalf("%d SERVFAIL and %d answered, want 4 and 2", len(fail), len(ok))
	}
	for _, f := range fail {
		for _, o := range ok {
			if !f.Before(o) {
				t.Error("a SERVFAIL came after an upstream answer: it waited")
			}
		}
	}
	if n := e.upstream.Total(); n != 2 {
		t.Errorf("upstream asked %d times, want 2", n)
	}
	if n := e.handler.upstreamPlaces.n.Load(); n != 0 {
		t.Errorf("%d upstream places still taken", n)
	}
}

// TestUDPInFlightBound: beyond the UDP queries being answered, packets are
// dropped and counted.
func TestUDPInFlightBound(t *testing.T) {
	e := startLimited(t, "", func(s *Server) { s.udpPlaces.max.Store(2) })
	e.upstream.SetDelay(500 * time.Millisecond)
	c := dial(t, "udp", "", e.addr)
	defer c.Close()
	for i := 0; i < 5; i++ {
		m := dnstest.NewQuery(fmt.Sprintf("n%d.example.test.", i), dns.TypeA, false, false)
		c.Write(pack(t, m))
	}
	got := 0
	for readMsg(t, c, "udp", 2*time.Second) != nil {
		got++
	}
	if got != 2 {
		t.Errorf("%d of 5 answered with 2 places, want 2", got)
	}
	if d := e.counter(t, "default", "dropped"); d != 3 {
		t.Errorf("dropped = %v, want 3", d)
	}
	if n := e.srv.udpPlaces.n.Load(); n != 0 {
		t.Errorf("%d UDP places still taken", n)
	}
}

// TestShutdown: queries in flight are answered, idle TCP connections are
// closed, and nothing is served after.
func TestShutdown(t *testing.T) {
	up := dnstest.NewUpstream(t, "udp.example.test. 300 IN A 192.0.2.1", "tcp.example.test. 300 IN A 192.0.2.2")
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, ""))
	up.SetDelay(300 * time.Millisecond)
	idle := dial(t, "tcp", "", e.addr)
	defer idle.Close()
	busy := dial(t, "tcp", "", e.addr)
	defer busy.Close()
	var wg sync.WaitGroup
	var udpResp, tcpResp *dns.Msg
	wg.Add(2)
	go func() {
		defer wg.Done()
		udpResp, _ = dnstest.Client{}.Exchange(context.Background(), "udp", e.addr, dnstest.NewQuery("udp.example.test.", dns.TypeA, false, false))
	}()
	go func() {
		defer wg.Done()
		tcpResp = query(t, busy, "tcp.example.test.", 5*time.Second)
	}()
	waitFor(t, "the queries to reach the upstream", func() bool { return up.Total() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	if udpResp == nil || len(udpResp.Answer) != 1 || tcpResp == nil || len(tcpResp.Answer) != 1 {
		t.Errorf("queries in flight: UDP %v, TCP %v; want both answered", udpResp, tcpResp)
	}
	if !isClosed(idle, time.Second) || !isClosed(busy, time.Second) {
		t.Error("TCP connections open after Shutdown")
	}
	if _, err := (dnstest.Client{Timeout: 300 * time.Millisecond}).Exchange(context.Background(), "udp", e.addr, dnstest.NewQuery("udp.example.test.", dns.TypeA, false, false)); err == nil {
		t.Error("answered after Shutdown")
	}
}

// TestReplyFromQueriedAddress listens on the wildcard address and queries
// it at 127.0.0.1 and 127.0.0.2 (the client's address is 127.0.0.1 both
// times): each reply must come from the address asked (a connected UDP socket accepts nothing else), which needs the
// packet's destination address.
func TestReplyFromQueriedAddress(t *testing.T) {
	up := dnstest.NewUpstream(t, upstreamRecords...)
	cfg := fmt.Sprintf(testConfig, up.Addr, "")
	cfg = strings.Replace(cfg, `listen = ["127.0.0.1:0"]`, `listen = ["0.0.0.0:0"]`, 1)
	e := startEnvServer(t, up, cfg, time.Now, nil)
	_, port, _ := net.SplitHostPort(e.addr)
	// A miss (the full pipeline), then a hit and a blocked name (the fast
	// path), to each address.
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		for _, q := range []struct {
			name  string
			rcode int
		}{{"www.example.test.", dns.RcodeSuccess}, {"www.example.test.", dns.RcodeSuccess}, {"m.tiktok.com.", dns.RcodeNameError}} {
			resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", net.JoinHostPort(ip, port), dnstest.NewQuery(q.name, dns.TypeA, false, false))
			if err != nil || resp.Rcode != q.rcode {
				t.Errorf("query for %s to %s: %v %v", q.name, ip, resp, err)
			}
		}
	}
}

// TestRateLimitChargesOnlyQueries: a flood of responses (QR=1), runts and
// queries whose name does not parse (a reserved label type), spoofed with a
// device's address, does not drain its bucket.
func TestRateLimitChargesOnlyQueries(t *testing.T) {
	e := startLimited(t, "rate_limit = 5", nil)
	c := dial(t, "udp", "127.0.0.1", e.addr)
	defer c.Close()
	header := pack(t, dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))[:12]
	badLabel := append(append([]byte(nil), header...), 0x40, 'x', 0, 0, 1, 0, 1)
	for i := 0; i < 200; i++ {
		m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
		m.Response = true
		m.Id = uint16(i + 1)
		if _, err := c.Write(pack(t, m)); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte{1, 2, 3}) // a runt
		c.Write(badLabel)
		if i%25 == 24 {
			time.Sleep(5 * time.Millisecond) // within the socket buffer
		}
	}
	if r := readMsg(t, c, "udp", 200*time.Millisecond); r != nil {
		t.Fatalf("a response or runt was answered: %x", r)
	}
	time.Sleep(300 * time.Millisecond) // the last packets read
	if d := e.counter(t, "default", "dropped"); d == 0 || d > 600 {
		t.Errorf("dropped = %v, want the packets read of the 600", d)
	}
	if got := burst(t, e.addr, "127.0.0.1", "www.example.test.", 5, 2*time.Second); got != 5 {
		t.Errorf("after a spoofed flood: %d of 5 queries answered, want all", got)
	}
}

// TestTCPHog: one client opening many idle connections takes no more than
// its share, a client outside allow_clients takes none, and another client
// is still answered over TCP: when every place is taken, the connection
// idle the longest is closed to make room.
func TestTCPHog(t *testing.T) {
	e := startLimited(t, "max_tcp_connections = 8\nmax_tcp_connections_per_client = 5", nil)
	// The hog (127.0.0.1) tries 50 connections; 5 are served.
	var hog []net.Conn
	served := 0
	for i := 0; i < 50; i++ {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}).Dial("tcp", e.addr)
		if err != nil {
			continue
		}
		defer c.Close()
		if query(t, c, "www.example.test.", time.Second) != nil {
			served++
			hog = append(hog, c)
			waitFor(t, "the hog's connection to be idle", func() bool { return idleConns(e.srv) == served })
		}
	}
	if served != 5 {
		t.Errorf("hog: %d connections served, want 5 (its share)", served)
	}
	// A client outside allow_clients never takes a place.
	for i := 0; i < 20; i++ {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).Dial("tcp", e.addr)
		if err != nil {
			continue
		}
		if r := query(t, c, "www.example.test.", time.Second); r != nil {
			t.Errorf("disallowed client answered over TCP: %v", r)
		}
		c.Close()
		if n := e.srv.tcpActive.Load(); n > 5 {
			t.Fatalf("%d connections open after the disallowed client's, want 5", n)
		}
	}
	// Another client opens 5: the first 3 take the free places, the next 2
	// close the hog's connections idle the longest, and every one is
	// answered.
	for i := 0; i < 5; i++ {
		c := dial(t, "tcp", "127.0.0.2", e.addr)
		defer c.Close()
		if query(t, c, "www.example.test.", 2*time.Second) == nil {
			t.Fatalf("other client's connection %d not answered", i+1)
		}
	}
	if n := e.srv.tcpActive.Load(); n != 8 {
		t.Errorf("%d connections counted, want 8", n)
	}
	for i, c := range hog {
		if closed := isClosed(c, 300*time.Millisecond); closed != (i < 2) {
			t.Errorf("hog's connection %d: closed %v, want %v", i+1, closed, i < 2)
		}
	}
}

// TestShutdownEndsUpstreamWaits: a query waiting for an upstream that
// never answers is answered SERVFAIL when Shutdown's grace ends, long
// before upstream.timeout and the upstream budget, over UDP and TCP, with
// the cache (a shared resolution) and without.
func TestShutdownEndsUpstreamWaits(t *testing.T) {
	for _, tt := range []struct {
		name, netw, cache string
	}{
		{"udp cache", "udp", ""},
		{"tcp cache", "tcp", ""},
		{"udp no cache", "udp", "[cache]\nsize = 0\n"},
		{"tcp no cache", "tcp", "[cache]\nsize = 0\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := dnstest.NewUpstream(t, upstreamRecords...)
			up.SetSilent(true)
			cfg := strings.Replace(fmt.Sprintf(testConfig, up.Addr, ""), `timeout = "500ms"`, `timeout = "25s"`, 1)
			e := startEnvWith(t, up, cfg+tt.cache)
			dnstest.ServfailAtShutdown(t, up, e.srv.Shutdown, func() (*dns.Msg, error) {
				c := dnstest.Client{Local: "127.0.0.1", Timeout: 20 * time.Second}
				return c.Exchange(context.Background(), tt.netw, e.addr, dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
			})
		})
	}
}

// TestUDPSocketsShareTheAddress: with server.udp_sockets = 3 the listen
// address has three UDP sockets bound together (SO_REUSEPORT); queries
// from many client ports, which the kernel spreads over them, are all
// answered, and Shutdown closes every socket.
func TestUDPSocketsShareTheAddress(t *testing.T) {
	if !reusePortSupported {
		t.Skip("SO_REUSEPORT sockets are Linux only")
	}
	up := dnstest.NewUpstream(t, upstreamRecords...)
	e := startEnvWith(t, up, insertServer(fmt.Sprintf(testConfig, up.Addr, ""), "udp_sockets = 3"))
	if got := 1 + len(e.srv.udpMore); got != 3 {
		t.Fatalf("%d UDP sockets, want 3", got)
	}
	for _, u := range e.srv.udpMore {
		if a := u.conn.LocalAddr().String(); a != e.addr {
			t.Errorf("a UDP socket is bound to %s, want %s", a, e.addr)
		}
	}
	for i := range 24 {
		e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, i%2 == 0, false))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range append([]udpSocket{e.srv.udp[0]}, e.srv.udpMore...) {
		if _, err := u.conn.Write([]byte{0}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Shutdown a UDP socket is still open (%v)", err)
		}
	}
}
