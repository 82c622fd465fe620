package deploy

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDashboardImport checks what Grafana's import dialog needs: an
// __inputs entry for the Prometheus data source that the $datasource
// variable defaults to; and that "Blocked queries by app" hides zero
// series and a panel shows the queries of every transport.
func TestDashboardImport(t *testing.T) {
	var d struct {
		Templating struct {
			List []struct {
				Name    string
				Current struct{ Value json.RawMessage }
			}
		}
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(mustRead(t, "grafana/appfence.json"), &d); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Inputs []map[string]string `json:"__inputs"`
	}
	json.Unmarshal(mustRead(t, "grafana/appfence.json"), &raw)
	if len(raw.Inputs) != 1 || raw.Inputs[0]["name"] != "DS_PROMETHEUS" || raw.Inputs[0]["type"] != "datasource" || raw.Inputs[0]["pluginId"] != "prometheus" {
		t.Errorf("__inputs %v: want the Prometheus data source", raw.Inputs)
	}
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && string(v.Current.Value) != `"${DS_PROMETHEUS}"` {
			t.Errorf("$datasource defaults to %q, not the imported data source", v.Current.Value)
		}
	}
	exprs := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs[p.Title] += tg.Expr
		}
	}
	if !strings.HasSuffix(exprs["Blocked queries by app"], "> 0") {
		t.Errorf("Blocked queries by app: %q does not hide zero series", exprs["Blocked queries by app"])
	}
	if !strings.Contains(exprs["Queries by transport"], "appfence_transport_queries_total") {
		t.Error("no panel per transport")
	}
}
