package resolver

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
)

// TestInspectEmbeddedIPv4: an AAAA answer whose address embeds an IPv4
// address in an app's ip_ranges (NAT64 under the well-known prefix or a
// configured network-specific one, 6to4) is blocked like an A answer with
// that address, from the upstream and from the cache; an embedded address
// outside the ranges, or under a prefix not configured, is answered.
func TestInspectEmbeddedIPv4(t *testing.T) {
	// 192.0.2.150 is in the video app's 192.0.2.128/25.
	records := append([]string{
		"wkp.example.test. 300 IN AAAA 64:ff9b::192.0.2.150",
		"sixtofour.example.test. 300 IN AAAA 2002:c000:296::1",
		"nsp.example.test. 300 IN AAAA 2001:db8:64:c000:2:9600::", // RFC 6052 /48 layout
		"clean.example.test. 300 IN AAAA 64:ff9b::192.0.2.20",
		"other.example.test. 300 IN AAAA 2001:db8:65:c000:2:9600::", // under no NAT64 prefix
	}, inspectRecords...)
	apps := filepath.Join(t.TempDir(), "apps.toml")
	if err := os.WriteFile(apps, []byte(inspectApps), 0o644); err != nil {
		t.Fatal(err)
	}
	up := dnstest.NewUpstream(t, records...)
	blocking := `nat64_prefixes = ["64:ff9b::/96", "2001:db8:64::/48"]`
	e := startEnvWith(t, up, fmt.Sprintf(inspectConfig, up.Addr, apps, blocking))
	tests := []struct {
		name string
		via  string // "" = answered
		want string
	}{
		{"wkp.example.test.", "ip:64:ff9b::c000:296", ""},
		{"sixtofour.example.test.", "ip:2002:c000:296::1", ""},
		{"nsp.example.test.", "ip:2001:db8:64:c000:2:9600::", ""},
		{"clean.example.test.", "", "64:ff9b::c000:214"},
		{"other.example.test.", "", "2001:db8:65:c000:2:9600::"},
	}
	for round := range 2 { // from the upstream, then from the cache
		for _, netw := range []string{"udp", "tcp"} {
			for _, tt := range tests {
				for _, client := range []string{"127.0.0.1", "127.0.0.2"} {
					resp := e.ask(t, netw, client, dnstest.NewQuery(tt.name, dns.TypeAAAA, true, false))
					if tt.via != "" {
						expectBlocked(t, resp, client, "video", tt.via)
					} else {
						expectAnswer(t, resp, client, tt.want)
					}
				}
			}
		}
		if round == 0 {
			for _, tt := range tests {
				if n := up.Asked(tt.name); n != 1 {
					t.Errorf("%s: upstream asked %d times, want 1", tt.name, n)
				}
			}
		}
	}
}

// TestInspectEmbeddedDefaultPrefixes: with the built-in
// blocking.nat64_prefixes (the well-known prefix only), a network-specific
// prefix is not decoded, and the well-known prefix and 6to4 are.
func TestInspectEmbeddedDefaultPrefixes(t *testing.T) {
	records := append([]string{
		"wkp.example.test. 300 IN AAAA 64:ff9b::192.0.2.150",
		"sixtofour.example.test. 300 IN AAAA 2002:c000:296::1",
		"nsp.example.test. 300 IN AAAA 2001:db8:64:c000:2:9600::",
	}, inspectRecords...)
	apps := filepath.Join(t.TempDir(), "apps.toml")
	if err := os.WriteFile(apps, []byte(inspectApps), 0o644); err != nil {
		t.Fatal(err)
	}
	up := dnstest.NewUpstream(t, records...)
	e := startEnvWith(t, up, fmt.Sprintf(inspectConfig, up.Addr, apps, ""))
	expectBlocked(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("wkp.example.test.", dns.TypeAAAA, true, false)), "127.0.0.1", "video", "ip:64:ff9b::c000:296")
	expectBlocked(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("sixtofour.example.test.", dns.TypeAAAA, true, false)), "127.0.0.1", "video", "ip:2002:c000:296::1")
	expectAnswer(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("nsp.example.test.", dns.TypeAAAA, true, false)), "127.0.0.1", "2001:db8:64:c000:2:9600::")
}
