package resolver

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/appfence/appfence/internal/promtest"
	"github.com/appfence/appfence/metrics"
	"github.com/appfence/appfence/policy"
)

func buildPolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "appfence.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keys returns the sorted keys of a Values map.
func keys(m map[string]float64) []string { return slices.Sorted(maps.Keys(m)) }

// TestQuerySeriesLifecycle: installing a policy creates every series of its
// groups and referenced apps at zero; installing the next policy deletes
// the series of groups and apps it no longer has and keeps the counts of
// the others.
func TestQuerySeriesLifecycle(t *testing.T) {
	m := metrics.New("test")
	p1 := buildPolicy(t, `
[upstream]
servers = ["127.0.0.1:53"]
[blocking]
lists = []
block = ["tiktok"]
monitor = ["lark"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24"]
allow = ["tiktok"]
[[group]]
name = "press"
clients = ["10.20.40.0/24"]
allow = ["tiktok"]
`)
	s1 := newQuerySeries(m, p1, nil)
	fams := promtest.Gather(t, m.Registry)
	var want []string
	for _, g := range []string{"default", "investigators", "press"} {
		for _, a := range []string{"blocked", "dropped", "exempted", "monitored", "refused", "resolved"} {
			want = append(want, g+"/"+a)
		}
	}
	if got := keys(fams.Values("appfence_queries_total", "group", "action")); !slices.Equal(got, want) {
		t.Errorf("queries series:\n got %v\nwant %v", got, want)
	}
	want = nil
	for _, g := range []string{"default", "investigators", "press"} {
		for _, app := range []string{"encrypted-dns", "lark", "tiktok"} {
			for _, a := range []string{"blocked", "exempted", "monitored"} {
				want = append(want, g+"/"+app+"/"+a)
			}
		}
	}
	if got := keys(fams.Values("appfence_app_queries_total", "group", "app", "action")); !slices.Equal(got, want) {
		t.Errorf("app series (encrypted-dns is not named by the config, but counts the canary answers while tiktok is blocked):\n got %v\nwant %v", got, want)
	}
	want = nil
	for _, g := range []string{"default", "investigators", "press"} {
		for _, rc := range []string{"NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL"} {
			want = append(want, g+"/"+rc)
		}
	}
	if got := keys(fams.Values("appfence_responses_total", "group", "rcode")); !slices.Equal(got, want) {
		t.Errorf("response series:\n got %v\nwant %v", got, want)
	}
	for k, v := range fams.Values("appfence_queries_total", "group", "action") {
		if v != 0 {
			t.Errorf("%s = %v before any query", k, v)
		}
	}

	// Count an exempted query, a query answered with an rcode that has no
	// series yet, and two dropped requests.
	inv := p1.Group("investigators")
	d := p1.Decide(netip.MustParseAddr("10.20.30.5"), "www.tiktok.com")
	if d.Action != policy.ActionExempt || d.Group != inv {
		t.Fatalf("decision %+v", d)
	}
	s1.Observe(&d, dns.RcodeSuccess, time.Millisecond)
	d = p1.Decide(netip.MustParseAddr("10.1.1.1"), "www.example.org")
	s1.Observe(&d, dns.RcodeFormatError, time.Millisecond)
	s1.Dropped(inv)
	s1.Dropped(nil)

	// The next policy drops the press group and the lark app.
	p2 := buildPolicy(t, `
[upstream]
servers = ["127.0.0.1:53"]
[blocking]
lists = []
block = ["tiktok"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24"]
allow = ["tiktok"]
`)
	newQuerySeries(m, p2, s1)
	fams = promtest.Gather(t, m.Registry)
	q := fams.Values("appfence_queries_total", "group", "action")
	if got, want := q, map[string]float64{
		"default/blocked": 0, "default/dropped": 1, "default/exempted": 0, "default/monitored": 0, "default/refused": 0, "default/resolved": 1,
		"investigators/blocked": 0, "investigators/dropped": 1, "investigators/exempted": 1, "investigators/monitored": 0, "investigators/refused": 0, "investigators/resolved": 0,
	}; !maps.Equal(got, want) {
		t.Errorf("queries after reload:\n got %v\nwant %v", got, want)
	}
	if got, want := fams.Values("appfence_app_queries_total", "group", "app", "action"), map[string]float64{
		"default/tiktok/blocked": 0, "default/tiktok/exempted": 0, "default/tiktok/monitored": 0,
		"investigators/tiktok/blocked": 0, "investigators/tiktok/exempted": 1, "investigators/tiktok/monitored": 0,
		"default/encrypted-dns/blocked": 0, "default/encrypted-dns/exempted": 0, "default/encrypted-dns/monitored": 0,
		"investigators/encrypted-dns/blocked": 0, "investigators/encrypted-dns/exempted": 0, "investigators/encrypted-dns/monitored": 0,
	}; !maps.Equal(got, want) {
		t.Errorf("app queries after reload:\n got %v\nwant %v", got, want)
	}
	if got := fams.Values("appfence_responses_total", "group", "rcode"); got["default/FORMERR"] != 1 || len(got) != 9 {
		t.Errorf("responses after reload: %v, want 8 initial series and default/FORMERR 1", got)
	}
	if got := fams.Counts("appfence_query_duration_seconds", "group"); !maps.Equal(got, map[string]uint64{"default": 1, "investigators": 1}) {
		t.Errorf("durations after reload: %v", got)
	}

	// A query still in flight with the old policy creates no series for the
	// group that is gone.
	press := p1.Group("press")
	d = policy.Decision{Group: press}
	s1.Observe(&d, dns.RcodeNotImplemented, time.Millisecond)
	if got := promtest.Gather(t, m.Registry).Values("appfence_responses_total", "group", "rcode"); len(got) != 9 {
		t.Errorf("a retired series recreated a deleted group: %v", got)
	}
}
