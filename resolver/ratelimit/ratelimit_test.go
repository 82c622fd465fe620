package ratelimit

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// allowed counts how many of n queries from addr at now are let through.
func allowed(l *Limiter, addr netip.Addr, rate, n int, now time.Time) int {
	ok := 0
	for i := 0; i < n; i++ {
		if l.Allow(addr, rate, now) {
			ok++
		}
	}
	return ok
}

func TestBurstThenRate(t *testing.T) {
	l := New(1024)
	now := time.Now()
	a := netip.MustParseAddr("10.0.0.1")
	// A full bucket: one second of queries at once, then nothing.
	if got := allowed(l, a, 10, 25, now); got != 10 {
		t.Fatalf("burst: %d of 25 let through, want 10", got)
	}
	// 100ms later one token is back.
	if got := allowed(l, a, 10, 5, now.Add(100*time.Millisecond)); got != 1 {
		t.Errorf("after 100ms: %d let through, want 1", got)
	}
	// Spread evenly at the rate, every query passes.
	start := now.Add(10 * time.Second)
	for i := 0; i < 100; i++ {
		if !l.Allow(a, 10, start.Add(time.Duration(i)*100*time.Millisecond)) {
			t.Fatalf("query %d at exactly the rate refused", i)
		}
	}
	// After a long pause the bucket is full again, never fuller.
	if got := allowed(l, a, 10, 25, start.Add(time.Hour)); got != 10 {
		t.Errorf("after an hour: %d let through, want 10", got)
	}
}

func TestRateOffAndChanged(t *testing.T) {
	l := New(64)
	now := time.Now()
	a := netip.MustParseAddr("10.0.0.1")
	if got := allowed(l, a, 0, 1000, now); got != 1000 {
		t.Errorf("rate 0: %d of 1000 let through, want all", got)
	}
	if got := allowed(l, a, 1, 3, now); got != 1 {
		t.Errorf("rate 1: %d of 3 let through, want 1", got)
	}
	// A reload raises the rate: what the client used is kept as time, so
	// it waits out the second it took at rate 1 and then has the new burst.
	if got := allowed(l, a, 100, 200, now.Add(500*time.Millisecond)); got != 50 {
		t.Errorf("rate raised to 100, 0.5s later: %d let through, want 50", got)
	}
	if got := allowed(l, a, 100, 200, now.Add(2*time.Second)); got != 100 {
		t.Errorf("rate raised to 100, 2s later: %d let through, want 100", got)
	}
}

func TestClients(t *testing.T) {
	l := New(1024)
	now := time.Now()
	tests := []struct {
		a, b  string
		share bool
	}{
		{"10.0.0.1", "10.0.0.2", false},
		{"10.0.0.1", "::ffff:10.0.0.1", true}, // IPv4-mapped is IPv4
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::99", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"255.255.255.255", "ffff:ffff:ffff:ffff::1", true}, // a multicast source: see key
		{"0.0.0.1", "::1", false},
	}
	for i, tt := range tests {
		at := now.Add(time.Duration(i) * time.Hour)
		a, b := netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)
		allowed(l, a, 5, 5, at)
		got := l.Allow(b, 5, at)
		if got == tt.share {
			t.Errorf("%s then %s: shared bucket = %v, want %v", tt.a, tt.b, !got, tt.share)
		}
	}
}

// TestBoundedAndSticky sprays far more addresses than the table holds
// (as spoofed sources would): the table does not grow, and a client that
// is being limited stays limited.
func TestBoundedAndSticky(t *testing.T) {
	l := New(4096)
	if l.Size() != 4096 {
		t.Fatalf("Size %d, want 4096", l.Size())
	}
	now := time.Now()
	flooder := netip.MustParseAddr("10.9.9.9")
	if got := allowed(l, flooder, 100, 1000, now); got != 100 {
		t.Fatalf("flooder: %d let through, want 100", got)
	}
	for i := 0; i < 1_000_000; i++ {
		a := netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Allow(a, 100, now)
	}
	if l.Allow(flooder, 100, now) {
		t.Error("a million other addresses made the table forget the flooder's limit")
	}
	if len(l.sets)*ways != 4096 {
		t.Errorf("table grew to %d entries", len(l.sets)*ways)
	}
}

func TestConcurrent(t *testing.T) {
	l := New(256)
	now := time.Now()
	a := netip.MustParseAddr("10.0.0.1")
	done := make(chan int)
	for g := 0; g < 8; g++ {
		go func() { done <- allowed(l, a, 50, 100, now) }()
	}
	total := 0
	for g := 0; g < 8; g++ {
		total += <-done
	}
	if total != 50 {
		t.Errorf("8 goroutines got %d queries through, want exactly 50", total)
	}
}

// BenchmarkAllow measures the check of one query: the reference is a
// client under its limit; "limited" a client over it; "spray" a new
// address each time, which replaces an entry.
func BenchmarkAllow(b *testing.B) {
	l := New(65536)
	now := time.Now()
	b.Run("under", func(b *testing.B) {
		a := netip.MustParseAddr("10.0.0.1")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l.Allow(a, 1<<30, now)
		}
	})
	b.Run("limited", func(b *testing.B) {
		a := netip.MustParseAddr("2001:db8::1")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l.Allow(a, 10, now)
		}
	})
	b.Run("spray", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			l.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 10, now)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var g atomic.Int32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			net := byte(g.Add(1)) // each goroutine its own clients
			i := 0
			for pb.Next() {
				i++
				l.Allow(netip.AddrFrom4([4]byte{10, net, byte(i >> 8), byte(i)}), 100, now)
			}
		})
	})
}
