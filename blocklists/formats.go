package blocklists

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/appfence/appfence/internal/dnsname"
)

// Format is the syntax of an external list.
type Format string

// List formats.
const (
	FormatDomains Format = "domains" // one name per line; "*.name" for subdomains only
	FormatHosts   Format = "hosts"   // "0.0.0.0 name [name ...]"
	FormatAdblock Format = "adblock" // "||name^", "|name^", "@@||name^"
)

// Formats lists the valid formats.
var Formats = []Format{FormatDomains, FormatHosts, FormatAdblock}

// Entry is one rule read from a list.
type Entry struct {
	Name string // canonical; for KindPattern with '*' in labels
	Kind Kind
	Line int
}

// ListStats sums up what parsing a list found.
type ListStats struct {
	Rules       int     // entries handed on
	Invalid     int     // lines that are not valid in the format
	Unsupported int     // valid adblock rules this resolver cannot apply (modifiers, URL rules, cosmetic rules)
	Errors      []error // the first few invalid or unsupported lines, with their line numbers
}

// maxReported is how many invalid lines a list reports one by one.
const maxReported = 5

func (s *ListStats) problem(file string, line int, unsupported bool, format string, args ...any) {
	if unsupported {
		s.Unsupported++
	} else {
		s.Invalid++
	}
	if len(s.Errors) < maxReported {
		s.Errors = append(s.Errors, fmt.Errorf("%s:%d: %s", file, line, fmt.Sprintf(format, args...)))
	}
}

// hostsIgnored are the names a hosts file lists for the machine itself.
var hostsIgnored = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// ParseList reads a list in the given format and calls add for each rule.
// file names the list in error messages. Lines that are not valid are
// counted and the first few reported in the stats; only a read error is
// returned as an error.
func ParseList(r io.Reader, format Format, file string, add func(Entry)) (ListStats, error) {
	var st ListStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var fields [][]byte
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		switch format {
		case FormatDomains:
			if text[0] == '#' {
				continue
			}
			if i := bytes.IndexByte(text, '#'); i >= 0 {
				text = bytes.TrimSpace(text[:i])
			}
			e, err := domainEntry(text, KindDomain)
			if err != nil {
				st.problem(file, line, false, "%v", err)
				continue
			}
			e.Line = line
			add(e)
			st.Rules++
		case FormatHosts:
			if text[0] == '#' {
				continue
			}
			if i := bytes.IndexByte(text, '#'); i >= 0 {
				text = text[:i]
			}
			fields = splitFields(fields[:0], text)
			if len(fields) < 2 {
				st.problem(file, line, false, "want an address and at least one name")
				continue
			}
			if !isHostsAddr(fields[0]) {
				st.problem(file, line, false, "%q is not an IP address", fields[0])
				continue
			}
			for _, f := range fields[1:] {
				if hostsIgnored[string(f)] {
					continue
				}
				e, err := domainEntry(f, KindDomain)
				if err != nil || e.Kind != KindDomain {
					if err == nil {
						err = fmt.Errorf("%q: wildcards are not valid in a hosts file", f)
					}
					st.problem(file, line, false, "%v", err)
					continue
				}
				e.Line = line
				add(e)
				st.Rules++
			}
		case FormatAdblock:
			e, skip, unsupported, err := adblockEntry(text)
			switch {
			case skip:
				continue
			case err != nil:
				st.problem(file, line, unsupported, "%v", err)
				continue
			}
			e.Line = line
			add(e)
			st.Rules++
		default:
			return st, fmt.Errorf("%s: unknown list format %q", file, format)
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("read %s: %w", file, err)
	}
	return st, nil
}

func splitFields(dst [][]byte, s []byte) [][]byte {
	for {
		i := bytes.IndexFunc(s, func(r rune) bool { return r != ' ' && r != '\t' })
		if i < 0 {
			return dst
		}
		s = s[i:]
		j := bytes.IndexAny(s, " \t")
		if j < 0 {
			return append(dst, s)
		}
		dst = append(dst, s[:j])
		s = s[j:]
	}
}

func isHostsAddr(b []byte) bool {
	switch string(b) {
	case "0.0.0.0", "127.0.0.1", "::", "::1":
		return true
	}
	_, err := netip.ParseAddr(string(b))
	return err == nil
}

