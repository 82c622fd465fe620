package dnswire

import (
	"bytes"
	"testing"

	"github.com/miekg/dns"
)

// testReply packs a response to www.example.com A with the records rrs
// (SOA and NS in the authority section, the others in the answer) and,
// when edns, an OPT with DO set (its TTL field is the flags, 0x8000,
// which MinTTL must leave out) carrying opts.
func testReply(t *testing.T, edns bool, opts []dns.EDNS0, rrs ...string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.Response, m.Compress = true, true
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		switch rr.Header().Rrtype {
		case dns.TypeSOA, dns.TypeNS:
			m.Ns = append(m.Ns, rr)
		default:
			m.Answer = append(m.Answer, rr)
		}
	}
	if edns {
		m.SetEdns0(1232, true)
		m.IsEdns0().Option = opts
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendPadding(t *testing.T) {
	msg := func(edns bool, opts ...dns.EDNS0) []byte {
		return testReply(t, edns, opts, "www.example.com. 300 IN A 192.0.2.1", "example.com. 300 IN NS ns.example.com.")
	}
	glueAfterOPT := func() []byte {
		m := new(dns.Msg)
		if err := m.Unpack(msg(true)); err != nil {
			t.Fatal(err)
		}
		glue, _ := dns.NewRR("ns.example.com. 300 IN A 192.0.2.53")
		m.Extra = append(m.Extra, glue) // the OPT is no longer last
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name   string
		msg    []byte
		padded bool
	}{
		{"EDNS", msg(true), true},
		{"EDNS with an EDE", msg(true, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked}), true},
		{"no EDNS", msg(false), false},
		{"already padded", msg(true, &dns.EDNS0_PADDING{Padding: make([]byte, 7)}), false},
		{"OPT not last", glueAfterOPT(), false},
		{"cut short", msg(true)[:40], false},
		{"header only", msg(true)[:12], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.msg)
			out := AppendPadding(bytes.Clone(tt.msg), 468)
			if !tt.padded {
				if !bytes.Equal(out, in) {
					t.Fatalf("changed a message it must leave alone")
				}
				return
			}
			if len(out)%468 != 0 {
				t.Errorf("%d bytes, want a multiple of 468", len(out))
			}
			var m, orig dns.Msg
			if err := m.Unpack(out); err != nil {
				t.Fatalf("padded message does not unpack: %v", err)
			}
			if err := orig.Unpack(in); err != nil {
				t.Fatal(err)
			}
			opt := m.IsEdns0()
			if opt == nil || len(opt.Option) != len(orig.IsEdns0().Option)+1 {
				t.Fatalf("OPT options %v, want the original ones and padding", opt)
			}
			if p, ok := opt.Option[len(opt.Option)-1].(*dns.EDNS0_PADDING); !ok || !bytes.Equal(p.Padding, make([]byte, len(p.Padding))) {
				t.Errorf("last option %v, want zero padding", opt.Option[len(opt.Option)-1])
			}
			if m.Answer[0].String() != orig.Answer[0].String() || opt.UDPSize() != 1232 || !opt.Do() {
				t.Errorf("padding changed the message: %v", &m)
			}
		})
	}
}

func FuzzAppendPadding(f *testing.F) {
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := AppendPadding(bytes.Clone(msg), 468)
		if len(out) == len(msg) {
			return
		}
		if len(out)%468 != 0 {
			t.Fatalf("padded to %d bytes", len(out))
		}
		var before, after dns.Msg
		if before.Unpack(msg) == nil && after.Unpack(out) != nil {
			t.Fatalf("a message that unpacked no longer does once padded: %x", msg)
		}
	})
}

func TestMinTTL(t *testing.T) {
	msg := func(edns bool, rrs ...string) []byte { return testReply(t, edns, nil, rrs...) }
	tests := []struct {
		name string
		msg  []byte
		ttl  uint32
		ok   bool
	}{
		{"one answer", msg(true, "www.example.com. 300 IN A 192.0.2.1"), 300, true},
		{"the lowest of a CNAME chain", msg(false, "www.example.com. 3600 IN CNAME e.example.net.", "e.example.net. 20 IN A 192.0.2.1"), 20, true},
		{"negative answer: the SOA's", msg(true, "example.com. 900 IN SOA ns.example.com. h.example.com. 1 7200 3600 1209600 60"), 900, true},
		{"a TTL of zero", msg(true, "www.example.com. 0 IN A 192.0.2.1"), 0, true},
		{"no records but the OPT", msg(true), 0, false},
		{"no records", msg(false), 0, false},
		{"cut short", msg(true, "www.example.com. 300 IN A 192.0.2.1")[:30], 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ttl, ok := MinTTL(tt.msg)
			if ttl != tt.ttl || ok != tt.ok {
				t.Errorf("MinTTL = %d, %v; want %d, %v", ttl, ok, tt.ttl, tt.ok)
			}
		})
	}
}

// FuzzMinTTL: where MinTTL reads a message, its TTL is the one miekg/dns
// reads.
func FuzzMinTTL(f *testing.F) {
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, 1})
	f.Fuzz(func(t *testing.T, msg []byte) {
		ttl, ok := MinTTL(msg)
		var m dns.Msg
		if !ok || m.Unpack(msg) != nil {
			return
		}
		want, found := uint32(0), false
		for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				if rr.Header().Rrtype == dns.TypeOPT {
					continue
				}
				if h := rr.Header().Ttl; !found || h < want {
					want, found = h, true
				}
			}
		}
		if !found || ttl != want {
			t.Fatalf("MinTTL = %d, miekg/dns reads %d (found %v): %x", ttl, want, found, msg)
		}
	})
}
