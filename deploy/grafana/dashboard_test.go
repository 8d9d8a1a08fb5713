package grafana_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/signald-dev/signald/deploy/internal/promcheck"
)

const dsInput = "${DS_PROMETHEUS}"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource *datasource `json:"datasource"`
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// query is one PromQL expression of the dashboard, named for messages.
type query struct{ where, expr string }

func readDashboard(t *testing.T) (dashboard, []query) {
	t.Helper()
	raw, err := os.ReadFile("signald.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("signald.json: %v", err)
	}
	var qs []query
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: want a gridPos within 24 columns", p.Title)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != dsInput {
				t.Errorf("panel %q: datasource must be %s (the import input)", p.Title, dsInput)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no queries", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != dsInput {
					t.Errorf("panel %q query %s: datasource must be %s", p.Title, tg.RefID, dsInput)
				}
				qs = append(qs, query{fmt.Sprintf("panel %d %q query %s", p.ID, p.Title, tg.RefID), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return d, qs
}

// The dashboard imports into Grafana (an input for the datasource, a
// schema version) and every query names only metrics signald exports.
func TestDashboardNamesRealMetrics(t *testing.T) {
	d, qs := readDashboard(t)
	if d.SchemaVersion < 30 || d.Title == "" || d.UID == "" {
		t.Errorf("signald.json: want title, uid and schemaVersion >= 30, have %q %q %d", d.Title, d.UID, d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || "${"+d.Inputs[0].Name+"}" != dsInput || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("signald.json: __inputs %+v: want one Prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	root, err := promcheck.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	defined, err := promcheck.DefinedMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Templating.List {
		qs = append(qs, query{"variable " + v.Name, v.Definition})
	}
	used := map[string]bool{}
	for _, q := range qs {
		if !strings.Contains(q.expr, "signald_") {
			t.Errorf("%s: %q names no signald metric", q.where, q.expr)
		}
		for _, m := range promcheck.UnknownMetrics(q.expr, defined) {
			t.Errorf("%s: metric %s is not defined anywhere in the code", q.where, m)
		}
		for _, m := range regexp.MustCompile(`signald_[a-z0-9_]+`).FindAllString(q.expr, -1) {
			used[strings.TrimSuffix(m, "_bucket")] = true
		}
	}
	// What an operator needs on one screen.
	for _, m := range []string{
		"signald_pipeline_ticks_published_total", "signald_store_inserted_rows_total",
		"signald_store_tick_to_storage_seconds", "signald_transport_lag_entries",
		"signald_ingest_ticks_total", "signald_ingest_frames_total", "signald_ingest_malformed_frames_total",
		"signald_features_step_duration_seconds", "signald_regime_signals_total",
		"signald_store_insert_errors_total", "signald_store_insert_timeouts_total", "signald_store_rejected_rows_total",
		"signald_transport_dead_lettered_entries_total", "signald_store_quarantined_files_total",
	} {
		if !used[m] {
			t.Errorf("signald.json: no panel shows %s", m)
		}
	}
}

// Every query parses as PromQL: promtool checks them as recording rules,
// with Grafana's variables replaced by values of the right kind.
func TestDashboardQueriesParse(t *testing.T) {
	promcheck.Promtool(t)
	_, qs := readDashboard(t)
	vars := regexp.MustCompile(`\$\{?(\w+)\}?`)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range qs {
		expr := vars.ReplaceAllStringFunc(q.expr, func(v string) string {
			if strings.HasPrefix(strings.Trim(v, "${}"), "__") {
				return "5m" // $__rate_interval, $__interval, $__range
			}
			return ".*" // a template variable inside a =~ matcher
		})
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: expr})
	}
	if len(rules) < 20 {
		t.Fatalf("only %d queries", len(rules))
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard_rules.yml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	res := promcheck.Run(t, dir, "check", "rules", "dashboard_rules.yml")
	if !strings.Contains(res, fmt.Sprintf("SUCCESS: %d rules found", len(rules))) {
		t.Fatalf("promtool check rules: %s", res)
	}
}
