// Package listgen generates large synthetic domain lists, deterministically,
// for benchmarks and tests of the list parser, the matcher and the policy.
//
// The names look like the ones of real blocklists: two to four labels made
// of pronounceable syllables of varied length, now and then with digits or
// a hyphen, under a mix of top-level domains that includes multi-label ones
// such as co.uk. Names come in sites: a registrable domain, often listed
// itself, and a few names under it ("cdn", "api", "edge12", ...), so that
// the suffix walk of a matcher meets rules above, at and below a name. The
// same seed always gives the same names in the same order, on any machine,
// and no name is given twice.
package listgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
)

// Format is the syntax a list is written in. The values are those of
// blocklists.Format, so a Format converts to it directly.
type Format string

// The list formats Write knows.
const (
	FormatDomains Format = "domains" // "name"
	FormatHosts   Format = "hosts"   // "0.0.0.0 name"
	FormatAdblock Format = "adblock" // "||name^"
)

// Formats lists the formats Write knows.
var Formats = []Format{FormatDomains, FormatHosts, FormatAdblock}

// tlds are the top-level (and public multi-label) suffixes names are put
// under; a suffix written several times is drawn that much more often.
var tlds = []string{
	"com", "com", "com", "com", "com", "com", "com", "com",
	"net", "net", "net", "org", "org", "io", "info", "xyz", "top", "app",
	"de", "fr", "nl", "ru", "cn", "br", "in", "it", "pl", "es",
	"co.uk", "co.uk", "org.uk", "com.au", "co.jp", "com.br", "com.cn", "co.in",
}

// subLabels are the first labels seen most often in real lists.
var subLabels = []string{
	"www", "cdn", "api", "img", "static", "m", "mail", "edge", "ads", "track",
	"log", "t", "s", "media", "video", "assets", "stats", "metrics", "app", "auth",
}

var (
	onsets = []string{"b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
		"br", "ch", "cl", "dr", "fl", "gr", "kr", "pl", "sh", "st", "th", "tr"}
	vowels = []string{"a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "y"}
	codas  = []string{"", "", "", "", "n", "r", "s", "t", "x", "m", "l", "ck"}
)

// Generator yields distinct synthetic names. It is not safe for concurrent
// use.
type Generator struct {
	rng  *rand.Rand
	seen map[string]struct{}
	site []string // names of the current site not yet yielded
}

// New returns a generator of the names of seed.
func New(seed uint64) *Generator {
	return &Generator{
		rng:  rand.New(rand.NewPCG(seed, 0x6170706665e6ce)),
		seen: map[string]struct{}{},
	}
}

// Next returns the next name: canonical (lower case, no trailing dot),
// valid, and different from every name the generator returned before.
func (g *Generator) Next() string {
	for len(g.site) == 0 {
		g.newSite()
	}
	name := g.site[0]
	g.site = g.site[1:]
	return name
}

// Names returns the first n names of seed.
func Names(seed uint64, n int) []string {
	g := New(seed)
	names := make([]string, n)
	for i := range names {
		names[i] = g.Next()
	}
	return names
}

// newSite draws a registrable domain and the names listed under it, and
// queues those not given before.
func (g *Generator) newSite() {
	base := g.label(1, 4)
	if g.rng.IntN(8) == 0 {
		base += "-" + g.label(1, 2) // "fast-cloud"
	} else if g.rng.IntN(6) == 0 {
		base += strconv.Itoa(g.rng.IntN(100)) // "media24"
	}
	tld := tlds[g.rng.IntN(len(tlds))]
	reg := base + "." + tld
	// Most sites are one name; some have a handful.
	n := 1
	switch r := g.rng.IntN(20); {
	case r >= 17:
		n = 4 + g.rng.IntN(5)
	case r >= 12:
		n = 2 + g.rng.IntN(2)
	}
	room := 4 - labels(reg) // labels left under the registrable domain
	if g.rng.IntN(2) == 0 {
		g.queue(reg)
		n--
	}
	for ; n > 0 && room > 0; n-- {
		name := g.sub() + "." + reg
		if room > 1 && g.rng.IntN(4) == 0 {
			name = g.sub() + "." + name
		}
		g.queue(name)
	}
}

// queue adds name to the site unless it was given before.
func (g *Generator) queue(name string) {
	if _, dup := g.seen[name]; dup {
		return
	}
	g.seen[name] = struct{}{}
	g.site = append(g.site, name)
}

// sub draws a label for a name under a registrable domain: a common one,
// a common one with a number, or a made-up one.
func (g *Generator) sub() string {
	switch r := g.rng.IntN(10); {
	case r < 4:
		return subLabels[g.rng.IntN(len(subLabels))]
	case r < 6:
		return subLabels[g.rng.IntN(len(subLabels))] + strconv.Itoa(g.rng.IntN(64))
	default:
		return g.label(1, 3)
	}
}

// label draws a pronounceable label of min to max syllables.
func (g *Generator) label(min, max int) string {
	var b []byte
	for n := min + g.rng.IntN(max-min+1); n > 0; n-- {
		b = append(b, onsets[g.rng.IntN(len(onsets))]...)
		b = append(b, vowels[g.rng.IntN(len(vowels))]...)
		b = append(b, codas[g.rng.IntN(len(codas))]...)
	}
	return string(b)
}

func labels(name string) int {
	n := 1
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			n++
		}
	}
	return n
}

// Write writes names as a list in format, one rule a line after a comment
// line that says what the list is.
func Write(w io.Writer, format Format, names []string) error {
	var prefix, suffix, comment string
	switch format {
	case FormatDomains:
		comment = "# "
	case FormatHosts:
		prefix, comment = "0.0.0.0 ", "# "
	case FormatAdblock:
		prefix, suffix, comment = "||", "^", "! "
	default:
		return fmt.Errorf("listgen: unknown format %q", format)
	}
	bw := bufio.NewWriterSize(w, 64*1024)
	fmt.Fprintf(bw, "%ssynthetic list: %d names (internal/listgen)\n", comment, len(names))
	for _, name := range names {
		bw.WriteString(prefix)
		bw.WriteString(name)
		bw.WriteString(suffix)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// WriteFile writes names as a list in format to the file at path.
func WriteFile(path string, format Format, names []string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("listgen: %w", err)
	}
	if err := Write(f, format, names); err != nil {
		f.Close()
		return fmt.Errorf("listgen: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("listgen: %w", err)
	}
	return nil
}
