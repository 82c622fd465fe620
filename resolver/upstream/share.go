package upstream

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
)

// Shed reasons: which share a query was over (the label of
// appfence_upstream_shed_total).
const (
	ShedClient = "client"
	ShedZone   = "zone"
)

// ShareLimits are the shares of the upstream capacity: the upstream
// queries one client, and one zone, may have in flight. Zero is no bound.
type ShareLimits struct {
	PerClient int
	PerZone   int
}

// ShedError is the error of a query refused by Shares.Take: its client or
// its zone already has its share of upstream queries in flight.
type ShedError struct {
	// Reason is ShedClient or ShedZone.
	Reason string
	// Zone is the zone the query was counted against.
	Zone string
	// Limit is the share that was full.
	Limit int
}

func (e *ShedError) Error() string {
	if e.Reason == ShedZone {
		return fmt.Sprintf("zone %s has %d upstream queries in flight, its share", e.Zone, e.Limit)
	}
	return fmt.Sprintf("client has %d upstream queries in flight, its share", e.Limit)
}

// Shares counts the upstream queries in flight per client and per zone, so
// that no client, and no zone (a random-subdomain flood at a slow one),
// takes more than its share of the upstream capacity: what is over a share
// is refused at once instead of waiting. The zero Shares is ready to use;
// it is safe for concurrent use.
//
// Its memory is bounded by the queries in flight: a client or zone with
// none has no entry.
type Shares struct {
	mu      sync.Mutex
	clients map[netip.Prefix]int
	zones   map[string]int
}

// Take takes a place for an upstream query of client (its address, or its
// /64 for IPv6) for zone, within lim. It returns a *ShedError, having
// taken nothing, when the client or the zone has its share in flight
// already; otherwise the place is to be given back with Give.
func (s *Shares) Take(client netip.Prefix, zone string, lim ShareLimits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients == nil {
		s.clients, s.zones = map[netip.Prefix]int{}, map[string]int{}
	}
	if lim.PerClient > 0 && s.clients[client] >= lim.PerClient {
		return &ShedError{Reason: ShedClient, Zone: zone, Limit: lim.PerClient}
	}
	if lim.PerZone > 0 && s.zones[zone] >= lim.PerZone {
		return &ShedError{Reason: ShedZone, Zone: zone, Limit: lim.PerZone}
	}
	s.clients[client]++
	s.zones[zone]++
	return nil
}

// Give gives back a place that Take gave for client and zone.
func (s *Shares) Give(client netip.Prefix, zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clients[client]--; s.clients[client] <= 0 {
		delete(s.clients, client)
	}
	if s.zones[zone]--; s.zones[zone] <= 0 {
		delete(s.zones, zone)
	}
}

// InFlight returns the places taken by client and by zone.
func (s *Shares) InFlight(client netip.Prefix, zone string) (byClient, byZone int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[client], s.zones[zone]
}

// Zone returns the zone that queries for name (canonical: lower case, no
// trailing dot) are counted against: the name's registered domain, one
// label under its public suffix by the Public Suffix List
// ("x1.cdn.example.co.uk" → "example.co.uk"). Under a private suffix (a
// hosting provider's domain, such as "blogspot.com") every name counts
// against the suffix itself, its operator's zone, so random labels in
// front of it do not make fresh zones. A name that is a public suffix, or
// has one label, is its own zone; the root is ".".
func Zone(name string) string {
	if name == "" || name == "." {
		return "."
	}
	suffix, icann := publicsuffix.PublicSuffix(name)
	if !icann && strings.Contains(suffix, ".") {
		return suffix // a private suffix: its operator's zone
	}
	if len(suffix) >= len(name) {
		return name
	}
	// One label more than the suffix: a part of name, no new string.
	rest := name[:len(name)-len(suffix)-1]
	return name[strings.LastIndexByte(rest, '.')+1:]
}