// domainEntry parses a name from a list: "example.com" becomes a rule of the
// given kind, "*.example.com" a pattern for the names under it, and a name
// with '*' inside labels a pattern.
func domainEntry(b []byte, kind Kind) (Entry, error) {
	if dnsname.ValidLower(b) {
		name := string(bytes.TrimSuffix(b, []byte(".")))
		return Entry{Name: name, Kind: kind}, nil
	}
	if bytes.IndexByte(b, '*') >= 0 {
		p, err := ParsePattern(string(b))
		if err != nil {
			return Entry{}, err
		}
		if kind == KindAllow {
			return Entry{Name: p, Kind: KindAllow}, nil // allow patterns are told apart by the '*'
		}
		return Entry{Name: p, Kind: KindPattern}, nil
	}
	name, err := dnsname.Parse(string(b))
	if err != nil {
		return Entry{}, fmt.Errorf("%q: %v", b, err)
	}
	return Entry{Name: name, Kind: kind}, nil
}

// ParsePattern validates a pattern such as "p16-tiktok-*.ibyteimg.com" or
// "*.example.com" and returns it in canonical form. A '*' stands for any
// run of characters within one label; the last label with a '*' must be
// followed by at least one plain label.
func ParsePattern(s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	labels := strings.Split(s, ".")
	last := -1
	for i, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q: empty or too long label", s)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '*') {
				return "", fmt.Errorf("%q: invalid character %q", s, c)
			}
		}
		if strings.Contains(l, "*") {
			last = i
		}
	}
	if last < 0 {
		return "", fmt.Errorf("%q: a pattern needs a '*'", s)
	}
	if last == len(labels)-1 {
		return "", fmt.Errorf("%q: the labels after the last '*' must be plain (e.g. p16-*.example.com)", s)
	}
	return s, nil
}

// adblock modifiers that do not change which names a rule matches.
var adblockHarmless = map[string]bool{"important": true}

// adblockEntry parses one line of an adblock-style list. skip is true for
// comments and headers; unsupported marks a valid rule we cannot apply.
func adblockEntry(text []byte) (e Entry, skip, unsupported bool, err error) {
	switch {
	case text[0] == '!' || text[0] == '[':
		return e, true, false, nil
	case text[0] == '#' && !bytes.Contains(text, []byte("##")):
		return e, true, false, nil
	case bytes.Contains(text, []byte("##")) || bytes.Contains(text, []byte("#@#")) || bytes.Contains(text, []byte("#?#")):
		return e, false, true, fmt.Errorf("cosmetic rule %q does not apply to DNS", text)
	}
	kind := KindDomain
	if bytes.HasPrefix(text, []byte("@@")) {
		kind = KindAllow
		text = text[2:]
	}
	if i := bytes.IndexByte(text, '$'); i >= 0 {
		for _, mod := range strings.Split(string(text[i+1:]), ",") {
			if !adblockHarmless[mod] {
				return e, false, true, fmt.Errorf("modifier $%s is not supported", mod)
			}
		}
		text = text[:i]
	}
	if len(text) == 0 { // "@@", "$important"
		return e, false, false, fmt.Errorf("a rule without a name")
	}
	switch {
	case bytes.HasPrefix(text, []byte("||")):
		text = text[2:]
	case bytes.HasPrefix(text, []byte("|")):
		text = text[1:]
		if kind == KindDomain {
			kind = KindExact
		}
	case text[0] == '/':
		return e, false, true, fmt.Errorf("regular expression rule %q is not supported", text)
	}
	text = bytes.TrimSuffix(text, []byte("^"))
	text = bytes.TrimSuffix(text, []byte("|"))
	if bytes.ContainsAny(text, "/^|:?=&") {
		return e, false, true, fmt.Errorf("URL rule %q does not apply to DNS", text)
	}
	if kind == KindExact && bytes.IndexByte(text, '*') >= 0 {
		return e, false, true, fmt.Errorf("exact rule with a wildcard %q is not supported", text)
	}
	e, err = domainEntry(text, kind)
	return e, false, false, err
}
