package reload

import (
	"hash/maphash"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/policy"
)

// compile builds a policy from a config and one app file.
func compile(t *testing.T, cfgText, apps string) *policy.Policy {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "apps.toml"), apps)
	cfg, err := config.Parse(filepath.Join(dir, "appfence.toml"), []byte("[blocking]\nlists = [\"apps.toml\"]\n"+cfgText), dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDiff(t *testing.T) {
	old := compile(t, `block = ["tiktok", "video"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24", "10.20.31.17"]
allow = ["tiktok"]
[[group]]
name = "press"
clients = ["10.40.0.0/16"]
allow = ["video"]
`, `[[app]]
name = "video"
domains = ["video.test", "cdn.video.test"]
exact = ["log.video.test"]
[[app]]
name = "old"
domains = ["old.test"]
`)
	cur := compile(t, `block = ["tiktok", "video"]
monitor = ["chat"]
[[group]]
name = "investigators"
clients = ["10.20.30.0/24", "fd00:20::/64"]
allow = ["tiktok", "video"]
[[group]]
name = "kids"
clients = ["10.9.0.0/16"]
block = ["chat"]
`, `[[app]]
name = "video"
description = "moved lines and a new description change no rule"

domains = ["cdn.video.test", "video.test", "video2.test"]
patterns = ["v-*.video.test"]
[[app]]
name = "chat"
domains = ["chat.test"]
`)
	seed := maphash.MakeSeed()
	got := diff(old, cur, newDigest(old.Set, seed), newDigest(cur.Set, seed))
	wantApps := []AppChange{
		{App: "chat", Added: 1, New: true},
		{App: "old", Removed: 1, Gone: true},
		{App: "video", Added: 2, Removed: 1},
	}
	if !reflect.DeepEqual(got.Apps, wantApps) {
		t.Errorf("apps:\n got %+v\nwant %+v", got.Apps, wantApps)
	}
	wantGroups := []GroupChange{
		{Group: "press", Gone: true, ClientsRemoved: []netip.Prefix{netip.MustParsePrefix("10.40.0.0/16")}},
		{Group: "default", Actions: []ActionChange{{"chat", policy.ActionResolve, policy.ActionMonitor}}},
		{Group: "investigators",
			ClientsAdded:   []netip.Prefix{netip.MustParsePrefix("fd00:20::/64")},
			ClientsRemoved: []netip.Prefix{netip.MustParsePrefix("10.20.31.17/32")},
			Actions:        []ActionChange{{"chat", policy.ActionResolve, policy.ActionMonitor}, {"video", policy.ActionBlock, policy.ActionExempt}}},
		{Group: "kids", New: true, ClientsAdded: []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")},
			Actions: []ActionChange{{"chat", policy.ActionResolve, policy.ActionBlock}, {"tiktok", policy.ActionResolve, policy.ActionBlock}, {"video", policy.ActionResolve, policy.ActionBlock}}},
	}
	if !reflect.DeepEqual(got.Groups, wantGroups) {
		t.Errorf("groups:\n got %+v\nwant %+v", got.Groups, wantGroups)
	}
	if same := diff(cur, cur, newDigest(cur.Set, seed), newDigest(cur.Set, seed)); !same.Empty() {
		t.Errorf("a policy compared with itself: %+v", same)
	}
}

func TestDiffSorted(t *testing.T) {
	tests := []struct {
		a, b         []uint64
		onlyA, onlyB int
	}{
		{nil, nil, 0, 0},
		{[]uint64{1, 2, 3}, nil, 3, 0},
		{nil, []uint64{1}, 0, 1},
		{[]uint64{1, 2, 3}, []uint64{2, 3, 4, 5}, 1, 2},
		{[]uint64{1, 5, 9}, []uint64{1, 5, 9}, 0, 0},
	}
	for _, tt := range tests {
		if a, b := diffSorted(tt.a, tt.b); a != tt.onlyA || b != tt.onlyB {
			t.Errorf("diffSorted(%v, %v) = %d, %d", tt.a, tt.b, a, b)
		}
	}
}
