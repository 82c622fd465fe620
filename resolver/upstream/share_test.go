package upstream

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func TestZone(t *testing.T) {
	tests := []struct{ name, want string }{
		{"www.example.com", "example.com"},
		{"example.com", "example.com"},
		{"x1.cdn.example.co.uk", "example.co.uk"},
		{"a8f3k.slow.test", "slow.test"},               // no listed suffix: the last label
		{"random-label.blogspot.com", "blogspot.com"},  // private suffix: its operator's zone
		{"deep.random.github.io", "github.io"},         // idem
		{"co.uk", "co.uk"},                             // a public suffix
		{"com", "com"},                                 // one label
		{"1.2.0.192.in-addr.arpa", "192.in-addr.arpa"}, // reverse zones
		{"", "."},
	}
	for _, tt := range tests {
		if got := Zone(tt.name); got != tt.want {
			t.Errorf("Zone(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSharesTakeGive(t *testing.T) {
	a := netip.MustParsePrefix("192.0.2.1/32")
	b := netip.MustParsePrefix("192.0.2.2/32")
	lim := ShareLimits{PerClient: 2, PerZone: 3}
	var s Shares
	steps := []struct {
		client netip.Prefix
		zone   string
		shed   string // "" = taken
	}{
		{a, "slow.test", ""},
		{a, "slow.test", ""},
		{a, "other.test", ShedClient}, // a has 2 in flight
		{b, "slow.test", ""},
		{b, "slow.test", ShedZone}, // slow.test has 3 in flight
		{b, "other.test", ""},
	}
	for i, st := range steps {
		err := s.Take(st.client, st.zone, lim)
		var shed *ShedError
		switch {
		case st.shed == "" && err != nil:
			t.Fatalf("step %d: %v, want taken", i, err)
		case st.shed != "" && (!errors.As(err, &shed) || shed.Reason != st.shed):
			t.Fatalf("step %d: %v, want shed by %s", i, err, st.shed)
		}
	}
	s.Give(a, "slow.test")
	if err := s.Take(b, "slow.test", lim); err == nil {
		t.Fatal("b over its client share after a place of a was given back")
	}
	if err := s.Take(a, "slow.test", lim); err != nil {
		t.Fatalf("a after giving a place back: %v", err)
	}
	for _, g := range []struct {
		c netip.Prefix
		z string
	}{{a, "slow.test"}, {a, "slow.test"}, {b, "slow.test"}, {b, "other.test"}} {
		s.Give(g.c, g.z)
	}
	if len(s.clients) != 0 || len(s.zones) != 0 {
		t.Errorf("entries left after every place was given back: %v %v", s.clients, s.zones)
	}
	if err := s.Take(a, "x", ShareLimits{}); err != nil {
		t.Errorf("zero limits shed: %v", err)
	}
}

func TestSharesConcurrent(t *testing.T) {
	var s Shares
	c := netip.MustParsePrefix("192.0.2.1/32")
	lim := ShareLimits{PerClient: 5}
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxSeen := 0
	for range 50 {
		wg.Go(func() {
			for range 100 {
				if s.Take(c, "z", lim) != nil {
					continue
				}
				n, _ := s.InFlight(c, "z")
				mu.Lock()
				maxSeen = max(maxSeen, n)
				mu.Unlock()
				s.Give(c, "z")
			}
		})
	}
	wg.Wait()
	if maxSeen > 5 || maxSeen == 0 {
		t.Errorf("at most %d in flight seen, want 1..5", maxSeen)
	}
	if n, _ := s.InFlight(c, "z"); n != 0 {
		t.Errorf("%d left in flight", n)
	}
}
