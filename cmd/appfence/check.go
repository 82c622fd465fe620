package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/appfence/appfence/config"
	"github.com/appfence/appfence/resolver/policy"
)

// checkReport is the summary `appfence check` prints.
type checkReport struct {
	Config   string                       `json:"config"`
	Valid    bool                         `json:"valid"`
	Errors   []string                     `json:"errors,omitempty"`
	Apps     []checkApp                   `json:"apps,omitempty"`
	Groups   []checkGroup                 `json:"groups,omitempty"`
	Matrix   map[string]map[string]string `json:"matrix,omitempty"` // group -> app -> action
	Warnings []string                     `json:"warnings,omitempty"`
}

type checkApp struct {
	Name   string `json:"name"`
	Rules  int    `json:"rules"`
	Origin string `json:"origin"`
}

type checkGroup struct {
	Name    string   `json:"name"`
	Clients []string `json:"clients"`
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: the built-in configuration)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rep := checkReport{Config: *cfgPath}
	if rep.Config == "" {
		rep.Config = config.BuiltinName
	}
	p, err := policy.Load(*cfgPath, nil)
	if err != nil {
		rep.Errors = strings.Split(err.Error(), "\n")
	} else {
		rep.Valid = true
		summarize(&rep, p)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(stdout, &rep, p)
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

func summarize(rep *checkReport, p *policy.Policy) {
	for _, a := range p.Set.Apps {
		rep.Apps = append(rep.Apps, checkApp{Name: a.Name, Rules: p.Set.Rules[a.Name], Origin: a.Origin.String()})
	}
	rep.Matrix = map[string]map[string]string{}
	for _, g := range p.Groups {
		cg := checkGroup{Name: g.Name, Clients: []string{}}
		for _, c := range g.Clients {
			cg.Clients = append(cg.Clients, c.String())
		}
		rep.Groups = append(rep.Groups, cg)
		row := map[string]string{}
		for _, a := range p.Set.Apps {
			row[a.Name] = g.Action(a).String()
		}
		rep.Matrix[g.Name] = row
	}
	rep.Warnings = append(rep.Warnings, p.Warnings...)
	for _, c := range p.Set.Conflicts {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %q is also a rule of app %q (%s); app %q keeps it",
			c.DroppedAt, c.Name, c.Kept.Name, c.KeptAt, c.Kept.Name))
	}
}

func printReport(w io.Writer, rep *checkReport, p *policy.Policy) {
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
	fmt.Fprintln(w)
	fmt.Fprintf(tw, "GROUP\tCLIENTS\n")
	for _, g := range rep.Groups {
		clients := strings.Join(g.Clients, ", ")
		if g.Name == config.DefaultGroup {
			clients = "every client of server.allow_clients that is in no other group"
		}
		fmt.Fprintf(tw, "%s\t%s\n", g.Name, clients)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprint(tw, "GROUP \\ APP")
	for _, a := range rep.Apps {
		fmt.Fprintf(tw, "\t%s", a.Name)
	}
	fmt.Fprintln(tw)
	for _, g := range rep.Groups {
		fmt.Fprint(tw, g.Name)
		for _, a := range rep.Apps {
			action := rep.Matrix[g.Name][a.Name]
			if action == "resolved" {
				action = "-"
			}
			fmt.Fprintf(tw, "\t%s", action)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(rep.Warnings) > 0 {
		fmt.Fprintf(w, "\n%d warnings:\n", len(rep.Warnings))
		for _, warn := range rep.Warnings {
			fmt.Fprintf(w, "  %s\n", warn)
		}
	}
}
