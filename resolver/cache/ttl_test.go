package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
)

// answer builds an upstream answer to name/qtype with rcode and records in
// zone-file syntax; records after "|" go to the authority section.
func answer(t testing.TB, name string, qtype uint16, rcode int, records ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Response, m.RecursionAvailable, m.Rcode = true, true, rcode
	section := &m.Answer
	for _, r := range records {
		if r == "|" {
			section = &m.Ns
			continue
		}
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		*section = append(*section, rr)
	}
	return m
}

// defaults is the built-in [cache] section.
var defaults = config.Cache{Size: 100, MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour}

func TestStoredTTLs(t *testing.T) {
	const (
		a     = "www.example.test. 300 IN A 192.0.2.1"
		soa   = "example.test. 3600 IN SOA ns.example.test. h.example.test. 1 7200 3600 1209600 300"
		cname = "www.example.test. 600 IN CNAME cdn.example.test."
	)
	key := Key{Name: "www.example.test", Type: dns.TypeA, Class: dns.ClassINET}
	with := func(f func(*config.Cache)) config.Cache { c := defaults; f(&c); return c }
	tests := []struct {
		name string
		msg  func(t testing.TB) *dns.Msg
		cfg  config.Cache
		want []uint32 // nil: not cached
	}{
		{"positive", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeA, 0, a) }, defaults, []uint32{300}},
		{"question in other case", func(t testing.TB) *dns.Msg { return answer(t, "WWW.example.TEST.", dns.TypeA, 0, a) }, defaults, []uint32{300}},
		{"each record its own TTL", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, cname, "cdn.example.test. 60 IN A 192.0.2.1")
		}, defaults, []uint32{600, 60}},
		{"min_ttl raises", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 3 IN A 192.0.2.1")
		}, with(func(c *config.Cache) { c.MinTTL = 10 * time.Second }), []uint32{10}},
		{"max_ttl caps", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeA, 0, a) },
			with(func(c *config.Cache) { c.MaxTTL = time.Minute }), []uint32{60}},
		{"TTL 0 is not cached", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 0 IN A 192.0.2.1")
		}, defaults, nil},
		{"TTL 0 raised by min_ttl", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 0 IN A 192.0.2.1")
		}, with(func(c *config.Cache) { c.MinTTL = 5 * time.Second }), []uint32{5}},
		{"TTL with the top bit set is 0 (RFC 2181)", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, "www.example.test. 2147483648 IN A 192.0.2.1")
		}, defaults, nil},
		{"OPT left out", func(t testing.TB) *dns.Msg {
			m := answer(t, "www.example.test.", dns.TypeA, 0, a)
			m.SetEdns0(1232, true)
			return m
		}, defaults, []uint32{300}},
		{"NXDOMAIN: SOA MINIMUM below its TTL", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeNameError, "|", soa)
		}, defaults, []uint32{300}},
		{"NXDOMAIN: SOA TTL below MINIMUM", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeNameError, "|",
				"example.test. 60 IN SOA ns.example.test. h.example.test. 1 7200 3600 1209600 300")
		}, defaults, []uint32{60}},
		{"NXDOMAIN capped by max_negative_ttl", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeNameError, "|", soa)
		}, with(func(c *config.Cache) { c.MaxNegativeTTL = 30 * time.Second }), []uint32{30}},
		{"max_negative_ttl wins over min_ttl", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeNameError, "|", soa)
		}, with(func(c *config.Cache) { c.MinTTL, c.MaxNegativeTTL = time.Hour, time.Minute }), []uint32{60}},
		{"NODATA", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeA, 0, "|", soa) }, defaults, []uint32{300}},
		{"CNAME then NODATA: no record outlives the SOA's time", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, 0, cname, "|", soa)
		}, defaults, []uint32{300, 300}},
		{"NXDOMAIN without SOA", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeNameError)
		}, defaults, nil},
		{"NODATA without SOA", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeA, 0) }, defaults, nil},
		{"SERVFAIL", func(t testing.TB) *dns.Msg {
			return answer(t, "www.example.test.", dns.TypeA, dns.RcodeServerFailure, "|", soa)
		}, defaults, nil},
		{"REFUSED", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeA, dns.RcodeRefused) }, defaults, nil},
		{"truncated", func(t testing.TB) *dns.Msg {
			m := answer(t, "www.example.test.", dns.TypeA, 0, a)
			m.Truncated = true
			return m
		}, defaults, nil},
		{"another name", func(t testing.TB) *dns.Msg { return answer(t, "ww.example.test.", dns.TypeA, 0, a) }, defaults, nil},
		{"another type", func(t testing.TB) *dns.Msg { return answer(t, "www.example.test.", dns.TypeAAAA, 0, a) }, defaults, nil},
		{"no question", func(t testing.TB) *dns.Msg {
			m := answer(t, "www.example.test.", dns.TypeA, 0, a)
			m.Question = nil
			return m
		}, defaults, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := storedTTLs(key, tt.msg(t), &tt.cfg)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || ok != (tt.want != nil) {
				t.Errorf("storedTTLs = %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
}

func TestAnyQueryIsPositive(t *testing.T) {
	key := Key{Name: "example.test", Type: dns.TypeANY, Class: dns.ClassINET}
	m := answer(t, "example.test.", dns.TypeANY, 0, "example.test. 120 IN TXT \"x\"")
	if got, ok := storedTTLs(key, m, &defaults); !ok || fmt.Sprint(got) != "[120]" {
		t.Errorf("ANY: %v %v, want [120]", got, ok)
	}
}
