package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
)

// msg builds an upstream answer with records in zone-file syntax.
func msg(t *testing.T, records ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("q.example.org.", dns.TypeA)
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatalf("%q: %v", r, err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func TestFindings(t *testing.T) {
	p := build(t, cfgText)
	lark := p.Set.App("lark")
	tests := []struct {
		name    string
		records []string
		want    string // "app via found" per finding
	}{
		{"clean", []string{"q.example.org. 60 IN CNAME a.example.net.", "a.example.net. 60 IN A 192.0.2.1"}, ""},
		{"cname chain", []string{"q.example.org. 60 IN CNAME a.example.net.", "a.example.net. 60 IN CNAME X.TikTokCDN.com.", "x.tiktokcdn.com. 60 IN A 192.0.2.1"},
			"tiktok cname x.tiktokcdn.com"},
		{"one finding per app, the first", []string{"q.example.org. 60 IN CNAME a.video.test.", "a.video.test. 60 IN CNAME b.video.test."},
			"video cname a.video.test"},
		{"several apps in order", []string{"q.example.org. 60 IN CNAME chat.test.", "chat.test. 60 IN CNAME www.tiktok.com."},
			"chat cname chat.test|tiktok cname www.tiktok.com"},
		{"allow rule target is no finding", []string{"q.example.org. 60 IN CNAME help.video.test."}, ""},
		{"escaped dot stays in its label", []string{`q.example.org. 60 IN CNAME tiktok\.com.example.net.`}, ""},
		{"dname", []string{"example.org. 60 IN DNAME tiktok.com.", "q.example.org. 60 IN CNAME q.tiktok.com."},
			"tiktok dname tiktok.com"},
		{"https target", []string{"q.example.org. 60 IN HTTPS 1 svc.video.test. alpn=h2"}, "video svcb svc.video.test"},
		{"https alias", []string{"q.example.org. 60 IN HTTPS 0 tiktok.com."}, "tiktok svcb tiktok.com"},
		{"svcb self", []string{"q.example.org. 60 IN SVCB 1 . alpn=h2"}, ""},
		// lark is in the catalog but has no action in this config.
		{"app without an action", []string{"q.example.org. 60 IN CNAME www.larksuite.com."}, ""},
	}
	if p.counted[lark.ID] {
		t.Fatal("lark is counted")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range p.Findings(msg(t, tt.records...)) {
				got = append(got, fmt.Sprintf("%s %s %s", p.Set.Apps[f.App].Name, f.Via, f.Found))
			}
			if s := strings.Join(got, "|"); s != tt.want {
				t.Errorf("findings %q, want %q", s, tt.want)
			}
		})
	}
}

func TestFindingsAddresses(t *testing.T) {
	p := build(t, cfgText+"\n") // encrypted-dns is not counted here
	if f := p.Findings(msg(t, "q.example.org. 60 IN A 8.8.8.8")); f != nil {
		t.Errorf("8.8.8.8 with encrypted-dns not counted: %v", f)
	}
	p = build(t, strings.Replace(cfgText, `block = ["games"]`+"\n\n[[group]]\nname = \"kids\"", `block = ["games", "encrypted-dns"]`+"\n\n[[group]]\nname = \"kids\"", 1))
	tests := []struct {
		records []string
		want    string
	}{
		{[]string{"q.example.org. 60 IN A 8.8.8.8"}, "encrypted-dns ip 8.8.8.8"},
		{[]string{"q.example.org. 60 IN AAAA 2620:fe::fe"}, "encrypted-dns ip 2620:fe::fe"},
		{[]string{"q.example.org. 60 IN AAAA ::ffff:9.9.9.9"}, "encrypted-dns ip 9.9.9.9"},
		{[]string{"q.example.org. 60 IN HTTPS 1 . ipv4hint=192.0.2.1,1.1.1.1"}, "encrypted-dns ip 1.1.1.1"},
		{[]string{"q.example.org. 60 IN HTTPS 1 . ipv6hint=2001:4860:4860::8888"}, "encrypted-dns ip 2001:4860:4860::8888"},
		{[]string{"q.example.org. 60 IN A 8.8.8.9"}, ""},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range p.Findings(msg(t, tt.records...)) {
			got = append(got, fmt.Sprintf("%s %s %s", p.Set.Apps[f.App].Name, f.Via, f.Found))
		}
		if s := strings.Join(got, "|"); s != tt.want {
			t.Errorf("%v: findings %q, want %q", tt.records, s, tt.want)
		}
	}
}

