package tomlpos_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/internal/tomlpos"
)

// TestDecodeErrors: a config file and an app file report their decoding
// problems alike, through Decode: file:line: key: message, for a value of
// the wrong type, a syntax error and an unknown key.
func TestDecodeErrors(t *testing.T) {
	parseConfig := func(doc string) error {
		_, err := config.Parse("c.toml", []byte(doc), t.TempDir())
		return err
	}
	parseApps := func(doc string) error {
		_, err := blocklists.ParseApps("a.toml", []byte(doc), t.TempDir())
		return err
	}
	for _, tt := range []struct {
		name  string
		parse func(string) error
		doc   string
		want  string
	}{
		{"config type", parseConfig, "[server]\nrate_limit = \"ten\"\n",
			`c.toml:2: server.rate_limit: incompatible types: TOML value has type string; destination has type integer`},
		{"app type", parseApps, "[[app]]\nname = \"a\"\ndomains = \"a.test\"\n",
			`a.toml:3: app[0].domains: incompatible types: TOML value has type string; destination has type slice`},
		{"app type in the second app", parseApps, "[[app]]\nname = \"a\"\ndomains = [\"a.test\"]\n\n[[app]]\nname = 2\n",
			`a.toml:6: app[1].name: incompatible types: TOML value has type int64; destination has type string`},
		{"config syntax", parseConfig, "[server\n", `c.toml:2: expected`},
		{"app syntax", parseApps, "[[app]\nname = 1\n", `a.toml:2: expected`},
		{"config unknown key", parseConfig, "[server]\nlisten_on = 1\n", `c.toml:2: server.listen_on: unknown key`},
		{"app unknown key", parseApps, "[[app]]\nname = \"a\"\ndomains = [\"a.test\"]\nwebsite = \"x\"\n", `a.toml:4: app[0].website: unknown key`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse(tt.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("error %q, want it to start with %q", got, tt.want)
			}
			var te *tomlpos.Error
			if !errors.As(err, &te) || te.Line == 0 {
				t.Errorf("%v: not a tomlpos.Error with a line", err)
			}
		})
	}
}

// TestDecode: Decode fills v, indexes the document and lists every
// unknown key, each with its line and array position.
func TestDecode(t *testing.T) {
	var v struct {
		Group []struct {
			Name string `toml:"name"`
		} `toml:"group"`
	}
	doc := "[[group]]\nname = \"a\"\n\n[[group]]\nname = \"b\"\nnmae = \"c\"\n"
	ix, unknown, err := tomlpos.Decode("g.toml", []byte(doc), &v)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Group) != 2 || v.Group[1].Name != "b" {
		t.Errorf("decoded %+v", v)
	}
	if ix.Line("group[1].name") != 5 {
		t.Errorf("group[1].name on line %d, want 5", ix.Line("group[1].name"))
	}
	if len(unknown) != 1 || unknown[0].Error() != "g.toml:6: group[1].nmae: unknown key" {
		t.Errorf("unknown = %v", unknown)
	}
}
