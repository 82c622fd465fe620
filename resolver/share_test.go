package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/appfence/appfence/internal/dnstest"
)

// flood is a random-subdomain flood at one zone from one client address:
// a query for a fresh name every interval, until stop, over one UDP socket,
// with every reply recorded.
type flood struct {
	mu      sync.Mutex
	sent    map[uint16]time.Time
	replies int
	shed    int           // SERVFAIL with the share EDE
	slowest time.Duration // of the shed replies
	edes    map[string]int
	done    sync.WaitGroup
}

// startFlood floods zone from local until stop is closed; wait for the
// replies with f.done.
func startFlood(t *testing.T, addr, local, zone string, interval time.Duration, stop <-chan struct{}) *flood {
	t.Helper()
	c := dial(t, "udp", local, addr)
	f := &flood{sent: map[uint16]time.Time{}, edes: map[string]int{}}
	f.done.Add(1)
	go func() { // reader: until the socket is closed
		defer f.done.Done()
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(b[:n]) != nil {
				continue
			}
			f.mu.Lock()
			f.replies++
			if x := ede(m); m.Rcode == dns.RcodeServerFailure && x != nil && x.InfoCode == dns.ExtendedErrorCodeOther {
				f.shed++
				f.edes[x.ExtraText]++
				f.slowest = max(f.slowest, time.Since(f.sent[m.Id]))
			}
			f.mu.Unlock()
		}
	}()
	go func() { // sender
		defer func() {
			// The last replies of the slow zone come within its delay.
			time.AfterFunc(time.Second, func() { c.Close() })
		}()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			m := dnstest.NewQuery(fmt.Sprintf("r%d-%s.%s.", i, strings.ReplaceAll(local, ".", "-"), zone), dns.TypeA, true, false)
			m.Id = uint16(i)
			b, err := m.Pack()
			if err != nil {
				continue
			}
			f.mu.Lock()
			f.sent[m.Id] = time.Now()
			f.mu.Unlock()
			c.Write(b)
		}
	}()
	return f
}

