package dnsname

import (
	"errors"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{"www.tiktok.com.", "www.tiktok.com"},
		{"www.tiktok.com", "www.tiktok.com"},
		{"WwW.TikTok.COM.", "www.tiktok.com"},
		{".", ""},
		{"", ""},
		{`\116iktok.com.`, "tiktok.com"},
		{`\084IKTOK.com.`, "tiktok.com"},
		{`tiktok\.com.`, `tiktok\046com`},
		{`tiktok\046com.`, `tiktok\046com`},
		{`a\032b.com.`, `a\032b.com`},
		{`a\(b.com.`, `a(b.com`},
		{`a\\b.com.`, `a\092b.com`},
		{`a\999.com.`, `a\092999.com`},
		{`trailing\`, `trailing\092`},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCanonicalDoesNotAllocateForCleanNames(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { _ = Canonical("www.tiktok.com.") })
	if allocs != 0 {
		t.Errorf("Canonical allocates %v times for a clean name", allocs)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"Example.COM.", "example.com", false},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"_dmarc.example.com", "_dmarc.example.com", false},
		{"a..b", "", true},
		{"", "", true},
		{".", "", true},
		{"exa mple.com", "", true},
		{"*.example.com", "", true},
		{string(make([]byte, 64)) + ".com", "", true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.err)
		}
	}
	if _, err := Parse(""); !errors.Is(err, ErrEmpty) {
		t.Errorf("Parse(\"\") error = %v, want ErrEmpty", err)
	}
}

func TestValidLower(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"example.com", true},
		{"example.com.", true},
		{"_dmarc.x-1.b_2.c9", true},
		{"Example.com", false},
		{"a..b", false},
		{".a", false},
		{".", false},
		{"", false},
		{"bücher.de", false},
		{"a*.b", false},
		{"a b.c", false},
		{strings.Repeat("a", 63) + ".test", true},
		{strings.Repeat("a", 64) + ".test", false},
		{"test." + strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 126) + "a", true},   // 253 bytes
		{strings.Repeat("a.", 126) + "ab", false}, // 254
	}
	for _, tt := range tests {
		if got := ValidLower([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidLower(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	// Every byte agrees with Parse: valid in canonical form exactly when
	// Parse accepts the name and leaves it as it is.
	for c := 0; c < 256; c++ {
		name := "a" + string([]byte{byte(c)}) + ".test"
		parsed, err := Parse(name)
		if want := err == nil && parsed == name; ValidLower([]byte(name)) != want {
			t.Errorf("ValidLower(%q) = %v, Parse = %q, %v", name, !want, parsed, err)
		}
	}
}

func TestIsSubdomain(t *testing.T) {
	tests := []struct {
		name, zone string
		want       bool
	}{
		{"a.corp.example", "corp.example", true},
		{"corp.example", "corp.example", true},
		{"xcorp.example", "corp.example", false},
		{"example", "corp.example", false},
		{"anything", "", true},
	}
	for _, tt := range tests {
		if got := IsSubdomain(tt.name, tt.zone); got != tt.want {
			t.Errorf("IsSubdomain(%q, %q) = %v, want %v", tt.name, tt.zone, got, tt.want)
		}
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"www.example.com.", "WWW.Example.COM", true},
		{`office\ printer.local.`, `office\032printer.local`, true},
		{`Office\ Printer.local.`, `office\032printer.local.`, true},
		{`john\'s.local.`, `john's.local.`, true},
		{`a\.b.local.`, `a\046b.local.`, true},
		{`a\.b.local.`, `a.b.local.`, false},
		{`back\\slash.`, `back\092slash.`, true},
		{`x.local.`, `y.local.`, false},
	}
	for _, tt := range tests {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
