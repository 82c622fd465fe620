// Package dnstest provides real DNS servers and clients on loopback for
// tests: an in-process upstream built with miekg/dns that answers from a
// zone written in the test over UDP, TCP, TLS (DoT) and HTTPS (DoH), counts
// what it receives, and can be told to delay, truncate or stay silent; a
// certificate authority that issues certificates for those TLS listeners;
// a client that can send from a chosen loopback address (127.0.0.2, ...) to
// exercise client groups; and a clock that moves only when told, for the
// cache.
package dnstest

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Upstream is a DNS server on 127.0.0.1 with UDP and TCP on the same port.
type Upstream struct {
	// Addr is host:port of both listeners.
	Addr string

	mu       sync.Mutex
	records  map[string][]dns.RR // "name/type" (lower case, fqdn) -> records
	nxdomain map[string]bool
	queries  []Query

	udpCount, tcpCount, tlsCount, httpsCount atomic.Int64
	// Behaviour switches, changeable while running.
	silent      atomic.Bool  // never answer
	truncateUDP atomic.Bool  // answer UDP with TC set and no records
	truncateAll atomic.Bool  // answer UDP and TCP with TC set and no records
	validated   atomic.Bool  // set AD for queries with DO or AD, as a validator does
	delay       atomic.Int64 // nanoseconds before answering
	rcode       atomic.Int32 // -1: normal; otherwise answer every query with this rcode

	httpStatus atomic.Int32 // DoH: fail requests with this HTTP status

	udp, tcp *dns.Server
	extra    []*dns.Server // TLS listeners, guarded by mu
}

// Query is one query an Upstream received.
type Query struct {
	Name  string
	Type  uint16
	Net   string // "udp", "tcp", "tls" or "https"
	DO    bool
	Size  uint16 // EDNS UDP size, 0 without EDNS
	Msg   *dns.Msg
	Local string
	// Remote is the client's address: queries from one TCP or TLS
	// connection share it.
	Remote string
	// HTTPProto is the HTTP version of a DoH request ("HTTP/2.0").
	HTTPProto string
}

// NewUpstream starts an upstream; it stops when the test ends. Records are
// given in zone-file syntax ("www.example.test. 300 IN A 192.0.2.1"); a
// name with records of other types answers NODATA with an SOA, any other
// name NXDOMAIN with an SOA. CNAME chains are followed, and DNAMEs
// synthesize CNAMEs for the names under them, as a recursive resolver
// answers.
func NewUpstream(t testing.TB, records ...string) *Upstream {
	t.Helper()
	u := &Upstream{records: map[string][]dns.RR{}, nxdomain: map[string]bool{}}
	u.rcode.Store(-1)
	for _, r := range records {
		u.Add(t, r)
	}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 10 {
			t.Fatal(err)
		}
	}
	u.Addr = pc.LocalAddr().String()
	u.udp = start(t, &dns.Server{PacketConn: pc, Handler: u.handler("udp")})
	u.tcp = start(t, &dns.Server{Listener: l, Handler: u.handler("tcp")})
	t.Cleanup(u.Close)
	return u
}

// handler serves queries that arrive over netw.
func (u *Upstream) handler(netw string) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) { u.serve(netw, w, req) })
}

func start(t testing.TB, srv *dns.Server) *dns.Server {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("dnstest: server did not start")
	}
	return srv
}

// Close stops the upstream.
func (u *Upstream) Close() {
	u.udp.Shutdown()
	u.tcp.Shutdown()
	u.mu.Lock()
	extra := u.extra
	u.extra = nil
	u.mu.Unlock()
	for _, s := range extra {
		s.Shutdown()
	}
}

// Add adds a record in zone-file syntax.
func (u *Upstream) Add(t testing.TB, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil {
		t.Fatalf("dnstest: record %q: %v", record, err)
	}
	key := strings.ToLower(rr.Header().Name) + "/" + strconv.Itoa(int(rr.Header().Rrtype))
	u.mu.Lock()
	u.records[key] = append(u.records[key], rr)
	u.mu.Unlock()
}

