// Package promcheck is what the deploy tests share: the metric names the
// module defines, the metric names a PromQL expression uses, and promtool.
package promcheck

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ModuleRoot is the directory of the module's go.mod, found upwards from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

var defName = regexp.MustCompile(`Name:\s+"(signald_[a-z0-9_]+)"`)

// DefinedMetrics collects every `Name: "signald_..."` in the module's
// non-test Go files under root (hidden directories and testdata skipped).
func DefinedMetrics(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range defName.FindAllStringSubmatch(string(src), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) < 20 {
		return nil, fmt.Errorf("found only %d metric definitions under %s; the scan is broken", len(out), root)
	}
	return out, nil
}

var ref = regexp.MustCompile(`signald_[a-z0-9_]+`)

// UnknownMetrics returns the signald_ metric names expr uses that defined
// lacks (a histogram's _bucket, _count and _sum count as the histogram).
func UnknownMetrics(expr string, defined map[string]bool) []string {
	var out []string
	for _, m := range ref.FindAllString(expr, -1) {
		base := m
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(m, suf); ok && defined[b] {
				base = b
			}
		}
		if !defined[base] {
			out = append(out, m)
		}
	}
	return out
}

// Promtool is the path of promtool. Without it the test is skipped, or fails
// when SIGNALD_INTEGRATION is set (make test installs it).
func Promtool(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	const how = "promtool not found: apt-get install -y prometheus (Debian; the package's service is not needed)"
	if os.Getenv("SIGNALD_INTEGRATION") != "" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// Run runs promtool with args in dir and fails t with its output on error.
func Run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
