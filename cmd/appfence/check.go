package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/appfence/appfence/blocklists"
	"github.com/appfence/appfence/blocklists/remote"
	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/policy"
	"github.com/appfence/appfence/querylog"
	"github.com/appfence/appfence/querylog/dnstap"
	"github.com/appfence/appfence/reload"
)

// checkReport is the summary `appfence check` prints.
type checkReport struct {
	Config   string                       `json:"config"`
	Valid    bool                         `json:"valid"`
	Errors   []string                     `json:"errors,omitempty"`
	Apps     []checkApp                   `json:"apps,omitempty"`
	Groups   []checkGroup                 `json:"groups,omitempty"`
	Matrix   map[string]map[string]string `json:"matrix,omitempty"` // group -> app -> action
	Sources  []checkSource                `json:"sources,omitempty"`
	Warnings []checkWarning               `json:"warnings,omitempty"`
	Device   *checkDevice                 `json:"device,omitempty"`
}

type checkApp struct {
	Name    string `json:"name"`
	Rules   int    `json:"rules"`
	Origin  string `json:"origin"`
	Builtin bool   `json:"builtin,omitempty"`
}

type checkGroup struct {
	Name    string   `json:"name"`
	Clients []string `json:"clients"`
	// Mode is "allowlist" for a group of approved apps only, else "blocklist".
	Mode string `json:"mode"`
	// Approved lists, for an allowlist group, the apps whose names resolve
	// (sets expanded).
	Approved []string `json:"approved,omitempty"`
}

