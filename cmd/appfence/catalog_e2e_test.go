package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/internal/dnstest"
)

// lookAlikes are names next to catalog apps that no app may block: other
// services under an app's parent domain, shared CDN and cloud names the
// app files exclude, and names that only look like an app's.
var lookAlikes = []string{
	"tiktok.com.evil.example", "nottiktok.com", "tiktok-com.example", "mytiktok.com",
	"capcut.com.example", "notcapcut.com",
	"wechat.com.evil.example", "notwechat.com", "tencent.com", "qcloud.com", "gtimg.cn", "qpic.cn", "tenpay.com",
	"weixin.qq.com.evil.example", "qq.com.example", "news.qq.com", "v.qq.com",
	"sina.com.cn", "sinaimg.cn", "t.cn", "notweibo.com",
	"baidubce.com", "bcebos.com", "shifen.com", "duxiaoman.com", "notbaidu.com",
	"telegram.org.evil.example", "nottelegram.org",
	"kaspersky.com.evil.example", "deepseek.com.evil.example", "notdeepseek.com",
	"ltwebstatic.com", "temu.com.example",
	"akamaized.net", "upos-hz-mirrorakam.akamaized.net", "cloudfront.net", "d1nu566dreq9vj.cloudfront.net",
	"intsig.com", "camcard.com", "uc123.com", "duba.com", "zcool.com.cn", "acg.tv",
	"bilibili.com.evil.example", "likee.com.evil.example", "bigo.tv.example",
	"google.com", "apple.com", "microsoft.com", "example.com",
}

// TestEndToEndCatalog runs the binary with three groups and asks over UDP:
// 127.0.0.4 blocks every catalog app through set names (bytedance,
// india-2020, ...), and each app's names get the block answer while every
// look-alike resolves; 127.0.0.3 blocks only qq, and WeChat's names under
// qq.com still resolve; 127.0.0.2 is an allowlist group of the three
// essentials apps, and each essentials name resolves while anything else is
// "not approved".
func TestEndToEndCatalog(t *testing.T) {
	set, err := blocklists.Load(blocklists.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var blocked, essentials []string // names the catalog's apps claim
	var records []string
	for _, a := range set.Apps {
		for _, d := range append(a.Domains, a.Exact...) {
			names := []string{d.Name}
			if d.Kind == blocklists.KindDomain {
				names = append(names, "probe."+d.Name)
			}
			for _, n := range names {
				records = append(records, n+" 300 IN A 192.0.2.1")
			}
			switch {
			case strings.HasPrefix(a.Name, "essentials-"):
				essentials = append(essentials, names...)
			case a.Name != "encrypted-dns" && a.Name != "tiktok":
				blocked = append(blocked, names...)
			}
		}
	}
	blocked = append(blocked, "tiktok.com.", "www.tiktok.com.", "capcut.com.")
	for _, n := range lookAlikes {
		records = append(records, n+". 300 IN A 192.0.2.2")
	}
	for _, n := range []string{"weixin.qq.com.", "wx.qq.com.", "im.qq.com.", "qq.com."} {
		records = append(records, n+" 300 IN A 192.0.2.3")
	}
	bin := buildBinary(t)
	up := dnstest.NewUpstream(t, records...)
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "appfence.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = ["127.0.0.1:%d"]

[upstream]
servers = ["%s"]

[blocking]
lists = []
block = []

[[group]]
name = "banned"
clients = ["127.0.0.4"]
block = ["bytedance", "india-2020", "tencent", "gov-2025", "gov-ukraine-2024", "us-bod-17-01", "shopping-cn", "bilibili"]

[[group]]
name = "qq-only"
clients = ["127.0.0.3"]
block = ["qq"]

[[group]]
name = "managed"
clients = ["127.0.0.2"]
mode = "allowlist"
allow = ["essentials"]

[metrics]
listen = ""
`, port, up.Addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := startServe(t, bin, cfg, addr)
	defer s.stop(t)

	ask := func(from, name string) (*dns.Msg, string) {
		t.Helper()
		c := dnstest.Client{Local: from}
		r, err := c.Exchange(context.Background(), "udp", addr, dnstest.NewQuery(dns.Fqdn(name), dns.TypeA, true, false))
		if err != nil {
			t.Fatalf("%s from %s: %v", name, from, err)
		}
		var text string
		if o := r.IsEdns0(); o != nil {
			for _, e := range o.Option {
				if ede, ok := e.(*dns.EDNS0_EDE); ok && ede.InfoCode == dns.ExtendedErrorCodeBlocked {
					text = ede.ExtraText
				}
			}
		}
		return r, text
	}
	resolves := func(r *dns.Msg) bool { return r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 }

	for _, n := range blocked {
		if r, _ := ask("127.0.0.4", n); resolves(r) {
			t.Errorf("banned group: %s resolves, want the block answer", n)
		}
	}
	for _, n := range lookAlikes {
		if r, _ := ask("127.0.0.4", n); !resolves(r) {
			t.Errorf("banned group: look-alike %s got %s, want it resolved", n, dns.RcodeToString[r.Rcode])
		}
	}
	for _, tc := range []struct {
		name    string
		blocked bool
	}{{"qq.com", true}, {"im.qq.com", true}, {"weixin.qq.com", false}, {"wx.qq.com", false}} {
		if r, _ := ask("127.0.0.3", tc.name); resolves(r) == tc.blocked {
			t.Errorf("qq-only group: %s resolves=%v, want %v", tc.name, resolves(r), !tc.blocked)
		}
	}
	for _, n := range essentials {
		if r, _ := ask("127.0.0.2", n); !resolves(r) {
			t.Errorf("managed group: essentials name %s got %s, want it resolved", n, dns.RcodeToString[r.Rcode])
		}
	}
	for _, n := range append([]string{"tiktok.com", "probe.deepseek.com"}, lookAlikes...) {
		r, text := ask("127.0.0.2", n)
		if resolves(r) || text != "not approved: group=managed" {
			t.Errorf("managed group: %s got %s (EDE %q), want the block answer, not approved", n, dns.RcodeToString[r.Rcode], text)
		}
	}
}
