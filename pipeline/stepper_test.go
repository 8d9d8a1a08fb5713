package pipeline

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/regime"
)

func TestRegimeColumns(t *testing.T) {
	m := regime.DefaultModel()
	mk := func(cols ...string) *arrowSchema { return testSchema(cols...) }
	if _, err := RegimeColumns(mk("mid", "mid_ret", "mid_ret_mean_60", "mid_ret_std_60", "spread_bps"), m); err != nil {
		t.Errorf("catalogue names: %v", err)
	}
	_, err := RegimeColumns(mk("mid", "mid_ret", "spread_bps"), m)
	if err == nil || !strings.Contains(err.Error(), "missing columns mid_ret_mean_60, mid_ret_std_60") {
		t.Errorf("missing columns: %v", err)
	}
}

type arrowSchema = arrow.Schema

func testSchema(cols ...string) *arrow.Schema {
	fields := []arrow.Field{
		{Name: "time", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: "venue", Type: arrow.BinaryTypes.String},
		{Name: "instrument", Type: arrow.BinaryTypes.String},
	}
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64})
	}
	return arrow.NewSchema(fields, nil)
}

// TestStepperDedup: with Dedup, redelivered ticks change no record and no
// signal, and are counted.
func TestStepperDedup(t *testing.T) {
	var ticks []market.Tick
	in := filepath.Join("..", "testdata", "binance", "binance_spot_btcusdt_20240808_head1500.gz")
	if err := ReadTicks(context.Background(), in, nil, func(b []market.Tick) error {
		ticks = append(ticks, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	run := func(dedup int, batches ...[]market.Tick) (rows, signals int, sp *Stepper) {
		sp, err := NewStepper(StepperConfig{Features: features.Config{Step: 25 * time.Millisecond}, Detect: true, Dedup: dedup}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		onRecord := func(rec arrow.Record) error {
			rows += int(rec.NumRows())
			return nil
		}
		onSignal := func(s market.Signal) error {
			signals++
			return nil
		}
		for _, b := range batches {
			if err := sp.Feed(slices.Clone(b), onRecord, onSignal); err != nil {
				t.Fatal(err)
			}
		}
		return rows, signals, sp
	}
	wantRows, wantSignals, _ := run(0, ticks)
	half := len(ticks) / 2
	rows, signals, sp := run(1<<16, ticks[:half], ticks[:half], ticks[half:], ticks[half-10:])
	if wantRows == 0 || wantSignals == 0 {
		t.Fatalf("the capture gave %d rows, %d signals: too little to compare", wantRows, wantSignals)
	}
	if rows != wantRows || signals != wantSignals {
		t.Fatalf("with redeliveries: %d rows, %d signals; want %d, %d", rows, signals, wantRows, wantSignals)
	}
	// Redelivered: the first half once, then the last 10 of it and the
	// whole second half.
	if want := half + 10 + len(ticks) - half; testutil.ToFloat64(sp.dups) != float64(want) {
		t.Fatalf("%v duplicates counted, want %d", testutil.ToFloat64(sp.dups), want)
	}
}