// checkDevice is the group a device given by -client, -client-id or -cert
// is placed in.
type checkDevice struct {
	Client   string `json:"client,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Cert     string `json:"cert,omitempty"`
	Group    string `json:"group"`
}

// checkSource is a list an app imports.
type checkSource struct {
	App         string `json:"app"`
	Source      string `json:"source"` // file or url
	Format      string `json:"format"`
	Rules       int    `json:"rules"`
	Invalid     int    `json:"invalid"`
	Unsupported int    `json:"unsupported"`
	// Copy says, for a url, when the copy in use was downloaded, or that
	// there is none.
	Copy string `json:"copy,omitempty"`
}

// checkWarning is a problem that does not make the configuration invalid.
type checkWarning struct {
	// Kind is one of: list, policy, unused-app, conflict, idle-allow,
	// nested-group, query-log, dnstap.
	Kind    string `json:"kind"`
	Message string `json:"message"` // starts with file:line where there is one
}

// notApproved is the matrix entry of an app an allowlist group does not
// approve: its names get the block answer.
const notApproved = "not approved"

// maxPerApp bounds how many idle allow rules check lists one by one per app.
const maxPerApp = 5

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fetch := fs.Bool("fetch", false, "download remote sources into the cache directory first (otherwise the cached copies are checked)")
	client := fs.String("client", "", "also show the group of a device with this IP address")
	clientID := fs.String("client-id", "", "also show the group of a device sending this ClientID")
	cert := fs.String("cert", "", "also show the group of a device with a client certificate of this name")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var addr netip.Addr
	if *client != "" {
		var err error
		if addr, err = netip.ParseAddr(*client); err != nil {
			fmt.Fprintf(stderr, "appfence check: -client %q is not an IP address\n", *client)
			return 2
		}
	}
	rep := checkReport{Config: *cfgPath}
	if rep.Config == "" {
		rep.Config = config.BuiltinName
	}
	p, err := loadPolicy(*cfgPath)
	if err == nil && *fetch {
		p, err = fetchSources(p, *cfgPath, stderr)
	}
	if err == nil {
		// A blocked app's list that is empty or mostly invalid (issue 17).
		err = errors.Join(reload.SourceProblems(p)...)
	}
	if err != nil {
		rep.Errors = strings.Split(err.Error(), "\n")
	} else {
		rep.Valid = true
		summarize(&rep, p)
		if *client != "" || *clientID != "" || *cert != "" {
			g := p.GroupFor(addr, identity(*clientID, *cert))
			rep.Device = &checkDevice{Client: *client, ClientID: *clientID, Cert: *cert, Group: g.Name}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(stdout, &rep)
	}
	if !rep.Valid {
		if !*asJSON {
			for _, e := range rep.Errors {
				fmt.Fprintln(stderr, e)
			}
		}
		return 1
	}
	return 0
}

// loadPolicy loads the configuration at path ("" is the built-in one) and
// compiles its policy, with remote sources read from the cache directory:
// no network.
func loadPolicy(path string) (*policy.Policy, error) {
	cfg, err := policy.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return policy.Compile(cfg, reload.Store(cfg))
}

// fetchSources downloads the remote sources of p and compiles the policy
// again when one brought new content. A failed download is reported and
// leaves the cached copy, as in serve.
func fetchSources(p *policy.Policy, path string, stderr io.Writer) (*policy.Policy, error) {
	d := &remote.Downloader{UserAgent: "appfence/" + buildVersion()}
	changed := false
	for _, src := range remote.Sources(p.Set) {
		c, err := d.Fetch(context.Background(), reload.Store(p.Config), src)
		if err != nil {
			fmt.Fprintf(stderr, "appfence check: %v\n", err)
		}
		changed = changed || c
	}
	if !changed {
		return p, nil
	}
	return loadPolicy(path)
}

func summarize(rep *checkReport, p *policy.Policy) {
	for _, a := range p.Set.Apps {
		rep.Apps = append(rep.Apps, checkApp{Name: a.Name, Rules: p.Set.Rules[a.Name], Origin: a.Origin.String(), Builtin: a.Builtin})
	}
	rep.Matrix = map[string]map[string]string{}
	warn := func(kind, format string, args ...any) {
		rep.Warnings = append(rep.Warnings, checkWarning{Kind: kind, Message: fmt.Sprintf(format, args...)})
	}
	for _, g := range p.Groups {
		cg := checkGroup{Name: g.Name, Clients: []string{}, Mode: "blocklist"}
		for _, c := range g.Clients {
			cg.Clients = append(cg.Clients, c.String())
		}
		if g.Allowlist {
			cg.Mode = "allowlist"
			cg.Approved = approved(p, g.Name)
			for _, e := range []string{"essentials-apple", "essentials-google", "essentials-microsoft"} {
				if p.Set.App(e) != nil && !slices.Contains(cg.Approved, e) {
					warn("allowlist", "group %q (allowlist) does not allow %q: %s devices in it may lose push, management and updates", g.Name, e, strings.TrimPrefix(e, "essentials-"))
				}
			}
		}
		rep.Groups = append(rep.Groups, cg)
		row := map[string]string{}
		for _, a := range p.Set.Apps {
			row[a.Name] = g.Action(a).String()
			if g.Allowlist {
				row[a.Name] = notApproved
				if slices.Contains(cg.Approved, a.Name) {
					row[a.Name] = "approved"
				}
			}
		}
		rep.Matrix[g.Name] = row
	}
	rep.Sources = sources(p)
	nList := len(p.Set.Warnings) // policy.Compile puts the lists' warnings first
	for i, w := range p.Warnings {
		kind := "policy"
		if i < nList {
			kind = "list"
		}
		warn(kind, "%s", w)
	}
	for _, a := range unusedApps(p) {
		warn("unused-app", "%s: app %q is defined but blocking.block, blocking.monitor and the groups never name it: its names resolve for every client", a.Origin, a.Name)
	}
	for _, c := range conflicts(p.Set.Conflicts) {
		warn("conflict", "%s", c)
	}
	for _, w := range idleAllows(p.Set) {
		warn("idle-allow", "%s", w)
	}
	for _, w := range nestedGroups(p) {
		warn("nested-group", "%s", w)
	}
	if err := querylog.CheckPath(p.Config.Log.QueryLog); err != nil {
		warn("query-log", "log.query_log: %v: serve answers queries without a query log (appfence_querylog_ok 0) until it can be opened", err)
	}
	if t := p.Config.Log.Dnstap; t != "" {
		if err := dnstap.Check(t, dnstapCheckTimeout); err != nil {
			warn("dnstap", "log.dnstap: %v: serve drops the dnstap messages (appfence_dnstap_dropped_total) until the collector is up", err)
		}
	}
}

// dnstapCheckTimeout bounds check's connection to the dnstap collector.
const dnstapCheckTimeout = 2 * time.Second

// sources describes every list the apps import.
func sources(p *policy.Policy) []checkSource {
	var out []checkSource
	for _, a := range p.Set.Apps {
		for _, src := range a.Sources {
			name := src.Name()
			if a.Builtin {
				name = blocklists.BuiltinPrefix + src.File
			}
			st := p.Set.Sources[name]
			cs := checkSource{App: a.Name, Source: name, Format: string(src.Format), Rules: st.Rules, Invalid: st.Invalid, Unsupported: st.Unsupported}
			if src.URL != "" {
				cs.Copy = "none: not downloaded yet"
				if m, err := reload.Store(p.Config).Meta(src.URL); err == nil {
					cs.Copy = "downloaded " + m.Downloaded.UTC().Format(time.RFC3339)
				}
			}
			out = append(out, cs)
		}
	}
	return out
}

// approved returns the apps the allowlist group of that name approves, in
// catalog order, with sets expanded.
func approved(p *policy.Policy, group string) []string {
	var refs []config.AppRef
	for _, gc := range p.Config.Groups {
		if gc.Name == group {
			refs = gc.Allow
		}
	}
	var out []string
	for _, a := range p.Set.Apps {
		for _, r := range refs {
			if slices.Contains(p.Set.Members(r.Name), a.Name) && !slices.Contains(out, a.Name) {
				out = append(out, a.Name)
			}
		}
	}
	return out
}

// unusedApps returns the apps of the administrator's files that the config
// never names, directly or through a set. Apps of the built-in catalog are left out: the catalog
// offers them to choose from.
func unusedApps(p *policy.Policy) []*blocklists.App {
	named := map[string]bool{}
	refs := [][]config.AppRef{p.Config.Blocking.Block, p.Config.Blocking.Monitor}
	for _, g := range p.Config.Groups {
		refs = append(refs, g.Allow, g.Block)
	}
	for _, list := range refs {
		for _, r := range list {
			for _, m := range p.Set.Members(r.Name) {
				named[m] = true
			}
		}
	}
	var out []*blocklists.App
	for _, a := range p.Set.Apps {
		if !a.Builtin && !named[a.Name] {
			out = append(out, a)
		}
	}
	return out
}

// conflicts sums up names written in two apps, one line per pair of apps.
func conflicts(cs []blocklists.Conflict) []string {
	type pair struct{ kept, dropped string }
	var order []pair
	byPair := map[pair][]blocklists.Conflict{}
	for _, c := range cs {
		k := pair{c.Kept.Name, c.Dropped.Name}
		if _, ok := byPair[k]; !ok {
			order = append(order, k)
		}
		byPair[k] = append(byPair[k], c)
	}
	var out []string
	for _, k := range order {
		list := byPair[k]
		c := list[0]
		s := fmt.Sprintf("%s: rule %q of app %q is also a rule of app %q (%s), which keeps it", c.DroppedAt, c.Name, k.dropped, k.kept, c.KeptAt)
		if len(list) > 1 {
			s += fmt.Sprintf("; %d more rules of %q are rules of %q too", len(list)-1, k.dropped, k.kept)
		}
		out = append(out, s)
	}
	return out
}

// idleAllows lists the allow rules that let nothing through (see
// blocklists.Matcher.IdleAllows), a few per app and then a count.
func idleAllows(set *blocklists.Set) []string {
	var out []string
	perApp := map[string]int{}
	for _, m := range set.Matcher.IdleAllows() {
		perApp[m.App.Name]++
		if perApp[m.App.Name] <= maxPerApp {
			out = append(out, fmt.Sprintf("%s: allow rule %q of app %q lets nothing through: no block rule of any app matches it or a name above it",
				m.Origin, m.Rule, m.App.Name))
		}
	}
	for _, a := range set.Apps {
		if n := perApp[a.Name]; n > maxPerApp {
			out = append(out, fmt.Sprintf("%s: app %q has %d more allow rules that let nothing through", a.Origin, a.Name, n-maxPerApp))
		}
	}
	return out
}

// nestedGroups reports each group whose every client prefix lies inside
// the prefixes of other groups: it takes those clients away from them
// (the longest prefix wins), which is right for a carve-out and a mistake
// otherwise.
func nestedGroups(p *policy.Policy) []string {
	var out []string
	for _, g := range p.Config.Groups {
		if len(g.Clients) == 0 {
			continue
		}
		var hosts []string
		for _, c := range g.Clients {
			host := ""
			for _, o := range p.Config.Groups {
				if o.Name != g.Name && coveredBy(c, o.Clients) {
					host = o.Name
					break
				}
			}
			if host == "" {
				hosts = nil
				break
			}
			if !slices.Contains(hosts, host) {
				hosts = append(hosts, host)
			}
		}
		if hosts != nil {
			out = append(out, fmt.Sprintf("%s:%d: every client of group %q is inside group %s: the longest prefix wins, so %q takes these clients from it",
				p.Config.File, g.Line, g.Name, quoteJoin(hosts), g.Name))
		}
	}
	return out
}

// coveredBy reports whether p lies inside one of the prefixes.
func coveredBy(p netip.Prefix, in []netip.Prefix) bool {
	for _, q := range in {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func quoteJoin(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func printReport(w io.Writer, rep *checkReport) {
	if !rep.Valid {
		fmt.Fprintf(w, "%s: INVALID (%d problems)\n", rep.Config, len(rep.Errors))
		return
	}
	fmt.Fprintf(w, "%s: OK\n\n", rep.Config)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "APP\tRULES\tDEFINED AT\n")
	for _, a := range rep.Apps {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", a.Name, a.Rules, a.Origin)
	}
	tw.Flush()
	if len(rep.Sources) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintf(tw, "SOURCE\tAPP\tFORMAT\tRULES\tINVALID\tUNSUPPORTED\tCOPY\n")
		for _, s := range rep.Sources {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", s.Source, s.App, s.Format, s.Rules, s.Invalid, s.Unsupported, dash(s.Copy))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "GROUP\tMODE\tCLIENTS\n")
	for _, g := range rep.Groups {
		clients := strings.Join(g.Clients, ", ")
		if g.Name == config.DefaultGroup {
			clients = "every client of server.allow_clients that is in no other group"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Name, g.Mode, clients)
	}
	tw.Flush()
	for _, g := range rep.Groups {
		if g.Mode == "allowlist" {
			fmt.Fprintf(w, "\ngroup %s approves only: %s\n", g.Name, strings.Join(g.Approved, ", "))
		}
	}
	if d := rep.Device; d != nil {
		fmt.Fprintf(w, "\ndevice (client=%s client-id=%s cert=%s) is in group %s\n", dash(d.Client), dash(d.ClientID), dash(d.Cert), d.Group)
	}
	fmt.Fprintln(w)
	// Built-in apps that no group acts on are left out of the table: the
	// catalog is large (appfence apps lists it).
	var cols []checkApp
	for _, a := range rep.Apps {
		acted := !a.Builtin
		for _, g := range rep.Groups {
			action := rep.Matrix[g.Name][a.Name]
			acted = acted || action != policy.ActionResolve.String() && action != notApproved
		}
		if acted {
			cols = append(cols, a)
		}
	}
	fmt.Fprint(tw, "GROUP \\ APP")
	for _, a := range cols {
		fmt.Fprintf(tw, "\t%s", a.Name)
	}
	fmt.Fprintln(tw)
	for _, g := range rep.Groups {
		fmt.Fprint(tw, g.Name)
		for _, a := range cols {
			action := rep.Matrix[g.Name][a.Name]
			if action == policy.ActionResolve.String() {
				action = "-"
			}
			if action == notApproved {
				action = "(blocked)"
			}
			fmt.Fprintf(tw, "\t%s", action)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warnings:\n", len(rep.Warnings))
		for _, warn := range rep.Warnings {
			fmt.Fprintf(w, "  %s [%s]\n", warn.Message, warn.Kind)
		}
	}
}