// SetSilent makes the upstream drop every query (true) or answer (false).
func (u *Upstream) SetSilent(v bool) { u.silent.Store(v) }

// SetTruncateUDP makes UDP answers empty with TC set, so clients retry over
// TCP.
func (u *Upstream) SetTruncateUDP(v bool) { u.truncateUDP.Store(v) }

// SetTruncateAll makes every answer, over UDP and TCP, empty with TC set: a
// broken upstream whose answers can never be complete.
func (u *Upstream) SetTruncateAll(v bool) { u.truncateAll.Store(v) }

// SetValidated makes the upstream act as a validating resolver whose data
// is secure: it sets AD in answers to queries with DO or AD (RFC 6840).
func (u *Upstream) SetValidated(v bool) { u.validated.Store(v) }

// SetDelay delays every answer.
func (u *Upstream) SetDelay(d time.Duration) { u.delay.Store(int64(d)) }

// SetRcode makes the upstream answer every query with rcode; -1 restores
// normal answers.
func (u *Upstream) SetRcode(rcode int) { u.rcode.Store(int32(rcode)) }

// Count returns the number of queries received over UDP and TCP.
func (u *Upstream) Count() (udp, tcp int64) { return u.udpCount.Load(), u.tcpCount.Load() }

// CountEncrypted returns the number of queries received over TLS (DoT) and
// HTTPS (DoH).
func (u *Upstream) CountEncrypted() (tls, https int64) {
	return u.tlsCount.Load(), u.httpsCount.Load()
}

// Total returns the number of queries received over any transport.
func (u *Upstream) Total() int64 {
	return u.udpCount.Load() + u.tcpCount.Load() + u.tlsCount.Load() + u.httpsCount.Load()
}

// Asked returns the number of queries received for name (fqdn, any case),
// over any transport.
func (u *Upstream) Asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, q := range u.queries {
		if strings.EqualFold(q.Name, name) {
			n++
		}
	}
	return n
}

// Queries returns a copy of the queries received.
func (u *Upstream) Queries() []Query {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Query(nil), u.queries...)
}

// soa is the SOA of negative answers: TTL 3600, MINIMUM 300.
func soa(zone string) dns.RR {
	rr, _ := dns.NewRR(zone + " 3600 IN SOA ns.upstream.test. hostmaster.upstream.test. 1 7200 3600 1209600 300")
	return rr
}

func (u *Upstream) serve(netw string, w dns.ResponseWriter, req *dns.Msg) {
	switch netw {
	case "udp":
		u.udpCount.Add(1)
	case "tcp":
		u.tcpCount.Add(1)
	case "tls":
		u.tlsCount.Add(1)
	case "https":
		u.httpsCount.Add(1)
	}
	q := Query{Net: netw, Msg: req.Copy(), Local: w.LocalAddr().String(), Remote: w.RemoteAddr().String()}
	if hw, ok := w.(*httpWriter); ok {
		q.HTTPProto = hw.proto
	}
	if len(req.Question) > 0 {
		q.Name, q.Type = req.Question[0].Name, req.Question[0].Qtype
	}
	if opt := req.IsEdns0(); opt != nil {
		q.DO, q.Size = opt.Do(), opt.UDPSize()
	}
	u.mu.Lock()
	u.queries = append(u.queries, q)
	u.mu.Unlock()

	if u.silent.Load() {
		return
	}
	if d := time.Duration(u.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(dns.DefaultMsgSize, opt.Do())
	}
	resp.AuthenticatedData = u.validated.Load() && (req.AuthenticatedData || q.DO)
	if rc := u.rcode.Load(); rc >= 0 {
		resp.Rcode = int(rc)
		w.WriteMsg(resp)
		return
	}
	if netw == "udp" && u.truncateUDP.Load() || u.truncateAll.Load() {
		resp.Truncated = true
		w.WriteMsg(resp)
		return
	}
	if len(req.Question) == 1 {
		u.mu.Lock()
		answer, exists := u.lookup(strings.ToLower(q.Name), q.Type)
		u.mu.Unlock()
		for _, rr := range answer {
			rr = dns.Copy(rr)
			if strings.EqualFold(rr.Header().Name, q.Name) {
				rr.Header().Name = q.Name
			}
			resp.Answer = append(resp.Answer, rr)
		}
		if len(answer) == 0 {
			if !exists {
				resp.Rcode = dns.RcodeNameError
			}
			resp.Ns = []dns.RR{soa("upstream.test.")}
		}
	}
	if netw == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
		}
		resp.Truncate(size)
	}
	w.WriteMsg(resp)
}

