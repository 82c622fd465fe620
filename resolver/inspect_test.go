package resolver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/dnstest"
	"github.com/appfence/appfence/internal/promtest"
	"github.com/appfence/appfence/querylog"
)

// inspectConfig is the config of the answer inspection tests: three client
// groups, default (127.0.0.1), investigators (127.0.0.2, exempted from
// tiktok) and locked (127.0.0.3, which also blocks the encrypted-dns app),
// the video app of inspectApps blocked for everyone, and lark monitored.
// %s are the upstream, the app file and extra [blocking] lines; sections
// can be appended.
const inspectConfig = `
[server]
listen = ["127.0.0.1:0"]
allow_clients = ["127.0.0.1/32", "127.0.0.2/32", "127.0.0.3/32", "::1/128"]

[upstream]
servers = ["%s"]
timeout = "500ms"

[blocking]
lists = [%q]
block = ["tiktok", "video"]
monitor = ["lark"]
%s

[[group]]
name = "investigators"
clients = ["127.0.0.2"]
allow = ["tiktok"]

[[group]]
name = "locked"
clients = ["127.0.0.3"]
block = ["encrypted-dns"]

[metrics]
listen = ""
`

// inspectApps defines the video app: a domain with an allowed name under
// it, a Unicode domain (punycode: xn--bcher-kva.example) and IP ranges.
const inspectApps = `
[[app]]
name = "video"
domains = ["video.test", "bücher.example"]
allow = ["help.video.test"]
ip_ranges = ["192.0.2.128/25", "2001:db8:bad::/48"]
`

// inspectRecords are the upstream's zone for the inspection tests. No
// address in them is ever contacted: they are answer data.
var inspectRecords = []string{
	// An allowed name behind TikTok's CDN names.
	"video.example.test. 300 IN CNAME tiktokv.com.edgekey.net.",
	"tiktokv.com.edgekey.net. 300 IN CNAME e1234.a.akamaiedge.net.",
	"e1234.a.akamaiedge.net. 20 IN A 192.0.2.40",
	"img.example.test. 300 IN CNAME p16-sign-va.tiktokcdn.com.",
	"p16-sign-va.tiktokcdn.com. 300 IN A 192.0.2.41",
	// Letter case and escapes in targets.
	"mixed.example.test. 300 IN CNAME Cdn.TikTokV.COM.EdgeKey.NET.",
	"cdn.tiktokv.com.edgekey.net. 300 IN A 192.0.2.42",
	`escaped.example.test. 300 IN CNAME tiktokv\046com.edgekey.net.`,
	`tiktokv\046com.edgekey.net. 300 IN A 192.0.2.43`,
	// DNAME: every name under dname.example.test is a name under tiktok.com.
	"dname.example.test. 300 IN DNAME tiktok.com.",
	"www.tiktok.com. 300 IN A 192.0.2.10",
	// HTTPS and SVCB targets and address hints.
	"svc.example.test. 300 IN HTTPS 1 v16.tiktokcdn.com. alpn=h2",
	"alias.example.test. 300 IN HTTPS 0 www.tiktok.com.",
	"plain.example.test. 300 IN HTTPS 1 . alpn=h2,h3",
	"hint.example.test. 300 IN HTTPS 1 . ipv4hint=192.0.2.130",
	"_dns.resolver.example.test. 300 IN SVCB 1 dns.google. alpn=h2",
	// Addresses in ip_ranges.
	"vid.example.test. 300 IN A 192.0.2.150",
	"vid6.example.test. 300 IN AAAA 2001:db8:bad::1",
	"quad9.example.test. 300 IN A 9.9.9.9",
	"dns.google. 300 IN A 8.8.8.8",
	// An allowed name of the video app pointing into the app, and a name
	// under it pointing at another app.
	"help.video.test. 300 IN CNAME cdn.video.test.",
	"cdn.video.test. 300 IN A 192.0.2.200",
	"x.help.video.test. 300 IN CNAME www.tiktok.com.",
	// The Unicode domain of the video app.
	"shop.example.test. 300 IN CNAME www.xn--bcher-kva.example.",
	"www.xn--bcher-kva.example. 300 IN A 192.0.2.60",
	// A monitored app behind an allowed name.
	"lark.example.test. 300 IN CNAME www.larksuite.com.",
	"www.larksuite.com. 300 IN A 192.0.2.30",
	// Clean answers.
	"www.example.test. 300 IN A 192.0.2.20",
	"chain.example.test. 300 IN CNAME www.example.test.",
	// Answers that cannot be cached (TTL 0).
	"zero.example.test. 0 IN CNAME www.tiktok.com.",
}

