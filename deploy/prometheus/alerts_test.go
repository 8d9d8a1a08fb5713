package prometheus_test

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/signald-dev/signald/deploy/internal/promcheck"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return rules
}

// Every metric an alerting rule names must be one the code defines, so a
// renamed metric cannot silently disable an alert.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	rules := readRules(t)
	root, err := promcheck.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	defined, err := promcheck.DefinedMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %+v: alert, expr, severity, summary and description are required", r)
			}
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("alert %s: severity %q: want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			for _, m := range promcheck.UnknownMetrics(r.Expr, defined) {
				t.Errorf("alert %s: metric %s is not defined anywhere in the code", r.Alert, m)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d rules", n)
	}
}

// promtool accepts the rules, and the unit tests of alerts_test.yml pass.
func TestAlertRulesPromtool(t *testing.T) {
	promcheck.Run(t, ".", "check", "rules", "alerts.yml")
	promcheck.Run(t, ".", "test", "rules", "alerts_test.yml")
}

// alerts_test.yml has, for every alert, a case where it fires and one where
// it does not, so no rule goes untested.
func TestAlertRulesAllUnitTested(t *testing.T) {
	raw, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatalf("alerts_test.yml: %v", err)
	}
	if len(tests.RuleFiles) != 1 || tests.RuleFiles[0] != "alerts.yml" {
		t.Fatalf("alerts_test.yml: rule_files %v, want [alerts.yml]", tests.RuleFiles)
	}
	fires, spares := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				spares[a.Alertname] = true
			}
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if !fires[r.Alert] {
				t.Errorf("alerts_test.yml: no case where %s fires", r.Alert)
			}
			if !spares[r.Alert] {
				t.Errorf("alerts_test.yml: no case where %s stays silent", r.Alert)
			}
		}
	}
}
