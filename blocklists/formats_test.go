package blocklists

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/appfence/appfence/internal/listgen"
)

func parseString(t *testing.T, format Format, text string) ([]Entry, ListStats) {
	t.Helper()
	var got []Entry
	st, err := ParseList(strings.NewReader(text), format, "list.txt", func(e Entry) { got = append(got, e) })
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

func TestParseList(t *testing.T) {
	type want struct {
		name string
		kind Kind
		line int
	}
	tests := []struct {
		format      Format
		name        string
		text        string
		want        []want
		invalid     int
		unsupported int
		firstErr    string // a part of the first reported problem
	}{
		{FormatDomains, "names and comments", "# a list\nExample.COM\n\nwww.test. # trailing comment\n  spaced.test  \n",
			[]want{{"example.com", KindDomain, 2}, {"www.test", KindDomain, 4}, {"spaced.test", KindDomain, 5}}, 0, 0, ""},
		{FormatDomains, "wildcard means subdomains only", "*.wild.test\np16-*.img.test\n",
			[]want{{"*.wild.test", KindPattern, 1}, {"p16-*.img.test", KindPattern, 2}}, 0, 0, ""},
		{FormatDomains, "unicode to punycode", "bücher.example\nМОСКВА.рф\n",
			[]want{{"xn--bcher-kva.example", KindDomain, 1}, {"xn--80adxhks.xn--p1ai", KindDomain, 2}}, 0, 0, ""},
		{FormatDomains, "byte order mark and CRLF", "\xef\xbb\xbfa.test\r\nb.test\r\n",
			[]want{{"a.test", KindDomain, 1}, {"b.test", KindDomain, 2}}, 0, 0, ""},
		{FormatDomains, "invalid lines are counted", "ok.test\nbad..test\nhttp://x.test/\n" + strings.Repeat("x", 64) + ".test\n",
			[]want{{"ok.test", KindDomain, 1}}, 3, 0, "list.txt:2:"},
		{FormatDomains, "a wildcard at the end", "example.*\n", nil, 1, 0, "list.txt:1:"},

		{FormatHosts, "any address, several names", "# hosts\n0.0.0.0 a.test\n127.0.0.1\tb.test c.test # two\n:: d.test\n192.0.2.1 e.test\nfe80::1%lo0 f.test\n",
			[]want{{"a.test", KindDomain, 2}, {"b.test", KindDomain, 3}, {"c.test", KindDomain, 3}, {"d.test", KindDomain, 4}, {"e.test", KindDomain, 5}, {"f.test", KindDomain, 6}}, 0, 0, ""},
		{FormatHosts, "the machine's own names are skipped", "127.0.0.1 localhost localhost.localdomain\n::1 ip6-localhost ip6-loopback\n0.0.0.0 0.0.0.0\n255.255.255.255 broadcasthost\n",
			nil, 0, 0, ""},
		{FormatHosts, "unicode", "0.0.0.0 BÜCHER.example\n", []want{{"xn--bcher-kva.example", KindDomain, 1}}, 0, 0, ""},
		{FormatHosts, "invalid lines", "a.test\nnot-an-ip b.test\n0.0.0.0 *.c.test ok.test\n0.0.0.0 bad..test\n",
			[]want{{"ok.test", KindDomain, 3}}, 4, 0, "list.txt:1: \"a.test\": want an address"},

		{FormatAdblock, "network rules", "! Title: x\n[Adblock Plus 2.0]\n||a.test^\n|b.test^\nc.test\n.d.test\n||E.Test^$important\n||p16-*.img.test^\n||f.test^|\n# comment\n",
			[]want{{"a.test", KindDomain, 3}, {"b.test", KindExact, 4}, {"c.test", KindExact, 5}, {"*.d.test", KindPattern, 6}, {"e.test", KindDomain, 7}, {"p16-*.img.test", KindPattern, 8}, {"f.test", KindDomain, 9}}, 0, 0, ""},
		{FormatAdblock, "exceptions", "@@||ok.test^\n@@.sub.test\n@@||ok-*.img.test^\n@@|one.test^\n",
			[]want{{"ok.test", KindAllow, 1}, {"*.sub.test", KindAllow, 2}, {"ok-*.img.test", KindAllow, 3}}, 0, 1, "list.txt:4: exception \"one.test\" for one name only"},
		{FormatAdblock, "hosts lines inside", "0.0.0.0 a.test b.test\n", []want{{"a.test", KindDomain, 1}, {"b.test", KindDomain, 1}}, 0, 0, ""},
		{FormatAdblock, "unicode", "||bücher.example^\n", []want{{"xn--bcher-kva.example", KindDomain, 1}}, 0, 0, ""},
		{FormatAdblock, "unsupported rules are skipped and counted",
			"||a.test^$third-party\n||b.test^$dnstype=AAAA\n/ads[0-9]+\\./\n##.banner\nexample.com#@#.ad\n||c.test/path^\n|d*.test^\n||ok.test^\n",
			[]want{{"ok.test", KindDomain, 8}}, 0, 7, "list.txt:1: modifier $third-party is not supported"},
		{FormatAdblock, "invalid", "||bad..test^\n||^\n", nil, 2, 0, "list.txt:1:"},
	}
	for _, tt := range tests {
		t.Run(string(tt.format)+"/"+tt.name, func(t *testing.T) {
			got, st := parseString(t, tt.format, tt.text)
			var gotW []want
			for _, e := range got {
				gotW = append(gotW, want{e.Name, e.Kind, e.Line})
			}
			if len(gotW) != len(tt.want) {
				t.Fatalf("entries %v, want %v (problems %v)", gotW, tt.want, st.Errors)
			}
			for i := range gotW {
				if gotW[i] != tt.want[i] {
					t.Errorf("entry %d = %v, want %v", i, gotW[i], tt.want[i])
				}
			}
			if st.Rules != len(tt.want) || st.Invalid != tt.invalid || st.Unsupported != tt.unsupported {
				t.Errorf("stats rules=%d invalid=%d unsupported=%d, want %d %d %d: %v",
					st.Rules, st.Invalid, st.Unsupported, len(tt.want), tt.invalid, tt.unsupported, st.Errors)
			}
			if tt.firstErr != "" && (len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Error(), tt.firstErr)) {
				t.Errorf("problems %v, want the first to contain %q", st.Errors, tt.firstErr)
			}
		})
	}
}

