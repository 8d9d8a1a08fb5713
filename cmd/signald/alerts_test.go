package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Every metric an alerting rule names must be one the code defines, so a
// renamed metric cannot silently disable an alert.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	raw, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
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
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	defined := definedMetrics(t)
	ref := regexp.MustCompile(`signald_[a-z0-9_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: alert, expr, severity and summary are required", r)
			}
			for _, m := range ref.FindAllString(r.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suf); ok && defined[b] {
						base = b
					}
				}
				if !defined[base] {
					t.Errorf("alert %s: metric %s is not defined anywhere in the code", r.Alert, m)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d rules", n)
	}
}

// definedMetrics collects every `Name: "signald_..."` in the module's
// non-test Go files.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	name := regexp.MustCompile(`Name:\s+"(signald_[a-z0-9_]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir(filepath.Join("..", ".."), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != filepath.Join("..", "..") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d metric definitions; the scan is broken", len(out))
	}
	return out
}
