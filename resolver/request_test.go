package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
)

// rawExchange sends raw from local ("" lets the system choose) over netw
// ("udp", or "tcp" with the length prefix) to addr and returns the first
// reply that arrives within wait, or nil when none does (for TCP also when
// the server closes the connection).
func rawExchange(t *testing.T, netw, local, addr string, raw []byte, wait time.Duration) []byte {
	t.Helper()
	c := dial(t, netw, local, addr)
	defer c.Close()
	if err := writeFramed(c, netw, raw); err != nil {
		t.Fatalf("%s write: %v", netw, err)
	}
	return readMsg(t, c, netw, wait)
}

// dial connects to addr over netw from local.
func dial(t *testing.T, netw, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		if netw == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(local)}
		}
	}
	c, err := d.Dial(netw, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", netw, addr, err)
	}
	return c
}

// writeFramed writes one message, with the length prefix over TCP.
func writeFramed(c net.Conn, netw string, raw []byte) error {
	if netw == "tcp" {
		raw = append(binary.BigEndian.AppendUint16(nil, uint16(len(raw))), raw...)
	}
	_, err := c.Write(raw)
	return err
}

// readMsg reads one message within wait; nil when none comes.
func readMsg(t *testing.T, c net.Conn, netw string, wait time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	if netw == "tcp" {
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return nil
		}
		b := make([]byte, binary.BigEndian.Uint16(n[:]))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("tcp: reply cut short: %v", err)
		}
		return b
	}
	b := make([]byte, 65535)
	n, err := c.Read(b)
	if err != nil {
		return nil
	}
	return b[:n]
}

// pack packs m as it is, without compression.
func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unpack parses a reply and checks what every reply has: QR set, RA set
// for QUERY (clear for other opcodes: TestNotImpFlags), and the query's ID.
func unpack(t *testing.T, b []byte, id uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if !m.Response || m.RecursionAvailable != (m.Opcode == dns.OpcodeQuery) || m.Id != id {
		t.Errorf("reply QR %v RA %v ID %d opcode %d, want QR set, RA for QUERY and ID %d", m.Response, m.RecursionAvailable, m.Id, m.Opcode, id)
	}
	return m
}

// counter returns the value of appfence_queries_total for group and action.
func (e *env) counter(t *testing.T, group, action string) float64 {
	t.Helper()
	return promtest.Gather(t, e.metrics.Registry).Values("appfence_queries_total", "group", "action")[group+"/"+action]
}

