// Package tomlpos finds the line on which each key and array element of a
// TOML document is written, so that errors found after decoding (a bad CIDR in
// the third [[group]], an unknown key) can name file:line.
//
// It is a locator, not a parser: the TOML decoder reports syntax errors, and
// text this package cannot follow is skipped rather than rejected. Decode
// runs the decoder (BurntSushi/toml) and the locator together for the
// config and the app files, so that both report every problem the same
// way: file:line: key: message (Error).
//
// It imports only BurntSushi/toml and the standard library.
package tomlpos

import (
	"strconv"
	"strings"
)

// Index maps paths to 1-based line numbers.
//
// Paths join keys with dots and give array positions in brackets:
// "server.listen", "group[1].clients", "group[1].clients[2]",
// "app[0].sources[1].file".
type Index struct {
	lines map[string]int
}

// Line returns the line on which path is written, or 0 if it is not known.
func (ix *Index) Line(path string) int {
	if ix == nil {
		return 0
	}
	return ix.lines[path]
}

// Near returns the line of path, or of its nearest parent that is written
// ("group[1]" for "group[1].clients" when clients is missing), or 0.
func (ix *Index) Near(path string) int {
	for {
		if l := ix.Line(path); l > 0 {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return 0
		}
		path = path[:i]
	}
}

// Find returns the first line of a key given without array positions, the
// way toml.MetaData reports undecoded keys ("group.nmae" matches
// "group[1].nmae"). It returns 0 if the key is not found.
func (ix *Index) Find(key string) int {
	if ix == nil {
		return 0
	}
	_, line := ix.FindPath(key)
	return line
}

// FindPath is like Find but returns the indexed path as well, so that an
// error can say which array element holds the key.
func (ix *Index) FindPath(key string) (string, int) {
	if ix == nil {
		return key, 0
	}
	bestPath, best := key, 0
	for path, line := range ix.lines {
		if stripIndices(path) != key {
			continue
		}
		// the first line; on one line the key itself before its elements
		if best == 0 || line < best || line == best && len(path) < len(bestPath) {
			bestPath, best = path, line
		}
	}
	return bestPath, best
}

func stripIndices(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	depth := 0
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Parse indexes a TOML document. It never fails.
func Parse(doc []byte) *Index {
	s := &scanner{
		src:       doc,
		line:      1,
		ix:        &Index{lines: make(map[string]int)},
		counts:    make(map[string]int),
		lastIndex: make(map[string]int),
	}
	s.document()
	return s.ix
}

type scanner struct {
	src       []byte
	pos       int
	line      int
	ix        *Index
	prefix    string         // current table path, e.g. "group[2]"
	counts    map[string]int // array-of-tables path -> elements seen
	lastIndex map[string]int // array-of-tables path -> index of the current element
}

func (s *scanner) eof() bool { return s.pos >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.pos]
}

func (s *scanner) advance() {
	if s.src[s.pos] == '\n' {
		s.line++
	}
	s.pos++
}

func (s *scanner) record(path string) {
	if _, ok := s.ix.lines[path]; !ok {
		s.ix.lines[path] = s.line
	}
}

// skipSpace skips blanks, and with newlines also newlines and comments.
func (s *scanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.advance()
		case c == '\n' && newlines:
			s.advance()
		case c == '#' && newlines:
			s.skipLine()
		default:
			return
		}
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		s.advance()
	}
}

func (s *scanner) document() {
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == '[' {
			s.header()
			continue
		}
		start := s.pos
		s.keyValue(s.prefix)
		if s.pos == start { // cannot follow this text: skip the line
			s.skipLine()
		}
	}
}

func (s *scanner) header() {
	s.advance() // [
	array := s.peek() == '['
	if array {
		s.advance()
	}
	keys := s.key()
	for !s.eof() && s.peek() != '\n' && s.peek() != ']' {
		s.advance()
	}
	s.skipLine()
	path := ""
	for i, k := range keys {
		if i > 0 {
			path += "."
		}
		path += k
		if i < len(keys)-1 {
			if idx, ok := s.lastIndex[path]; ok {
				path += "[" + strconv.Itoa(idx) + "]"
			}
		}
	}
	if array {
		idx := s.counts[path]
		s.counts[path] = idx + 1
		s.lastIndex[path] = idx
		path += "[" + strconv.Itoa(idx) + "]"
	}
	s.prefix = path
	s.record(path)
}