func TestParseListReportsTheFirstFewProblems(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 20; i++ {
		b.WriteString("bad..test\n")
	}
	_, st := parseString(t, FormatDomains, b.String())
	if st.Invalid != 20 || len(st.Errors) != maxReported || !strings.HasPrefix(st.Errors[maxReported-1].Error(), "list.txt:5: ") {
		t.Errorf("invalid=%d errors=%v", st.Invalid, st.Errors)
	}
}

func TestParseListGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("a.test\nb.test\n"))
	zw.Close()
	var n int
	st, err := ParseList(&buf, FormatDomains, "l.gz", func(Entry) { n++ })
	if err != nil || n != 2 || st.Rules != 2 {
		t.Errorf("gzip list: %d rules, %v", n, err)
	}
	_, err = ParseList(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0}), FormatDomains, "bad.gz", func(Entry) {})
	if err == nil || !strings.HasPrefix(err.Error(), "read bad.gz: gzip: ") {
		t.Errorf("truncated gzip: %v", err)
	}
}

// testData returns the path of a file of the shared test data,
// ../shared/data beside the repository (SOURCES.md there says where each
// comes from). APPFENCE_TESTDATA overrides its place.
func testData(t testing.TB, rel string) string {
	t.Helper()
	dir := os.Getenv("APPFENCE_TESTDATA")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "data")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test data %s not present (../shared/data beside the repository, or set APPFENCE_TESTDATA): %v", rel, err)
	}
	return p
}

var entriesHeader = regexp.MustCompile(`(?m)^[#!] Entries: ([0-9,]+)$`)

