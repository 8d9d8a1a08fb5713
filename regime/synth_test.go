package regime

import (
	"math"
	"reflect"
	"testing"

	"github.com/signald-dev/signald/internal/stats"
)

// TestSynthesize: deterministic, and its events agree with the per-step
// truth and with the features computed from the path.
func TestSynthesize(t *testing.T) {
	cfg := SynthConfig{Seed: 11, Instruments: 3, Steps: 30000}
	a, b := Synthesize(cfg), Synthesize(cfg)
	if !reflect.DeepEqual(a.Events, b.Events) || !reflect.DeepEqual(a.Regime, b.Regime) || a.Mid[2][29999] != b.Mid[2][29999] {
		t.Fatal("not deterministic")
	}
	if c := Synthesize(SynthConfig{Seed: 12, Instruments: 3, Steps: 30000}); reflect.DeepEqual(a.Events, c.Events) {
		t.Fatal("the seed changes nothing")
	}
	var switches, anomalies int
	for _, e := range a.Events {
		switch e.Kind {
		case EventSwitch:
			switches++
			if a.Regime[e.Instrument][e.Step] != e.To || a.Regime[e.Instrument][e.Step-1] != e.From || e.From == e.To {
				t.Errorf("switch %+v disagrees with the truth", e)
			}
			if (e.To == StateTrending) != (e.Dir != 0) || e.Dir != a.Dir[e.Instrument][e.Step] {
				t.Errorf("switch %+v: direction", e)
			}
		case EventAnomaly:
			anomalies++
			if e.Feature != "mid_ret" && e.Feature != "spread_bps" {
				t.Errorf("anomaly %+v", e)
			}
		}
	}
	// 90000 steps: about 90000/1500+ switches and 60 anomalies
	if switches < 25 || switches > 90 || anomalies < 35 || anomalies > 90 {
		t.Errorf("%d switches, %d anomalies in 90000 steps", switches, anomalies)
	}
	// features are what the path gives
	for i := range a.Names {
		for _, k := range []int{1, 59, 60, 1000, 29999} {
			if r := math.Log(a.Mid[i][k] / a.Mid[i][k-1]); math.Abs(r-a.Ret[i][k]) > 1e-15 {
				t.Errorf("ret %v, path %v", a.Ret[i][k], r)
			}
		}
		if !math.IsNaN(a.Std[i][59]) || math.IsNaN(a.Std[i][60]) {
			t.Errorf("std window: %v %v", a.Std[i][59], a.Std[i][60])
		}
		var w stats.Welford
		for _, v := range a.Ret[i][29999-59:] {
			w.Add(v)
		}
		if math.Abs(w.Mean()-a.Mean[i][29999]) > 1e-18 || math.Abs(math.Sqrt(w.Var())-a.Std[i][29999]) > 1e-15 {
			t.Errorf("rolling mean/std")
		}
	}
}

// TestHMMFilterLongRun: a million steps stay normalized and finite.
func TestHMMFilterLongRun(t *testing.T) {
	h := newHMM(DefaultModel())
	var f filter
	rng := newSplitMix(2)
	for k := range 1_000_000 {
		x := [2]float64{0.5 * rng.norm(), math.Abs(2 * rng.norm())}
		h.step(&f, &x)
		if k%1000 == 0 {
			s := f.p[0] + f.p[1] + f.p[2]
			if math.Abs(s-1) > 1e-12 || math.IsNaN(s) {
				t.Fatalf("step %d: probabilities sum to %v", k, s)
			}
		}
	}
	if math.IsInf(f.loglk, 0) || math.IsNaN(f.loglk) {
		t.Errorf("log-likelihood %v", f.loglk)
	}
}
