package resolver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/resolver/policy"
)

// benchPolicy builds the policy of testConfig with an unused upstream.
func benchPolicy(b *testing.B) *policy.Policy {
	b.Helper()
	cfg, err := config.Parse("bench.toml", []byte(fmt.Sprintf(testConfig, "127.0.0.1:9", "")), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	set, err := blocklists.Load(blocklists.Options{Globs: cfg.Blocking.Lists})
	if err != nil {
		b.Fatal(err)
	}
	p, err := policy.Build(cfg, set)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkObserve measures the per-query observe step: counting the
// decision and the reply in the metrics.
func BenchmarkObserve(b *testing.B) {
	p := benchPolicy(b)
	h := NewHandler(&State{Policy: p}, metrics.New("bench"), nil)
	st := h.State()
	tests := []struct {
		name   string
		client string
		qname  string
		rcode  int
	}{
		{"blocked", "127.0.0.1", "www.tiktok.com.", dns.RcodeNameError},
		{"exempted", "127.0.0.2", "www.tiktok.com.", dns.RcodeSuccess},
		{"resolved", "127.0.0.1", "www.example.test.", dns.RcodeSuccess},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			client := netip.MustParseAddr(tt.client)
			d := p.Decide(client, dnsname.Canonical(tt.qname))
			req := new(dns.Msg)
			req.SetQuestion(tt.qname, dns.TypeA)
			resp := new(dns.Msg)
			resp.SetRcode(req, tt.rcode)
			b.ReportAllocs()
			for b.Loop() {
				h.observe(st, &d, client, resp, 150*time.Microsecond)
			}
		})
	}
	// Every core observing at once: shared locks and cache lines show here.
	b.Run("blocked-parallel", func(b *testing.B) {
		client := netip.MustParseAddr("127.0.0.1")
		d := p.Decide(client, "www.tiktok.com")
		req := new(dns.Msg)
		req.SetQuestion("www.tiktok.com.", dns.TypeA)
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeNameError)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.observe(st, &d, client, resp, 150*time.Microsecond)
			}
		})
	})
}
