package evaluate

import (
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
)

// One long call held exactly over the only rise of a flat path beats
// nearly every placement of the same trade at random times.
func TestRandomBaselinePercentile(t *testing.T) {
	const t0 = 1000 * sec
	var ticks []market.Tick
	p := 100.0
	for k := 0; k < 2000; k++ {
		if k >= 1000 && k < 1100 {
			p *= 1.001
		}
		ticks = append(ticks, quote("v", "A", t0+int64(k)*sec+sec/2, p, 0))
	}
	ev, _ := New(Options{FeeBps: 1})
	feed(ev, ticks, []market.Signal{call("A", t0+999*sec, "long", 1), call("A", t0+1099*sec, "flat", 0)})
	rep, _ := ev.Finish()
	if rep.Strategy.Trades != 1 || !(rep.Strategy.TotalReturn > 0.1) {
		t.Fatalf("strategy %+v", rep.Strategy)
	}
	if rb := rep.Instruments[0].Random; !(rb.Percentile > 90) || !(rb.P50 < rep.Strategy.TotalReturn) {
		t.Errorf("random baseline %+v: the well-timed call should beat nearly all draws", rb)
	}
	if rep.Random.Percentile != rep.Instruments[0].Random.Percentile {
		t.Errorf("total percentile %v, instrument %v: one instrument, they must agree", rep.Random.Percentile, rep.Instruments[0].Random.Percentile)
	}
}

// regime_change "volatile" signals placed where volatility rises: the
// forward realized volatility after them is a multiple of the unconditional.
func TestRegimeStudy(t *testing.T) {
	const t0 = 1000 * sec
	rng := rand.New(rand.NewPCG(2, 2))
	var ticks []market.Tick
	var sigs []market.Signal
	lp := 0.0
	for k := 0; k < 6000; k++ {
		sigma := 1e-4
		if k%1000 >= 500 && k%1000 < 560 {
			sigma = 2e-3
		}
		if k%1000 == 498 {
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: "A", Type: market.TypeRegimeChange, State: "volatile", Time: t0 + int64(k)*sec, Values: map[string]float64{"switch": 1}})
		}
		if k%1000 == 598 {
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: "A", Type: market.TypeRegimeChange, State: "calm", Time: t0 + int64(k)*sec, Values: map[string]float64{"switch": 1, "changepoint": 1}})
		}
		lp += sigma * rng.NormFloat64()
		ticks = append(ticks, quote("v", "A", t0+int64(k)*sec+sec/2, 100*math.Exp(lp), 0))
	}
	ev, _ := New(Options{Horizons: []int{1, 5, 30}})
	feed(ev, ticks, sigs)
	rep, _ := ev.Finish()
	got := map[string]RegimeRow{}
	for _, r := range rep.Regime {
		if r.Horizon == 30 {
			got[r.Group] = r
		}
	}
	v, c, u := got["volatile"], got["calm"], got["unconditional"]
	t.Logf("volatile %+v\ncalm %+v\nunconditional %+v", v.RV, c.RV, u.RV)
	if v.RV.N != 6 || c.RV.N != 6 || got["changepoint"].RV.N != 6 {
		t.Fatalf("groups %v", got)
	}
	if !(v.RVRatio > 3) || !(c.RVRatio < 1) || !(v.RV.Lo > u.RV.Hi) {
		t.Errorf("rv ratio after volatile %v, after calm %v: want > 3 and < 1 with the volatile interval above the unconditional one", v.RVRatio, c.RVRatio)
	}
}

// A signal that reaches the Evaluator after its execution time is executed
// at the next price (never an earlier one) and counted.
func TestLateSignal(t *testing.T) {
	const t0 = 1000 * sec
	ev, _ := New(Options{})
	for k := int64(0); k < 10; k++ {
		ev.AddTicks([]market.Tick{quote("v", "A", t0+k*sec+sec/2, 100+float64(k), 0)})
	}
	ev.AddSignal(call("A", t0+2*sec, "long", 1)) // the ticks up to 1009.5 s are in
	ev.AddTicks([]market.Tick{quote("v", "A", t0+10*sec+sec/2, 120, 0)})
	rep, _ := ev.Finish()
	if rep.LateSignals != 1 || len(rep.Trades) != 1 || rep.Trades[0].EntryPrice != 120 {
		t.Fatalf("late %d, trades %+v: want the call filled at 120", rep.LateSignals, rep.Trades)
	}
}

// AddRecord reads the feature engine's records as they are.
func TestAddRecordFromEngine(t *testing.T) {
	ticks := walk(5, 200, 1e-3, nil, 0, 4)
	eng, err := features.NewEngine(features.Config{Step: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := New(Options{Delay: features.DefaultAllowedLateness, Features: []string{"mid_ret", "bbo_imb"}})
	records := 0
	for i := range ticks {
		err := eng.Apply(&ticks[i], func(rec arrow.Record) error {
			records++
			return ev.AddRecord(rec)
		})
		if err != nil {
			t.Fatal(err)
		}
		ev.AddTicks(ticks[i : i+1])
	}
	rep, _ := ev.Finish()
	if records < 150 || len(rep.IC) != 8 || rep.IC[0].Feature != "mid_ret" || rep.IC[0].Steps < 100 {
		t.Fatalf("%d records, IC %+v", records, rep.IC)
	}
	ev, _ = New(Options{Features: []string{"no_such_column"}})
	if err := ev.AddFeatures(1, []Key{{"v", "A"}}, map[string][]float64{"mid_ret": {1}}); err == nil {
		t.Error("an unknown feature column was accepted")
	}
}
