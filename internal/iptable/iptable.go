// Package iptable answers "which value belongs to the longest prefix that
// contains this address" for a fixed set of prefixes, without allocating.
// It holds client groups and app IP ranges.
//
// It imports only the standard library: every package may import it.
package iptable

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Table is an immutable longest-prefix-match table. The zero Table is empty.
//
// Each prefix length present has its own map, keyed by the masked address
// as integers rather than by netip.Prefix: a lookup masks the address once
// per length and asks a map with a cheap hash (a few nanoseconds each, as
// part of every query's decision).
type Table[V any] struct {
	v4 []level[uint32, V]    // by prefix length, longest first
	v6 []level[[2]uint64, V] // the address as two big-endian halves
}

type level[K comparable, V any] struct {
	bits int
	m    map[K]V
}

// New builds a table. When a prefix is given twice, the last value wins.
// IPv4-mapped IPv6 prefixes are stored as IPv4.
func New[V any](entries map[netip.Prefix]V) *Table[V] {
	t := &Table[V]{}
	for p, v := range entries {
		p = normalize(p)
		if p.Addr().Is4() {
			t.v4 = add(t.v4, p.Bits(), key4(uint32Of(p.Addr()), p.Bits()), v)
		} else {
			hi, lo := uint64sOf(p.Addr())
			t.v6 = add(t.v6, p.Bits(), key6(hi, lo, p.Bits()), v)
		}
	}
	slices.SortFunc(t.v4, func(a, b level[uint32, V]) int { return b.bits - a.bits })
	slices.SortFunc(t.v6, func(a, b level[[2]uint64, V]) int { return b.bits - a.bits })
	return t
}

// add puts key in the level of bits, creating it if needed.
func add[K comparable, V any](levels []level[K, V], bits int, key K, v V) []level[K, V] {
	i := slices.IndexFunc(levels, func(l level[K, V]) bool { return l.bits == bits })
	if i < 0 {
		levels = append(levels, level[K, V]{bits: bits, m: map[K]V{}})
		i = len(levels) - 1
	}
	levels[i].m[key] = v
	return levels
}

func normalize(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// key4 returns the first bits bits of the IPv4 address u, the rest zero.
func key4(u uint32, bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return u &^ (1<<(32-bits) - 1)
}

// key6 returns the first bits bits of the IPv6 address hi:lo, the rest
// zero.
func key6(hi, lo uint64, bits int) [2]uint64 {
	switch {
	case bits == 0:
		return [2]uint64{}
	case bits <= 64:
		return [2]uint64{hi &^ (1<<(64-bits) - 1), 0}
	}
	return [2]uint64{hi, lo &^ (1<<(128-bits) - 1)}
}

func uint32Of(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func uint64sOf(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// Lookup returns the value of the longest prefix containing addr.
func (t *Table[V]) Lookup(addr netip.Addr) (v V, prefix netip.Prefix, ok bool) {
	if t == nil {
		return v, prefix, false
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		u := uint32Of(addr)
		for _, l := range t.v4 {
			if v, ok := l.m[key4(u, l.bits)]; ok {
				return v, netip.PrefixFrom(addr, l.bits).Masked(), true
			}
		}
		return v, prefix, false
	}
	if len(t.v6) == 0 {
		return v, prefix, false
	}
	hi, lo := uint64sOf(addr)
	for _, l := range t.v6 {
		if v, ok := l.m[key6(hi, lo, l.bits)]; ok {
			return v, netip.PrefixFrom(addr, l.bits).Masked(), true
		}
	}
	return v, prefix, false
}

// Contains reports whether any prefix contains addr.
func (t *Table[V]) Contains(addr netip.Addr) bool {
	_, _, ok := t.Lookup(addr)
	return ok
}

// Len returns the number of prefixes in the table.
func (t *Table[V]) Len() int {
	if t == nil {
		return 0
	}
	n := 0
	for _, l := range t.v4 {
		n += len(l.m)
	}
	for _, l := range t.v6 {
		n += len(l.m)
	}
	return n
}

// ParsePrefix parses a range as administrators write it: a CIDR prefix
// ("10.20.30.0/24") or a single address ("10.20.31.17", a /32 or /128).
// Host bits must be zero, and IPv4 is written as IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: not an address or CIDR prefix", s)
		}
		s = a.String() + "/" + strconv.Itoa(a.BitLen())
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: invalid CIDR prefix", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: IPv4-mapped prefix; write it as IPv4", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%q: host bits are set (did you mean %s?)", s, m)
	}
	return p, nil
}