// maxChain bounds the CNAME and DNAME links an answer follows.
const maxChain = 8

// lookup returns the answer records for name and qtype, as a recursive
// resolver would: the records of that type, or a chain of CNAMEs (and
// DNAMEs of a name's ancestors, with the CNAME they synthesize, RFC 6672)
// followed by the records of its last target, up to maxChain links. exists
// reports whether name has records of any type, which matters only when
// the answer is empty (NODATA rather than NXDOMAIN). u.mu must be held.
func (u *Upstream) lookup(name string, qtype uint16) (answer []dns.RR, exists bool) {
	for range maxChain {
		has := false
		for key := range u.records {
			if strings.HasPrefix(key, name+"/") {
				has = true
				break
			}
		}
		if len(answer) == 0 {
			exists = has
		}
		if rrs := u.records[name+"/"+strconv.Itoa(int(qtype))]; len(rrs) > 0 {
			return append(answer, rrs...), true
		}
		if cn := u.records[name+"/"+strconv.Itoa(int(dns.TypeCNAME))]; len(cn) > 0 && qtype != dns.TypeCNAME {
			answer = append(answer, cn...)
			name = strings.ToLower(cn[0].(*dns.CNAME).Target)
			continue
		}
		if has {
			return answer, true
		}
		dname, target := u.dname(name)
		if dname == nil {
			return answer, exists
		}
		answer = append(answer, dname, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: dname.Hdr.Ttl},
			Target: target,
		})
		name = strings.ToLower(target)
	}
	return answer, exists
}

// dname returns the DNAME of the closest ancestor of name that has one,
// and the name it maps name to; nil when there is none. u.mu must be held.
func (u *Upstream) dname(name string) (*dns.DNAME, string) {
	for zone := name; ; {
		i := strings.IndexByte(zone, '.')
		if i < 0 || i == len(zone)-1 {
			return nil, ""
		}
		zone = zone[i+1:]
		if rrs := u.records[zone+"/"+strconv.Itoa(int(dns.TypeDNAME))]; len(rrs) > 0 {
			d := rrs[0].(*dns.DNAME)
			return d, name[:len(name)-len(zone)] + d.Target
		}
	}
}

// Clock is a clock that moves only when told: a cache's Now in tests, so
// that expiry, TTL countdown and prefetch are exact without waiting.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock set to the current time.
func NewClock() *Clock { return &Clock{now: time.Now()} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Client sends queries from a chosen local address.
type Client struct {
	// Local is the source address ("127.0.0.2"); "" lets the system choose.
	Local   string
	Timeout time.Duration
}

// Exchange sends m over netw ("udp" or "tcp") to addr and returns the
// answer.
func (c Client) Exchange(ctx context.Context, netw, addr string, m *dns.Msg) (*dns.Msg, error) {
	d := &net.Dialer{Timeout: c.timeout()}
	if c.Local != "" {
		ip := net.ParseIP(c.Local)
		if netw == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: ip}
		}
	}
	cl := &dns.Client{Net: netw, Dialer: d, Timeout: c.timeout(), UDPSize: 65535}
	resp, _, err := cl.ExchangeContext(ctx, m, addr)
	return resp, err
}

func (c Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 5 * time.Second
}

// NewQuery builds a query for name and type with RD set; with edns it carries
// an OPT record of size 1232 and the DO bit as given.
func NewQuery(name string, qtype uint16, edns, do bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, do)
	}
	return m
}
