package main

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/synthetic"
)

// TestParseQueries: dnsperf's query files become queries with ID 0, RD
// set and one question; bad lines fail with their number.
func TestParseQueries(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []dns.Question // nil: an error
	}{
		{"hot", "n000.bench.test A\nn001.bench.test A\n", []dns.Question{
			{Name: "n000.bench.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET},
			{Name: "n001.bench.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
		{"types", "www.tiktok.com AAAA\nh1.tiktokv.com https\nx.test.\n", []dns.Question{
			{Name: "www.tiktok.com.", Qtype: dns.TypeAAAA, Qclass: dns.ClassINET},
			{Name: "h1.tiktokv.com.", Qtype: dns.TypeHTTPS, Qclass: dns.ClassINET},
			{Name: "x.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
		{"blank lines and comments", "\n# hot\n  \nn000.bench.test A\n", []dns.Question{
			{Name: "n000.bench.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
		{"unknown type", "n000.bench.test BOGUS\n", nil},
		{"bad name", "a..b A\n", nil},
		{"empty", "\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qs, err := parseQueries(strings.NewReader(tc.in))
			if (err == nil) != (tc.want != nil) {
				t.Fatalf("parseQueries: %v", err)
			}
			if len(qs) != len(tc.want) {
				t.Fatalf("%d queries, want %d", len(qs), len(tc.want))
			}
			for i, b := range qs {
				var m dns.Msg
				if err := m.Unpack(b); err != nil {
					t.Fatal(err)
				}
				if m.Id != 0 || !m.RecursionDesired || m.Response || len(m.Question) != 1 || m.Question[0] != tc.want[i] || m.IsEdns0() != nil {
					t.Errorf("query %d: %v", i, &m)
				}
			}
		})
	}
}

// TestDoHRcode: an answer counts only with status 200 over HTTP/2 and a
// DNS response as its body; its rcode is the header's.
func TestDoHRcode(t *testing.T) {
	reply := func(rcode int) []byte {
		m := new(dns.Msg)
		m.SetQuestion("n000.bench.test.", dns.TypeA)
		m.Id = 0
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		b, _ := r.Pack()
		return b
	}
	query, _ := new(dns.Msg).SetQuestion("n000.bench.test.", dns.TypeA).Pack()
	for _, tc := range []struct {
		name          string
		status, proto int
		body          []byte
		rcode         int
		ok            bool
	}{
		{"NOERROR", 200, 2, reply(dns.RcodeSuccess), dns.RcodeSuccess, true},
		{"NXDOMAIN", 200, 2, reply(dns.RcodeNameError), dns.RcodeNameError, true},
		{"SERVFAIL", 200, 2, reply(dns.RcodeServerFailure), dns.RcodeServerFailure, true},
		{"status 415", 415, 2, reply(dns.RcodeSuccess), 0, false},
		{"HTTP/1.1", 200, 1, reply(dns.RcodeSuccess), 0, false},
		{"short body", 200, 2, []byte{0, 0, 0x81}, 0, false},
		{"empty body", 200, 2, nil, 0, false},
		{"a query", 200, 2, query, 0, false},
		{"too long", 200, 2, make([]byte, dns.MaxMsgSize+1), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcode, err := dohRcode(tc.status, tc.proto, tc.body)
			if (err == nil) != tc.ok || (tc.ok && rcode != tc.rcode) {
				t.Errorf("dohRcode = %d, %v; want %d, ok %v", rcode, err, tc.rcode, tc.ok)
			}
		})
	}
}

// dohServer is a DoH server on loopback (net/http over HTTP/2 with the
// bench's certificate) that answers names under "blocked." NXDOMAIN and
// every other name NOERROR, and never answers names under "drop." (the
// client gives up). It counts the connections the queries came on.
type dohServer struct {
	*httptest.Server
	mu      sync.Mutex
	conns   map[string]bool // RemoteAddr
	proto   map[int]int     // queries by HTTP major version
	methods map[string]int  // queries by method
	// Names under "slow." are answered after slow; inFlight and most
	// count the queries being answered at once on each connection.
	slow     time.Duration
	inFlight map[string]int
	most     int
}

func startDoHServer(t testing.TB, certs tlsFiles) *dohServer {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certs.cert, certs.key)
	if err != nil {
		t.Fatal(err)
	}
	s := &dohServer{conns: map[string]bool{}, proto: map[int]int{}, methods: map[string]int{}, inFlight: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.conns[r.RemoteAddr] = true
		s.proto[r.ProtoMajor]++
		s.methods[r.Method]++
		s.mu.Unlock()
		var body []byte
		var err error
		switch r.Method {
		case http.MethodGet:
			body, err = base64.RawURLEncoding.DecodeString(r.URL.Query().Get("dns"))
		case http.MethodPost:
			body, err = io.ReadAll(r.Body)
			if r.Header.Get("Content-Type") != dohMedia {
				err = errors.New("content type")
			}
		default:
			err = errors.New("method")
		}
		if r.URL.Path != dohPath || r.Header.Get("Accept") != dohMedia || err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var q dns.Msg
		if err := q.Unpack(body); err != nil || len(q.Question) != 1 {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		name := q.Question[0].Name
		if dns.IsSubDomain("slow.", name) {
			s.mu.Lock()
			s.inFlight[r.RemoteAddr]++
			s.most = max(s.most, s.inFlight[r.RemoteAddr])
			s.mu.Unlock()
			time.Sleep(s.slow)
			s.mu.Lock()
			s.inFlight[r.RemoteAddr]--
			s.mu.Unlock()
		}
		if dns.IsSubDomain("drop.", name) {
			<-r.Context().Done() // the client cancels
			return
		}
		m := new(dns.Msg)
		m.SetReply(&q)
		if dns.IsSubDomain("blocked.", name) {
			m.Rcode = dns.RcodeNameError
		} else {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}})
		}
		b, _ := m.Pack()
		w.Header().Set("Content-Type", dohMedia)
		w.Write(b)
	}))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// TestDoHGen: the generator against a DoH server on loopback: an open loop
// and a closed loop over three HTTP/2 connections of their own, every
// query answered and counted by rcode; queries without an answer are lost
// after the timeout, and a run still ends.
func TestDoHGen(t *testing.T) {
	certs, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	qs, err := parseQueries(strings.NewReader("a.test A\nb.test AAAA\nx.blocked A\nc.test A\n"))
	if err != nil {
		t.Fatal(err)
	}
	drop, err := parseQueries(strings.NewReader("a.test A\nx.drop A\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		method  string
		queries [][]byte
		rate    int
		lossy   bool
	}{
		{"open loop", "GET", qs, 400, false},
		{"closed loop", "GET", qs, 0, false},
		{"open loop, POST", "POST", qs, 400, false},
		{"closed loop, POST", "POST", qs, 0, false},
		{"open loop, lost", "GET", drop, 200, true},
		{"closed loop, lost", "POST", drop, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDoHServer(t, certs)
			g := dohGen{method: tc.method, addr: srv.Listener.Addr().String(), roots: certs.roots, clients: 3, streams: 4, timeout: 10 * time.Second}
			if tc.lossy {
				// Long enough for an answer on a loaded machine: the
				// queries under drop. wait for all of it.
				g.timeout = time.Second
			}
			res, err := g.run(t.Context(), tc.queries, tc.rate, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if res.sent == 0 || res.answered+res.lost != res.sent || res.qps <= 0 || res.p50US <= 0 || res.p99US < res.p50US {
				t.Errorf("result %+v", res)
			}
			if tc.lossy {
				// Every other query is never answered, and the queries go
				// in turn across the connections.
				if res.lost == 0 || res.firstLoss == nil || res.rcodes["NOERROR"] != res.answered {
					t.Errorf("lost %d of %d (%v), rcodes %v", res.lost, res.sent, res.firstLoss, res.rcodes)
				}
			} else {
				if res.lost != 0 || res.firstLoss != nil {
					t.Errorf("lost %d of %d: %v", res.lost, res.sent, res.firstLoss)
				}
				// One query in four is blocked, in turn.
				if nx := res.rcodes["NXDOMAIN"]; res.rcodes["NOERROR"]+nx != res.answered || nx < res.answered/4-1 || nx > res.answered/4+1 {
					t.Errorf("rcodes %v of %d answered", res.rcodes, res.answered)
				}
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.conns) != g.clients || srv.proto[1] != 0 || srv.proto[2] == 0 || len(srv.methods) != 1 || srv.methods[tc.method] == 0 {
				t.Errorf("%d connections, queries by HTTP version %v, methods %v; want %d connections, HTTP/2 only, %s only",
					len(srv.conns), srv.proto, srv.methods, g.clients, tc.method)
			}
		})
	}
}

// TestDoHGenNoServer: a run fails at once, with the reason, when the
// server does not answer the first query of a connection.
func TestDoHGenNoServer(t *testing.T) {
	certs, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := startDoHServer(t, certs)
	addr := srv.Listener.Addr().String()
	srv.Close() // nothing listens on addr now
	qs, _ := parseQueries(strings.NewReader("a.test A\n"))
	g := dohGen{addr: addr, roots: certs.roots, clients: 2, streams: 1, timeout: 200 * time.Millisecond}
	if _, err := g.run(t.Context(), qs, 0, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "first query") {
		t.Errorf("run without a server: %v", err)
	}
}

// BenchmarkDoHExchange: one query and its answer over one HTTP/2
// connection to the test server in the same process, 10 streams at once,
// GET and POST; the figures are the client's and the server's together.
func BenchmarkDoHExchange(b *testing.B) {
	certs, err := writeCert(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	srv := startDoHServer(b, certs)
	qs, _ := parseQueries(strings.NewReader("n000.bench.test A\n"))
	for _, method := range []string{"GET", "POST"} {
		b.Run(method, func(b *testing.B) {
			g := dohGen{method: method, addr: srv.Listener.Addr().String(), roots: certs.roots, clients: 1, timeout: time.Second}
			c := &dohConn{t: g.transport()}
			defer c.t.CloseIdleConnections()
			q := g.requests(qs)[0]
			if _, err := g.exchange(b.Context(), c, q); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetParallelism(10)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := g.exchange(b.Context(), c, q); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestDoHGenOutstanding: an open loop at a rate the server cannot answer
// keeps at most streams queries outstanding on each connection, as
// dnsperf -Q keeps at most -q, and loses none of them.
func TestDoHGenOutstanding(t *testing.T) {
	certs, err := writeCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := startDoHServer(t, certs)
	srv.slow = 20 * time.Millisecond
	qs, _ := parseQueries(strings.NewReader("a.slow A\nb.slow A\n"))
	g := dohGen{method: "GET", addr: srv.Listener.Addr().String(), roots: certs.roots, clients: 2, streams: 3, timeout: 10 * time.Second}
	res, err := g.run(t.Context(), qs, 100000, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.most == 0 || srv.most > g.streams || res.lost != 0 || res.answered != res.sent {
		t.Errorf("at most %d queries at once on a connection, want 1 to %d; %d sent, %d answered, %d lost", srv.most, g.streams, res.sent, res.answered, res.lost)
	}
}

// TestDoHGenAppFence: the generator against AppFence itself (built for
// the test, started with the bench's configuration and a synthetic
// upstream): the Go HTTP/2 server dnsperf 2.10's DoH loses answers of.
// Cached and blocked names, open and closed loop; every query answered,
// with the rcode of its kind.
func TestDoHGenAppFence(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts appfence")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "appfence")
	if out, err := exec.Command("go", "build", "-o", bin, "../appfence").CombinedOutput(); err != nil {
		t.Fatalf("build appfence: %v\n%s", err, out)
	}
	certs, err := writeCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := synthetic.Start(upstreamTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Stop()
	servers, skipped := options{appfence: bin}.servers(setup{dir: dir, upstream: up.Addr, tls: certs})
	if len(servers) != 1 {
		t.Fatalf("servers %v, left out %v", servers, skipped)
	}
	p, err := servers[0].start(t.Context(), onlineCPUs())
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()

	// Ten cached names and ten blocked ones, in turn.
	hot := strings.Split(strings.TrimSpace(string(cacheHot())), "\n")[:10]
	blk := strings.Split(strings.TrimSpace(string(blocked())), "\n")[:10]
	var file strings.Builder
	for i := range hot {
		file.WriteString(hot[i] + "\n" + blk[i] + "\n")
	}
	qs, err := parseQueries(strings.NewReader(file.String()))
	if err != nil {
		t.Fatal(err)
	}
	g := dohGen{method: "GET", addr: servers[0].doh, roots: certs.roots, clients: 2, streams: 5, timeout: 10 * time.Second}
	for _, rate := range []int{0, 500, 0} { // the first run fills the cache
		res, err := g.run(t.Context(), qs, rate, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if res.lost != 0 || res.answered != res.sent || res.rcodes["NOERROR"]+res.rcodes["NXDOMAIN"] != res.answered ||
			res.rcodes["NOERROR"] == 0 || res.rcodes["NXDOMAIN"] == 0 {
			t.Errorf("rate %d: %d sent, %d answered, %d lost (%v), rcodes %v", rate, res.sent, res.answered, res.lost, res.firstLoss, res.rcodes)
		}
	}
	if p.crashed() {
		t.Fatalf("appfence exited:\n%s", p.log.tail(20))
	}
}