// inspectEnv is a running resolver for the inspection tests.
type inspectEnv struct {
	*env
	apps string // the app file
}

// startInspect starts an upstream with inspectRecords and the resolver with
// inspectConfig, blocking as extra [blocking] lines and more appended.
func startInspect(t *testing.T, blocking, more string) *inspectEnv {
	t.Helper()
	apps := filepath.Join(t.TempDir(), "apps.toml")
	if err := os.WriteFile(apps, []byte(inspectApps), 0o644); err != nil {
		t.Fatal(err)
	}
	up := dnstest.NewUpstream(t, inspectRecords...)
	e := startEnvWith(t, up, fmt.Sprintf(inspectConfig, up.Addr, apps, blocking)+more)
	return &inspectEnv{env: e, apps: apps}
}

// swap installs the policy of inspectConfig with blocking as the extra
// [blocking] lines, as a reload does; the cache stays. replace holds pairs
// of old and new text to change in the config.
func (e *inspectEnv) swap(t *testing.T, blocking string, replace ...string) {
	t.Helper()
	text := strings.NewReplacer(replace...).Replace(fmt.Sprintf(inspectConfig, e.upstream.Addr, e.apps, blocking))
	e.handler.Swap(&State{Policy: loadPolicy(t, text), Upstream: e.handler.State().Upstream})
}

// clientGroups are the inspection tests' clients by group.
var clientGroups = map[string]string{"127.0.0.1": "default", "127.0.0.2": "investigators", "127.0.0.3": "locked"}

// expectBlocked checks that resp is the block answer of app for a rule
// found via where ("cname:tiktokv.com.edgekey.net", "ip:192.0.2.150"),
// sent to client: NXDOMAIN, no records, an SOA owned by the question name
// with the block TTL, and EDE 15 saying all that.
func expectBlocked(t *testing.T, resp *dns.Msg, client, app, via string) {
	t.Helper()
	q := resp.Question[0]
	if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 {
		t.Errorf("%s from %s: %s %v, want NXDOMAIN without records", q.Name, client, dns.RcodeToString[resp.Rcode], resp.Answer)
		return
	}
	soa := soaOf(t, resp)
	if !strings.EqualFold(soa.Hdr.Name, q.Name) || soa.Hdr.Ttl != 60 || soa.Ns != soaMName {
		t.Errorf("%s from %s: SOA %v, want one of AppFence owned by the question name with TTL 60", q.Name, client, soa)
	}
	want := fmt.Sprintf("blocked: app=%s group=%s via=%s", app, clientGroups[client], via)
	if x := ede(resp); x == nil || x.InfoCode != dns.ExtendedErrorCodeBlocked || x.ExtraText != want {
		t.Errorf("%s from %s: EDE %v, want 15 %q", q.Name, client, x, want)
	}
}

