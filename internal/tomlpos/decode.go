package tomlpos

import (
	"errors"
	"regexp"
	"strconv"

	"github.com/BurntSushi/toml"
)

// Decode decodes doc, the text of the file named file, into v, and
// indexes it. err is why doc does not decode (a syntax error, or a value
// of the wrong type): an *Error with file:line and key. unknown has an
// *Error "unknown key", with its line, for each key v has no field for.
// The config and the app files are read through it, so that every problem
// names file:line: key.
func Decode(file string, doc []byte, v any) (ix *Index, unknown []error, err error) {
	ix = Parse(doc)
	md, err := toml.Decode(string(doc), v)
	if err != nil {
		return ix, nil, decodeError(file, ix, err)
	}
	for _, key := range md.Undecoded() {
		path, line := ix.FindPath(key.String())
		unknown = append(unknown, &Error{File: file, Line: line, Key: path, Msg: "unknown key"})
	}
	return ix, unknown, nil
}

// decodeErrRE matches the errors of the TOML decoder that are not a
// toml.ParseError: a value of the wrong type.
var decodeErrRE = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "([^"]*)"\))?: (.*)$`)

// decodeError turns an error of the TOML decoder into an Error with the
// file name, the line and the key, with its array positions when ix knows
// which element is written on that line ("app[1].domains", not
// "app.domains").
func decodeError(file string, ix *Index, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: file, Line: pe.Position.Line, Key: ix.pathAt(pe.LastKey, pe.Position.Line), Msg: pe.Message}
	}
	if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: ix.pathAt(m[2], line), Msg: m[3]}
	}
	return &Error{File: file, Msg: err.Error()}
}

// pathAt returns the indexed path of key (given without array positions)
// written on line, or key itself when there is none. When the key and its
// elements share the line ("app[0].domains" and "app[0].domains[0]"), it
// is the key: the shortest, whatever order the index is read in.
func (ix *Index) pathAt(key string, line int) string {
	if key == "" || ix == nil {
		return key
	}
	best := ""
	for path, l := range ix.lines {
		if l == line && stripIndices(path) == key && (best == "" || len(path) < len(best) || len(path) == len(best) && path < best) {
			best = path
		}
	}
	if best == "" {
		return key
	}
	return best
}
