package blocklists

import (
	"bufio"
	"bytes"
	"compress/gzip"
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
	Lines       int     // lines read, blank lines and comments included
	Rules       int     // entries handed on
	Invalid     int     // lines that are not valid in the format
	Unsupported int     // valid adblock rules this resolver cannot apply (modifiers, URL rules, cosmetic rules)
	Errors      []error // the first few invalid or unsupported lines, with their line numbers
}

// maxReported is how many invalid lines a list reports one by one.
const maxReported = 5

// hostsIgnored are the names a hosts file lists for the machine itself.
var hostsIgnored = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// ParseList reads a list in the given format and calls add for each rule.
// Content that starts with the gzip magic number is decompressed first.
// file names the list in messages. Lines that are not valid are counted and
// the first few reported in the stats, each as "file:line: reason"; only a
// read error is returned as an error.
//
// The formats, line by line (leading and trailing blanks are ignored):
//
//	domains  "example.com" (the name and its subdomains), "*.example.com"
//	         (its subdomains only), "# comment", "example.com # comment"
//	hosts    "ADDRESS NAME [NAME...]" with any IPv4 or IPv6 address; each
//	         name and its subdomains; the machine's own names (localhost,
//	         ip6-localhost, ...) are skipped; "#" starts a comment
//	adblock  "||name^" (name and subdomains), "|name^" and a bare "name"
//	         (only the name), ".name" (only its subdomains), "@@||name^"
//	         (an exception), "||a*.name^" (a pattern), "$important";
//	         hosts lines as above; "!" and "#" comments, "[Adblock ...]"
//	         headers. Other modifiers, URL, regular-expression and cosmetic
//	         rules are skipped and counted as unsupported.
//
// Unicode names are converted to punycode (IDNA 2008).
func ParseList(r io.Reader, format Format, file string, add func(Entry)) (ListStats, error) {
	p := listParser{file: file, add: add}
	var parse func([]byte)
	switch format {
	case FormatDomains:
		parse = p.domainsLine
	case FormatHosts:
		parse = p.hostsLine
	case FormatAdblock:
		parse = p.adblockLine
	default:
		return p.st, fmt.Errorf("%s: unknown list format %q", file, format)
	}
	r, err := decompress(r, file)
	if err != nil {
		return p.st, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		p.line++
		text := sc.Bytes()
		if p.line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if text = bytes.TrimSpace(text); len(text) > 0 {
			parse(text)
		}
	}
	p.st.Lines = p.line
	if err := sc.Err(); err != nil {
		return p.st, fmt.Errorf("read %s: line %d: %w", file, p.line+1, err)
	}
	return p.st, nil
}

// decompress returns a reader of the content, gunzipping it when it starts
// with the gzip magic number.
func decompress(r io.Reader, name string) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read %s: gzip: %w", name, err)
		}
		return zr, nil
	}
	return br, nil
}

// listParser holds the state of one ParseList call.
type listParser struct {
	file   string
	line   int
	add    func(Entry)
	st     ListStats
	fields [][]byte
}

func (p *listParser) emit(e Entry) {
	e.Line = p.line
	p.add(e)
	p.st.Rules++
}

// problem counts an invalid (or unsupported) line and keeps the first few.
func (p *listParser) problem(unsupported bool, format string, args ...any) {
	if unsupported {
		p.st.Unsupported++
	} else {
		p.st.Invalid++
	}
	if len(p.st.Errors) < maxReported {
		p.st.Errors = append(p.st.Errors, fmt.Errorf("%s:%d: %s", p.file, p.line, fmt.Sprintf(format, args...)))
	}
}

func (p *listParser) domainsLine(text []byte) {
	if i := bytes.IndexByte(text, '#'); i >= 0 {
		if text = bytes.TrimSpace(text[:i]); len(text) == 0 {
			return
		}
	}
	e, err := domainEntry(text, KindDomain)
	if err != nil {
		p.problem(false, "%v", err)
		return
	}
	p.emit(e)
}

func (p *listParser) hostsLine(text []byte) {
	if i := bytes.IndexByte(text, '#'); i >= 0 {
		if text = text[:i]; len(bytes.TrimSpace(text)) == 0 {
			return
		}
	}
	p.fields = splitFields(p.fields[:0], text)
	if len(p.fields) < 2 {
		p.problem(false, "%q: want an address and at least one name", text)
		return
	}
	if !isHostsAddr(p.fields[0]) {
		p.problem(false, "%q is not an IP address", p.fields[0])
		return
	}
	for _, f := range p.fields[1:] {
		if hostsIgnored[string(f)] {
			continue
		}
		if bytes.IndexByte(f, '*') >= 0 {
			p.problem(false, "%q: wildcards are not valid in a hosts file", f)
			continue
		}
		e, err := domainEntry(f, KindDomain)
		if err != nil {
			p.problem(false, "%v", err)
			continue
		}
		p.emit(e)
	}
}

