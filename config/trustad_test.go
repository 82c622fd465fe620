package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestTrustAD(t *testing.T) {
	const upstream = `
[upstream]
servers = ["192.0.2.53", "tls://192.0.2.1#dns.example"]
trust_ad = %s
[[upstream.forward]]
zones = ["corp.example"]
servers = ["https://doh.corp.example/dns-query#10.0.0.1", "tls://192.0.2.1#dns.example"]
`
	tests := []struct {
		trust string
		err   string // "" for none
	}{
		{`["tls://192.0.2.1#dns.example", "https://doh.corp.example/dns-query#10.0.0.1"]`, ""},
		{`["192.0.2.53"]`, "upstream.trust_ad[0]: \"192.0.2.53\": only tls:// and https:// servers"},
		{`["tls://192.0.2.9#dns.example"]`, "upstream.trust_ad[0]: \"tls://192.0.2.9#dns.example\" is not in upstream.servers"},
		{`["ftp://x"]`, "upstream.trust_ad[0]:"},
	}
	for _, tt := range tests {
		cfg, err := Parse("f.toml", []byte(fmt.Sprintf(upstream, tt.trust)), t.TempDir())
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("trust_ad = %s: error %v, want %q", tt.trust, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("trust_ad = %s: %v", tt.trust, err)
		}
		u := cfg.Upstream
		if u.Servers[0].TrustAD || !u.Servers[1].TrustAD || !u.Forward[0].Servers[0].TrustAD || !u.Forward[0].Servers[1].TrustAD {
			t.Errorf("TrustAD of servers %v, forward servers %v: want the listed ones", u.Servers, u.Forward[0].Servers)
		}
	}
}