func TestRequestChecks(t *testing.T) {
	e := startEnv(t, "")
	q := func() *dns.Msg { return dnstest.NewQuery("www.example.test.", dns.TypeA, false, false) }
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name  string
		msg   func() *dns.Msg
		rcode int
	}{
		{"NOTIFY", func() *dns.Msg { m := q(); m.Opcode = dns.OpcodeNotify; return m }, dns.RcodeNotImplemented},
		{"UPDATE", func() *dns.Msg {
			m := q()
			m.Opcode = dns.OpcodeUpdate
			m.Ns = []dns.RR{rr("www.example.test. 300 IN A 192.0.2.66")}
			return m
		}, dns.RcodeNotImplemented},
		{"opcode 15", func() *dns.Msg { m := q(); m.Opcode = 15; return m }, dns.RcodeNotImplemented},
		{"no question", func() *dns.Msg { m := q(); m.Question = nil; return m }, dns.RcodeFormatError},
		{"two questions", func() *dns.Msg {
			m := q()
			m.Question = append(m.Question, dns.Question{Name: "a.example.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		}, dns.RcodeFormatError},
		{"answer record", func() *dns.Msg { m := q(); m.Answer = []dns.RR{rr("x.example.test. 1 IN A 192.0.2.1")}; return m }, dns.RcodeFormatError},
		{"authority record", func() *dns.Msg { m := q(); m.Ns = []dns.RR{rr("x.example.test. 1 IN A 192.0.2.1")}; return m }, dns.RcodeFormatError},
		{"two additional", func() *dns.Msg {
			m := q()
			m.SetEdns0(1232, false)
			m.Extra = append(m.Extra, rr("x.example.test. 1 IN A 192.0.2.1"))
			return m
		}, dns.RcodeFormatError},
		{"two OPT", func() *dns.Msg { m := q(); m.SetEdns0(1232, false); m.Extra = append(m.Extra, m.Extra[0]); return m }, dns.RcodeFormatError},
		{"qtype OPT", func() *dns.Msg { m := q(); m.Question[0].Qtype = dns.TypeOPT; return m }, dns.RcodeFormatError},
		{"qtype TSIG", func() *dns.Msg { m := q(); m.Question[0].Qtype = dns.TypeTSIG; return m }, dns.RcodeFormatError},
		{"qtype MAILB", func() *dns.Msg { m := q(); m.Question[0].Qtype = dns.TypeMAILB; return m }, dns.RcodeFormatError},
		{"qtype 200", func() *dns.Msg { m := q(); m.Question[0].Qtype = 200; return m }, dns.RcodeFormatError},
		{"AXFR", func() *dns.Msg { m := q(); m.Question[0].Qtype = dns.TypeAXFR; return m }, dns.RcodeRefused},
		{"IXFR", func() *dns.Msg { m := q(); m.Question[0].Qtype = dns.TypeIXFR; return m }, dns.RcodeRefused},
		{"EDNS version 1", func() *dns.Msg { m := q(); m.SetEdns0(1232, false); m.Extra[0].(*dns.OPT).SetVersion(1); return m }, dns.RcodeBadVers},
		{"blocked AXFR", func() *dns.Msg {
			m := q()
			m.Question[0] = dns.Question{Name: "tiktok.com.", Qtype: dns.TypeAXFR, Qclass: dns.ClassINET}
			return m
		}, dns.RcodeNameError},
		{"qtype 127", func() *dns.Msg { m := q(); m.Question[0].Qtype = 127; return m }, dns.RcodeSuccess}, // forwarded: NODATA
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+netw, func(t *testing.T) {
				before := e.upstream.Total()
				m := tt.msg()
				b := rawExchange(t, netw, "", e.addr, pack(t, m), 2*time.Second)
				if b == nil {
					t.Fatal("no reply")
				}
				resp := unpack(t, b, m.Id)
				if resp.Rcode != tt.rcode {
					t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if resp.Opcode != m.Opcode {
					t.Errorf("opcode %d, want the query's %d", resp.Opcode, m.Opcode)
				}
				if len(m.Question) > 0 && (len(resp.Question) != 1 || resp.Question[0] != m.Question[0]) {
					t.Errorf("question %v, want the first of the query's %v", resp.Question, m.Question)
				}
				if tt.rcode == dns.RcodeBadVers {
					opt := resp.IsEdns0()
					if opt == nil || opt.Version() != 0 {
						t.Errorf("BADVERS reply OPT %v, want version 0", opt)
					}
				}
				if got := e.upstream.Total() - before; got != 0 && tt.name != "qtype 127" {
					t.Errorf("upstream asked %d times", got)
				}
			})
		}
	}
}

func TestANY(t *testing.T) {
	e := startEnv(t, "")
	tests := []struct {
		from, name string
		rcode      int
		hinfo      bool
	}{
		{"127.0.0.1", "www.example.test.", dns.RcodeSuccess, true},
		{"127.0.0.1", "Missing.Example.Test.", dns.RcodeNameError, false}, // the upstream's NXDOMAIN
		{"127.0.0.1", "www.tiktok.com.", dns.RcodeNameError, false},       // blocked stays blocked
		{"127.0.0.2", "www.tiktok.com.", dns.RcodeSuccess, true},          // exempted
	}
	for _, tt := range tests {
		for _, netw := range []string{"udp", "tcp"} {
			resp := e.ask(t, netw, tt.from, dnstest.NewQuery(tt.name, dns.TypeANY, true, false))
			if resp.Rcode != tt.rcode {
				t.Errorf("%s ANY %s from %s: %s, want %s", netw, tt.name, tt.from, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if !tt.hinfo {
				if len(resp.Answer) != 0 || (ede(resp) == nil) != (tt.from == "127.0.0.1" && tt.name == "Missing.Example.Test.") {
					t.Errorf("%s ANY %s: %v, want the block answer", netw, tt.name, resp)
				}
				continue
			}
			h, ok := func() (*dns.HINFO, bool) {
				if len(resp.Answer) != 1 {
					return nil, false
				}
				h, ok := resp.Answer[0].(*dns.HINFO)
				return h, ok
			}()
			if !ok || h.Cpu != "RFC8482" || h.Os != "" || h.Hdr.Name != tt.name || h.Hdr.Ttl != 3600 {
				t.Errorf("%s ANY %s: answer %v, want HINFO \"RFC8482\" \"\" with TTL 3600", netw, tt.name, resp.Answer)
			}
		}
	}
	for _, q := range e.upstream.Queries() {
		if q.Type == dns.TypeANY {
			t.Errorf("an ANY query for %s reached the upstream", q.Name)
		}
	}
	if got := e.counter(t, "investigators", "exempted"); got != 2 {
		t.Errorf("investigators exempted = %v, want the 2 ANY queries", got)
	}
}

// TestDropped sends packets that must never be answered; each is counted
// as dropped, and the server goes on.
func TestDropped(t *testing.T) {
	e := startEnv(t, "")
	query := pack(t, dnstest.NewQuery("www.example.test.", dns.TypeA, true, false))
	response := func() []byte {
		m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
		m.Response, m.RecursionAvailable = true, true
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		return pack(t, m)
	}()
	compressed := append(append([]byte(nil), query[:12]...), 0xC0, 0x00, 0, 1, 0, 1) // name: pointer to the header
	forward := append(append([]byte(nil), query[:12]...), 0xC0, 18, 0, 1, 0, 1, 3, 'w', 'w', 'w', 0)
	cut := query[:20]
	badLabel := append(append([]byte(nil), query[:12]...), 0x40, 'x', 0, 0, 1, 0, 1)
	garbage := make([]byte, 100)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	garbage[2] &^= 0x80
	tests := []struct {
		name string
		raw  []byte
	}{
		{"5 bytes", query[:5]},
		{"header only, QR set", func() []byte { b := append([]byte(nil), query[:12]...); b[2] |= 0x80; return b }()},
		{"a response", response},
		{"a response with TC", func() []byte { b := append([]byte(nil), response...); b[2] |= 0x02; return b }()},
		{"compressed question", compressed},
		{"forward pointer", forward},
		{"cut short", cut},
		// Found by FuzzServePacket: miekg/dns parses a question without its
		// class or type, and the REFUSED reply, which writes it whole, was
		// larger than the query.
		{"question without type and class", append(append([]byte(nil), query[:12]...), 0)},
		{"question without class", append(append([]byte(nil), query[:12]...), 0, 0, 1)},
		{"reserved label type", badLabel},
		{"garbage", garbage},
	}
	for i, tt := range tests {
		if b := rawExchange(t, "udp", "", e.addr, tt.raw, 300*time.Millisecond); b != nil {
			t.Errorf("udp %s: answered %x", tt.name, b)
		}
		if got := e.counter(t, "default", "dropped"); got != float64(i+1) {
			t.Errorf("udp %s: dropped = %v, want %d", tt.name, got, i+1)
		}
	}
	// Over TCP the connection is closed: a client that sends garbage is not
	// a DNS client. So is one that announces a query larger than 4096 bytes.
	tests = append(tests, struct {
		name string
		raw  []byte
	}{"4097 bytes", append(append([]byte(nil), query...), make([]byte, 4097-len(query))...)})
	for _, tt := range tests {
		c := dial(t, "tcp", "", e.addr)
		writeFramed(c, "tcp", tt.raw)
		writeFramed(c, "tcp", query) // may fail: the server may have reset the connection
		if b := readMsg(t, c, "tcp", 2*time.Second); b != nil {
			t.Errorf("tcp %s: answered %x", tt.name, b)
		}
		c.Close()
	}
	if got, want := e.counter(t, "default", "dropped"), float64(2*len(tests)-1); got != want {
		t.Errorf("dropped = %v after TCP, want %v", got, want)
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("upstream asked %d times", n)
	}
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("after the drops: %v", resp)
	}
}

// TestRefusedNeverLarger checks that a client outside allow_clients gets
// nothing larger than what it sent, whatever it sends: AppFence cannot
// amplify a spoofed flood.
func TestRefusedNeverLarger(t *testing.T) {
	e := startEnv(t, "")
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	long := strings.Repeat("abcdefghij.", 21) + "example.test." // 253 characters
	queries := map[string]func() *dns.Msg{
		"A":    func() *dns.Msg { return dnstest.NewQuery("www.example.test.", dns.TypeA, false, false) },
		"EDNS": func() *dns.Msg { return dnstest.NewQuery("www.example.test.", dns.TypeA, true, true) },
		"cookie": func() *dns.Msg {
			m := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
			m.Extra[0].(*dns.OPT).Option = []dns.EDNS0{&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"}}
			return m
		},
		"ANY":     func() *dns.Msg { return dnstest.NewQuery("example.test.", dns.TypeANY, false, false) },
		"blocked": func() *dns.Msg { return dnstest.NewQuery("www.tiktok.com.", dns.TypeA, true, false) },
		"long":    func() *dns.Msg { return dnstest.NewQuery(long, dns.TypeTXT, true, false) },
		"root":    func() *dns.Msg { return dnstest.NewQuery(".", dns.TypeNS, false, false) },
		"no question": func() *dns.Msg {
			m := dnstest.NewQuery("x.", dns.TypeA, true, false)
			m.Question = nil
			return m
		},
		"two questions": func() *dns.Msg {
			m := dnstest.NewQuery("www.example.test.", dns.TypeA, false, false)
			m.Question = append(m.Question, dns.Question{Name: long, Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		},
		"UPDATE": func() *dns.Msg {
			m := dnstest.NewQuery("example.test.", dns.TypeSOA, false, false)
			m.Opcode = dns.OpcodeUpdate
			m.Ns = []dns.RR{rr("www.example.test. 300 IN A 192.0.2.66")}
			return m
		},
		"EDNS version 1": func() *dns.Msg {
			m := dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)
			m.Extra[0].(*dns.OPT).SetVersion(1)
			return m
		},
	}
	for name, build := range queries {
		m := build()
		raw := pack(t, m)
		b := rawExchange(t, "udp", "127.0.0.3", e.addr, raw, 2*time.Second)
		if b == nil {
			t.Errorf("%s: no reply", name)
			continue
		}
		resp := unpack(t, b, m.Id)
		if resp.Rcode != dns.RcodeRefused {
			t.Errorf("%s: %s, want REFUSED", name, dns.RcodeToString[resp.Rcode])
		}
		if len(b) > len(raw) {
			t.Errorf("%s: reply of %d bytes to a query of %d", name, len(b), len(raw))
		}
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("upstream asked %d times for a refused client", n)
	}
}

// TestUDPReplyFitsClient checks that a UDP reply is never larger than the
// client takes (its EDNS payload size, at least 512, at most 1232), on the
// path that builds the reply from a message (a miss) and on the one that
// patches a cached entry's bytes (a hit); TCP gets the whole answer.
func TestUDPReplyFitsClient(t *testing.T) {
	tests := []struct {
		edns  int // 0: no EDNS
		limit int
	}{{0, 512}, {512, 512}, {300, 512}, {900, 900}, {1232, 1232}, {4096, 1232}, {65535, 1232}}
	up := dnstest.NewUpstream(t, "small.example.test. 300 IN A 192.0.2.1")
	for n := range tests {
		for i := 0; i < 40; i++ {
			up.Add(t, fmt.Sprintf("big%d.example.test. 300 IN TXT \"%s-%02d\"", n, strings.Repeat("x", 40), i))
		}
	}
	e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, ""))
	full := e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("big0.example.test.", dns.TypeTXT, false, false))
	if full.Truncated || len(full.Answer) != 40 {
		t.Fatalf("TCP: TC=%v, %d records, want all 40", full.Truncated, len(full.Answer))
	}
	full.Compress = true
	if full.Len() <= 1232 {
		t.Fatalf("the answer is %d bytes: too small for the test", full.Len())
	}
	for n, tt := range tests {
		name := fmt.Sprintf("big%d.example.test.", n)
		if n == 0 {
			name = "BIG0.example.test." // cached by the TCP query: two hits
		}
		for _, path := range []string{"miss", "hit"} {
			label := fmt.Sprintf("%s EDNS %d", path, tt.edns)
			before := up.Total()
			m := dnstest.NewQuery(name, dns.TypeTXT, false, false)
			if tt.edns > 0 {
				m.SetEdns0(uint16(tt.edns), false)
			}
			b := rawExchange(t, "udp", "", e.addr, pack(t, m), 2*time.Second)
			if b == nil {
				t.Fatalf("%s: no reply", label)
			}
			resp := unpack(t, b, m.Id)
			if len(b) > tt.limit || !resp.Truncated || resp.Question[0].Name != name {
				t.Errorf("%s: %d bytes, TC=%v, question %v; want at most %d with TC", label, len(b), resp.Truncated, resp.Question, tt.limit)
			}
			if (resp.IsEdns0() != nil) != (tt.edns > 0) {
				t.Errorf("%s: OPT %v", label, resp.IsEdns0())
			}
			// A miss asks upstream (over UDP, then TCP when the answer does
			// not fit); a hit does not.
			if asked := up.Total() - before; (asked > 0) != (path == "miss" && n > 0) {
				t.Errorf("%s: upstream asked %d times", label, asked)
			}
		}
	}
	// A small answer is not truncated, from the cache either.
	for i := 0; i < 2; i++ {
		m := dnstest.NewQuery("small.example.test.", dns.TypeA, false, false)
		m.SetEdns0(512, false)
		resp := unpack(t, rawExchange(t, "udp", "", e.addr, pack(t, m), 2*time.Second), m.Id)
		if resp.Truncated || len(resp.Answer) != 1 {
			t.Errorf("small answer %d: %v", i, resp)
		}
	}
}

// isClosed reports whether the server closed c: a read returns EOF or a
// reset within wait.
func isClosed(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestResolverArpaAnsweredHere(t *testing.T) {
	e := startEnv(t, "")
	for _, name := range []string{"_dns.resolver.arpa.", "resolver.arpa.", "X.Resolver.Arpa."} {
		for _, netw := range []string{"udp", "tcp"} {
			resp := e.ask(t, netw, "127.0.0.1", dnstest.NewQuery(name, dns.TypeSVCB, true, false))
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
				t.Errorf("%s %s: %v, want NODATA", netw, name, resp)
			}
			if soa := soaOf(t, resp); soa.Hdr.Name != "resolver.arpa." {
				t.Errorf("%s %s: SOA %v, want resolver.arpa.", netw, name, soa)
			}
		}
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("resolver.arpa reached the upstream %d times (RFC 9462 6.4)", n)
	}
}