// expectAnswer checks that resp is the upstream's answer: NOERROR with
// the records wanted (their data, in order), and no EDE.
func expectAnswer(t *testing.T, resp *dns.Msg, client string, records ...string) {
	t.Helper()
	q := resp.Question[0]
	var got []string
	for _, rr := range resp.Answer {
		got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	if resp.Rcode != dns.RcodeSuccess || !slices.Equal(got, records) || ede(resp) != nil {
		t.Errorf("%s from %s: %s %q EDE %v, want NOERROR %q", q.Name, client, dns.RcodeToString[resp.Rcode], got, ede(resp), records)
	}
}

// TestInspectCNAMEToTikTokCDN is the case the feature is for: an allowed
// name whose answer goes through TikTok's CDN names is blocked for the
// default group and answered for the exempted group, first from the
// upstream and then from the cache, which holds the real answer; the block
// is counted under tiktok with the CNAME that matched.
func TestInspectCNAMEToTikTokCDN(t *testing.T) {
	e := startInspect(t, "", "")
	logPath := filepath.Join(t.TempDir(), "query.log")
	ql, err := querylog.Open(logPath, querylog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.handler.SetQueryLog(ql)
	real := []string{"tiktokv.com.edgekey.net.", "e1234.a.akamaiedge.net.", "192.0.2.40"}
	const via = "cname:tiktokv.com.edgekey.net"
	for i, netw := range []string{"udp", "tcp"} {
		// The first round misses the cache (one upstream query, shared by
		// both groups), the second is answered from it.
		expectBlocked(t, e.ask(t, netw, "127.0.0.1", dnstest.NewQuery("Video.Example.TEST.", dns.TypeA, true, false)), "127.0.0.1", "tiktok", via)
		expectAnswer(t, e.ask(t, netw, "127.0.0.2", dnstest.NewQuery("video.example.test.", dns.TypeA, true, false)), "127.0.0.2", real...)
		if n := e.upstream.Asked("video.example.test."); n != 1 {
			t.Errorf("round %d: upstream asked %d times, want once: the cache keeps the upstream's answer", i+1, n)
		}
	}
	if hits := e.cacheCount("hit"); hits != 3 {
		t.Errorf("%v cache hits, want 3 (the exempted client's first query and both of the second round)", hits)
	}
	// The same through a tiktokcdn.com name, without EDNS (no EDE).
	resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("img.example.test.", dns.TypeA, false, false))
	if resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 || resp.IsEdns0() != nil {
		t.Errorf("img.example.test: %v, want NXDOMAIN without OPT", resp)
	}
	waitObserved(t, e.env, 5)
	e.handler.SetQueryLog(nil)
	if err := ql.Close(); err != nil {
		t.Fatal(err)
	}

	fams := promtest.Gather(t, e.metrics.Registry)
	apps := fams.Values("appfence_app_queries_total", "group", "app", "action")
	if apps["default/tiktok/blocked"] != 3 || apps["investigators/tiktok/exempted"] != 2 {
		t.Errorf("app queries %v, want default/tiktok/blocked 3 and investigators/tiktok/exempted 2", apps)
	}
	queries := fams.Values("appfence_queries_total", "group", "action")
	if queries["default/blocked"] != 3 || queries["default/resolved"] != 0 || queries["investigators/exempted"] != 2 {
		t.Errorf("queries %v, want default/blocked 3 and investigators/exempted 2", queries)
	}

	blocked := logLine{Client: "127.0.0.1", Transport: "udp", Group: "default", Name: "video.example.test", Type: "A", Action: "blocked",
		App: "tiktok", Rule: "tiktokv.com.edgekey.net", Via: "cname", Found: "tiktokv.com.edgekey.net", Rcode: "NXDOMAIN"}
	exempted := blocked
	exempted.Client, exempted.Group, exempted.Action, exempted.Rcode = "127.0.0.2", "investigators", "exempted", "NOERROR"
	blockedTCP, exemptedTCP := blocked, exempted
	blockedTCP.Transport, exemptedTCP.Transport = "tcp", "tcp"
	img := logLine{Client: "127.0.0.1", Transport: "udp", Group: "default", Name: "img.example.test", Type: "A", Action: "blocked",
		App: "tiktok", Rule: "tiktokcdn.com", Via: "cname", Found: "p16-sign-va.tiktokcdn.com", Rcode: "NXDOMAIN"}
	var got []logLine
	for _, l := range readQueryLog(t, logPath) {
		l.Time, l.DurationMS = "", 0
		got = append(got, l)
	}
	want := []logLine{blocked, blockedTCP, img, exempted, exemptedTCP}
	// Queries are observed after their answers are sent: lines may change
	// places.
	order := func(a, b logLine) int {
		return strings.Compare(a.Client+a.Name+a.Transport, b.Client+b.Name+b.Transport)
	}
	slices.SortFunc(got, order)
	slices.SortFunc(want, order)
	if !slices.Equal(got, want) {
		t.Errorf("query log:\n got %+v\nwant %+v", got, want)
	}
}

// TestInspectAnswers covers each record that can point at an app, for
// each group, over UDP (a cache miss) and then TCP (a hit).
func TestInspectAnswers(t *testing.T) {
	e := startInspect(t, "", "")
	tests := []struct {
		name  string
		qtype uint16
		// blocked maps a client to "app via" when it is blocked; the
		// other clients get the upstream's answer.
		blocked map[string]string
	}{
		{"mixed.example.test.", dns.TypeA, map[string]string{
			"127.0.0.1": "tiktok cname:cdn.tiktokv.com.edgekey.net", "127.0.0.3": "tiktok cname:cdn.tiktokv.com.edgekey.net"}},
		// An escaped dot joins two labels into one: not tiktokv.com.
		{"escaped.example.test.", dns.TypeA, nil},
		{"www.dname.example.test.", dns.TypeA, map[string]string{"127.0.0.1": "tiktok dname:tiktok.com", "127.0.0.3": "tiktok dname:tiktok.com"}},
		{"svc.example.test.", dns.TypeHTTPS, map[string]string{"127.0.0.1": "tiktok svcb:v16.tiktokcdn.com", "127.0.0.3": "tiktok svcb:v16.tiktokcdn.com"}},
		{"alias.example.test.", dns.TypeHTTPS, map[string]string{"127.0.0.1": "tiktok svcb:www.tiktok.com", "127.0.0.3": "tiktok svcb:www.tiktok.com"}},
		{"plain.example.test.", dns.TypeHTTPS, nil},
		{"hint.example.test.", dns.TypeHTTPS, map[string]string{
			"127.0.0.1": "video ip:192.0.2.130", "127.0.0.2": "video ip:192.0.2.130", "127.0.0.3": "video ip:192.0.2.130"}},
		{"_dns.resolver.example.test.", dns.TypeSVCB, map[string]string{"127.0.0.3": "encrypted-dns svcb:dns.google"}},
		{"vid.example.test.", dns.TypeA, map[string]string{
			"127.0.0.1": "video ip:192.0.2.150", "127.0.0.2": "video ip:192.0.2.150", "127.0.0.3": "video ip:192.0.2.150"}},
		{"vid6.example.test.", dns.TypeAAAA, map[string]string{
			"127.0.0.1": "video ip:2001:db8:bad::1", "127.0.0.2": "video ip:2001:db8:bad::1", "127.0.0.3": "video ip:2001:db8:bad::1"}},
		{"quad9.example.test.", dns.TypeA, map[string]string{"127.0.0.3": "encrypted-dns ip:9.9.9.9"}},
		// The name's own allow rule covers its app's names and addresses in
		// the answer, not another app's.
		{"help.video.test.", dns.TypeA, nil},
		{"x.help.video.test.", dns.TypeA, map[string]string{"127.0.0.1": "tiktok cname:www.tiktok.com", "127.0.0.3": "tiktok cname:www.tiktok.com"}},
		// A Unicode list entry matches its punycode form.
		{"shop.example.test.", dns.TypeA, map[string]string{
			"127.0.0.1": "video cname:www.xn--bcher-kva.example", "127.0.0.2": "video cname:www.xn--bcher-kva.example",
			"127.0.0.3": "video cname:www.xn--bcher-kva.example"}},
		// A monitored app is counted, not blocked.
		{"lark.example.test.", dns.TypeA, nil},
		{"chain.example.test.", dns.TypeA, nil},
		// An answer that is not cached is inspected all the same.
		{"zero.example.test.", dns.TypeA, map[string]string{"127.0.0.1": "tiktok cname:www.tiktok.com", "127.0.0.3": "tiktok cname:www.tiktok.com"}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.name, ".")+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
			var real []string // the upstream's answer, as the resolver passes it on
			for _, netw := range []string{"udp", "tcp"} {
				for _, client := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
					resp := e.ask(t, netw, client, dnstest.NewQuery(tt.name, tt.qtype, true, false))
					if b, ok := tt.blocked[client]; ok {
						app, via, _ := strings.Cut(b, " ")
						expectBlocked(t, resp, client, app, via)
						continue
					}
					if real == nil {
						if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
							t.Fatalf("%s from %s: %v, want the upstream's answer", tt.name, client, resp)
						}
						for _, rr := range resp.Answer {
							real = append(real, strings.TrimPrefix(rr.String(), rr.Header().String()))
						}
					}
					expectAnswer(t, resp, client, real...)
				}
			}
			want := 1 // then every client is answered from the cache
			if strings.HasPrefix(tt.name, "zero.") {
				want = 6 // not cached: every query is asked, to be inspected
			}
			if n := e.upstream.Asked(tt.name); n != want {
				t.Errorf("upstream asked %d times, want %d", n, want)
			}
		})
	}
	fams := promtest.Gather(t, e.metrics.Registry)
	apps := fams.Values("appfence_app_queries_total", "group", "app", "action")
	// lark.example.test was asked twice by each group.
	for _, g := range []string{"default", "investigators", "locked"} {
		if n := apps[g+"/lark/monitored"]; n != 2 {
			t.Errorf("%s/lark/monitored = %v, want 2 (via the CNAME)", g, n)
		}
	}
}

