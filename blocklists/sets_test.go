package blocklists

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSetMembers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "apps.toml")
	if err := os.WriteFile(f, []byte(`
[[app]]
name = "agency-chat"
sets = ["agency", "bytedance"]
domains = ["chat.agency.example"]

[[app]]
name = "agency"
domains = ["agency.example"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := Load(Options{Globs: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"bytedance", []string{"capcut", "helo", "hypic", "lark", "lemon8", "tiktok", "agency-chat"}},
		{"tencent", []string{"qq", "wechat"}},
		{"essentials", []string{"essentials-apple", "essentials-google", "essentials-microsoft"}},
		{"deepseek", []string{"deepseek"}},
		{"agency", []string{"agency"}}, // an app of that name wins over the set
		{"no-such-set", nil},
	} {
		if got := set.Members(tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("Members(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if names := set.SetNames(); !slices.Contains(names, "india-2020") || !slices.IsSorted(names) {
		t.Errorf("SetNames() = %v", names)
	}
}

func TestParseAppsCatalogKeys(t *testing.T) {
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"ok", `[[app]]
name = "a"
owner = "Example Corp"
sets = ["s-1"]
reviewed = "2026-12-03"
lists = ["example/list @ abc (MIT)"]
excluded = "cdn.example: shared"
domains = ["a.example"]`, ""},
		{"bad set", "[[app]]\nname = \"a\"\nsets = [\"Bad Set\"]\ndomains = [\"a.example\"]", `x.toml:3: app[0].sets[0]: "Bad Set": set names are lower-case letters, digits and '-'`},
		{"bad date", "[[app]]\nname = \"a\"\nreviewed = \"3 Dec 2026\"\ndomains = [\"a.example\"]", `x.toml:3: app[0].reviewed: "3 Dec 2026": not a date (YYYY-MM-DD)`},
	} {
		apps, err := ParseApps("x.toml", []byte(tc.text), "")
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr == "" && (apps[0].Owner != "Example Corp" || apps[0].Sets[0] != "s-1" || apps[0].Reviewed != "2026-12-03" || len(apps[0].Lists) != 1 || apps[0].Excluded == ""):
			t.Errorf("%s: parsed %+v", tc.name, apps[0])
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}
