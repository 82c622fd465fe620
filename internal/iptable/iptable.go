// Package iptable answers "which value belongs to the longest prefix that
// contains this address" for a fixed set of prefixes, without allocating.
// It holds client groups and app IP ranges.
package iptable

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Table is an immutable longest-prefix-match table. The zero Table is empty.
type Table[V any] struct {
	v4, v6 []level[V] // by prefix length, longest first
}

type level[V any] struct {
	bits int
	m    map[netip.Prefix]V
}

// New builds a table. When a prefix is given twice, the last value wins.
// IPv4-mapped IPv6 prefixes are stored as IPv4.
func New[V any](entries map[netip.Prefix]V) *Table[V] {
	t := &Table[V]{}
	for p, v := range entries {
		p = normalize(p)
		levels := &t.v6
		if p.Addr().Is4() {
			levels = &t.v4
		}
		i := slices.IndexFunc(*levels, func(l level[V]) bool { return l.bits == p.Bits() })
		if i < 0 {
			*levels = append(*levels, level[V]{bits: p.Bits(), m: map[netip.Prefix]V{}})
			i = len(*levels) - 1
		}
		(*levels)[i].m[p] = v
	}
	for _, levels := range [][]level[V]{t.v4, t.v6} {
		slices.SortFunc(levels, func(a, b level[V]) int { return b.bits - a.bits })
	}
	return t
}

func normalize(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// Lookup returns the value of the longest prefix containing addr.
func (t *Table[V]) Lookup(addr netip.Addr) (v V, prefix netip.Prefix, ok bool) {
	if t == nil {
		return v, prefix, false
	}
	addr = addr.Unmap().WithZone("")
	levels := t.v6
	if addr.Is4() {
		levels = t.v4
	}
	for _, l := range levels {
		p, err := addr.Prefix(l.bits)
		if err != nil {
			continue
		}
		if v, ok := l.m[p]; ok {
			return v, p, true
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