// headerEntries returns the entry count a blocklistproject list states in
// its header.
func headerEntries(t *testing.T, data []byte) int {
	t.Helper()
	m := entriesHeader.FindSubmatch(data[:min(len(data), 2048)])
	if m == nil {
		t.Fatal("no Entries header")
	}
	n, err := strconv.Atoi(strings.ReplaceAll(string(m[1]), ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readMaybeGzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := decompress(f, path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRealLists parses the public lists of the shared test data: every
// entry their header announces becomes a rule, and none is invalid.
func TestRealLists(t *testing.T) {
	tests := []struct {
		file   string
		format Format
		sample map[string]Kind // names that must be among the entries
	}{
		{"lists/blocklistproject-basic.txt.gz", FormatHosts, map[string]Kind{"0-app.com": KindDomain}},
		{"lists/blocklistproject-phishing-nl.txt.gz", FormatDomains, map[string]Kind{"0001interac.com": KindDomain}},
		{"lists/blocklistproject-tracking-ags.txt.gz", FormatAdblock, map[string]Kind{"0cf.io": KindDomain}},
		{"apps/blocklistproject/tiktok.txt", FormatHosts, map[string]Kind{"tiktok.com": KindDomain}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			path := testData(t, tt.file)
			want := headerEntries(t, readMaybeGzip(t, path))
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			found := map[string]bool{}
			st, err := ParseList(f, tt.format, path, func(e Entry) {
				if k, ok := tt.sample[e.Name]; ok && k == e.Kind {
					found[e.Name] = true
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.Rules != want || st.Invalid != 0 || st.Unsupported != 0 {
				t.Errorf("rules=%d invalid=%d unsupported=%d, the header says %d entries: %v", st.Rules, st.Invalid, st.Unsupported, want, st.Errors)
			}
			if len(found) != len(tt.sample) {
				t.Errorf("found %v of %v", found, tt.sample)
			}
		})
	}
}

// TestNextDNSList parses the nextdns TikTok list, one name a line.
func TestNextDNSList(t *testing.T) {
	path := testData(t, "apps/nextdns/tiktok")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(strings.TrimSpace(string(data)), "\n") + 1
	var names []string
	st, err := ParseList(bytes.NewReader(data), FormatDomains, path, func(e Entry) { names = append(names, e.Name) })
	if err != nil || st.Rules != lines || st.Invalid != 0 || len(names) != 90 {
		t.Errorf("%d rules of %d lines, %d invalid, err %v", st.Rules, lines, st.Invalid, err)
	}
}

// TestAdGuardServiceYAML checks the import recipe of docs/administration.md:
// AdGuard's service files are YAML whose "rules" are adblock rules; the
// sed command extracts them and the adblock parser takes every one.
func TestAdGuardServiceYAML(t *testing.T) {
	data, err := os.ReadFile(testData(t, "apps/adguard/tiktok.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// sed -n "s/^  - '\(.*\)'$/\1/p" tiktok.yml
	re := regexp.MustCompile(`(?m)^  - '(.*)'$`)
	// The file is AdGuard's and changes with it: the expected kinds are
	// counted from the extracted rules ("*" makes a pattern), not fixed.
	var rules strings.Builder
	wantPatterns := 0
	matches := re.FindAllSubmatch(data, -1)
	for _, m := range matches {
		if bytes.ContainsRune(m[1], '*') {
			wantPatterns++
		}
		rules.Write(m[1])
		rules.WriteByte('\n')
	}
	if len(matches) < 20 {
		t.Fatalf("extracted %d rules from %s; the recipe no longer fits the file", len(matches), "tiktok.yml")
	}
	got, st := parseString(t, FormatAdblock, rules.String())
	kinds := map[Kind]int{}
	for _, e := range got {
		kinds[e.Kind]++
	}
	if st.Rules != len(matches) || st.Invalid+st.Unsupported != 0 || kinds[KindPattern] != wantPatterns || kinds[KindDomain]+kinds[KindExact] != len(matches)-wantPatterns {
		t.Errorf("rules=%d kinds=%v problems=%v, want %d rules of which %d patterns", st.Rules, kinds, st.Errors, len(matches), wantPatterns)
	}
	// The YAML file itself is not a list: every rule line is invalid there.
	_, st = parseString(t, FormatAdblock, string(data))
	if st.Rules == len(matches) {
		t.Error("the YAML parsed as a list; update the docs")
	}
}

// BenchmarkParseList measures parsing the real lists of the shared test
// data and 1,000,000 synthetic names (internal/listgen) in each format,
// from memory (real lists are decompressed first). The "lines" reference
// only splits the same bytes into lines, so parse/lines is the cost of the
// format over plain reading.
func BenchmarkParseList(b *testing.B) {
	for _, l := range []struct {
		name   string
		format Format
		data   func(b *testing.B) []byte
	}{
		{"real/hosts", FormatHosts, realList("lists/blocklistproject-basic.txt.gz")},
		{"real/domains", FormatDomains, realList("lists/blocklistproject-phishing-nl.txt.gz")},
		{"real/adblock", FormatAdblock, realList("lists/blocklistproject-tracking-ags.txt.gz")},
		{"synthetic/hosts", FormatHosts, syntheticList(listgen.FormatHosts)},
		{"synthetic/domains", FormatDomains, syntheticList(listgen.FormatDomains)},
		{"synthetic/adblock", FormatAdblock, syntheticList(listgen.FormatAdblock)},
	} {
		b.Run(l.name, func(b *testing.B) {
			data := l.data(b)
			b.Run("lines", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					sc := bufio.NewScanner(bytes.NewReader(data))
					n := 0
					for sc.Scan() {
						n += len(bytes.TrimSpace(sc.Bytes()))
					}
				}
			})
			b.Run("parse", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					n := 0
					if _, err := ParseList(bytes.NewReader(data), l.format, l.name, func(e Entry) { n += len(e.Name) }); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// realList returns a reader of a list of the shared test data, which skips
// the benchmark when the data is not there.
func realList(rel string) func(b *testing.B) []byte {
	return func(b *testing.B) []byte { return readMaybeGzip(b, testData(b, rel)) }
}

// syntheticList returns a reader of 1,000,000 listgen names in format.
func syntheticList(format listgen.Format) func(b *testing.B) []byte {
	return func(b *testing.B) []byte {
		var buf bytes.Buffer
		if err := listgen.Write(&buf, format, listgen.Names(1, 1_000_000)); err != nil {
			b.Fatal(err)
		}
		return buf.Bytes()
	}
}
