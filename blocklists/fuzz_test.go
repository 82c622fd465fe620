package blocklists

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/tomlpos"
)

// listSeeds are lines of each list format, valid and not.
var listSeeds = map[Format][]string{
	FormatDomains: {
		"tiktok.com\nwww.TikTok.com.\n# comment\n*.tiktokv.com\np16-*.ibyteimg.com # trailing\n",
		"a..b\n-x.test\nbücher.example\n*\n*.\nx.*\n" + strings.Repeat("a", 64) + ".test\n",
	},
	FormatHosts: {
		"0.0.0.0 tiktok.com www.tiktok.com\n127.0.0.1 localhost\n:: ip6-localhost v16.tiktokcdn.com\n",
		"# Title\n0.0.0.0\n1.2.3 x.test\n::1 *.x.test\n192.0.2.1\tA.test\t# c\n",
	},
	FormatAdblock: {
		"! comment\n[Adblock Plus 2.0]\n||tiktok.com^\n|exact.test^\n@@||careers.tiktok.com^\n||p16-*.ibyteimg.com^$important\n",
		"example.com##.ad\n||x.test^$third-party\n/regex/\n||x.test/path^\n|*.x.test^\n@@\n$important\n@@$important\n|\n||\n^\n",
	},
}

func fuzzList(f *testing.F, format Format) {
	for _, s := range listSeeds[format] {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(gunzipped(data), []byte("\n")) + 1
		added := 0
		st, err := ParseList(bytes.NewReader(data), format, "fuzz.txt", func(e Entry) {
			added++
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("entry %+v: line outside 1..%d", e, lines)
			}
			if format == FormatHosts && e.Kind != KindDomain {
				t.Fatalf("hosts entry %+v is not a domain", e)
			}
			checkEntry(t, e)
		})
		if err != nil {
			// Content that starts like gzip and is not is a read error.
			if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) && strings.HasPrefix(err.Error(), "read fuzz.txt: ") {
				return
			}
			t.Fatalf("ParseList: %v (only read errors are errors)", err)
		}
		if st.Rules != added || len(st.Errors) > maxReported || len(st.Errors) > st.Invalid+st.Unsupported {
			t.Fatalf("stats %+v for %d entries", st, added)
		}
		for _, e := range st.Errors {
			if !strings.HasPrefix(e.Error(), "fuzz.txt:") {
				t.Fatalf("error %q does not name the file", e)
			}
		}
	})
}

// gunzipped returns what a list that starts with the gzip magic number
// decompresses to (as far as it does), else data itself.
func gunzipped(data []byte) []byte {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(zr)
	return out
}

// checkEntry fails when e is not in canonical form for its kind.
func checkEntry(t *testing.T, e Entry) {
	t.Helper()
	switch {
	case e.Kind == KindPattern, e.Kind == KindAllow && strings.Contains(e.Name, "*"):
		if p, err := ParsePattern(e.Name); err != nil || p != e.Name {
			t.Fatalf("pattern %+v is not canonical: %q, %v", e, p, err)
		}
	case e.Kind == KindDomain, e.Kind == KindExact, e.Kind == KindAllow:
		if !dnsname.ValidLower([]byte(e.Name)) || strings.HasSuffix(e.Name, ".") {
			t.Fatalf("name %+v is not canonical", e)
		}
	default:
		t.Fatalf("entry %+v of kind %v", e, e.Kind)
	}
}

func FuzzParseDomains(f *testing.F) { fuzzList(f, FormatDomains) }
func FuzzParseHosts(f *testing.F)   { fuzzList(f, FormatHosts) }
func FuzzParseAdblock(f *testing.F) { fuzzList(f, FormatAdblock) }

// FuzzParseApps checks that an app file either gives apps whose rules are
// canonical, or errors that each name the file.
func FuzzParseApps(f *testing.F) {
	for _, name := range CatalogFiles() {
		if strings.HasSuffix(name, ".toml") {
			data, err := CatalogFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"[[app]]\nname = \"a\"\ndomains = [\"x.test\", \"bad..test\"]\nexact = [\"*.x.test\"]\npatterns = [\"p-*.x.test\"]\nallow = [\"*.y.x.test\", \"ok.x.test\"]\nip_ranges = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
		"[[app]]\nname = \"A\"\n[[app]]\nname = \"a\"\nsources = [{ url = \"ftp://x\", format = \"hosts\" }, { file = \"l.txt\", format = \"csv\", refresh = \"-1h\" }]\nunknown = 1\n",
		"app = 1\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		apps, err := ParseApps("fuzz.toml", data, dir)
		if err != nil {
			for _, e := range unjoin(err) {
				var te *tomlpos.Error
				if !errors.As(e, &te) || te.File != "fuzz.toml" {
					t.Fatalf("error %q does not name the file", e)
				}
			}
			return
		}
		if len(apps) == 0 {
			t.Fatal("no apps and no error")
		}
		seen := map[string]bool{}
		for _, a := range apps {
			if !appNameRE.MatchString(a.Name) || seen[a.Name] {
				t.Fatalf("app name %q accepted", a.Name)
			}
			seen[a.Name] = true
			for _, list := range [][]Entry{a.Domains, a.Exact, a.Patterns, a.Allow} {
				for _, e := range list {
					checkEntry(t, e)
				}
			}
			for _, p := range a.IPRanges {
				if !p.IsValid() || p != p.Masked() {
					t.Fatalf("ip range %v accepted", p)
				}
			}
		}
	})
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestAdblockRuleWithoutName is what FuzzParseAdblock found first: a line
// that is empty once "@@" or the modifiers are taken off ("@@",
// "$important") made ParseList panic, so a list (a remote one, too) could
// crash a reload. It is an invalid line now.
func TestAdblockRuleWithoutName(t *testing.T) {
	for _, line := range []string{"@@", "$important", "$important ", "@@$important", "@@||", "|", "||^"} {
		var got []Entry
		st, err := ParseList(strings.NewReader(line+"\n||ok.test^\n"), FormatAdblock, "l.txt", func(e Entry) { got = append(got, e) })
		if err != nil || st.Invalid != 1 || len(got) != 1 || got[0].Name != "ok.test" {
			t.Errorf("%q: stats %+v, entries %v, err %v; want it invalid and the next line read", line, st, got, err)
		}
		if len(st.Errors) != 1 || !strings.HasPrefix(st.Errors[0].Error(), "l.txt:1: ") {
			t.Errorf("%q: errors %v, want one naming l.txt:1", line, st.Errors)
		}
	}
}