// TestInspectionFollowsThePolicy: the findings kept with a cached answer
// are those of one policy; after a reload the answer is looked at again,
// from the cache, without asking the upstream.
func TestInspectionFollowsThePolicy(t *testing.T) {
	e := startInspect(t, "", "")
	q := dnstest.NewQuery("video.example.test.", dns.TypeA, true, false)
	real := []string{"tiktokv.com.edgekey.net.", "e1234.a.akamaiedge.net.", "192.0.2.40"}
	expectBlocked(t, e.ask(t, "udp", "127.0.0.1", q), "127.0.0.1", "tiktok", "cname:tiktokv.com.edgekey.net")

	e.swap(t, `inspect_cnames = false`)
	expectAnswer(t, e.ask(t, "udp", "127.0.0.1", q), "127.0.0.1", real...)
	e.swap(t, "")
	expectBlocked(t, e.ask(t, "udp", "127.0.0.1", q), "127.0.0.1", "tiktok", "cname:tiktokv.com.edgekey.net")
	// Unblocking tiktok (video stays blocked): the same entry passes.
	e.swap(t, "", `block = ["tiktok", "video"]`, `block = ["video"]`)
	expectAnswer(t, e.ask(t, "udp", "127.0.0.1", q), "127.0.0.1", real...)
	if n := e.upstream.Asked("video.example.test."); n != 1 {
		t.Errorf("upstream asked %d times, want once: every answer came from the cache", n)
	}
}

