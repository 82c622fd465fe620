package listgen

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/internal/dnsname"
)

func TestSameSeedSameBytes(t *testing.T) {
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			var a, b, c bytes.Buffer
			for _, tt := range []struct {
				w    *bytes.Buffer
				seed uint64
			}{{&a, 1}, {&b, 1}, {&c, 2}} {
				if err := Write(tt.w, f, Names(tt.seed, 5000)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Error("the same seed wrote different lists")
			}
			if bytes.Equal(a.Bytes(), c.Bytes()) {
				t.Error("seeds 1 and 2 wrote the same list")
			}
		})
	}
}

// TestNamesAreStable pins the first names of seed 1: benchmarks run on
// other machines and Go versions must see the same list.
func TestNamesAreStable(t *testing.T) {
	got := strings.Join(Names(1, 4), " ")
	const want = "img.druck.ru gu.org mukairbrack.org losnouxtit.br"
	if got != want {
		t.Errorf("Names(1, 4) = %q, want %q", got, want)
	}
}

func TestNamesAreDistinctAndValid(t *testing.T) {
	const n = 200_000
	names := Names(7, n)
	seen := make(map[string]bool, n)
	labelCount := map[int]int{}
	multiTLD, parentListed := 0, 0
	for _, name := range names {
		if seen[name] {
			t.Fatalf("%q given twice", name)
		}
		seen[name] = true
		if !dnsname.ValidLower([]byte(name)) || strings.HasSuffix(name, ".") {
			t.Fatalf("%q is not a canonical host name", name)
		}
		labelCount[strings.Count(name, ".")+1]++
		if strings.HasSuffix(name, ".co.uk") || strings.HasSuffix(name, ".com.au") {
			multiTLD++
		}
	}
	for _, name := range names {
		for p, ok := dnsname.Parent(name); ok; p, ok = dnsname.Parent(p) {
			if seen[p] {
				parentListed++
				break
			}
		}
	}
	for l, c := range labelCount {
		if l < 2 || l > 4 {
			t.Errorf("%d names have %d labels, want 2 to 4", c, l)
		}
	}
	// The mix the package promises, loosely: every label count, names
	// under multi-label suffixes, and names whose parent is listed too.
	for _, l := range []int{2, 3, 4} {
		if labelCount[l] < n/50 {
			t.Errorf("only %d of %d names have %d labels", labelCount[l], n, l)
		}
	}
	if multiTLD < n/100 {
		t.Errorf("only %d names under co.uk or com.au", multiTLD)
	}
	if parentListed < n/20 || parentListed > n/2 {
		t.Errorf("%d of %d names lie under another listed name, want between 5%% and 50%%", parentListed, n)
	}
}

// TestWriteParses reads every format back with the list parser: each name
// becomes one rule for the name and its subdomains, in order, on its line.
func TestWriteParses(t *testing.T) {
	names := Names(3, 20_000)
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, f, names); err != nil {
				t.Fatal(err)
			}
			i := 0
			st, err := blocklists.ParseList(&buf, blocklists.Format(f), "synthetic", func(e blocklists.Entry) {
				if i < len(names) && (e.Name != names[i] || e.Kind != blocklists.KindDomain || e.Line != i+2) {
					t.Errorf("rule %d = %+v, want domain %q on line %d", i, e, names[i], i+2)
				}
				i++
			})
			if err != nil {
				t.Fatal(err)
			}
			if st.Rules != len(names) || st.Invalid != 0 || st.Unsupported != 0 || st.Lines != len(names)+1 {
				t.Errorf("stats = %+v, want %d rules on %d lines and no problems", st, len(names), len(names)+1)
			}
		})
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	if err := Write(&bytes.Buffer{}, "csv", nil); err == nil || !strings.Contains(err.Error(), `"csv"`) {
		t.Errorf("error = %v, want one naming the format", err)
	}
}

func TestWriteFile(t *testing.T) {
	path := t.TempDir() + "/list.txt"
	names := Names(1, 100)
	if err := WriteFile(path, FormatHosts, names); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, FormatHosts, names)
	data, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(data, buf.Bytes()) {
		t.Errorf("file differs from Write's output (err %v)", err)
	}
	if err := WriteFile(t.TempDir()+"/missing/list.txt", FormatHosts, names); err == nil {
		t.Error("writing into a missing directory did not fail")
	}
}
