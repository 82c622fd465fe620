package blocklists

import (
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/appfence/appfence/internal/tomlpos"
)

// catalogFS holds the built-in catalog: app definitions and the lists they
// name. See catalog/SOURCES.md for where every name comes from.
//
//go:embed catalog
var catalogFS embed.FS

// BuiltinPrefix starts the names of files of the built-in catalog in
// messages and rule origins.
const BuiltinPrefix = "builtin:"

// Fetcher opens a remote source. It returns the last good copy when the
// download fails, and an error only when there is no copy at all.
type Fetcher interface {
	Open(src Source) (io.ReadCloser, error)
}

// Options tell Load what to read.
type Options struct {
	// Globs name the app-definition files read after the catalog, in order.
	Globs []string
	// Fetcher opens remote (url) sources; nil leaves them unloaded, which
	// is reported in Set.Warnings.
	Fetcher Fetcher
}

// Set is a loaded and compiled set of app definitions.
type Set struct {
	// Apps lists the catalog's apps first, then those of each file.
	Apps    []*App
	Matcher *Matcher
	// Files lists every local file read: app definitions and list sources.
	Files []string
	// Rules counts the rules compiled for each app, by app name.
	Rules map[string]int
	// Sources holds what parsing each source found, by Source.Name().
	Sources map[string]ListStats
	// Conflicts are names that two apps both claim; the first app keeps them.
	Conflicts []Conflict
	// Warnings are problems that do not stop the set from working: invalid
	// list lines, sources that could not be loaded.
	Warnings []string
}

