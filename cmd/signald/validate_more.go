package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/macro"
)

// validateMore checks what validate does not: a run that can end, the
// macro columns against the feature catalogue, and replay files that are
// captures. validate calls it.
func (c *runConfig) validateMore() error {
	var errs []error
	if c.ExitAfterDrain && len(c.Replay) == 0 && c.Synthetic == 0 && len(c.Live.Specs) == 0 {
		errs = append(errs, errors.New("--exit-when-done: there is no replay to finish: give --replay FILES (without a source, signald serves until stopped)"))
	}
	cols := map[string]bool{}
	for _, f := range features.Catalog() {
		cols[f.Name] = true
	}
	if c.MacroRV != "" && !cols[c.MacroRV] {
		errs = append(errs, fmt.Errorf("--macro-rv %q: not a feature column; `signald features list` shows them (default %s)", c.MacroRV, macro.DefaultRV))
	}
	for _, r := range c.MacroReturns {
		if !cols[r] {
			errs = append(errs, fmt.Errorf("--macro-returns: %q is not a feature column; `signald features list` shows them", r))
		}
	}
	for _, p := range c.Replay {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue // validate names it
		}
		if err := checkCapture("--replay", p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
