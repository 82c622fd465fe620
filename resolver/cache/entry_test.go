package cache

import (
	"bytes"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnswire"
)

// stored returns the entry for m under k, stored at now.
func stored(t testing.TB, k Key, m *dns.Msg, now time.Time) *Entry {
	t.Helper()
	e, ok := newEntry(k, m, &defaults, now)
	if !ok {
		t.Fatalf("answer not cacheable:\n%v", m)
	}
	return e
}

// unpack parses a reply and fails the test if it is not a valid message.
func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return m
}

func TestAppendReply(t *testing.T) {
	key := Key{Name: "www.example.test", Type: dns.TypeA, Class: dns.ClassINET}
	up := answer(t, "www.example.test.", dns.TypeA, 0,
		"www.example.test. 600 IN CNAME cdn.www.example.test.",
		"cdn.www.example.test. 300 IN A 192.0.2.1",
		"|", "example.test. 900 IN NS ns.example.test.")
	up.Authoritative, up.AuthenticatedData = true, true
	up.SetEdns0(4096, false) // hop-by-hop: not stored
	t0 := time.Now()
	e := stored(t, key, up, t0)

	tests := []struct {
		name    string
		req     Request
		at      time.Duration
		ttls    []uint32
		ad      bool
		opt     bool
		staleCE bool // EDE 3 expected
	}{
		{"no EDNS, fresh", Request{ID: 7, QName: wireName("www.example.test."), RD: true}, 0, []uint32{600, 300, 900}, false, false, false},
		{"client case, EDNS DO, 7.9 s", Request{ID: 0xbeef, QName: wireName("WwW.ExAmPlE.TeSt."), RD: true, EDNS: true, DO: true, Payload: 1232},
			7900 * time.Millisecond, []uint32{593, 293, 893}, true, true, false},
		{"AD asked without DO", Request{ID: 1, QName: wireName("www.example.test."), AD: true}, time.Second, []uint32{599, 299, 899}, true, false, false},
		{"CD and RD clear", Request{ID: 2, QName: wireName("www.example.test."), CD: true}, 299 * time.Second, []uint32{301, 1, 601}, false, false, false},
		{"stale", Request{ID: 3, QName: wireName("WWW.example.test."), EDNS: true, Payload: 1232}, 400 * time.Second, []uint32{30, 30, 30}, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			b, ok := e.AppendReply(prefix, &tt.req, t0.Add(tt.at))
			if !ok {
				t.Fatal("AppendReply refused")
			}
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("dst not kept")
			}
			r := unpack(t, b[len(prefix):])
			if r.Id != tt.req.ID || !r.Response || !r.RecursionAvailable || r.Authoritative || r.Truncated ||
				r.RecursionDesired != tt.req.RD || r.CheckingDisabled != tt.req.CD || r.AuthenticatedData != tt.ad {
				t.Errorf("header %+v, request %+v", r.MsgHdr, tt.req)
			}
			want, _, _ := dns.UnpackDomainName(tt.req.QName, 0)
			if r.Question[0].Name != want || r.Answer[0].Header().Name != want {
				t.Errorf("question %s, owner %s, want both %s", r.Question[0].Name, r.Answer[0].Header().Name, want)
			}
			if target := r.Answer[0].(*dns.CNAME).Target; target != "cdn.www.example.test." {
				t.Errorf("CNAME target %s: a name below the question must keep its own case", target)
			}
			var got []uint32
			for _, rr := range append(append(r.Answer, r.Ns...), r.Extra...) {
				if rr.Header().Rrtype != dns.TypeOPT {
					got = append(got, rr.Header().Ttl)
				}
			}
			if len(got) != len(tt.ttls) {
				t.Fatalf("records %v", r)
			}
			for i := range got {
				if got[i] != tt.ttls[i] {
					t.Errorf("TTLs %v, want %v", got, tt.ttls)
					break
				}
			}
			opt := r.IsEdns0()
			if (opt != nil) != tt.opt {
				t.Fatalf("OPT %v, want one: %v", opt, tt.opt)
			}
			if opt != nil {
				if opt.UDPSize() != tt.req.Payload || opt.Do() != tt.req.DO {
					t.Errorf("OPT size %d DO %v, want %d %v", opt.UDPSize(), opt.Do(), tt.req.Payload, tt.req.DO)
				}
				var stale bool
				for _, o := range opt.Option {
					if x, ok := o.(*dns.EDNS0_EDE); ok && x.InfoCode == dns.ExtendedErrorCodeStaleAnswer {
						stale = true
					}
				}
				if stale != tt.staleCE {
					t.Errorf("EDE Stale Answer: %v, want %v", stale, tt.staleCE)
				}
			}
		})
	}
}