// TestInspectWithoutCacheAndDisabled: without a cache every answer is
// inspected as it comes; with inspect_cnames off nothing is.
func TestInspectWithoutCacheAndDisabled(t *testing.T) {
	e := startInspect(t, "", "\n[cache]\nsize = 0\n")
	real := []string{"tiktokv.com.edgekey.net.", "e1234.a.akamaiedge.net.", "192.0.2.40"}
	for range 2 {
		expectBlocked(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("video.example.test.", dns.TypeA, true, false)),
			"127.0.0.1", "tiktok", "cname:tiktokv.com.edgekey.net")
		expectAnswer(t, e.ask(t, "udp", "127.0.0.2", dnstest.NewQuery("video.example.test.", dns.TypeA, true, false)), "127.0.0.2", real...)
	}
	if n := e.upstream.Asked("video.example.test."); n != 4 {
		t.Errorf("upstream asked %d times, want 4 (no cache)", n)
	}

	off := startInspect(t, "inspect_cnames = false", "")
	for _, client := range []string{"127.0.0.1", "127.0.0.3"} {
		expectAnswer(t, off.ask(t, "udp", client, dnstest.NewQuery("video.example.test.", dns.TypeA, true, false)), client, real...)
		expectAnswer(t, off.ask(t, "udp", client, dnstest.NewQuery("vid.example.test.", dns.TypeA, true, false)), client, "192.0.2.150")
	}
}

