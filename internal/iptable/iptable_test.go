package iptable

import (
	"net/netip"
	"testing"
)

func TestLookup(t *testing.T) {
	tab := New(map[netip.Prefix]string{
		netip.MustParsePrefix("10.0.0.0/8"):             "wide",
		netip.MustParsePrefix("10.20.30.0/24"):          "team",
		netip.MustParsePrefix("10.20.31.17/32"):         "phone",
		netip.MustParsePrefix("fd00:20:30::/64"):        "v6team",
		netip.MustParsePrefix("fd00:20:30:0:8000::/65"): "v6half",
		netip.MustParsePrefix("fd00::99/128"):           "v6host",
		netip.MustParsePrefix("::/0"):                   "any6",
		netip.MustParsePrefix("::ffff:1.2.3.0/120"):     "mapped",
	})
	tests := []struct {
		addr   string
		want   string
		prefix string
	}{
		{"10.1.2.3", "wide", "10.0.0.0/8"},
		{"10.20.30.40", "team", "10.20.30.0/24"},
		{"10.20.31.17", "phone", "10.20.31.17/32"},
		{"10.20.31.18", "wide", "10.0.0.0/8"},
		{"::ffff:10.20.30.1", "team", "10.20.30.0/24"},
		{"1.2.3.4", "mapped", "1.2.3.0/24"},
		{"192.0.2.1", "", ""},
		{"fd00:20:30::1", "v6team", "fd00:20:30::/64"},
		{"fd00:20:30:0:7fff::1", "v6team", "fd00:20:30::/64"},
		{"fd00:20:30:0:8000::1", "v6half", "fd00:20:30:0:8000::/65"},
		{"fd00::99", "v6host", "fd00::99/128"},
		{"fd00::98", "any6", "::/0"},
		{"fd00:20:31::1", "any6", "::/0"},
		{"fe80::1%eth0", "any6", "::/0"},
	}
	for _, tt := range tests {
		got, prefix, ok := tab.Lookup(netip.MustParseAddr(tt.addr))
		if got != tt.want || ok != (tt.want != "") || ok && prefix.String() != tt.prefix {
			t.Errorf("Lookup(%s) = %q, %s, %v; want %q, %s", tt.addr, got, prefix, ok, tt.want, tt.prefix)
		}
	}
	v4all := New(map[netip.Prefix]int{netip.MustParsePrefix("0.0.0.0/0"): 1})
	if v, prefix, ok := v4all.Lookup(netip.MustParseAddr("203.0.113.9")); !ok || v != 1 || prefix.String() != "0.0.0.0/0" {
		t.Errorf("Lookup in 0.0.0.0/0 = %v, %s, %v", v, prefix, ok)
	}
	if _, _, ok := v4all.Lookup(netip.MustParseAddr("::1")); ok {
		t.Error("an IPv6 address matched 0.0.0.0/0")
	}
	if tab.Len() != 8 {
		t.Errorf("Len = %d", tab.Len())
	}
	var empty *Table[int]
	if _, _, ok := empty.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("nil table matched")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := New(map[netip.Prefix]int{netip.MustParsePrefix("10.0.0.0/8"): 1, netip.MustParsePrefix("10.1.0.0/16"): 2})
	a := netip.MustParseAddr("10.1.2.3")
	if n := testing.AllocsPerRun(100, func() { tab.Lookup(a) }); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	m := map[netip.Prefix]int{}
	for i := 0; i < 1000; i++ {
		m[netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)] = i
	}
	m[netip.MustParsePrefix("10.0.0.0/8")] = -1
	tab := New(m)
	a := netip.MustParseAddr("10.3.4.5")
	b.ReportAllocs()
	for b.Loop() {
		tab.Lookup(a)
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in   string
		want string
		err  bool
	}{
		{"10.0.0.0/8", "10.0.0.0/8", false},
		{"10.20.31.17", "10.20.31.17/32", false},
		{"fd00:20:30::/64", "fd00:20:30::/64", false},
		{"::1", "::1/128", false},
		{"10.0.0.0/33", "", true},
		{"::ffff:10.0.0.0/104", "", true},
		{"10.0.0.1/24", "", true},
		{"host", "", true},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		if (err != nil) != tt.err || (err == nil && p.String() != tt.want) {
			t.Errorf("ParsePrefix(%q) = %v, %v", tt.in, p, err)
		}
	}
}
