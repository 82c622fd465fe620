package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/listgen"
)

const apps = `
[[app]]
name = "video"
domains = ["video.test"]
allow = ["help.video.test"]

[[app]]
name = "chat"
domains = ["chat.test"]

[[app]]
name = "games"
domains = ["games.test"]

[[app]]
name = "shadow"
domains = ["cdn.video.test"]
`

const cfgText = `
[server]
allow_clients = ["10.0.0.0/8", "fd00::/8"]

[upstream]
servers = ["127.0.0.1:53"]

[blocking]
lists = ["apps.toml"]
block = ["video", "tiktok"]
monitor = ["chat"]

[[group]]
name = "investigators"
clients = ["10.20.30.0/24", "10.20.31.17", "fd00:20:30::/64"]
allow = ["video", "tiktok"]

[[group]]
name = "one-phone"
clients = ["10.20.30.99"]
block = ["games"]

[[group]]
name = "default"
block = ["games"]

[[group]]
name = "kids"
clients = ["10.9.0.0/16"]
allow = ["chat"]
`

func build(t testing.TB, cfg string) *Policy {
	t.Helper()
	return buildIn(t, t.TempDir(), apps, cfg)
}

// buildIn writes appsText to apps.toml in dir and compiles the config cfg
// as if read from dir.
func buildIn(t testing.TB, dir, appsText, cfg string) *Policy {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "apps.toml"), []byte(appsText), 0o644)
	c, err := config.Parse(filepath.Join(dir, "appfence.toml"), []byte(cfg), dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	p := build(t, cfgText)
	tests := []struct {
		client string
		name   string
		group  string
		action Action
		app    string
	}{
		{"10.1.2.3", "www.video.test", "default", ActionBlock, "video"},
		{"10.1.2.3", "www.tiktok.com", "default", ActionBlock, "tiktok"},
		{"10.1.2.3", "help.video.test", "default", ActionResolve, "video"}, // allow rule
		{"10.1.2.3", "chat.test", "default", ActionMonitor, "chat"},
		{"10.1.2.3", "games.test", "default", ActionBlock, "games"},
		{"10.1.2.3", "example.org", "default", ActionResolve, ""},
		{"10.20.30.5", "www.video.test", "investigators", ActionExempt, "video"},
		{"10.20.30.5", "www.tiktok.com", "investigators", ActionExempt, "tiktok"},
		{"10.20.30.5", "chat.test", "investigators", ActionMonitor, "chat"},
		{"10.20.30.5", "games.test", "investigators", ActionResolve, ""}, // default's block is not theirs, and games has no action for them
		{"10.20.31.17", "www.tiktok.com", "investigators", ActionExempt, "tiktok"},
		{"10.20.31.18", "www.tiktok.com", "default", ActionBlock, "tiktok"},
		{"fd00:20:30::7", "www.tiktok.com", "investigators", ActionExempt, "tiktok"},
		{"::ffff:10.20.30.5", "www.tiktok.com", "investigators", ActionExempt, "tiktok"},
		// the longest prefix wins: a /32 inside investigators' /24
		{"10.20.30.99", "www.tiktok.com", "one-phone", ActionBlock, "tiktok"},
		{"10.20.30.99", "games.test", "one-phone", ActionBlock, "games"},
		{"10.9.1.1", "chat.test", "kids", ActionExempt, "chat"},
		// shadow has no action for these groups: its longer rule does not
		// hide video's block rule (nor video's exemption)
		{"10.1.2.3", "x.cdn.video.test", "default", ActionBlock, "video"},
		{"10.20.30.5", "x.cdn.video.test", "investigators", ActionExempt, "video"},
		{"192.0.2.1", "www.tiktok.com", "", ActionRefuse, ""},
		{"fe80::1", "example.org", "", ActionRefuse, ""},
	}
	for _, tt := range tests {
		d := p.Decide(netip.MustParseAddr(tt.client).Unmap(), tt.name)
		group := ""
		if d.Group != nil {
			group = d.Group.Name
		}
		if d.Action != tt.action || group != tt.group || d.App() != tt.app {
			t.Errorf("Decide(%s, %s) = %s group=%q app=%q, want %s group=%q app=%q",
				tt.client, tt.name, d.Action, group, d.App(), tt.action, tt.group, tt.app)
		}
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := build(t, cfgText)
	client := netip.MustParseAddr("10.20.30.5")
	for _, name := range []string{"www.tiktok.com", "example.org", "help.video.test"} {
		if n := testing.AllocsPerRun(100, func() { p.Decide(client, name) }); n != 0 {
			t.Errorf("Decide(%q) allocates %v times", name, n)
		}
	}
}

func TestUnknownApps(t *testing.T) {
	cfg := strings.Replace(cfgText, `monitor = ["chat"]`, `monitor = ["chat", "facebok"]`, 1)
	cfg = strings.Replace(cfg, `allow = ["chat"]`, `allow = ["chatt"]`, 1)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "apps.toml"), []byte(apps), 0o644)
	path := filepath.Join(dir, "appfence.toml")
	c, err := config.Parse(path, []byte(cfg), dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := blocklists.Load(blocklists.Options{Globs: c.Blocking.Lists})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(c, set)
	if err == nil {
		t.Fatal("no error for unknown apps")
	}
	for _, want := range []string{path + `:11: blocking.monitor[1]: unknown app "facebok"`, path + `:30: group[3].allow[0]: unknown app "chatt"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
}

func TestWarnings(t *testing.T) {
	p := build(t, cfgText+`
[[group]]
name = "outside"
clients = ["192.0.2.0/24"]
allow = ["games"]
`)
	joined := strings.Join(p.Warnings, "\n")
	for _, want := range []string{`group "outside": clients 192.0.2.0/24 are outside server.allow_clients`, `group "outside" allows app "games", which is not blocked`} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q lack %q", joined, want)
		}
	}
}

func TestExplain(t *testing.T) {
	p := build(t, cfgText)
	e := p.Explain(netip.MustParseAddr("10.1.2.3"), "WWW.Video.Test.", 28)
	if e.Name != "www.video.test" || e.Type != "AAAA" || e.Group != "default" || e.Action != "blocked" ||
		e.App != "video" || e.Rule != "video.test" || e.Kind != "domain" || !strings.HasSuffix(e.Origin, "apps.toml:4") ||
		!strings.HasPrefix(e.Answer, "NXDOMAIN") {
		t.Errorf("Explain = %+v", e)
	}
}

func BenchmarkDecide(b *testing.B) {
	p := build(b, cfgText)
	client := netip.MustParseAddr("10.20.30.5")
	names := []string{"www.tiktok.com", "example.org", "v16-webapp.tiktokcdn.com", "a.b.c.d.example.net"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Decide(client, names[i&3])
		i++
	}
}

// BenchmarkDecide1M decides queries with 1,000,000 list rules loaded (an
// app "big" blocked for every group, from a listgen list) besides the
// test apps and the catalog: clients of three groups, names that hit a
// rule, lie under one, and miss. blocked-% is the share of queries
// blocked, to show the mix.
func BenchmarkDecide1M(b *testing.B) {
	dir := b.TempDir()
	names := listgen.Names(1, 1_000_000)
	if err := listgen.WriteFile(filepath.Join(dir, "big.txt"), listgen.FormatDomains, names); err != nil {
		b.Fatal(err)
	}
	big := "[[app]]\nname = \"big\"\nsources = [{ file = \"big.txt\", format = \"domains\" }]\n"
	p := buildIn(b, dir, apps+big, strings.Replace(cfgText, `block = ["video", "tiktok"]`, `block = ["video", "tiktok", "big"]`, 1))
	type query struct {
		client netip.Addr
		name   string
	}
	clients := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.20.30.5"), netip.MustParseAddr("10.9.1.1")}
	var qs []query
	for i := 0; i < 1000; i++ {
		hit := names[(i*7919)%len(names)]
		for j, name := range []string{hit, "www." + hit, "x" + hit, "www.example" + strconv.Itoa(i) + ".org",
			"v16-webapp.tiktokcdn.com", "help.video.test"} {
			qs = append(qs, query{clients[(i+j)%len(clients)], name})
		}
	}
	names = nil
	blocked := 0
	for _, q := range qs {
		if p.Decide(q.client, q.name).Action == ActionBlock {
			blocked++
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := qs[i%len(qs)]
		p.Decide(q.client, q.name)
		i++
	}
	b.ReportMetric(100*float64(blocked)/float64(len(qs)), "blocked-%")
}
