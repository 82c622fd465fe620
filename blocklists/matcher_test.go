package blocklists

import (
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/listgen"
)

// writeApps writes an app-definition file and any list files into a new
// directory and returns the app file's path.
func writeApps(t testing.TB, appTOML string, lists map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range lists {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "apps.toml")
	if err := os.WriteFile(p, []byte(appTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const testApps = `[[app]]
name = "video"
domains = ["video.test", "cdn.example.net"]
exact = ["log.tracker.test"]
patterns = ["p16-video-*.img.test", "edge*.*.cache.test"]
allow = ["careers.video.test", "ok-*.video.test"]
sources = [{ file = "video.txt", format = "domains" }]

[[app]]
name = "chat"
domains = ["chat.test", "example.net"]
allow = ["help.chat.test"]
`

func TestMatch(t *testing.T) {
	p := writeApps(t, testApps, map[string]string{"video.txt": "# comment\nvideo-static.test\n\n*.wild.test\n"})
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	m := set.Matcher
	tests := []struct {
		name string
		app  string
		rule string
		kind Kind
		file string
		line int
	}{
		{"video.test", "video", "video.test", KindDomain, "apps.toml", 3},
		{"www.video.test", "video", "video.test", KindDomain, "apps.toml", 3},
		{"a.b.c.video.test", "video", "video.test", KindDomain, "apps.toml", 3},
		{"xvideo.test", "", "", KindNone, "", 0},
		{"test", "", "", KindNone, "", 0},
		{"careers.video.test", "video", "careers.video.test", KindAllow, "apps.toml", 6},
		{"jobs.careers.video.test", "video", "careers.video.test", KindAllow, "apps.toml", 6},
		{"ok-1.video.test", "video", "ok-*.video.test", KindAllow, "apps.toml", 6},
		{"log.tracker.test", "video", "log.tracker.test", KindExact, "apps.toml", 4},
		{"sub.log.tracker.test", "", "", KindNone, "", 0},
		{"tracker.test", "", "", KindNone, "", 0},
		{"p16-video-va.img.test", "video", "p16-video-*.img.test", KindPattern, "apps.toml", 5},
		{"x.y.p16-video-va.img.test", "video", "p16-video-*.img.test", KindPattern, "apps.toml", 5},
		{"p16-audio-va.img.test", "", "", KindNone, "", 0},
		{"img.test", "", "", KindNone, "", 0},
		{"edge1.eu.cache.test", "video", "edge*.*.cache.test", KindPattern, "apps.toml", 5},
		{"core1.eu.cache.test", "", "", KindNone, "", 0},
		// the longest rule wins across apps
		{"cdn.example.net", "video", "cdn.example.net", KindDomain, "apps.toml", 3},
		{"img.cdn.example.net", "video", "cdn.example.net", KindDomain, "apps.toml", 3},
		{"www.example.net", "chat", "example.net", KindDomain, "apps.toml", 11},
		{"help.chat.test", "chat", "help.chat.test", KindAllow, "apps.toml", 12},
		// from the list source
		{"video-static.test", "video", "video-static.test", KindDomain, "video.txt", 2},
		{"a.wild.test", "video", "*.wild.test", KindPattern, "video.txt", 4},
		{"a.b.wild.test", "video", "*.wild.test", KindPattern, "video.txt", 4},
		{"wild.test", "", "", KindNone, "", 0},
	}
	for _, tt := range tests {
		got, ok := m.Match(tt.name)
		if tt.app == "" {
			if ok {
				t.Errorf("Match(%q) = %+v, want no match", tt.name, got)
			}
			continue
		}
		if !ok || got.App.Name != tt.app || got.Rule != tt.rule || got.Kind != tt.kind ||
			filepath.Base(got.Origin.File) != tt.file || got.Origin.Line != tt.line {
			t.Errorf("Match(%q) = %v %+v at %s, want %s %s %v at %s:%d", tt.name, ok, got, got.Origin, tt.app, tt.rule, tt.kind, tt.file, tt.line)
		}
	}
	if set.Rules["video"] != 9 || set.Rules["chat"] != 3 {
		t.Errorf("rule counts = %v", set.Rules)
	}
}

func TestMatchAllowTiesWin(t *testing.T) {
	p := writeApps(t, `[[app]]
name = "a"
domains = ["same.test"]
exact = ["exact.test"]
[[app]]
name = "b"
allow = ["same.test", "exact.test"]
`, nil)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"same.test", "www.same.test", "exact.test"} {
		if got, _ := set.Matcher.Match(name); got.Kind != KindAllow {
			t.Errorf("Match(%q) = %+v, want the allow rule", name, got)
		}
	}
}

func TestConflicts(t *testing.T) {
	p := writeApps(t, `[[app]]
name = "a"
domains = ["shared.test"]
[[app]]
name = "b"
domains = ["shared.test", "own.test"]
`, nil)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Conflicts) != 1 || set.Conflicts[0].Kept.Name != "a" || set.Conflicts[0].Dropped.Name != "b" || set.Conflicts[0].DroppedAt.Line != 6 {
		t.Errorf("conflicts = %+v", set.Conflicts)
	}
	if got, _ := set.Matcher.Match("shared.test"); got.App.Name != "a" {
		t.Errorf("shared.test belongs to %s, want the first app", got.App.Name)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string
	}{
		{"unknown key", "[[app]]\nname = \"a\"\ndomian = [\"x.test\"]\n", "apps.toml:3: app[0].domian: unknown key"},
		{"bad name", "[[app]]\nname = \"A b\"\n", `apps.toml:2: app[0].name: "A b"`},
		{"bad domain", "[[app]]\nname = \"a\"\ndomains = [\n  \"ok.test\",\n  \"bad..test\",\n]\n", `apps.toml:5: app[0].domains[1]: "bad..test"`},
		{"wildcard in domains", "[[app]]\nname = \"a\"\ndomains = [\"*.x.test\"]\n", `use patterns for wildcards`},
		{"bad pattern", "[[app]]\nname = \"a\"\npatterns = [\"x.*\"]\n", `apps.toml:3: app[0].patterns[0]`},
		{"missing source", "[[app]]\nname = \"a\"\nsources = [{ file = \"nope.txt\", format = \"domains\" }]\n", "apps.toml:3: sources: open"},
		{"bad format", "[[app]]\nname = \"a\"\nsources = [{ file = \"x.txt\", format = \"csv\" }]\n", `apps.toml:3: app[0].sources[0].format: "csv"`},
		{"bad range", "[[app]]\nname = \"a\"\nip_ranges = [\"1.2.3.4/33\"]\n", `apps.toml:3: app[0].ip_ranges[0]`},
		{"duplicate app", "[[app]]\nname = \"a\"\n[[app]]\nname = \"a\"\n", `apps.toml:4: app[1].name: app "a" is defined twice`},
		{"builtin name", "[[app]]\nname = \"tiktok\"\n", `app "tiktok" is already defined at builtin:tiktok.toml`},
		{"syntax", "[[app]\nname = 1\n", "apps.toml:2: expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeApps(t, tt.toml, nil)
			_, err := Load(Options{Globs: []string{p}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestInvalidListLinesAreReportedNotFatal(t *testing.T) {
	var list strings.Builder
	list.WriteString("good.test\n")
	for i := 0; i < 8; i++ {
		list.WriteString("bad..name\n")
	}
	p := writeApps(t, "[[app]]\nname = \"a\"\nsources = [{ file = \"l.txt\", format = \"domains\" }]\n", map[string]string{"l.txt": list.String()})
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := set.Matcher.Match("good.test"); !ok {
		t.Error("the valid line was lost")
	}
	st := set.Sources[filepath.Join(filepath.Dir(p), "l.txt")]
	if st.Invalid != 8 || len(st.Errors) != maxReported || !strings.Contains(st.Errors[0].Error(), "l.txt:2:") {
		t.Errorf("stats = %+v", st)
	}
	if len(set.Warnings) != maxReported+1 {
		t.Errorf("warnings = %q", set.Warnings)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p := writeApps(t, testApps, map[string]string{"video.txt": "*.wild.test\n"})
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"www.video.test", "p16-video-va.img.test", "nothing.example.org", "a.wild.test"} {
		if n := testing.AllocsPerRun(100, func() { set.Matcher.Match(name) }); n != 0 {
			t.Errorf("Match(%q) allocates %v times", name, n)
		}
	}
}

func TestGlobLabel(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"p16-*", "p16-va", true},
		{"p16-*", "p17-va", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*-edge", "eu-edge", true},
		{"exact", "exact", true},
		{"exact", "exacts", false},
	}
	for _, tt := range tests {
		if got := globLabel(tt.pat, tt.s); got != tt.want {
			t.Errorf("globLabel(%q, %q) = %v", tt.pat, tt.s, got)
		}
	}
}

// bigList writes the first n names of listgen's seed 1 as a list in
// format, with an app file "big" that imports it, and returns the app
// file's path and the names.
func bigList(t testing.TB, n int, format listgen.Format) (apps string, names []string) {
	t.Helper()
	names = listgen.Names(1, n)
	dir := t.TempDir()
	if err := listgen.WriteFile(filepath.Join(dir, "big.txt"), format, names); err != nil {
		t.Fatal(err)
	}
	apps = filepath.Join(dir, "apps.toml")
	toml := fmt.Sprintf("[[app]]\nname = \"big\"\nsources = [{ file = \"big.txt\", format = %q }]\n", format)
	if err := os.WriteFile(apps, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return apps, names
}

// queries returns names to look up in a matcher built from names: hits on
// a rule's name and below it, and misses, one after the other.
func queries(names []string) []string {
	var q []string
	for i := 0; i < 1000; i++ {
		hit := names[(i*7919)%len(names)]
		q = append(q, hit, "www."+hit, "x"+hit, "a.b.c.d.e.nothing"+strconv.Itoa(i)+".example.org")
	}
	return q
}

// BenchmarkMatch1M looks up names among 1,000,000 domain rules: a quarter
// hit a rule's name, a quarter a name under it, half miss ("x" + a listed
// name, and a deep unlisted name).
func BenchmarkMatch1M(b *testing.B) {
	p, names := bigList(b, 1_000_000, listgen.FormatDomains)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		b.Fatal(err)
	}
	q := queries(names)
	hits := 0
	for _, name := range q {
		if _, ok := set.Matcher.Match(name); ok {
			hits++
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		set.Matcher.Match(q[i%len(q)])
		i++
	}
	b.ReportMetric(100*float64(hits)/float64(len(q)), "hit-%")
}

func TestAllYieldsEveryRule(t *testing.T) {
	p := writeApps(t, testApps, map[string]string{"video.txt": "video-static.test\n*.wild.test\n"})
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range set.Rules {
		total += n
	}
	seen := map[string]bool{}
	for r := range set.Matcher.All() {
		key := r.App.Name + " " + r.Kind.String() + " " + r.Rule
		if seen[key] {
			t.Errorf("%s yielded twice", key)
		}
		seen[key] = true
		if r.Origin.Line == 0 || r.Origin.File == "" {
			t.Errorf("%s has no origin", key)
		}
	}
	// the catalog's rules are counted too
	if len(seen) != total {
		t.Errorf("All yielded %d rules, the set counts %d", len(seen), total)
	}
	for _, want := range []string{"video domain video.test", "video exact log.tracker.test", "video pattern p16-video-*.img.test",
		"video allow ok-*.video.test", "video allow careers.video.test", "video pattern *.wild.test", "chat domain example.net"} {
		if !seen[want] {
			t.Errorf("All lacks %q", want)
		}
	}
}

func TestMatchBlockIgnoresAllowRules(t *testing.T) {
	p := writeApps(t, testApps, map[string]string{"video.txt": ""})
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"careers.video.test": "video.test",
		"ok-1.video.test":    "video.test",
		"help.chat.test":     "chat.test",
	} {
		if got, ok := set.Matcher.MatchBlock(name); !ok || got.Rule != want || got.Kind != KindDomain {
			t.Errorf("MatchBlock(%q) = %+v, want %s", name, got, want)
		}
		if got, _ := set.Matcher.Match(name); got.Kind != KindAllow {
			t.Errorf("Match(%q) = %+v, want the allow rule", name, got)
		}
	}
}

func TestIdleAllows(t *testing.T) {
	p := writeApps(t, `[[app]]
name = "a"
domains = ["blocked.test"]
exact = ["one.test"]
patterns = ["p-*.img.test"]
allow = [
  "www.blocked.test",   # under a domains rule: used
  "blocked.test",       # the same name: used (allow wins ties)
  "one.test",           # an exact rule for the name: used
  "sub.one.test",       # exact covers only one.test: idle
  "p-1.img.test",       # a pattern matches it: used
  "img.test",           # the pattern lies below: idle (longer rules win)
  "typo.tset",          # nothing: idle
  "ok-*.blocked.test",  # pattern under a domains rule: used
  "x-*.img.test",       # pattern with a block pattern under its tail: used
  "y-*.free.test",      # nothing at or under free.test: idle
]
`, nil)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range set.Matcher.IdleAllows() {
		got = append(got, fmt.Sprintf("%s@%d", m.Rule, m.Origin.Line))
	}
	want := []string{"sub.one.test@10", "img.test@12", "typo.tset@13", "y-*.free.test@16"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("IdleAllows = %v, want %v", got, want)
	}
}

func TestPatternConflicts(t *testing.T) {
	p := writeApps(t, "[[app]]\nname = \"a\"\npatterns = [\"x-*.test\"]\n[[app]]\nname = \"b\"\npatterns = [\"x-*.test\"]\n", nil)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Conflicts) != 1 || set.Conflicts[0].Name != "x-*.test" || set.Conflicts[0].Kept.Name != "a" || set.Conflicts[0].DroppedAt.Line != 6 {
		t.Errorf("conflicts = %+v", set.Conflicts)
	}
}

func TestMatchInSkipsUnmarkedApps(t *testing.T) {
	p := writeApps(t, `[[app]]
name = "blocked"
domains = ["video.test"]
patterns = ["p*.img.test"]
[[app]]
name = "idle"
domains = ["cdn.video.test"]
exact = ["p1.img.test"]
allow = ["ok.video.test"]
`, nil)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	in := make([]bool, len(set.Apps))
	in[set.App("blocked").ID] = true
	tests := []struct{ name, app, rule string }{
		{"x.cdn.video.test", "blocked", "video.test"}, // idle's longer rule is passed over
		{"p1.img.test", "blocked", "p*.img.test"},
		{"ok.video.test", "idle", "ok.video.test"}, // allow rules always count
	}
	for _, tt := range tests {
		got, ok := set.Matcher.MatchIn(tt.name, in)
		if !ok || got.App.Name != tt.app || got.Rule != tt.rule {
			t.Errorf("MatchIn(%q) = %+v, want %s %s", tt.name, got, tt.app, tt.rule)
		}
	}
	if got, _ := set.Matcher.Match("x.cdn.video.test"); got.App.Name != "idle" {
		t.Errorf("Match(x.cdn.video.test) = %s, want the longest rule (idle)", got.App.Name)
	}
	if n := testing.AllocsPerRun(100, func() { set.Matcher.MatchIn("x.cdn.video.test", in) }); n != 0 {
		t.Errorf("MatchIn allocates %v times", n)
	}
}

// TestFilter checks the Bloom filter in front of the matcher's table: no
// hash added is ever ruled out, and few others get through.
func TestFilter(t *testing.T) {
	for _, n := range []int{0, 1, 100, 100_000} {
		f := newFilter(n)
		var h maphash.Hash
		sum := func(i int) uint64 {
			h.Reset()
			h.WriteString(strconv.Itoa(i))
			return h.Sum64()
		}
		for i := 0; i < n; i++ {
			f.add(sum(i))
		}
		for i := 0; i < n; i++ {
			if !f.has(sum(i)) {
				t.Fatalf("n=%d: hash %d was added but is ruled out", n, i)
			}
		}
		const tries = 100_000
		through := 0
		for i := n; i < n+tries; i++ {
			if f.has(sum(i)) {
				through++
			}
		}
		rate := float64(through) / tries
		t.Logf("n=%d: %.2f%% of absent hashes get through", n, 100*rate)
		if rate > 0.05 {
			t.Errorf("n=%d: %.1f%% of absent hashes get through, want under 5%%", n, 100*rate)
		}
	}
}

// TestMatchAgreesWithMap loads 50,000 listgen names and checks Match
// against the plainest implementation of its rule for domains lists (the
// longest listed suffix of the name, at a label boundary, wins) on names
// that are rules, lie under rules, differ by a letter, or come from
// another seed. Each found rule must give its own line as origin.
func TestMatchAgreesWithMap(t *testing.T) {
	p, names := bigList(t, 50_000, listgen.FormatDomains)
	set, err := Load(Options{Globs: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	line := make(map[string]int, len(names))
	for i, name := range names {
		line[name] = i + 2 // after the comment line
	}
	want := func(name string) string {
		for s, ok := name, true; ok; s, ok = dnsname.Parent(s) {
			if _, listed := line[s]; listed {
				return s
			}
		}
		return ""
	}
	queries := slices.Concat(names, listgen.Names(2, 20_000))
	for _, name := range names[:20_000] {
		queries = append(queries, "www."+name, "x"+name, "a.b."+name)
	}
	hits := 0
	for _, q := range queries {
		got, ok := set.Matcher.Match(q)
		if ok && got.App.Builtin {
			continue // a catalog rule (tiktok.com, ...)
		}
		rule := want(q)
		switch {
		case rule == "" && ok:
			t.Errorf("Match(%q) = %s, want no rule", q, got.Rule)
		case rule != "" && (!ok || got.Rule != rule || got.Kind != KindDomain || got.Origin.Line != line[rule]):
			t.Errorf("Match(%q) = %v %s at line %d, want %s at line %d", q, ok, got.Rule, got.Origin.Line, rule, line[rule])
		case ok:
			hits++
		}
	}
	if hits < len(queries)/2 {
		t.Errorf("only %d of %d queries hit a rule", hits, len(queries))
	}
}
