package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/appfence/appfence/blocklists"
)

// StaleAfter is how long a catalog entry may go without review: an app's
// names change (new CDN names, new domains), so each is checked again at
// least this often. The catalog test fails for an older entry.
const StaleAfter = 180 * 24 * time.Hour

// catalogApp is one line of `appfence apps`.
type catalogApp struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Owner       string   `json:"owner,omitempty"`
	Sets        []string `json:"sets,omitempty"`
	Rules       int      `json:"rules"`
	Domains     int      `json:"domains"`
	Exact       int      `json:"exact"`
	Patterns    int      `json:"patterns"`
	Allow       int      `json:"allow"`
	Sources     []string `json:"sources,omitempty"`
	Excluded    string   `json:"excluded,omitempty"`
	Reviewed    string   `json:"reviewed,omitempty"`
	Origin      string   `json:"origin"`
	Builtin     bool     `json:"builtin,omitempty"`
}

func apps(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	asJSON := fs.Bool("json", false, "print JSON")
	markdown := fs.Bool("markdown", false, "print the built-in catalog as the table of docs/catalog.md")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var set *blocklists.Set
	if *markdown {
		s, err := blocklists.Load(blocklists.Options{})
		if err != nil {
			fmt.Fprintf(stderr, "appfence apps: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, catalogMarkdown(catalogApps(s)))
		return 0
	}
	p, err := loadPolicy(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "appfence: %v\n", err)
		return 1
	}
	set = p.Set
	list := catalogApps(set)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(list)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "APP\tSETS\tRULES\tDOMAINS\tEXACT\tREVIEWED\tDESCRIPTION\tSOURCES\n")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", a.Name, dash(strings.Join(a.Sets, ",")), a.Rules,
			a.Domains, a.Exact, dash(a.Reviewed), a.Description, dash(strings.Join(a.Sources, "; ")))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d apps; sets: %s\n", len(list), strings.Join(set.SetNames(), ", "))
	return 0
}

// catalogApps describes every app of set.
func catalogApps(set *blocklists.Set) []catalogApp {
	var out []catalogApp
	for _, a := range set.Apps {
		ca := catalogApp{Name: a.Name, Description: a.Description, Owner: a.Owner, Sets: a.Sets,
			Rules: set.Rules[a.Name], Domains: len(a.Domains), Exact: len(a.Exact), Patterns: len(a.Patterns),
			Allow: len(a.Allow), Sources: a.Lists, Excluded: a.Excluded, Reviewed: a.Reviewed,
			Origin: a.Origin.String(), Builtin: a.Builtin}
		for _, s := range a.Sources {
			ca.Sources = append(ca.Sources, "list "+s.Name())
		}
		out = append(out, ca)
	}
	return out
}

// catalogMarkdown is the generated part of docs/catalog.md.
func catalogMarkdown(list []catalogApp) string {
	var b strings.Builder
	b.WriteString("| app | description | owner | sets | rules | reviewed | sources |\n|---|---|---|---|---|---|---|\n")
	for _, a := range list {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %d | %s | %s |\n", a.Name, md(a.Description), md(a.Owner),
			md(strings.Join(a.Sets, ", ")), a.Rules, a.Reviewed, md(strings.Join(a.Sources, "; ")))
	}
	return b.String()
}

func md(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
