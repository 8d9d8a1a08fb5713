package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestConfigDocs keeps docs/configuration.md complete: every flag that
// `signald run` registers must appear there as --name. The flags come from
// the flag set itself (its -h output), so a new flag fails this test until
// it is documented.
func TestConfigDocs(t *testing.T) {
	var usage bytes.Buffer
	if _, err := parseRunFlags([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseRunFlags -h: got %v, want flag.ErrHelp", err)
	}
	// flag's usage output starts each flag with two spaces and -name.
	names := regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_-]*)`).FindAllStringSubmatch(usage.String(), -1)
	if len(names) < 10 {
		t.Fatalf("found only %d flags in the usage of signald run; has its format changed?\n%s", len(names), usage.String())
	}
	page, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatalf("read the configuration page: %v", err)
	}
	documented := regexp.MustCompile("--[A-Za-z0-9][A-Za-z0-9_-]*").FindAllString(string(page), -1)
	seen := make(map[string]bool, len(documented))
	for _, d := range documented {
		seen[strings.TrimPrefix(d, "--")] = true
	}
	var missing []string
	for _, m := range names {
		if !seen[m[1]] {
			missing = append(missing, "--"+m[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md does not document these flags of signald run: %s (add each with its default and meaning)", strings.Join(missing, ", "))
	}
}
