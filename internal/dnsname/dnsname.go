// Package dnsname turns DNS names into the single form AppFence compares:
// ASCII letters in lower case, no trailing dot, escapes of ordinary
// characters decoded. Query names and list entries go through it once, at the
// edge, so that matching is a plain byte comparison.
//
// It imports only miekg/dns and the standard library: every package may
// import it.
package dnsname

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Canonical returns a query name in presentation format (as miekg/dns gives
// it, e.g. "WwW.TikTok.COM.") in canonical form ("www.tiktok.com").
//
// Escapes are decoded ("\116iktok" is "tiktok"); a byte that is not a
// printable character, and an escaped dot inside a label, stay escaped as
// \DDD, so "tiktok\.com" (one label) never equals "tiktok.com" (two).
// The root name "." becomes "". Canonical allocates only when the name has
// upper-case letters or escapes.
func Canonical(name string) string {
	clean := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '\\' || c >= 'A' && c <= 'Z' {
			clean = false
			break
		}
	}
	if clean {
		return strings.TrimSuffix(name, ".")
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '\\' {
			b.WriteByte(lower(c))
			continue
		}
		if i+1 >= len(name) { // a lone trailing backslash: keep it escaped
			writeEscaped(&b, c)
			continue
		}
		if i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]) {
			v := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
			if v > 255 { // not an escape: a backslash, then the digits
				writeEscaped(&b, '\\')
				continue
			}
			i += 3
			writeByte(&b, byte(v))
			continue
		}
		i++
		writeByte(&b, name[i])
	}
	return strings.TrimSuffix(b.String(), ".")
}

// writeByte writes a decoded label byte: printable characters as themselves
// (letters lowered), dots, backslashes and the rest as \DDD.
func writeByte(b *strings.Builder, c byte) {
	if c > 0x20 && c < 0x7f && c != '.' && c != '\\' {
		b.WriteByte(lower(c))
		return
	}
	writeEscaped(b, c)
}

func writeEscaped(b *strings.Builder, c byte) {
	b.WriteByte('\\')
	b.WriteByte('0' + c/100)
	b.WriteByte('0' + c/10%10)
	b.WriteByte('0' + c%10)
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Equal reports whether two names in presentation format (with or without
// the trailing dot) name the same wire-format name, letters compared without
// case: "Office\ Printer.local." equals "office\032printer.local". Names
// from the wire must be compared this way, never as text: miekg/dns and
// Canonical escape the same byte differently.
func Equal(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	return Canonical(a) == Canonical(b)
}

// Errors returned by Parse.
var (
	ErrEmpty    = errors.New("empty name")
	ErrTooLong  = errors.New("name longer than 253 characters")
	ErrLabelLen = errors.New("label empty or longer than 63 characters")
)

// Parse validates a host name written by an administrator or found in a
// list ("Example.COM.", "bücher.example") and returns it in canonical form
// ("example.com", "xn--bcher-kva.example"). Letters, digits, '-' and '_' are
// allowed in labels; Unicode names are converted to punycode (IDNA 2008,
// lookup profile).
func Parse(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" {
		return "", ErrEmpty
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("%q: %w", s, err)
		}
		name = a
	}
	name = strings.ToLower(name)
	if len(name) > 253 {
		return "", ErrTooLong
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 || label > 63 {
				return "", ErrLabelLen
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("invalid character %q in %q", c, s)
		}
		label++
	}
	if label == 0 || label > 63 {
		return "", ErrLabelLen
	}
	return name, nil
}

// ValidLower reports, without allocating, whether b (with or without a
// trailing dot) is a valid host name in canonical form already: the common
// case in large lists. When it is false, Parse gives the canonical form or the
// reason.
func ValidLower(b []byte) bool {
	n := len(b)
	if n > 0 && b[n-1] == '.' {
		n--
	}
	if n == 0 || n > 253 {
		return false
	}
	label := 0
	for _, c := range b[:n] {
		if c == '.' {
			if label == 0 || label > 63 {
				return false
			}
			label = 0
			continue
		}
		if !lowerHostByte[c] {
			return false
		}
		label++
	}
	return label > 0 && label <= 63
}

// lowerHostByte marks the bytes of a label in canonical form: lower-case
// letters, digits, '-' and '_'. A table, because a list parser asks about
// every byte of a million names.
var lowerHostByte = [256]bool{
	'-': true, '_': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true, 'j': true,
	'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true, 's': true, 't': true,
	'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

// Parent returns name without its first label ("a.b.c" -> "b.c"), and
// false for a single-label name.
func Parent(name string) (string, bool) {
	i := strings.IndexByte(name, '.')
	if i < 0 {
		return "", false
	}
	return name[i+1:], true
}

// IsSubdomain reports whether name equals zone or lies under it. Both must
// be canonical.
func IsSubdomain(name, zone string) bool {
	if zone == "" {
		return true
	}
	if !strings.HasSuffix(name, zone) {
		return false
	}
	return len(name) == len(zone) || name[len(name)-len(zone)-1] == '.'
}