func TestInspect(t *testing.T) {
	p := build(t, cfgText)
	answer := msg(t, "q.example.org. 60 IN CNAME chat.test.", "chat.test. 60 IN CNAME www.tiktok.com.")
	found := p.Findings(answer)
	tests := []struct {
		client, name string
		want         string // action app via found
	}{
		// Block outranks monitor, though the monitored app comes first.
		{"10.1.2.3", "q.example.org", "blocked tiktok cname www.tiktok.com"},
		// Investigators are exempted from tiktok: exempted outranks monitored.
		{"10.20.30.5", "q.example.org", "exempted tiktok cname www.tiktok.com"},
		// Kids are exempted from chat and tiktok is blocked for them.
		{"10.9.1.1", "q.example.org", "blocked tiktok cname www.tiktok.com"},
		// The query name's own decision stays when it ranks as high.
		{"10.1.2.3", "games.test", "blocked games  "},
	}
	for _, tt := range tests {
		d := p.Decide(netip.MustParseAddr(tt.client), tt.name)
		p.Inspect(&d, found)
		if got := fmt.Sprintf("%s %s %s %s", d.Action, d.App(), d.Via, d.Found); got != tt.want {
			t.Errorf("%s %s: %q, want %q", tt.client, tt.name, got, tt.want)
		}
	}
	d := p.Decide(netip.MustParseAddr("10.1.2.3"), "q.example.org")
	p.Inspect(&d, found)
	if d.Match.Rule != "tiktok.com" || d.Match.Kind != blocklists.KindDomain || !strings.HasPrefix(d.Match.Origin.File, "builtin:") {
		t.Errorf("match %+v, want the tiktok.com rule of the catalog", d.Match)
	}
	// An allowed name's answer pointing into the same app stays allowed.
	d = p.Decide(netip.MustParseAddr("10.1.2.3"), "help.video.test")
	if p.Inspect(&d, p.Findings(msg(t, "help.video.test. 60 IN CNAME cdn.video.test."))) || d.Action != ActionResolve {
		t.Errorf("allowed name: %+v", d)
	}
	if n := testing.AllocsPerRun(100, func() {
		d := p.Decide(netip.MustParseAddr("10.1.2.3"), "q.example.org")
		p.Inspect(&d, found)
	}); n != 0 {
		t.Errorf("Inspect allocates %v times", n)
	}

	off := build(t, strings.Replace(cfgText, "[blocking]", "[blocking]\ninspect_cnames = false", 1))
	if off.Inspects() || off.Findings(answer) != nil {
		t.Error("inspect_cnames = false still inspects")
	}
}

func TestInspectIPRangeMatch(t *testing.T) {
	p := build(t, strings.Replace(cfgText, `block = ["games"]`+"\n\n[[group]]\nname = \"kids\"", `block = ["games", "encrypted-dns"]`+"\n\n[[group]]\nname = \"kids\"", 1))
	d := p.Decide(netip.MustParseAddr("10.1.2.3"), "q.example.org")
	if !p.Inspect(&d, p.Findings(msg(t, "q.example.org. 60 IN A 9.9.9.9"))) {
		t.Fatalf("not blocked: %+v", d)
	}
	if d.Action != ActionBlock || d.App() != "encrypted-dns" || d.Match.Rule != "9.9.9.9/32" || d.Match.Kind != blocklists.KindIPRange ||
		d.Via != ViaIP || d.Found != "9.9.9.9" || !strings.HasPrefix(d.Match.Origin.String(), "builtin:encrypted-dns.toml:") {
		t.Errorf("decision %+v", d)
	}
	e := p.Explain(netip.MustParseAddr("10.1.2.3"), "9.9.9.9", dns.TypeA)
	if e.Action != "blocked" || e.App != "encrypted-dns" || e.Rule != "9.9.9.9/32" || e.Kind != "ip_range" || e.Via != "ip" ||
		!strings.Contains(e.Answer, "replaced by the block answer") {
		t.Errorf("Explain(9.9.9.9) = %+v", e)
	}
	e = p.Explain(netip.MustParseAddr("10.20.30.5"), "9.9.9.9", dns.TypeA)
	if e.Action != "resolved" || e.Answer != "an answer with this address is passed on" {
		t.Errorf("Explain(9.9.9.9) for investigators = %+v", e)
	}
}

