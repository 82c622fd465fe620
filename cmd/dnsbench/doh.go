package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The DoH generator ("go-doh") replaces dnsperf -m doh for every server.
// dnsperf 2.10 keeps one DNS message in progress per connection (net_doh.c,
// http2->dnsmsg): when one read brings the frames of several streams
// interleaved, as Go's HTTP/2 server sends them (HEADERS 5, HEADERS 7,
// DATA 5, DATA 7), all answers but one are lost and the connection stalls
// until dnsperf's timeout. AppFence and CoreDNS are Go servers; Unbound
// (nghttp2) sends each stream's frames together and is not affected. One
// generator for all three keeps the comparison fair.

// Defaults of the DoH generator.
const (
	dohGenName = "go-doh"
	dohPath    = "/dns-query"
	dohMedia   = "application/dns-message"
	// dohTimeout is how long a query waits for its answer before it is
	// counted lost.
	dohTimeout = 2 * time.Second
)

// dohGen is a DoH load generator: clients HTTP/2 connections, each its own
// http.Transport, asking /dns-query.
type dohGen struct {
	method  string         // GET (?dns=, base64url) or POST (application/dns-message)
	addr    string         // server, 127.0.0.1:port; dialled whatever the URL's host
	roots   *x509.CertPool // verifies the server's certificate for tlsName
	clients int            // connections
	streams int            // requests outstanding per connection: the closed loop's, the open loop's most
	timeout time.Duration  // a query unanswered after this is lost
}

// newDoHGen returns the generator of r against a server whose certificate
// roots verify, with the outstanding queries of the other generators
// (outstanding, dnsperf's default) spread over r.clients connections.
func newDoHGen(r genRun, roots *x509.CertPool) dohGen {
	clients := max(r.clients, 1)
	return dohGen{method: r.method, addr: r.addr, roots: roots, clients: clients, streams: max(outstanding/clients, 1), timeout: dohTimeout}
}

// doh runs the DoH generator for r: an open loop at r.rate (paced across
// the connections, at most g.streams outstanding on each, as dnsperf -Q
// keeps at most -q outstanding: a server too slow for the rate gets
// fewer, and the cell says at what rate), or a closed loop of g.streams
// requests outstanding on every connection when r.rate is 0. It runs in
// the bench's own process, and so on the bench's CPU (pinSelf), not on
// r.cpus.
func doh(ctx context.Context, r genRun, roots *x509.CertPool) (loadResult, error) {
	queries, err := readQueries(r.file)
	if err != nil {
		return loadResult{}, err
	}
	return newDoHGen(r, roots).run(ctx, queries, r.rate, r.d)
}

// readQueries packs the queries of a dnsperf query file ("name type" a
// line) as DNS messages with ID 0 (RFC 8484 4.1) and RD set, without EDNS,
// as dnsperf sends them.
func readQueries(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("queries: %w", err)
	}
	defer f.Close()
	qs, err := parseQueries(f)
	if err != nil {
		return nil, fmt.Errorf("queries %s: %w", file, err)
	}
	return qs, nil
}

func parseQueries(r io.Reader) ([][]byte, error) {
	var qs [][]byte
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		typ := dns.TypeA
		if len(f) > 1 {
			t, ok := dns.StringToType[strings.ToUpper(f[1])]
			if !ok {
				return nil, fmt.Errorf("line %d: unknown type %q", n, f[1])
			}
			typ = t
		}
		if _, ok := dns.IsDomainName(f[0]); !ok {
			return nil, fmt.Errorf("line %d: bad name %q", n, f[0])
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(f[0]), typ)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		qs = append(qs, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, errors.New("no queries")
	}
	return qs, nil
}

// transport returns a connection of its own: one HTTP/2 connection at
// most, dialled to g.addr, verified for tlsName.
func (g dohGen) transport() *http.Transport {
	d := &net.Dialer{Timeout: g.timeout}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", g.addr)
		},
		TLSClientConfig: &tls.Config{
			ServerName: tlsName,
			RootCAs:    g.roots,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:   true,
		MaxConnsPerHost:     1,
		MaxIdleConnsPerHost: 1,
		TLSHandshakeTimeout: g.timeout,
		DisableCompression:  true,
	}
}

