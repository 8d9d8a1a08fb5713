package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/regime"
	"github.com/signald-dev/signald/store"
)

func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = realMain(args, &o, &e)
	return o.String(), e.String(), code
}

// TestRegimeFitSyntheticIsBuiltIn: `make regime-model` regenerates the
// embedded model exactly.
func TestRegimeFitSyntheticIsBuiltIn(t *testing.T) {
	if testing.Short() {
		t.Skip("fits a model (seconds)")
	}
	out, errOut, code := runMain(t, "regime", "fit", "--synthetic", "--seed", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	m, err := regime.ParseModel([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != regime.DefaultModel().Version {
		t.Errorf("fitted %s, built-in %s: run make regime-model", m.Version, regime.DefaultModel().Version)
	}
	b, err := os.ReadFile("../../regime/default_model.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != out {
		t.Errorf("regime/default_model.json differs from a fresh fit: run make regime-model")
	}
}

func TestRegimeEvalCommand(t *testing.T) {
	out, errOut, code := runMain(t, "regime", "eval", "--instruments", "3", "--steps", "8000", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep regime.EvalReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range rep.Detectors {
		names = append(names, d.Detector)
		if d.Recall < 0 || d.Recall > 1 || d.Precision < 0 || d.Precision > 1 || d.Events == 0 {
			t.Errorf("%+v", d)
		}
	}
	if strings.Join(names, ",") != "hmm,changepoint,novelty,trend" || rep.InstrumentHours < 2.2 {
		t.Errorf("report %+v", rep)
	}
}

// synthTicks are quotes every 500 ms for 8000 s on two instruments, from
// synthetic mids with regime switches.
func synthTicks() []market.Tick {
	syn := regime.Synthesize(regime.SynthConfig{Seed: 3, Instruments: 2, Steps: 8000})
	var ticks []market.Tick
	for k := range 8000 {
		for i, name := range syn.Names {
			for q := range 2 {
				mid := syn.Mid[i][k]
				half := mid * syn.Spread[i][k] / 2e4
				tk := market.Tick{Venue: "synth", Instrument: name, Symbol: name, Kind: market.KindQuote,
					RecvTS: regime.SynthT0 + int64(k)*1e9 + int64(q)*500e6 + int64(i), BidPx: mid - half, AskPx: mid + half, BidSz: 1, AskSz: 1}
				tk.ComputeID()
				ticks = append(ticks, tk)
			}
		}
	}
	return ticks
}

// fitAndBacktest runs `regime fit` with storeArgs, checks the model, and
// runs `backtest --regime-model` with it.
func fitAndBacktest(t *testing.T, source string, storeArgs ...string) {
	t.Helper()
	model := filepath.Join(t.TempDir(), "model.json")
	_, errOut, code := runMain(t, append([]string{"regime", "fit", "--states", "3", "--out", model}, storeArgs...)...)
	if code != 0 {
		t.Fatalf("fit: exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	m, err := regime.ParseModel(b)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.States, ",") != "calm,trending,volatile" || m.Training.Sequences != 2 || m.Training.Observations < 15000 ||
		!strings.Contains(m.Training.Source, source) {
		t.Errorf("model %+v", m)
	}
	// The fit found the volatile regime: about 3x calm's volatility (ln 3 =
	// 1.1 apart, less what the baseline adapts).
	if d := m.Means[2][0] - m.Means[0][0]; d < 0.5 || math.IsNaN(d) {
		t.Errorf("log_vol_ratio means %v", m.Means)
	}
	out, errOut, code := runMain(t, append([]string{"backtest", "--regime-model", model}, storeArgs...)...)
	if code != 0 {
		t.Fatalf("backtest: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, m.Version) {
		t.Errorf("backtest signals do not name model %s:\n%.2000s\n%s", m.Version, out, errOut)
	}
	_, errOut, code = runMain(t, append([]string{"backtest", "--regime-model", model + ".nope"}, storeArgs...)...)
	if code == 0 || !strings.Contains(errOut, "--regime-model") {
		t.Errorf("missing model file: exit %d: %s", code, errOut)
	}
}

// TestRegimeFitStored: ticks in the Parquet store, through the feature
// engine, into a model file that `backtest --regime-model` then uses.
func TestRegimeFitStored(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenParquet(store.ParquetOptions{Dir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.InsertTicks(context.Background(), synthTicks()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// --clickhouse= : the environment of the integration run names a server.
	fitAndBacktest(t, "Parquet "+dir, "--clickhouse=", "--data", dir)
}

// TestRegimeFitClickHouse: the same from ClickHouse.
func TestRegimeFitClickHouse(t *testing.T) {
	_, chAddr := integration(t)
	db := fmt.Sprintf("sdregime_%d", rand.Uint32())
	c := openCH(t, chAddr, db)
	if err := c.InsertTicks(context.Background(), synthTicks()); err != nil {
		t.Fatal(err)
	}
	fitAndBacktest(t, "ClickHouse "+chAddr+"/"+db, "--clickhouse", chAddr, "--clickhouse-db", db)
}

// TestRunBadRegimeModel: a missing or invalid model file fails `run` at
// start-up, naming the flag.
func TestRunBadRegimeModel(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"format": 1, "states": ["calm"]}`), 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "none.json"), "--regime-model: open"},
		{bad, "--regime-model " + bad + ": regime model: features"},
	} {
		_, errOut, code := runMain(t, "run", "--http", freePort(t), "--data", dir, "--regime-model", c.path)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d: %s", c.path, code, errOut)
		}
	}
}
