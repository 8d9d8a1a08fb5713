package ingest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

// One truncated or unreadable replay file used to abort every file given
// with it. It is now reported (metric, log, the error the replay ends with)
// and the healthy files are replayed whole.
func TestReplayFailedFileDoesNotStopOthers(t *testing.T) {
	good := testdataPath("binance_spot_btcusdt_20240808_head1500.gz")
	want := collect(t, newReplayer(t, ReplayConfig{Paths: []string{good}}, nil))

	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "binance_spot_cut.gz")
	os.WriteFile(truncated, raw[:len(raw)/3], 0o644)

	m := NewMetrics(nil)
	r := newReplayer(t, ReplayConfig{Paths: []string{truncated, good}, Market: MarketSpot}, m)
	var got []market.Tick
	err = r.Run(context.Background(), func(ts []market.Tick) error { got = append(got, ts...); return nil })
	if err == nil || !strings.Contains(err.Error(), "1 of 2 files failed") || !strings.Contains(err.Error(), truncated) {
		t.Fatalf("replay with a truncated file: %v", err)
	}
	goodIDs := map[uint64]bool{}
	for _, tk := range got {
		goodIDs[tk.ID] = true
	}
	for _, tk := range want {
		if !goodIDs[tk.ID] {
			t.Fatalf("tick %d of the healthy file not replayed", tk.ID)
		}
	}
	if len(got) <= len(want) {
		t.Fatalf("%d ticks: nothing of the truncated file's readable part", len(got))
	}
	if v := testutil.ToFloat64(m.replayFailed); v != 1 {
		t.Fatalf("failed files counted %v", v)
	}
}