func (p *listParser) adblockLine(text []byte) {
	if text[0] == '!' || text[0] == '[' {
		return // comment or "[Adblock Plus 2.0]" header
	}
	if i := bytes.IndexByte(text, '#'); i >= 0 {
		if r := text[i:]; bytes.HasPrefix(r, []byte("##")) || bytes.HasPrefix(r, []byte("#@#")) ||
			bytes.HasPrefix(r, []byte("#?#")) || bytes.HasPrefix(r, []byte("#$#")) {
			p.problem(true, "cosmetic rule %q does not apply to DNS", text)
			return
		}
		if i == 0 {
			return // a comment
		}
	}
	if c := text[0]; c >= '0' && c <= '9' || c == ':' {
		if i := bytes.IndexAny(text, " \t"); i > 0 && isHostsAddr(text[:i]) {
			p.hostsLine(text)
			return
		}
	}
	e, unsupported, err := adblockEntry(text)
	if err != nil {
		p.problem(unsupported, "%v", err)
		return
	}
	p.emit(e)
}

// splitFields appends the blank-separated fields of s to dst.
func splitFields(dst [][]byte, s []byte) [][]byte {
	start := -1
	for i, c := range s {
		switch {
		case c == ' ' || c == '\t':
			if start >= 0 {
				dst = append(dst, s[start:i])
				start = -1
			}
		case start < 0:
			start = i
		}
	}
	if start >= 0 {
		dst = append(dst, s[start:])
	}
	return dst
}

func isHostsAddr(b []byte) bool {
	switch string(b) {
	case "0.0.0.0", "127.0.0.1", "::", "::1":
		return true
	}
	if len(b) < 2 || bytes.IndexByte(b, '.') < 0 && bytes.IndexByte(b, ':') < 0 {
		return false
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
		if kind == KindExact {
			return Entry{}, fmt.Errorf("%q: an exact rule cannot have a wildcard", b)
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

// urlChars are the characters of an adblock rule that make it match URLs
// rather than host names.
var urlChars = [256]bool{'/': true, '^': true, '|': true, ':': true, '?': true, '=': true, '&': true, '$': true}

func hasURLChar(b []byte) bool {
	for _, c := range b {
		if urlChars[c] {
			return true
		}
	}
	return false
}

// adblock modifiers that do not change which names a rule matches.
var adblockHarmless = map[string]bool{"important": true}

// adblockEntry parses one network rule of an adblock-style list (comments,
// headers, cosmetic and hosts lines are handled by the caller). unsupported
// marks a valid rule this resolver cannot apply.
func adblockEntry(text []byte) (e Entry, unsupported bool, err error) {
	exception := bytes.HasPrefix(text, []byte("@@"))
	if exception {
		text = text[2:]
	}
	if i := bytes.IndexByte(text, '$'); i >= 0 && text[0] != '/' {
		for _, mod := range strings.Split(string(text[i+1:]), ",") {
			if !adblockHarmless[mod] {
				return e, true, fmt.Errorf("modifier $%s is not supported", mod)
			}
		}
		text = text[:i]
	}
	if len(text) == 0 { // "@@", "$important"
		return e, false, fmt.Errorf("a rule without a name")
	}
	if text[0] == '/' {
		return e, true, fmt.Errorf("regular expression rule %q is not supported", text)
	}
	// What the rule covers: "||name^" the name and its subdomains, "|name^"
	// and a bare name only the name, ".name" only its subdomains.
	kind := KindExact
	switch {
	case bytes.HasPrefix(text, []byte("||")):
		text, kind = text[2:], KindDomain
	case bytes.HasPrefix(text, []byte("|")):
		text = text[1:]
	case text[0] == '.':
		text, kind = append([]byte("*"), text...), KindPattern
	}
	text = bytes.TrimSuffix(text, []byte("|"))
	text = bytes.TrimSuffix(text, []byte("^"))
	if len(text) == 0 { // "||^", "|"
		return e, false, fmt.Errorf("a rule without a name")
	}
	if hasURLChar(text) {
		return e, true, fmt.Errorf("URL rule %q does not apply to DNS", text)
	}
	if kind == KindExact && bytes.IndexByte(text, '*') >= 0 {
		return e, true, fmt.Errorf("exact rule with a wildcard %q is not supported", text)
	}
	if exception {
		if kind == KindExact {
			// An exception for one name only has no rule kind here; widening
			// it to the subdomains would let more through than the list says.
			return e, true, fmt.Errorf("exception %q for one name only is not supported (write @@||%s^)", text, text)
		}
		kind = KindAllow
	}
	if kind == KindPattern {
		kind = KindDomain // domainEntry makes a pattern of it
	}
	e, err = domainEntry(text, kind)
	return e, false, err
}