// App returns the app with the given name, or nil.
func (s *Set) App(name string) *App {
	for _, a := range s.Apps {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Load reads the catalog and the files matched by opts.Globs, and compiles
// them. An error in an app definition, a duplicate app name or a missing
// local source fails the load; invalid lines in lists do not (they are
// counted and reported in Warnings).
func Load(opts Options) (*Set, error) {
	set := &Set{Rules: map[string]int{}, Sources: map[string]ListStats{}}
	var errs []error
	catalog, err := catalogApps()
	if err != nil {
		return nil, err
	}
	apps := catalog
	for _, g := range opts.Globs {
		files, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("blocklists: %q: %w", g, err)
		}
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("blocklists: %w", err))
				continue
			}
			set.Files = append(set.Files, f)
			fa, err := ParseApps(f, data, filepath.Dir(f))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			apps = append(apps, fa...)
		}
	}
	byName := map[string]*App{}
	for _, a := range apps {
		if prev, dup := byName[a.Name]; dup {
			errs = append(errs, &tomlpos.Error{File: a.Origin.File, Line: a.Origin.Line, Key: "app",
				Msg: fmt.Sprintf("app %q is already defined at %s", a.Name, prev.Origin)})
			continue
		}
		byName[a.Name] = a
		a.ID = len(set.Apps)
		set.Apps = append(set.Apps, a)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	b := newBuilder(sizeHint(set.Apps))
	for _, a := range set.Apps {
		id := b.addApp(a)
		file := b.file(a.Origin.File)
		n := 0
		for _, list := range [][]Entry{a.Domains, a.Exact, a.Patterns, a.Allow} {
			for _, e := range list {
				if addEntry(b, e, id, file) {
					n++
				}
			}
		}
		for _, src := range a.Sources {
			added, err := loadSource(b, set, a, src, id, opts.Fetcher)
			n += added
			if err != nil {
				errs = append(errs, &tomlpos.Error{File: a.Origin.File, Line: src.Line, Key: "sources", Msg: err.Error(), Err: err})
			}
		}
		set.Rules[a.Name] = n
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set.Conflicts = b.conflicts
	set.Matcher = b.matcher()
	return set, nil
}

func addEntry(b *builder, e Entry, app, file uint32) bool {
	if e.Kind == KindPattern || e.Kind == KindAllow && strings.Contains(e.Name, "*") {
		return b.addPattern(e.Name, e.Kind == KindAllow, app, file, e.Line)
	}
	return b.add(e.Name, e.Kind, app, file, e.Line)
}

// loadSource parses one source into the builder and returns how many rules
// it added.
func loadSource(b *builder, set *Set, a *App, src Source, app uint32, fetch Fetcher) (int, error) {
	var (
		rc   io.ReadCloser
		err  error
		name = src.Name()
	)
	switch {
	case src.URL != "" && fetch == nil:
		set.Warnings = append(set.Warnings, fmt.Sprintf("%s: source %s of app %q not loaded: remote sources are fetched by `serve` only", a.Origin, src.URL, a.Name))
		return 0, nil
	case src.URL != "":
		rc, err = fetch.Open(src)
		if err != nil {
			set.Warnings = append(set.Warnings, fmt.Sprintf("%s: source %s of app %q not loaded: %v", a.Origin, src.URL, a.Name, err))
			return 0, nil
		}
	case a.Builtin:
		rc, err = catalogFS.Open(path.Join("catalog", src.File))
		name = BuiltinPrefix + src.File
	default:
		rc, err = os.Open(src.File)
		if err == nil {
			set.Files = append(set.Files, src.File)
		}
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	file := b.file(name)
	added := 0
	st, err := ParseList(rc, src.Format, name, func(e Entry) {
		if addEntry(b, e, app, file) {
			added++
		}
	})
	set.Sources[name] = st
	for _, e := range st.Errors {
		set.Warnings = append(set.Warnings, e.Error())
	}
	if n := st.Invalid + st.Unsupported; n > len(st.Errors) {
		set.Warnings = append(set.Warnings, fmt.Sprintf("%s: %d invalid and %d unsupported lines in all", name, st.Invalid, st.Unsupported))
	}
	return added, err
}

// bytesPerRule is about how many bytes of a list in each format hold one
// rule, a little less than in the real lists of the test data (domains 21.9,
// hosts 28.3, adblock 24.3): the matcher is sized for a few more rules than
// it gets rather than grown, which would copy it, by a quarter, near the end.
var bytesPerRule = map[Format]int64{FormatDomains: 20, FormatHosts: 27, FormatAdblock: 23}

// sizeHint estimates the number of rules and the bytes of their names, to
// size the matcher once: the names take fewer bytes than the lists (about
// three times a gzip file).
func sizeHint(apps []*App) (rules, bytes int) {
	for _, a := range apps {
		for _, list := range [][]Entry{a.Domains, a.Exact, a.Allow} {
			rules += len(list)
			for _, e := range list {
				bytes += len(e.Name)
			}
		}
		for _, s := range a.Sources {
			var size int64
			if a.Builtin {
				if fi, err := fs.Stat(catalogFS, path.Join("catalog", s.File)); err == nil {
					size = fi.Size()
				}
			} else if fi, err := os.Stat(s.File); err == nil {
				size = fi.Size()
				if strings.HasSuffix(s.File, ".gz") {
					size *= 3
				}
			}
			rules += int(size / cmp.Or(bytesPerRule[s.Format], 24))
			bytes += int(size)
		}
	}
	return rules, bytes
}

// catalogApps parses the app definitions of the built-in catalog.
func catalogApps() ([]*App, error) {
	files, err := fs.Glob(catalogFS, "catalog/*.toml")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var apps []*App
	for _, f := range files {
		data, err := catalogFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fa, err := ParseApps(BuiltinPrefix+path.Base(f), data, "")
		if err != nil {
			return nil, fmt.Errorf("built-in catalog: %w", err)
		}
		for _, a := range fa {
			a.Builtin = true
		}
		apps = append(apps, fa...)
	}
	return apps, nil
}

// CatalogFiles lists the files of the built-in catalog by name.
func CatalogFiles() []string {
	var names []string
	_ = fs.WalkDir(catalogFS, "catalog", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path.Base(p))
		}
		return nil
	})
	return names
}

// CatalogFile returns the content of a file of the built-in catalog.
func CatalogFile(name string) ([]byte, error) {
	return catalogFS.ReadFile(path.Join("catalog", name))
}

// Members returns the names of the apps a name stands for: the app itself
// when an app has that name, else every app in the set of that name, in
// catalog order. It returns nil when the name is neither.
func (s *Set) Members(name string) []string {
	if s.App(name) != nil {
		return []string{name}
	}
	var out []string
	for _, a := range s.Apps {
		if slices.Contains(a.Sets, name) {
			out = append(out, a.Name)
		}
	}
	return out
}

// SetNames returns every set name used by some app, sorted.
func (s *Set) SetNames() []string {
	var out []string
	for _, a := range s.Apps {
		for _, n := range a.Sets {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}