func TestCanaryDecisions(t *testing.T) {
	p := build(t, cfgText)
	for _, client := range []string{"10.1.2.3", "10.20.30.5", "10.9.1.1", "10.20.30.99"} {
		for _, name := range []string{"use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"} {
			d := p.Decide(netip.MustParseAddr(client), name)
			if d.Action != ActionBlock || d.App() != CanaryApp || d.Via != ViaCanary || d.Match.Kind != blocklists.KindExact {
				t.Errorf("%s %s: %+v, want blocked canary", client, name, d)
			}
		}
	}
	for _, name := range []string{"mask-api.icloud.com", "x.use-application-dns.net", "icloud.com"} {
		if d := p.Decide(netip.MustParseAddr("10.1.2.3"), name); d.Action != ActionResolve {
			t.Errorf("%s: %+v, want resolved (not a canary; encrypted-dns not blocked)", name, d)
		}
	}
	e := p.Explain(netip.MustParseAddr("10.20.30.5"), "use-application-dns.net", dns.TypeA)
	if e.Action != "blocked" || e.Via != "canary" || !strings.HasPrefix(e.Answer, "NXDOMAIN (a canary") {
		t.Errorf("Explain(canary) = %+v", e)
	}

	exempt := build(t, strings.Replace(strings.Replace(cfgText, `block = ["video", "tiktok"]`, `block = ["video", "tiktok", "encrypted-dns"]`, 1),
		`allow = ["video", "tiktok"]`, `allow = ["video", "tiktok", "encrypted-dns"]`, 1))
	if d := exempt.Decide(netip.MustParseAddr("10.20.30.5"), "use-application-dns.net"); d.Action != ActionExempt || d.Via != ViaCanary {
		t.Errorf("group exempting encrypted-dns: %+v, want exempted", d)
	}
	none := build(t, `
[server]
allow_clients = ["10.0.0.0/8"]
[upstream]
servers = ["127.0.0.1:53"]
[blocking]
lists = []
block = []
monitor = ["tiktok"]
`)
	if d := none.Decide(netip.MustParseAddr("10.1.2.3"), "use-application-dns.net"); d.Action != ActionResolve || d.Via != ViaName {
		t.Errorf("nothing blocked: %+v, want resolved", d)
	}
	if n := testing.AllocsPerRun(100, func() { p.Decide(netip.MustParseAddr("10.1.2.3"), "mask.icloud.com") }); n != 0 {
		t.Errorf("a canary decision allocates %v times", n)
	}
}

func TestUpstreamNameWarnings(t *testing.T) {
	cfg := func(servers string) string {
		return strings.Replace(strings.Replace(cfgText, `servers = ["127.0.0.1:53"]`, "servers = "+servers, 1),
			`block = ["video", "tiktok"]`, `block = ["video", "tiktok", "encrypted-dns"]`, 1)
	}
	p := build(t, cfg(`["tls://dns.google", "https://dns.quad9.net/dns-query", "https://doh.example.test/dns-query"]`))
	joined := strings.Join(p.Warnings, "\n")
	for _, want := range []string{`upstream "tls://dns.google": its host dns.google is blocked for group "default" (app "encrypted-dns")`,
		`upstream "https://dns.quad9.net/dns-query": its host dns.quad9.net is blocked`} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", joined, want)
		}
	}
	if strings.Contains(joined, "doh.example.test") {
		t.Errorf("warning for an unblocked name: %q", joined)
	}
	p = build(t, cfg(`["tls://8.8.8.8#dns.google", "https://dns.quad9.net/dns-query#9.9.9.9"]`))
	for _, w := range p.Warnings {
		if strings.Contains(w, "upstream") {
			t.Errorf("warning for an upstream written as an address: %s", w)
		}
	}
}