func TestAppendReplyLimit(t *testing.T) {
	key := Key{Name: "www.example.test", Type: dns.TypeA, Class: dns.ClassINET}
	e := stored(t, key, answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.1"), time.Now())
	size := len(e.msg) + dnswire.OPTLen
	r := Request{QName: wireName("www.example.test."), EDNS: true, Payload: 1232, Limit: size}
	if b, ok := e.AppendReply(nil, &r, e.stored); !ok || len(b) != size {
		t.Errorf("at the limit: %d bytes, ok %v; want %d", len(b), ok, size)
	}
	r.Limit = size - 1
	if b, ok := e.AppendReply([]byte("x"), &r, e.stored); ok || string(b) != "x" {
		t.Errorf("over the limit: ok %v, dst %q; want false and dst unchanged", ok, b)
	}
}

func TestAppendReplyDoesNotAllocate(t *testing.T) {
	key := Key{Name: "www.example.test", Type: dns.TypeA, Class: dns.ClassINET}
	e := stored(t, key, answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.1"), time.Now())
	r := Request{QName: wireName("WWW.example.test."), EDNS: true, DO: true, Payload: 1232}
	buf := make([]byte, 0, 512)
	now := e.stored.Add(time.Second)
	if n := testing.AllocsPerRun(100, func() { e.AppendReply(buf[:0], &r, now) }); n != 0 {
		t.Errorf("AppendReply allocates %v times", n)
	}
}

func TestMsgCountsDown(t *testing.T) {
	key := Key{Name: "www.example.test", Type: dns.TypeA, Class: dns.ClassINET}
	up := answer(t, "WWW.Example.Test.", dns.TypeA, 0, "WWW.Example.Test. 300 IN A 192.0.2.1", "|",
		"example.test. 900 IN NS ns.example.test.")
	up.Id = 999
	up.SetEdns0(4096, true)
	e := stored(t, key, up, time.Now())
	m, err := e.Msg(e.stored.Add(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Id != 0 || m.Question[0].Name != "www.example.test." || m.Answer[0].Header().Name != "www.example.test." ||
		m.Answer[0].Header().Ttl != 290 || m.Ns[0].Header().Ttl != 890 || len(m.Extra) != 0 {
		t.Errorf("Msg after 10 s:\n%v\nwant ID 0, lower case, TTLs 290 and 890, no OPT", m)
	}
	if m, _ := e.Msg(e.expires); m.Answer[0].Header().Ttl != StaleTTL {
		t.Errorf("Msg after expiry: TTL %d, want %d", m.Answer[0].Header().Ttl, StaleTTL)
	}
	if e.Rcode() != dns.RcodeSuccess {
		t.Errorf("Rcode %d", e.Rcode())
	}
}

func TestUnusualQuestionNames(t *testing.T) {
	// The root: nothing to recase, served from the bytes.
	root := Key{Name: "", Type: dns.TypeNS, Class: dns.ClassINET}
	e := stored(t, root, answer(t, ".", dns.TypeNS, 0, ". 518400 IN NS a.root-servers.net."), time.Now())
	if b, ok := e.AppendReply(nil, &Request{QName: wireName(".")}, e.stored); !ok || unpack(t, b).Answer[0].Header().Name != "." {
		t.Errorf("root: ok %v", ok)
	}
	// A name starting with an escaped byte has no alias: served through Msg.
	esc := Key{Name: `\000x.example.test`, Type: dns.TypeA, Class: dns.ClassINET}
	e = stored(t, esc, answer(t, `\000x.example.test.`, dns.TypeA, 0, `\000x.example.test. 60 IN A 192.0.2.1`), time.Now())
	if _, ok := e.AppendReply(nil, &Request{QName: wireName(`\000X.example.test.`)}, e.stored); ok {
		t.Error("escaped first byte: AppendReply should leave it to Msg")
	}
	if m, err := e.Msg(e.stored); err != nil || m.Answer[0].Header().Name != `\000x.example.test.` {
		t.Errorf("escaped first byte: Msg %v %v", m, err)
	}
}

// wireName returns name in wire format, as a client sends it.
func wireName(name string) []byte {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(name, b, 0, nil, false)
	if err != nil {
		panic(err)
	}
	return b[:n]
}
