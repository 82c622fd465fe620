package blocklists

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/appfence/appfence/internal/dnsname"
	"github.com/appfence/appfence/internal/iptable"
	"github.com/appfence/appfence/internal/tomlpos"
)

// App is one [[app]] definition: an application and the names it uses.
type App struct {
	// ID is the app's index in Set.Apps.
	ID          int
	Name        string
	Description string
	// Origin is where the [[app]] table starts.
	Origin Origin
	// Builtin is true for apps of the embedded catalog.
	Builtin bool
	// Owner is the company behind the app.
	Owner string
	// Sets are the named sets the app belongs to (e.g. "bytedance"); a set
	// name can be used wherever an app name is.
	Sets []string
	// Reviewed is the date (YYYY-MM-DD) the app's names were last checked.
	Reviewed string
	// Lists names the public lists the app was built from, with commit and
	// licence.
	Lists []string
	// Excluded says which names the app deliberately leaves out, and why.
	Excluded string

	Domains  []Entry // the name and every name under it
	Exact    []Entry // only that name
	Patterns []Entry // '*' within labels
	Allow    []Entry // exceptions (names or patterns)
	IPRanges []netip.Prefix
	Sources  []Source
}

// Source is an external list merged into an app.
type Source struct {
	File    string // path, absolute or inside the catalog
	URL     string
	Format  Format
	Refresh time.Duration
	Line    int
}

// Name returns how the source is shown in messages: its file or URL.
func (s Source) Name() string {
	if s.URL != "" {
		return s.URL
	}
	return s.File
}

// DefaultRefresh is how often a remote source is downloaded when the source
// does not say.
const DefaultRefresh = 24 * time.Hour

var appNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

type rawAppFile struct {
	App []struct {
		Name        string   `toml:"name"`
		Description string   `toml:"description"`
		Owner       string   `toml:"owner"`
		Sets        []string `toml:"sets"`
		Reviewed    string   `toml:"reviewed"`
		Lists       []string `toml:"lists"`
		Excluded    string   `toml:"excluded"`
		Domains     []string `toml:"domains"`
		Exact       []string `toml:"exact"`
		Patterns    []string `toml:"patterns"`
		Allow       []string `toml:"allow"`
		IPRanges    []string `toml:"ip_ranges"`
		Sources     []struct {
			File    string `toml:"file"`
			URL     string `toml:"url"`
			Format  string `toml:"format"`
			Refresh string `toml:"refresh"`
		} `toml:"sources"`
	} `toml:"app"`
}

// ParseApps reads an app-definition file. name is the file as shown in
// messages; dir resolves relative source paths. Every problem is reported,
// each with file:line.
func ParseApps(name string, data []byte, dir string) ([]*App, error) {
	var raw rawAppFile
	pos, errs, err := tomlpos.Decode(name, data, &raw)
	if err != nil {
		return nil, err
	}
	errorf := func(key string, format string, args ...any) {
		errs = append(errs, &tomlpos.Error{File: name, Line: pos.Near(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(raw.App) == 0 && len(errs) == 0 {
		errs = append(errs, &tomlpos.Error{File: name, Msg: "no [[app]] defined"})
	}
	var apps []*App
	seen := map[string]string{}
	for i, r := range raw.App {
		base := "app[" + strconv.Itoa(i) + "]"
		app := &App{Name: r.Name, Description: r.Description, Origin: Origin{name, pos.Line(base)},
			Owner: r.Owner, Sets: r.Sets, Reviewed: r.Reviewed, Lists: r.Lists, Excluded: r.Excluded}
		for j, set := range r.Sets {
			if !appNameRE.MatchString(set) {
				errorf(base+".sets["+strconv.Itoa(j)+"]", "%q: set names are lower-case letters, digits and '-'", set)
			}
		}
		if r.Reviewed != "" {
			if _, err := time.Parse(time.DateOnly, r.Reviewed); err != nil {
				errorf(base+".reviewed", "%q: not a date (YYYY-MM-DD)", r.Reviewed)
			}
		}
		if !appNameRE.MatchString(r.Name) {
			errorf(base+".name", "%q: app names are lower-case letters, digits and '-'", r.Name)
		} else if where, dup := seen[r.Name]; dup {
			errorf(base+".name", "app %q is defined twice in this file (first at %s)", r.Name, where)
		}
		seen[r.Name] = app.Origin.String()
		entries := func(key string, list []string, kind Kind) []Entry {
			var out []Entry
			for j, s := range list {
				k := base + "." + key + "[" + strconv.Itoa(j) + "]"
				var e Entry
				var err error
				switch {
				case kind == KindPattern:
					var p string
					p, err = ParsePattern(s)
					e = Entry{Name: p, Kind: KindPattern}
				case kind == KindAllow && strings.Contains(s, "*"):
					var p string
					p, err = ParsePattern(s)
					e = Entry{Name: p, Kind: KindAllow}
				case strings.HasPrefix(s, "*."):
					err = fmt.Errorf("%q: %s entries take plain names (a name in domains covers its subdomains; use patterns for wildcards)", s, key)
				default:
					var n string
					n, err = dnsname.Parse(s)
					if err != nil {
						err = fmt.Errorf("%q: %v", s, err)
					}
					e = Entry{Name: n, Kind: kind}
				}
				if err != nil {
					errorf(k, "%v", err)
					continue
				}
				e.Line = pos.Line(k)
				out = append(out, e)
			}
			return out
		}
		app.Domains = entries("domains", r.Domains, KindDomain)
		app.Exact = entries("exact", r.Exact, KindExact)
		app.Patterns = entries("patterns", r.Patterns, KindPattern)
		app.Allow = entries("allow", r.Allow, KindAllow)
		for j, s := range r.IPRanges {
			k := base + ".ip_ranges[" + strconv.Itoa(j) + "]"
			p, err := iptable.ParsePrefix(s)
			if err != nil {
				errorf(k, "%v", err)
				continue
			}
			app.IPRanges = append(app.IPRanges, p)
		}
		for j, s := range r.Sources {
			k := base + ".sources[" + strconv.Itoa(j) + "]"
			src := Source{Format: Format(s.Format), Line: pos.Line(k), Refresh: DefaultRefresh}
			switch {
			case s.File != "" && s.URL != "":
				errorf(k, "a source has either file or url, not both")
				continue
			case s.File == "" && s.URL == "":
				errorf(k, "a source needs file or url")
				continue
			case s.URL != "":
				if !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://") {
					errorf(k+".url", "%q: only http:// and https:// sources are supported", s.URL)
					continue
				}
				src.URL = s.URL
			default:
				src.File = s.File
				if dir != "" && !filepath.IsAbs(s.File) {
					src.File = filepath.Join(dir, s.File)
				}
			}
			if !slices.Contains(Formats, src.Format) {
				errorf(k+".format", "%q: must be one of domains, hosts, adblock", s.Format)
				continue
			}
			if s.Refresh != "" {
				d, err := time.ParseDuration(s.Refresh)
				if err != nil || d <= 0 {
					errorf(k+".refresh", "%q: not a positive duration", s.Refresh)
					continue
				}
				src.Refresh = d
			}
			app.Sources = append(app.Sources, src)
		}
		apps = append(apps, app)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return apps, nil
}
