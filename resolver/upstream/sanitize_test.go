package upstream

import (
	"testing"

	"github.com/miekg/dns"
)

func TestBailiwick(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		qname string
		ns    []dns.RR
		want  string
	}{
		{"www.example.test.", nil, "www.example.test"},
		{"www.example.test.", []dns.RR{rr("example.test. 300 IN SOA ns. host. 1 2 3 4 5")}, "example.test"},
		{"www.a.example.test.", []dns.RR{rr("example.test. 300 IN NS ns.example.test."), rr("a.example.test. 300 IN NS ns.a.example.test.")}, "a.example.test"},
		{"www.example.test.", []dns.RR{rr("other.test. 300 IN NS ns.other.test.")}, "www.example.test"},
		{"www.example.test.", []dns.RR{rr("www.example.test. 300 IN A 192.0.2.1")}, "www.example.test"},
		{"WWW.Example.TEST.", []dns.RR{rr("EXAMPLE.test. 300 IN NS ns.example.test.")}, "example.test"},
		{"www.example.test.", []dns.RR{rr(". 300 IN SOA a. b. 1 2 3 4 5")}, ""},
	}
	for _, tt := range tests {
		if got := bailiwick(tt.qname, tt.ns); got != tt.want {
			t.Errorf("bailiwick(%s, %v) = %q, want %q", tt.qname, tt.ns, got, tt.want)
		}
	}
}
