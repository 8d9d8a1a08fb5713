// Package gold compares bytes with golden files, as ch-go's internal/gold
// does: each golden value is kept twice under testdata/_golden, as NAME.raw
// (the bytes) and NAME.hex (a hex dump a reviewer can read in a diff).
// `go test -update` rewrites both from what the test produced.
package gold

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/_golden")

// Dir is where golden files live, relative to the test's package.
const Dir = "testdata/_golden"

// Bytes fails t when data differs from the golden file NAME.raw, or rewrites
// NAME.raw and NAME.hex with -update.
func Bytes(t testing.TB, data []byte, name string) {
	t.Helper()
	raw := filepath.Join(Dir, name+".raw")
	if *update {
		if err := os.MkdirAll(Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(raw, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(Dir, name+".hex"), []byte(hex.Dump(data)), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatalf("golden %s: %v (run the test with -update to write it)", name, err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("golden %s differs:\n got:\n%s\nwant:\n%s", name, hex.Dump(data), hex.Dump(want))
	}
}

// Read returns the bytes of the golden file NAME.raw (a fixture of an older
// format, say), failing t when it is missing.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir, name+".raw"))
	if err != nil {
		t.Fatalf("golden %s: %v", name, err)
	}
	return b
}
