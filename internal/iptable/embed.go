package iptable

import "net/netip"

// Addresses embedded in IPv6: a NAT64 (RFC 6052) or 6to4 (RFC 3056)
// address carries an IPv4 address, and reaching it reaches that IPv4
// host. An answer's IPv6 address is therefore also looked up as the IPv4
// address it embeds.

// sixToFour is the 6to4 prefix: the IPv4 address is bits 16 to 47.
var sixToFour = netip.MustParsePrefix("2002::/16")

// NAT64Length reports whether p is an IPv6 prefix of a length RFC 6052
// defines for NAT64 (32, 40, 48, 56, 64 or 96 bits).
func NAT64Length(p netip.Prefix) bool {
	if !p.Addr().Is6() || p.Addr().Is4In6() {
		return false
	}
	switch p.Bits() {
	case 32, 40, 48, 56, 64, 96:
		return true
	}
	return false
}

// Embedded returns the IPv4 address embedded in the IPv6 address a: the
// 6to4 address's, or the one of a NAT64 address under one of the prefixes
// nat64 (the longest that contains it), laid out as RFC 6052 §2.2 says for
// its length (the octet of bits 64 to 71 is skipped). It reports false for any other address, and for a
// NAT64 prefix whose length RFC 6052 does not define.
func Embedded(a netip.Addr, nat64 []netip.Prefix) (netip.Addr, bool) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	a = a.WithZone("")
	b := a.As16()
	if sixToFour.Contains(a) {
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	bits := -1 // of the longest prefix containing a
	for _, p := range nat64 {
		if p.Bits() > bits && p.Contains(a) && NAT64Length(p) {
			bits = p.Bits()
		}
	}
	if bits < 0 {
		return netip.Addr{}, false
	}
	var v4 [4]byte
	i := 0
	for j := bits / 8; i < 4; j++ {
		if j == 8 {
			continue // bits 64-71, the "u" octet
		}
		v4[i] = b[j]
		i++
	}
	return netip.AddrFrom4(v4), true
}