// TestInspectStaleAnswer: an expired answer served stale (RFC 8767) is
// inspected like a fresh one.
func TestInspectStaleAnswer(t *testing.T) {
	apps := filepath.Join(t.TempDir(), "apps.toml")
	os.WriteFile(apps, []byte(inspectApps), 0o644)
	up := dnstest.NewUpstream(t, "st.example.test. 5 IN CNAME v16.tiktokcdn.com.", "v16.tiktokcdn.com. 5 IN A 192.0.2.44")
	clk := dnstest.NewClock()
	e := startEnvClock(t, up, fmt.Sprintf(inspectConfig, up.Addr, apps, "")+"\n[cache]\nserve_stale = \"1h\"\n", clk.Now)
	q := dnstest.NewQuery("st.example.test.", dns.TypeA, true, false)
	expectAnswer(t, e.ask(t, "udp", "127.0.0.2", q), "127.0.0.2", "v16.tiktokcdn.com.", "192.0.2.44")
	up.SetSilent(true)
	clk.Advance(10 * time.Second)
	resp := e.ask(t, "udp", "127.0.0.2", q)
	if x := ede(resp); len(resp.Answer) != 2 || x == nil || x.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("exempted, upstream down: %v, want the stale answer", resp)
	}
	expectBlocked(t, e.ask(t, "udp", "127.0.0.1", q), "127.0.0.1", "tiktok", "cname:v16.tiktokcdn.com")
	if stale := e.cacheCount("stale"); stale != 2 {
		t.Errorf("%v stale answers, want 2", stale)
	}
}

// TestCanaries: while an app is blocked, the canary names are NXDOMAIN for
// every group, whatever blocking.response says, without asking upstream;
// they are counted under encrypted-dns. A group that exempts encrypted-dns
// gets the real answer; with nothing blocked they resolve.
func TestCanaries(t *testing.T) {
	canaries := []string{"use-application-dns.net.", "mask.icloud.com.", "Mask-H2.iCloud.com."}
	records := []string{
		"use-application-dns.net. 300 IN A 192.0.2.70",
		"mask.icloud.com. 300 IN A 192.0.2.71",
		"mask-h2.icloud.com. 300 IN A 192.0.2.72",
		"mask-api.icloud.com. 300 IN A 192.0.2.73",
	}
	for _, response := range []string{"nxdomain", "null", "nodata", "refused"} {
		t.Run(response, func(t *testing.T) {
			up := dnstest.NewUpstream(t, records...)
			e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, fmt.Sprintf("response = %q", response)))
			for _, client := range []string{"127.0.0.1", "127.0.0.2"} {
				group := map[string]string{"127.0.0.1": "default", "127.0.0.2": "investigators"}[client]
				for _, name := range canaries {
					for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeHTTPS} {
						resp := e.ask(t, "udp", client, dnstest.NewQuery(name, qtype, true, false))
						want := "blocked: app=encrypted-dns group=" + group + " via=canary"
						if x := ede(resp); resp.Rcode != dns.RcodeNameError || len(resp.Answer) != 0 || x == nil || x.ExtraText != want {
							t.Errorf("%s %s from %s: %s %v EDE %v, want NXDOMAIN with %q", name, dns.TypeToString[qtype], client,
								dns.RcodeToString[resp.Rcode], resp.Answer, x, want)
						}
						if soa := soaOf(t, resp); !strings.EqualFold(soa.Hdr.Name, name) {
							t.Errorf("%s: SOA owner %s", name, soa.Hdr.Name)
						}
					}
				}
			}
			// mask-api.icloud.com is in encrypted-dns but not a canary.
			if resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("mask-api.icloud.com.", dns.TypeA, true, false)); len(resp.Answer) != 1 {
				t.Errorf("mask-api.icloud.com: %v, want the upstream's answer (encrypted-dns is not blocked)", resp)
			}
			if n := up.Total(); n != 1 {
				t.Errorf("upstream got %d queries, want 1 (mask-api only)", n)
			}
			waitObserved(t, e, 19)
			apps := promtest.Gather(t, e.metrics.Registry).Values("appfence_app_queries_total", "group", "app", "action")
			if apps["default/encrypted-dns/blocked"] != 9 || apps["investigators/encrypted-dns/blocked"] != 9 {
				t.Errorf("app queries %v, want 9 canary answers counted under encrypted-dns blocked for each group", apps)
			}
		})
	}
	t.Run("exempted group", func(t *testing.T) {
		up := dnstest.NewUpstream(t, records...)
		cfg := strings.Replace(fmt.Sprintf(testConfig, up.Addr, `block = ["tiktok", "encrypted-dns"]`), `allow = ["tiktok"]`,
			`allow = ["tiktok", "encrypted-dns"]`, 1)
		e := startEnvWith(t, up, cfg)
		if resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("use-application-dns.net.", dns.TypeA, true, false)); resp.Rcode != dns.RcodeNameError {
			t.Errorf("default: %v, want NXDOMAIN", resp)
		}
		expectAnswer(t, e.ask(t, "udp", "127.0.0.2", dnstest.NewQuery("use-application-dns.net.", dns.TypeA, true, false)), "127.0.0.2", "192.0.2.70")
		waitObserved(t, e, 2)
		apps := promtest.Gather(t, e.metrics.Registry).Values("appfence_app_queries_total", "group", "app", "action")
		if apps["default/encrypted-dns/blocked"] != 1 || apps["investigators/encrypted-dns/exempted"] != 1 {
			t.Errorf("app queries %v", apps)
		}
	})
	t.Run("nothing blocked", func(t *testing.T) {
		up := dnstest.NewUpstream(t, records...)
		e := startEnvWith(t, up, fmt.Sprintf(testConfig, up.Addr, `block = []`))
		for _, name := range canaries {
			if resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery(name, dns.TypeA, true, false)); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
				t.Errorf("%s with no app blocked: %v, want the upstream's answer", name, resp)
			}
		}
		waitObserved(t, e, 3)
		for k := range promtest.Gather(t, e.metrics.Registry).Values("appfence_app_queries_total", "group", "app", "action") {
			if strings.Contains(k, "encrypted-dns") {
				t.Errorf("app series %s: the canary app is counted only while an app is blocked", k)
			}
		}
	})
}

