package upstream

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/metrics"
)

func TestForwardZones(t *testing.T) {
	def := dnstest.NewUpstream(t)
	corp := dnstest.NewUpstream(t)
	lab := dnstest.NewUpstream(t)
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(`
[upstream]
servers = [%q]
timeout = "250ms"

[[upstream.forward]]
zones = ["corp.example.", "10.in-addr.arpa"]
servers = [%q]

[[upstream.forward]]
zones = ["lab.corp.example"]
servers = [%q]
`, def.Addr, corp.Addr, lab.Addr)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := routerFor(t, nil, cfg.Upstream)
	tests := []struct {
		name string
		want *dnstest.Upstream
	}{
		{"corp.example", corp},
		{"www.corp.example", corp},
		{"lab.corp.example", lab},
		{"x.y.lab.corp.example", lab},
		{"xlab.corp.example", corp},
		{"5.0.0.10.in-addr.arpa", corp},
		{"notcorp.example", def},
		{"example", def},
		{"www.example.test", def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fqdn := dns.Fqdn(tt.name)
			if _, err := r.Exchange(context.Background(), query(fqdn), tt.name); err != nil {
				t.Fatal(err)
			}
			for _, u := range []*dnstest.Upstream{def, corp, lab} {
				want := 0
				if u == tt.want {
					want = 1
				}
				if n := u.Asked(fqdn); n != want {
					t.Errorf("%s asked %d times, want %d", u.Addr, n, want)
				}
			}
		})
	}
}

func TestForwardZoneGoesNowhereElse(t *testing.T) {
	// The zone's server fails: the query fails, it is not asked of the
	// default servers (they would leak internal names, or answer wrongly).
	def := dnstest.NewUpstream(t, records...)
	corp := dnstest.NewUpstream(t)
	corp.SetSilent(true)
	cfg := upstreamConfig(t, "failover", def.Addr)
	cfg.Forward = []config.Forward{{Zones: []string{"corp.example"}, Servers: upstreamConfig(t, "", corp.Addr).Servers}}
	r := routerFor(t, nil, cfg)
	if _, err := r.Exchange(context.Background(), query("db.corp.example."), "db.corp.example"); err == nil {
		t.Fatal("answered with the zone's server silent")
	}
	if corp.Asked("db.corp.example.") != 1 || def.Total() != 0 {
		t.Errorf("corp asked %d, default %d times; want 1 and 0", corp.Asked("db.corp.example."), def.Total())
	}
	// The default pool's readiness does not depend on forward servers.
	r.Exchange(context.Background(), query("db2.corp.example."), "db2.corp.example") // the second failure (another name): down
	if !r.Pool("db.corp.example").endpoints[0].isDown() {
		t.Fatal("the zone's server is not down after 2 failures")
	}
	if !r.Up() {
		t.Error("Up() = false: a forward zone's server being down made the router not ready")
	}
}

func TestServerInSeveralPoolsIsOne(t *testing.T) {
	up := dnstest.NewUpstream(t, records...)
	cfg := upstreamConfig(t, "failover", up.Addr)
	cfg.Forward = []config.Forward{{Zones: []string{"corp.example"}, Servers: cfg.Servers}}
	r := routerFor(t, nil, cfg)
	if len(r.endpoints) != 1 || r.Pool("corp.example").endpoints[0] != r.def.endpoints[0] {
		t.Errorf("%d endpoints, want one shared by both pools", len(r.endpoints))
	}
}

func TestMetricsInitializedAndReplacedOnReload(t *testing.T) {
	a, b := twoUpstreams(t)
	m := metrics.New("test")
	newRouter(t, m, "failover", []string{a.Addr, b.Addr})
	for _, k := range ErrorKinds {
		if v, ok := metricValue(t, m, "appfence_upstream_errors_total", "upstream", a.Addr, "kind", k); !ok || v != 0 {
			t.Errorf("errors_total{kind=%s}: %v %v, want a zero series before any error", k, v, ok)
		}
	}
	for _, rc := range []string{"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"} {
		if _, ok := metricValue(t, m, "appfence_upstream_requests_total", "upstream", a.Addr, "rcode", rc); !ok {
			t.Errorf("no zero series requests_total{rcode=%s}", rc)
		}
	}
	// A reload without a: its up gauge goes away, b's stays.
	r2 := newRouter(t, m, "failover", []string{b.Addr})
	if _, ok := metricValue(t, m, "appfence_upstream_up", "upstream", a.Addr); ok {
		t.Error("appfence_upstream_up of a removed upstream is still exported")
	}
	if v := metric(t, m, "appfence_upstream_up", "upstream", b.Addr); v != 1 {
		t.Errorf("up{b} = %v", v)
	}
	_ = r2
}

func TestNewRouterErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Upstream
		want string
	}{
		{"no servers", config.Upstream{Strategy: "failover", Timeout: 1}, "no servers"},
		{"bad strategy", config.Upstream{Strategy: "random", Timeout: 1}, "unknown strategy"},
		{"no timeout", config.Upstream{Strategy: "failover"}, "must be more than zero"},
		{"missing CA", config.Upstream{Strategy: "failover", Timeout: 1, CAFile: "/nonexistent/ca.pem"}, "upstream.ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRouter(t.Context(), tt.cfg, nil)
			if err == nil {
				r.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q in it", err, tt.want)
			}
		})
	}
}