// dohConn is one connection of a run and the buffers of its requests.
type dohConn struct {
	t     *http.Transport
	bufs  sync.Pool     // *bytes.Buffer for the answers
	slots chan struct{} // open loop: a token for each request outstanding
}

// dohStats collects the answers of a run.
type dohStats struct {
	sent atomic.Int64

	mu        sync.Mutex
	answered  int64
	rcodes    map[string]int64
	latencies []float64 // µs
	last      time.Time // of the last answer
	lost      int64
	firstLoss error
}

func (s *dohStats) answer(rcode int, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered++
	name, ok := dns.RcodeToString[rcode]
	if !ok {
		name = fmt.Sprintf("RCODE%d", rcode)
	}
	s.rcodes[name]++
	s.latencies = append(s.latencies, float64(took.Nanoseconds())/1e3)
	s.last = time.Now()
}

func (s *dohStats) loss(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost++
	if s.firstLoss == nil {
		s.firstLoss = err
	}
}

// run sends queries in turn for d: at rate queries per second in all, or
// in a closed loop when rate is 0. Every connection is opened, and must
// speak HTTP/2, before the clock starts; the answers still outstanding at
// the end are waited for (g.timeout at most).
func (g dohGen) run(ctx context.Context, wire [][]byte, rate int, d time.Duration) (loadResult, error) {
	queries := g.requests(wire)
	conns := make([]*dohConn, g.clients)
	for i := range conns {
		conns[i] = &dohConn{t: g.transport(), slots: make(chan struct{}, max(g.streams, 1))}
		defer conns[i].t.CloseIdleConnections()
	}
	for _, c := range conns {
		if _, err := g.exchange(ctx, c, queries[0]); err != nil {
			return loadResult{}, fmt.Errorf("%s: first query: %w", dohGenName, err)
		}
	}

	st := &dohStats{rcodes: map[string]int64{}}
	var next atomic.Uint64 // the next query, in turn across the connections
	query := func() dohQuery { return queries[(next.Add(1)-1)%uint64(len(queries))] }
	one := func(c *dohConn) {
		q := query()
		st.sent.Add(1)
		start := time.Now()
		rcode, err := g.exchange(ctx, c, q)
		if err != nil {
			st.loss(err)
			return
		}
		st.answer(rcode, time.Since(start))
	}

	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for k, c := range conns {
		if rate > 0 {
			// Each connection offers rate/clients, its sends spaced
			// evenly and staggered against the other connections'.
			interval := time.Duration(float64(time.Second) * float64(g.clients) / float64(rate))
			first := start.Add(interval * time.Duration(k) / time.Duration(g.clients))
			wg.Go(func() { g.pace(ctx, c, first, end, interval, &wg, one) })
			continue
		}
		for range g.streams {
			wg.Go(func() {
				for time.Now().Before(end) && ctx.Err() == nil {
					one(c)
				}
			})
		}
	}
	wg.Wait()
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}

	res := loadResult{sent: st.sent.Load(), answered: st.answered, lost: st.lost, rcodes: st.rcodes, firstLoss: st.firstLoss}
	if elapsed := st.last.Sub(start); st.answered > 0 && elapsed > 0 {
		res.qps = float64(st.answered) / elapsed.Seconds()
	}
	if len(st.latencies) > 0 {
		var sum float64
		for _, v := range st.latencies {
			sum += v
		}
		res.avgUS = sum / float64(len(st.latencies))
		slices.Sort(st.latencies)
		res.p50US, res.p99US = percentile(st.latencies, 0.5), percentile(st.latencies, 0.99)
	}
	if st.answered > 0 {
		cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		res.genUSPerQuery = float64(cpu.Microseconds()) / float64(st.answered)
	}
	return res, nil
}

