package dnsname

import (
	"bytes"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzCanonical feeds Canonical the names miekg/dns makes of wire-format
// names, as it does for every query: the canonical form must hold the same
// labels, byte for byte, with ASCII letters lowered, and be its own
// canonical form.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"www.tiktok.com.", "WwW.TikTok.COM.", ".", `tiktok\.com.`, `a\032b.com.`,
		`a\(b.com.`, `a\\b.com.`, `\255\000.x.`, `xn--bcher-kva.example.`} {
		b := make([]byte, 256)
		n, err := dns.PackDomainName(s, b, 0, nil, false)
		if err != nil {
			f.Fatalf("seed %q: %v", s, err)
		}
		f.Add(b[:n])
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		name, _, err := dns.UnpackDomainName(wire, 0)
		if err != nil {
			return
		}
		c := Canonical(name)
		if strings.ContainsAny(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("Canonical(%q) = %q has upper-case letters", name, c)
		}
		if again := Canonical(c); again != c {
			t.Fatalf("Canonical(%q) = %q, but Canonical(%q) = %q", name, c, c, again)
		}
		if upper := Canonical(strings.ToUpper(name)); upper != c {
			t.Fatalf("Canonical(%q) = %q, but of its upper case %q", name, c, upper)
		}
		want, ok := packLower(name)
		if !ok {
			t.Fatalf("miekg/dns cannot pack back its own name %q", name)
		}
		got, ok := packLower(c + ".")
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("Canonical(%q) = %q: labels %x, want %x", name, c, got, want)
		}
	})
}

// packLower returns name in wire format with ASCII letters lowered.
func packLower(name string) ([]byte, bool) {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(name, b, 0, nil, false)
	if err != nil {
		return nil, false
	}
	return bytes.ToLower(b[:n]), true // length bytes are below 'A'
}

// FuzzParse checks that Parse and ValidLower agree: a name Parse accepts
// is valid and canonical, and stays the same when parsed again; a name
// ValidLower accepts is what Parse returns for it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "bücher.example", "a..b", "_dmarc.x.test",
		strings.Repeat("a", 64) + ".test", "-x.test", "xn--bcher-kva.example", "a b", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil {
			if !ValidLower([]byte(n)) {
				t.Fatalf("Parse(%q) = %q, which ValidLower rejects", s, n)
			}
			if again, err := Parse(n); err != nil || again != n {
				t.Fatalf("Parse(%q) = %q, but Parse(%q) = %q, %v", s, n, n, again, err)
			}
		}
		if ValidLower([]byte(s)) {
			if err != nil || n != strings.TrimSuffix(s, ".") {
				t.Fatalf("ValidLower(%q), but Parse gives %q, %v", s, n, err)
			}
		}
	})
}