// TestEncryptedDNSAppPerGroup: the catalog's encrypted-dns app blocks the
// public resolvers' names, and answers holding their addresses, for the
// group that blocks it only.
func TestEncryptedDNSAppPerGroup(t *testing.T) {
	e := startInspect(t, "", "")
	for _, name := range []string{"dns.google.", "DNS.Google.", "mozilla.cloudflare-dns.com.", "dns.quad9.net."} {
		resp := e.ask(t, "udp", "127.0.0.3", dnstest.NewQuery(name, dns.TypeA, true, false))
		if x := ede(resp); resp.Rcode != dns.RcodeNameError || x == nil || x.ExtraText != "blocked: app=encrypted-dns group=locked" {
			t.Errorf("%s from locked: %v, want blocked by encrypted-dns", name, resp)
		}
	}
	expectAnswer(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("dns.google.", dns.TypeA, true, false)), "127.0.0.1", "8.8.8.8")
	expectAnswer(t, e.ask(t, "udp", "127.0.0.2", dnstest.NewQuery("dns.google.", dns.TypeA, true, false)), "127.0.0.2", "8.8.8.8")
	// An unlisted name that resolves to a listed resolver address.
	expectBlocked(t, e.ask(t, "udp", "127.0.0.3", dnstest.NewQuery("quad9.example.test.", dns.TypeA, true, false)), "127.0.0.3", "encrypted-dns", "ip:9.9.9.9")
	expectAnswer(t, e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery("quad9.example.test.", dns.TypeA, true, false)), "127.0.0.1", "9.9.9.9")
	if n := e.upstream.Asked("dns.google."); n != 1 {
		t.Errorf("upstream asked %d times for dns.google, want once (locked is answered here, the others from one query)", n)
	}
}

// TestOwnEncryptedUpstreamIsNotFiltered: AppFence's connections to its own
// DoT upstream are made by the upstream package, not through the handler,
// so blocking that upstream's name (encrypted-dns for the default group,
// which holds 127.0.0.1) does not cut AppFence off from it.
func TestOwnEncryptedUpstreamIsNotFiltered(t *testing.T) {
	ca := dnstest.NewCA(t)
	up := dnstest.NewUpstream(t, "www.example.test. 300 IN A 192.0.2.20")
	dot := up.StartTLS(t, ca.Issue(t, "dns.google"))
	cfg := strings.Replace(fmt.Sprintf(testConfig, "tls://"+dot+"#dns.google", `block = ["tiktok", "encrypted-dns"]`),
		`timeout = "500ms"`, `timeout = "2s"`+"\n"+`ca_file = "`+ca.WriteFile(t)+`"`, 1)
	e := startEnvWith(t, up, cfg)
	if p := e.handler.State().Policy; len(p.Warnings) != 0 {
		t.Errorf("warnings %q, want none: the upstream is written as an address", p.Warnings)
	}
	if resp := e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("dns.google.", dns.TypeA, true, false)); resp.Rcode != dns.RcodeNameError {
		t.Errorf("dns.google from default: %v, want blocked", resp)
	}
	expectAnswer(t, e.ask(t, "udp", "127.0.0.1", dnstest.NewQuery("www.example.test.", dns.TypeA, true, false)), "127.0.0.1", "192.0.2.20")
	if tls, _ := up.CountEncrypted(); tls != 1 || up.Total() != 1 {
		t.Errorf("upstream got %d queries, %d over TLS; want the one query over DoT", up.Total(), tls)
	}
}

