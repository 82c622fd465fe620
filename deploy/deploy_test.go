package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promtool returns the path of promtool, or fails the test with the way
// to install it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run `make test-deps` (installs Debian's prometheus package)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestAlertRules(t *testing.T) {
	runPromtool(t, "check", "rules", "prometheus/alerts.yml")
	runPromtool(t, "test", "rules", "prometheus/alerts_test.yml")
}

// dashboard is the part of the Grafana dashboard model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		Expr       string     `json:"expr"`
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource datasource      `json:"datasource"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/appfence.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/appfence.json: %v", err)
	}
	return &d
}

// allPanels returns the panels with queries, rows' nested panels included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		if p.Type != "row" {
			out = append(out, p)
		}
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var ourDS = datasource{Type: "prometheus", UID: "${datasource}"}

// TestDashboard checks the dashboard's model: a current schema, the
// datasource and $group variables, every panel on the datasource variable,
// unique IDs, a layout without overlaps, the panels the operations guide
// describes, and per-group panels that follow $group.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("uid and title must be set")
	}
	if d.SchemaVersion < 41 {
		t.Errorf("schemaVersion %d: want a current Grafana's (41, Grafana 12)", d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("datasource variable: %+v, want a Prometheus datasource variable", v)
	}
	for _, name := range []string{"instance", "group"} {
		v := vars[name]
		if v.Type != "query" || v.Datasource != ourDS || !strings.Contains(v.Definition, "label_values(") {
			t.Errorf("$%s: %+v, want a label_values query on ${datasource}", name, v)
		}
	}
	if !strings.Contains(vars["group"].Definition, ", group)") {
		t.Errorf("$group lists %q, want the group label", vars["group"].Definition)
	}

	ids := map[int]string{}
	var cells [][2]int // occupied grid cells, x and y
	titles := map[string]bool{}
	for _, p := range d.Panels {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				c := [2]int{x, y}
				if slices.Contains(cells, c) {
					t.Errorf("%q overlaps another panel at %v", p.Title, c)
				}
				cells = append(cells, c)
			}
		}
	}
	groupMetric := regexp.MustCompile(`appfence_(queries_total|app_queries_total|responses_total|query_duration_seconds_bucket)\{([^}]*)\}`)
	for _, p := range allPanels(d.Panels) {
		titles[p.Title] = true
		if p.Datasource != ourDS {
			t.Errorf("%q: datasource %+v, want %+v", p.Title, p.Datasource, ourDS)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%q: no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource != ourDS {
				t.Errorf("%q: target %+v: want an expression, a unique refId and ${datasource}", p.Title, tg)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("%q: %s does not follow $instance", p.Title, tg.Expr)
			}
			for _, m := range groupMetric.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.Contains(m[2], `group=~"$group"`) {
					t.Errorf("%q: %s does not follow $group", p.Title, m[0])
				}
			}
		}
	}
	for _, want := range []string{"Queries by action", "Blocked queries by app", "Exempted queries by group", "Query latency",
		"Cache hit ratio", "Upstream latency", "Upstream errors", "Upstream up", "Reload status", "Last reload"} {
		if !titles[want] {
			t.Errorf("no panel %q", want)
		}
	}
}

// grafanaVars are the values the dashboard's variables stand for when its
// expressions are checked by Prometheus' own parser.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m",
	"$__range", "6h",
	"$instance", ".+",
	"$group", ".+",
)

// TestDashboardQueriesParse turns every dashboard expression into a
// recording rule and has promtool check it: the PromQL parser of
// Prometheus, not ours, decides whether the panels' queries are valid.
func TestDashboardQueriesParse(t *testing.T) {
	d := loadDashboard(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			n++
			expr, _ := json.Marshal(grafanaVars.Replace(tg.Expr)) // a JSON string is a YAML string
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d:%s\n        expr: %s\n", p.ID, strings.ToLower(tg.RefID), expr)
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", path)
	if n < 15 {
		t.Errorf("only %d expressions checked", n)
	}
}
