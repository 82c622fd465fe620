package policy

import (
	"net/netip"
	"testing"
)

func TestGroupFor(t *testing.T) {
	p := build(t, cfgText+`
[[group]]
name = "by-id"
client_ids = ["officer-017"]
allow = ["tiktok"]

[[group]]
name = "by-cert"
client_certs = ["phone-1.devices.test", "sha256:`+"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"+`"]
require_cert = true
allow = ["tiktok"]
`)
	inv := netip.MustParseAddr("10.20.30.5") // investigators by address
	other := netip.MustParseAddr("10.1.2.3") // default by address
	tests := []struct {
		name   string
		client netip.Addr
		id     *Identity
		want   string
	}{
		{"no identity", other, nil, "default"},
		{"empty identity", inv, &Identity{}, "investigators"},
		{"ClientID", other, &Identity{ClientID: "officer-017"}, "by-id"},
		{"ClientID beats address", inv, &Identity{ClientID: "officer-017"}, "by-id"},
		{"unknown ClientID falls back", inv, &Identity{ClientID: "officer-999"}, "investigators"},
		{"certificate by name", other, &Identity{CertNames: []string{"sha256:00", "phone-1.devices.test"}}, "by-cert"},
		{"certificate by hash", other, &Identity{CertNames: []string{"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}, "by-cert"},
		{"certificate beats ClientID", other, &Identity{ClientID: "officer-017", CertNames: []string{"phone-1.devices.test"}}, "by-cert"},
		{"unknown certificate, known ClientID", other, &Identity{ClientID: "officer-017", CertNames: []string{"phone-9.devices.test"}}, "by-id"},
		{"unknown certificate falls back", inv, &Identity{CertNames: []string{"phone-9.devices.test"}}, "investigators"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.GroupFor(tt.client, tt.id).Name; got != tt.want {
				t.Errorf("group %q, want %q", got, tt.want)
			}
			d := p.DecideFor(tt.client, tt.id, "www.tiktok.com")
			wantAction := ActionBlock
			if tt.want != "default" && tt.want != "kids" && tt.want != "one-phone" {
				wantAction = ActionExempt
			}
			if d.Action != wantAction {
				t.Errorf("www.tiktok.com: %v, want %v", d.Action, wantAction)
			}
		})
	}
	if d := p.DecideFor(netip.MustParseAddr("192.0.2.1"), &Identity{ClientID: "officer-017"}, "www.tiktok.com"); d.Action != ActionRefuse {
		t.Errorf("outside allow_clients with a ClientID: %v, want refused", d.Action)
	}
}