// TestNameTricks: letter case and \DDD escapes in query names are
// normalized once; an escaped dot stays inside its label; a Unicode list
// entry is matched in its punycode form.
func TestNameTricks(t *testing.T) {
	e := startInspect(t, "", "")
	// The escapes are packed into plain bytes on the wire; the reply's
	// question is the same name, written without them.
	ask := func(name string) *dns.Msg {
		t.Helper()
		q := dnstest.NewQuery(name, dns.TypeA, true, false)
		resp, err := dnstest.Client{}.Exchange(context.Background(), "udp", e.addr, q)
		if err != nil || resp.Id != q.Id {
			t.Fatalf("%s: %v %v", name, resp, err)
		}
		return resp
	}
	for _, name := range []string{
		`www.\116iktok.com.`, `WWW.\084IKTOK.COM.`, `\119\119\119.tiktok.com.`, `tiktok.com.`, `TikTok.Com.`,
		`www.xn--bcher-kva.example.`, `WWW.XN--BCHER-KVA.EXAMPLE.`,
	} {
		resp := ask(name)
		if x := ede(resp); resp.Rcode != dns.RcodeNameError || x == nil || x.InfoCode != dns.ExtendedErrorCodeBlocked {
			t.Errorf("%s: %s, want blocked", name, dns.RcodeToString[resp.Rcode])
		}
	}
	// `www.tiktok\.com.` is the name `www.tiktok\046com.` wrote another
	// way: names are compared in wire form, so the second is a cache hit.
	for _, tc := range []struct {
		name      string
		forwarded bool
	}{
		{`www.tiktok\046com.`, true}, {`www.tiktok\.com.`, false}, {`tiktok\.com.example.test.`, true}, {`xn--bcher-kva\.example.`, true},
	} {
		before := e.upstream.Total()
		resp := ask(tc.name)
		if got := e.upstream.Total() != before; ede(resp) != nil || got != tc.forwarded {
			t.Errorf("%s: %v, forwarded %v, want %v and not blocked (one label holds the dot)", tc.name, resp, got, tc.forwarded)
		}
	}
	qs := e.upstream.Queries()
	var asked []string
	for _, q := range qs {
		asked = append(asked, q.Name)
	}
	if want := []string{`www.tiktok\.com.`, `tiktok\.com.example.test.`, `xn--bcher-kva\.example.`}; !slices.Equal(asked, want) {
		t.Errorf("upstream asked %q, want %q", asked, want)
	}
}

// TestBlockedNameEveryTypeWithInspection: a blocked name is blocked for
// every type (HTTPS, SVCB and ANY included) before any inspection, and
// nothing reaches the upstream.
func TestBlockedNameEveryTypeWithInspection(t *testing.T) {
	e := startInspect(t, "", "")
	for _, qtype := range []uint16{dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY, dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeTXT} {
		for _, name := range []string{"www.tiktok.com.", "cdn.video.test.", "www.xn--bcher-kva.example."} {
			resp := e.ask(t, "tcp", "127.0.0.1", dnstest.NewQuery(name, qtype, true, false))
			if x := ede(resp); resp.Rcode != dns.RcodeNameError || x == nil || strings.Contains(x.ExtraText, "via=") {
				t.Errorf("%s %s: %v, want blocked by its name", name, dns.TypeToString[qtype], resp)
			}
		}
	}
	if n := e.upstream.Total(); n != 0 {
		t.Errorf("upstream got %d queries for blocked names", n)
	}
	waitObserved(t, e.env, 21)
	if n := promtest.Gather(t, e.metrics.Registry).Values("appfence_queries_total", "group", "action")["default/blocked"]; n != 21 {
		t.Errorf("default/blocked = %v, want 21", n)
	}
}