// TestUpstreamSharesUnderSlowZoneFlood is the attack of issue 17 item 2,
// scaled down: two clients flood random names under a zone whose server
// takes 300 ms, and a third client's cache misses on a healthy zone keep
// being answered because the flood gets only its shares of the 16
// upstream places (8 per client, 12 per zone). The flood's queries over
// the shares are answered SERVFAIL with an EDE at once, and counted by
// reason. Without the shares (the "off" case, the behaviour before) the
// flood takes every place and the other client's misses fail.
func TestUpstreamSharesUnderSlowZoneFlood(t *testing.T) {
	tests := []struct {
		name            string
		limits          string
		wantVictimFails bool
	}{
		{"shares", "max_in_flight_per_client = 8\nmax_in_flight_per_zone = 12\n", false},
		{"off", "max_in_flight_per_client = 0\nmax_in_flight_per_zone = 0\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := dnstest.NewUpstream(t, upstreamRecords...)
			slow := dnstest.NewUpstream(t)
			slow.SetDelay(300 * time.Millisecond) // upstream.timeout is 500ms
			cfg := fmt.Sprintf(testConfig, up.Addr, "")
			cfg = strings.Replace(cfg, `allow_clients = ["127.0.0.1/32", "127.0.0.2/32", "::1/128"]`, `allow_clients = ["127.0.0.0/8"]`, 1)
			cfg = strings.Replace(cfg, "[upstream]\n", "[upstream]\n"+tt.limits, 1)
			cfg += fmt.Sprintf("\n[[upstream.forward]]\nzones = [\"slow.test\"]\nservers = [%q]\n", slow.Addr)
			e := startEnvWith(t, up, cfg)
			e.handler.upstreamPlaces.max.Store(16)

			// The first flooder fills its client share, then the second
			// the zone's share.
			stop := make(chan struct{})
			floods := []*flood{startFlood(t, e.addr, "127.0.0.10", "slow.test", 2*time.Millisecond, stop)}
			if !tt.wantVictimFails {
				waitFor(t, "the first flooder to fill its share", func() bool {
					n, _ := e.handler.shares.InFlight(clientKey(netip.MustParseAddr("127.0.0.10")), "")
					return n >= 8
				})
			}
			floods = append(floods, startFlood(t, e.addr, "127.0.0.11", "slow.test", 2*time.Millisecond, stop))
			stopped := false
			stopFlood := func() {
				if !stopped {
					close(stop)
					stopped = true
				}
			}
			defer stopFlood()
			zoneFull := 12
			if tt.wantVictimFails {
				zoneFull = 16 // every place
			}
			waitFor(t, "the flood to fill its share", func() bool {
				_, z := e.handler.shares.InFlight(netip.Prefix{}, "slow.test")
				return z >= zoneFull
			})

			// The other client: 40 misses over UDP and 10 over TCP, each a
			// fresh name of the healthy zone (NXDOMAIN from its upstream),
			// one every 10 ms, so that the flood's slow queries are
			// replaced several times meanwhile.
			answered, total := 0, 0
			pace := time.NewTicker(10 * time.Millisecond)
			defer pace.Stop()
			for i := range 50 {
				<-pace.C
				netw := "udp"
				if i%5 == 4 {
					netw = "tcp"
				}
				m := dnstest.NewQuery(fmt.Sprintf("v%d.example.test.", i), dns.TypeA, true, false)
				resp, err := dnstest.Client{Local: "127.0.0.3"}.Exchange(context.Background(), netw, e.addr, m)
				total++
				if err == nil && resp.Rcode == dns.RcodeNameError {
					answered++
				}
			}
			stopFlood()
			for _, f := range floods {
				f.done.Wait()
			}
			waitFor(t, "every upstream place to be given back", func() bool {
				_, z := e.handler.shares.InFlight(netip.Prefix{}, "slow.test")
				return e.handler.upstreamPlaces.n.Load() == 0 && z == 0
			})
			byClient := testutil.ToFloat64(e.metrics.UpstreamShed.WithLabelValues("client"))
			byZone := testutil.ToFloat64(e.metrics.UpstreamShed.WithLabelValues("zone"))
			t.Logf("other client: %d of %d answered; flood: %d and %d replies, %d and %d shed (slowest %v, %v); shed_total client=%v zone=%v",
				answered, total, floods[0].replies, floods[1].replies, floods[0].shed, floods[1].shed,
				floods[0].slowest, floods[1].slowest, byClient, byZone)

			if tt.wantVictimFails {
				if answered == total {
					t.Errorf("without shares every miss of the other client was answered: the flood did not take the places")
				}
				if byClient+byZone != 0 {
					t.Errorf("shed without shares: client=%v zone=%v", byClient, byZone)
				}
				return
			}
			if answered != total {
				t.Errorf("other client: %d of %d misses answered, want all", answered, total)
			}
			if byClient == 0 || byZone == 0 {
				t.Errorf("appfence_upstream_shed_total client=%v zone=%v, want both counted", byClient, byZone)
			}
			shed := 0
			for _, f := range floods {
				shed += f.shed
				if f.slowest >= 200*time.Millisecond {
					t.Errorf("a shed reply took %v: it waited for the slow zone (300 ms)", f.slowest)
				}
				for text := range f.edes {
					if text != "upstream share full: client" && text != "upstream share full: zone slow.test" {
						t.Errorf("shed EDE text %q", text)
					}
				}
			}
			if float64(shed) != byClient+byZone {
				t.Errorf("%d shed replies received, %v counted", shed, byClient+byZone)
			}
			if u := slow.Total(); u == 0 {
				t.Error("the slow zone's server was never asked")
			}
		})
	}
}

// TestSharesPerIPv6Prefix: the clients of one IPv6 /64 share one share.
func TestSharesPerIPv6Prefix(t *testing.T) {
	a := clientKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := clientKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	c := clientKey(netip.MustParseAddr("2001:db8:1:3::1"))
	if a != b || a == c {
		t.Errorf("keys %v %v %v: want the first two equal and the third apart", a, b, c)
	}
}