// pace starts one on c at first and every interval after, until end; each
// in a goroutine of its own (wg), so a slow answer delays no later query,
// as long as fewer than g.streams are outstanding; else it waits for an
// answer. A pacer behind its schedule catches up at once.
func (g dohGen) pace(ctx context.Context, c *dohConn, first, end time.Time, interval time.Duration, wg *sync.WaitGroup, one func(*dohConn)) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; ; i++ {
		due := first.Add(interval * time.Duration(i))
		if !due.Before(end) {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !time.Now().Before(end) {
			<-c.slots
			return
		}
		wg.Go(func() {
			defer func() { <-c.slots }()
			one(c)
		})
	}
}

// dohQuery is a query and the request that asks it, made once for a run
// and copied for every exchange. Its URL and header are shared by the
// copies: the transport only reads them.
type dohQuery struct {
	wire []byte
	req  *http.Request
}

// requests makes the request of every query: GET /dns-query?dns= with the
// query in base64url, or POST /dns-query with it as the body.
func (g dohGen) requests(wire [][]byte) []dohQuery {
	base := url.URL{Scheme: "https", Host: tlsName + ":" + port(g.addr), Path: dohPath}
	header := http.Header{"Accept": {dohMedia}}
	post := http.Header{"Accept": {dohMedia}, "Content-Type": {dohMedia}}
	qs := make([]dohQuery, len(wire))
	for i, q := range wire {
		u := base
		req := &http.Request{Method: http.MethodGet, URL: &u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: header, Host: u.Host}
		if g.method == http.MethodPost {
			req.Method, req.Header, req.ContentLength = http.MethodPost, post, int64(len(q))
		} else {
			u.RawQuery = "dns=" + base64.RawURLEncoding.EncodeToString(q)
		}
		qs[i] = dohQuery{wire: q, req: req}
	}
	return qs
}

// exchange asks q on c (g.method) and returns the answer's rcode; an
// error is a query lost: no answer within g.timeout, a status other than
// 200, not HTTP/2, or a body that is no DNS response.
//
// GET is the default: Go's HTTP/2 client writes (and encrypts, and sends)
// a POST's HEADERS and DATA frames one at a time, a GET's single HEADERS
// frame once: 84 allocations against 96, and about a quarter less CPU per
// query for client and server together (BenchmarkDoHExchange).
func (g dohGen) exchange(ctx context.Context, c *dohConn, q dohQuery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	req := q.req.WithContext(ctx) // a copy: the body is this request's
	if q.req.Method == http.MethodPost {
		req.Body = io.NopCloser(bytes.NewReader(q.wire))
	}
	resp, err := c.t.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf, _ := c.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer c.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, dns.MaxMsgSize+1)); err != nil {
		return 0, fmt.Errorf("answer: %w", err)
	}
	return dohRcode(resp.StatusCode, resp.ProtoMajor, buf.Bytes())
}

// dohRcode checks a DoH answer (status, HTTP version, body) and returns
// its DNS rcode.
func dohRcode(status, protoMajor int, body []byte) (int, error) {
	switch {
	case status != http.StatusOK:
		return 0, fmt.Errorf("HTTP status %d", status)
	case protoMajor != 2:
		return 0, fmt.Errorf("HTTP/%d, not HTTP/2", protoMajor)
	case len(body) < 12:
		return 0, fmt.Errorf("answer of %d bytes, shorter than a DNS header", len(body))
	case len(body) > dns.MaxMsgSize:
		return 0, fmt.Errorf("answer longer than %d bytes", dns.MaxMsgSize)
	case body[2]&0x80 == 0:
		return 0, errors.New("answer is a query (QR clear)")
	}
	return int(body[3] & 0x0f), nil
}

// port returns the port of host:port.
func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

// genNote is the end of a run's progress line: the generator's own CPU per
// answer when it measured it, and why the first query was lost.
func genNote(r loadResult) string {
	var s string
	if r.genUSPerQuery > 0 {
		s += fmt.Sprintf(", generator %.1f µs/query", r.genUSPerQuery)
	}
	if r.firstLoss != nil {
		s += fmt.Sprintf(", first loss: %v", r.firstLoss)
	}
	return s
}
