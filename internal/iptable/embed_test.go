package iptable

import (
	"net/netip"
	"testing"
)

func TestEmbedded(t *testing.T) {
	// The examples of RFC 6052 §2.4: 192.0.2.33 under each prefix length.
	nat64 := []netip.Prefix{
		netip.MustParsePrefix("64:ff9b::/96"),
		netip.MustParsePrefix("2001:db8::/32"),
		netip.MustParsePrefix("2001:db8:100::/40"),
		netip.MustParsePrefix("2001:db8:122::/48"),
		netip.MustParsePrefix("2001:db8:122:300::/56"),
		netip.MustParsePrefix("2001:db8:122:344::/64"),
		netip.MustParsePrefix("2001:db8:122:344::/96"),
	}
	tests := []struct {
		addr string
		want string // "" = none
	}{
		{"64:ff9b::192.0.2.33", "192.0.2.33"},
		{"64:ff9b::c000:221", "192.0.2.33"},
		{"2001:db8:c000:221::", "192.0.2.33"},
		{"2001:db8:1c0:2:21::", "192.0.2.33"},
		{"2001:db8:122:c000:2:2100::", "192.0.2.33"},
		{"2001:db8:122:3c0:0:221::", "192.0.2.33"},
		{"2001:db8:122:344:c0:2:2100:0", "192.0.2.33"},
		{"2001:db8:122:344::192.0.2.33", "192.0.2.33"},
		{"2002:c000:221::1", "192.0.2.33"}, // 6to4
		{"2002:c000:221:1::%eth0", "192.0.2.33"},
		{"2001:db9::1", ""},         // under no prefix
		{"64:ff9c::192.0.2.33", ""}, // next to the well-known prefix
		{"::ffff:192.0.2.33", ""},   // IPv4-mapped: Unmap handles it
		{"192.0.2.33", ""},          // IPv4
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		got, ok := Embedded(a, nat64)
		if tt.want == "" {
			if ok {
				t.Errorf("Embedded(%s) = %s, want none", tt.addr, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tt.want) {
			t.Errorf("Embedded(%s) = %s, %v, want %s", tt.addr, got, ok, tt.want)
		}
	}
	if _, ok := Embedded(netip.MustParseAddr("2001:db8::c000:221"), nil); ok {
		t.Error("an address under no configured prefix was decoded")
	}
}

func TestNAT64Length(t *testing.T) {
	for s, want := range map[string]bool{
		"64:ff9b::/96": true, "2001:db8::/32": true, "2001:db8::/40": true, "2001:db8::/64": true,
		"2001:db8::/33": false, "2001:db8::/128": false, "10.0.0.0/8": false,
	} {
		if got := NAT64Length(netip.MustParsePrefix(s)); got != want {
			t.Errorf("NAT64Length(%s) = %v, want %v", s, got, want)
		}
	}
}
