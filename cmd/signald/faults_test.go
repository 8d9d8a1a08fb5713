package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What ingest published (its ledger) reconciles with what the run stored;
// a corrupt data file is skipped and reported by backtest (an error with
// --strict) and shows in reconcile as missing ticks, with a non-zero exit.
func TestReconcileAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--replay", spotCapture, "--limit", "4000", "--speed", "0", "--exit-when-done", "--data", dir, "--http", freePort(t))
	if err := d.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("daemon: %v\n%s", err, tail(d.stderr.String(), 3000))
	}
	_, stderr, err := runCLI(t, "reconcile", "--data", dir)
	if err != nil || !strings.Contains(stderr, "4000 published, 0 missing") {
		t.Fatalf("reconcile after a clean run: %v\n%s", err, stderr)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "ticks", "*", "*.parquet"))
	if len(files) == 0 {
		t.Fatal("no tick files")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(files[0], b[:len(b)/2], 0o644) // truncated

	_, stderr, err = runCLI(t, "backtest", "--data", dir)
	if err != nil || !strings.Contains(stderr, "skipped unreadable file "+files[0]) || !strings.Contains(stderr, "1 unreadable files skipped") {
		t.Fatalf("backtest over a truncated file: %v\n%s", err, tail(stderr, 2000))
	}
	if _, err := os.Stat(files[0]); err != nil {
		t.Fatal("a read-only backtest moved the file")
	}
	if _, stderr, err = runCLI(t, "backtest", "--data", dir, "--strict"); err == nil || !strings.Contains(stderr, "corrupt data file") {
		t.Fatalf("backtest --strict over a truncated file: %v\n%s", err, tail(stderr, 2000))
	}
	stdout, stderr, err := runCLI(t, "reconcile", "--data", dir)
	if err == nil || !strings.Contains(stderr, "binance BTC-USDT:") || !strings.Contains(stderr, "above the 0.100% threshold") ||
		!strings.Contains(stdout, "missing") {
		t.Fatalf("reconcile with ticks missing: %v\n%s\n%s", err, stdout, stderr)
	}
	if _, stderr, err = runCLI(t, "reconcile", "--data", filepath.Join(dir, "nope")); err == nil || !strings.Contains(stderr, "--ledger") {
		t.Fatalf("reconcile without a ledger: %v\n%s", err, stderr)
	}
}