// key reads a possibly dotted key and returns its parts.
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipSpace(false)
		switch c := s.peek(); {
		case c == '"' || c == '\'':
			start := s.pos + 1
			s.str()
			end := s.pos - 1
			if end < start {
				end = start
			}
			parts = append(parts, string(s.src[start:end]))
		case isBare(c):
			start := s.pos
			for !s.eof() && isBare(s.peek()) {
				s.advance()
			}
			parts = append(parts, string(s.src[start:s.pos]))
		default:
			return parts
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return parts
		}
		s.advance()
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// keyValue reads "key = value" and records the key and what the value holds.
func (s *scanner) keyValue(prefix string) {
	line := s.line
	keys := s.key()
	if len(keys) == 0 {
		return
	}
	s.skipSpace(false)
	if s.peek() != '=' {
		return
	}
	s.advance()
	path := prefix
	for _, k := range keys {
		path = join(path, k)
	}
	if _, ok := s.ix.lines[path]; !ok {
		s.ix.lines[path] = line
	}
	s.skipSpace(false)
	s.value(path)
}

func (s *scanner) value(path string) {
	switch c := s.peek(); c {
	case '"', '\'':
		s.str()
	case '[':
		s.array(path)
	case '{':
		s.inlineTable(path)
	default:
		for !s.eof() {
			switch s.peek() {
			case ',', ']', '}', '\n', '#':
				return
			}
			s.advance()
		}
	}
}

// str skips a basic, literal or multi-line string.
func (s *scanner) str() {
	q := s.peek()
	if s.pos+2 < len(s.src) && s.src[s.pos+1] == q && s.src[s.pos+2] == q {
		s.advance()
		s.advance()
		s.advance()
		for !s.eof() {
			if q == '"' && s.peek() == '\\' {
				s.advance()
				if !s.eof() {
					s.advance()
				}
				continue
			}
			if s.pos+2 < len(s.src) && s.src[s.pos] == q && s.src[s.pos+1] == q && s.src[s.pos+2] == q {
				s.advance()
				s.advance()
				s.advance()
				for !s.eof() && s.peek() == q { // up to two quotes may close the content
					s.advance()
				}
				return
			}
			s.advance()
		}
		return
	}
	s.advance()
	for !s.eof() {
		c := s.peek()
		if c == '\n' {
			return
		}
		if q == '"' && c == '\\' {
			s.advance()
			if !s.eof() && s.peek() != '\n' {
				s.advance()
			}
			continue
		}
		s.advance()
		if c == q {
			return
		}
	}
}

func (s *scanner) array(path string) {
	s.advance() // [
	for i := 0; ; i++ {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		if s.peek() == ']' {
			s.advance()
			return
		}
		elem := path + "[" + strconv.Itoa(i) + "]"
		s.record(elem)
		start := s.pos
		s.value(elem)
		s.skipSpace(true)
		if s.peek() == ',' {
			s.advance()
		} else if s.pos == start {
			s.advance() // cannot follow: step over it
		}
	}
}

func (s *scanner) inlineTable(path string) {
	s.advance() // {
	for {
		s.skipSpace(false)
		if s.eof() || s.peek() == '\n' {
			return
		}
		if s.peek() == '}' {
			s.advance()
			return
		}
		start := s.pos
		s.keyValue(path)
		s.skipSpace(false)
		if s.peek() == ',' {
			s.advance()
		} else if s.pos == start {
			s.advance()
		}
	}
}

// Error is a problem found in a file, with where it is: the file, the line
// (0 when unknown) and the key or list entry concerned.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
	// Err is the cause, when there is one (an open error of a file the
	// key names); Msg already says it.
	Err error
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return loc + ": " + e.Key + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}
