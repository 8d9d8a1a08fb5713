package regime

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/internal/stats"
	"github.com/signald-dev/signald/market"
)

func TestDetectorsDeterministic(t *testing.T) {
	s := Synthesize(SynthConfig{Seed: 4, Instruments: 3, Steps: 6000})
	a := collect(t, newDet(t, Config{}), synthRecords(s, 0, 6000))
	b := collect(t, newDet(t, Config{}), synthRecords(s, 0, 6000))
	if len(a) == 0 || !reflect.DeepEqual(a, b) {
		t.Fatalf("%d and %d signals, or they differ", len(a), len(b))
	}
	types := map[string]int{}
	ids := map[uint64]bool{}
	for _, x := range a {
		types[x.Type]++
		if ids[x.ID] {
			t.Errorf("duplicate id %d: %+v", x.ID, x)
		}
		ids[x.ID] = true
		id := x.ID
		x.ComputeID()
		if x.ID != id {
			t.Errorf("id not from ComputeID: %+v", x)
		}
		if _, err := json.Marshal(x); err != nil {
			t.Errorf("signal does not encode: %v: %+v", err, x)
		}
		if x.Explanation == "" || x.ModelVersion == "" || math.IsNaN(x.Score) {
			t.Errorf("signal without explanation, version or score: %+v", x)
		}
	}
	for _, typ := range []string{market.TypeRegimeChange, market.TypeRegimeProbs, market.TypeNovelty, market.TypeTrendCall} {
		if types[typ] == 0 {
			t.Errorf("no %s signal in 3 x 6000 synthetic steps: %v", typ, types)
		}
	}
	t.Logf("signals by type: %v", types)
}

// TestDetectorsNoLookAhead: signals up to step T and the states after it do
// not depend on anything after T.
func TestDetectorsNoLookAhead(t *testing.T) {
	const T = 4000
	a := Synthesize(SynthConfig{Seed: 5, Instruments: 3, Steps: 6000})
	b := Synthesize(SynthConfig{Seed: 5, Instruments: 3, Steps: 6000})
	// b's future differs: another path after T
	other := Synthesize(SynthConfig{Seed: 99, Instruments: 3, Steps: 6000})
	for i := range b.Names {
		for k := T; k < 6000; k++ {
			b.Mid[i][k], b.Ret[i][k], b.Mean[i][k], b.Std[i][k], b.Spread[i][k] = other.Mid[i][k], other.Ret[i][k], other.Mean[i][k], other.Std[i][k], other.Spread[i][k]
		}
	}
	da, db := newDet(t, Config{}), newDet(t, Config{})
	sa := collect(t, da, synthRecords(a, 0, T))
	stA := da.States()
	sa = append(sa, collect(t, da, synthRecords(a, T, 6000))...)
	sb := collect(t, db, synthRecords(b, 0, T))
	stB := db.States()
	sb = append(sb, collect(t, db, synthRecords(b, T, 6000))...)
	upTo := func(ss []market.Signal) []market.Signal {
		var out []market.Signal
		for _, s := range ss {
			if s.Time <= SynthT0+int64(T)*sec {
				out = append(out, s)
			}
		}
		return out
	}
	if !reflect.DeepEqual(upTo(sa), upTo(sb)) || len(upTo(sa)) == 0 {
		t.Errorf("signals up to step %d differ (or none)", T)
	}
	if fmt.Sprint(stA) != fmt.Sprint(stB) { // NaN stops: DeepEqual would never match
		t.Errorf("states at step %d differ", T)
	}
	if reflect.DeepEqual(sa, sb) {
		t.Errorf("different futures gave the same signals: the test does not test anything")
	}
}

func TestDetectorsMissingColumns(t *testing.T) {
	d := newDet(t, Config{})
	sc := featSchema("mid", "ret", "ret_std_60", "spread_bps")
	err := d.CheckSchema(sc)
	if err == nil || !strings.Contains(err.Error(), "missing columns mid_ret, mid_ret_mean_60, mid_ret_std_60") {
		t.Fatalf("CheckSchema: %v", err)
	}
	rec := featRecord(sc, SynthT0, row{"v", "X", nil})
	defer rec.Release()
	if err := d.Step(rec, nil); err == nil || !strings.Contains(err.Error(), "mid_ret_mean_60") {
		t.Errorf("Step: %v", err)
	}
	// configured names work
	d2 := newDet(t, Config{Columns: Columns{Ret: "ret", RetMean: "ret_mean_60", RetStd: "ret_std_60"}, Novelty: NoveltyConfig{Features: []string{"ret", "spread_bps"}}})
	if err := d2.CheckSchema(featSchema("mid", "ret", "ret_mean_60", "ret_std_60", "spread_bps")); err != nil {
		t.Error(err)
	}
	cols, _ := Config{}.RequiredColumns()
	if strings.Join(cols, ",") != "mid,mid_ret,mid_ret_mean_60,mid_ret_std_60,spread_bps" {
		t.Errorf("required columns %v", cols)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Trend: TrendConfig{Exit: 5}}, "trend exit 5, enter 3.5"},
		{Config{SwitchProb: 0.4}, "switch probability 0.4"},
		{Config{Changepoint: ChangepointConfig{Hazard: 2}}, "changepoint hazard 2"},
		{Config{Novelty: NoveltyConfig{Features: []string{"a", "a"}}}, `novelty feature "a" listed twice`},
		{Config{Columns: Columns{Mid: "venue"}}, `column "venue": not a feature column`},
		{Config{Novelty: NoveltyConfig{Threshold: math.NaN()}}, "novelty threshold NaN"},
	} {
		if _, err := NewDetectors(tc.cfg, nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

// quietRow is an instrument at rest: constant mid, small iid returns.
func quietRow(inst string, rng *splitMix, mid float64) row {
	r := 1e-4 * rng.norm()
	return row{"v", inst, map[string]float64{"mid": mid, "mid_ret": r, "mid_ret_mean_60": 1e-5 * rng.norm(),
		"mid_ret_std_60": 1e-4 * (1 + 0.05*rng.norm()), "spread_bps": 1 + 0.05*rng.norm()}}
}

// TestNoveltyAttribution: injected outliers are flagged at their step and
// attributed to the feature that carried them; the estimate is not poisoned
// (the next normal step scores low).
func TestNoveltyAttribution(t *testing.T) {
	d := newDet(t, Config{})
	sc := featSchema(defaultCols...)
	rng := newSplitMix(8)
	inject := map[int]string{500: "spread_bps", 900: "mid_ret", 901: "mid_ret", 1300: "spread_bps"}
	var got []market.Signal
	for k := range 1500 {
		r := quietRow("X", rng, 100)
		switch inject[k] {
		case "spread_bps":
			r.v["spread_bps"] = 3
		case "mid_ret":
			r.v["mid_ret"] = 2e-3
		}
		rec := featRecord(sc, SynthT0+int64(k+1)*sec, r)
		if err := d.Step(rec, func(s market.Signal) error {
			if s.Type == market.TypeNovelty {
				got = append(got, s)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		if k == 501 || k == 902 {
			if sc := d.States()[0].Novelty; sc > 4 {
				t.Errorf("step %d after an outlier: novelty %v (estimate poisoned)", k, sc)
			}
		}
	}
	// 900 and 901 are one anomaly lasting two steps: one signal.
	want := []struct {
		step int
		feat string
	}{{500, "spread_bps"}, {900, "mid_ret"}, {1300, "spread_bps"}}
	if len(got) != len(want) {
		t.Fatalf("%d novelty signals, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		s := got[i]
		if s.Time != SynthT0+int64(w.step+1)*sec || s.Values[w.feat] < 0.9 || !strings.Contains(s.Explanation, w.feat) {
			t.Errorf("signal %d: %+v, want step %d attributed to %s", i, s, w.step, w.feat)
		}
		sum := 0.0
		for _, v := range s.Values {
			sum += v
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Errorf("shares sum to %v", sum)
		}
		t.Log(s.Explanation)
	}
}

// TestNoveltyLargeOffset: a feature with a large level (a price) and a tiny
// variance scores the same as the centred feature (with the relative floor
// set below that variance).
func TestNoveltyLargeOffset(t *testing.T) {
	nv := &novelty{d: 1, alpha: halfLifeAlpha(300), clip: 3, warmUp: 100, threshold: 8, rearm: 4, minRelStd: 1e-12}
	a, b := nv.newState(), nv.newState()
	rng := newSplitMix(1)
	for k := range 20000 {
		x := 1e-3 * rng.norm()
		if k%5000 == 4999 {
			x = 0.05
		}
		nv.step(&a, []float64{x})
		nv.step(&b, []float64{1e6 + x})
		if k > 100 && math.Abs(a.score-b.score) > 1e-5*(1+a.score) {
			t.Fatalf("step %d: score %v centred, %v at offset 1e6", k, a.score, b.score)
		}
	}
}

// trendRows drives one instrument with a known drift schedule: the mean and
// std columns are what a 60-step window of such returns gives.
func TestTrendCalls(t *testing.T) {
	d := newDet(t, Config{})
	sc := featSchema(defaultCols...)
	rng := newSplitMix(3)
	mid := 100.0
	const vol = 1e-4
	drift := func(k int) float64 {
		switch {
		case k >= 1000 && k < 2000:
			return 0.5 * vol // up
		case k >= 3000 && k < 4000:
			return -0.5 * vol // down
		}
		return 0
	}
	var rets []float64
	var calls []market.Signal
	for k := range 5000 {
		r := drift(k) + vol*rng.norm()
		mid *= math.Exp(r)
		rets = append(rets, r)
		v := map[string]float64{"mid": mid, "mid_ret": r, "spread_bps": 1}
		if len(rets) >= 60 {
			var w stats.Welford
			for _, x := range rets[len(rets)-60:] {
				w.Add(x)
			}
			v["mid_ret_mean_60"], v["mid_ret_std_60"] = w.Mean(), math.Sqrt(w.Var())
		}
		rec := featRecord(sc, SynthT0+int64(k+1)*sec, row{"v", "X", v})
		if err := d.Step(rec, func(s market.Signal) error {
			if s.Type == market.TypeTrendCall {
				calls = append(calls, s)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rec.Release()
		st := d.States()[0]
		if st.Trend != 0 && (st.TrendStrength < 0 || st.TrendStrength > 1 || math.IsNaN(st.TrendStop)) {
			t.Fatalf("step %d: state %+v", k, st)
		}
		if st.Trend == 1 && st.TrendStop >= mid || st.Trend == -1 && st.TrendStop <= mid {
			t.Fatalf("step %d: stop %v on the wrong side of mid %v for call %d", k, st.TrendStop, mid, st.Trend)
		}
	}
	step := func(s market.Signal) int { return int((s.Time-SynthT0)/sec) - 1 }
	var longAt, shortAt = -1, -1
	for _, c := range calls {
		k := step(c)
		switch c.State {
		case CallLong:
			if k < 1000 || k > 2100 {
				t.Errorf("long call at step %d, outside the up trend: %s", k, c.Explanation)
			}
			if longAt < 0 {
				longAt = k
			}
			if c.Values["stop"] >= 0 && !(c.Values["stop"] > 0) || c.Values["strength"] < 0.5 || c.Values["strength"] > 1 {
				t.Errorf("long call values %v", c.Values)
			}
		case CallShort:
			if k < 3000 || k > 4100 {
				t.Errorf("short call at step %d, outside the down trend: %s", k, c.Explanation)
			}
			if shortAt < 0 {
				shortAt = k
			}
		}
	}
	if longAt < 0 || longAt > 1200 || shortAt < 0 || shortAt > 3200 {
		t.Errorf("first long at %d (trend from 1000), first short at %d (from 3000)", longAt, shortAt)
	}
	// hysteresis: few calls, not a flapping sequence
	if len(calls) > 12 {
		t.Errorf("%d trend calls: flapping", len(calls))
	}
	for _, c := range calls {
		t.Logf("step %d %s: %s", step(c), c.State, c.Explanation)
	}
}

// TestTrendStop: a long call is stopped out when mid falls through the
// trailing stop, and stays flat until momentum has faded (re-armed).
func TestTrendStop(t *testing.T) {
	tr := &trend{enter: 3.5, exit: 0.5, stopK: 2, sqrtW: math.Sqrt(60)}
	s := trendState{stop: math.NaN()}
	if !tr.step(&s, 100, 4, 1e-3) || s.call != 1 {
		t.Fatalf("no long call: %+v", s)
	}
	wantStop := 100 * math.Exp(-2*1e-3*math.Sqrt(60))
	if math.Abs(s.stop-wantStop) > 1e-9 {
		t.Fatalf("stop %v, want %v", s.stop, wantStop)
	}
	tr.step(&s, 101, 4, 1e-3) // trails up
	if s.stop <= wantStop {
		t.Fatalf("stop did not trail: %v", s.stop)
	}
	tr.step(&s, 100.5, 4, 1e-3) // does not loosen
	if s.stop != 101*math.Exp(-2*1e-3*math.Sqrt(60)) {
		t.Fatalf("stop loosened: %v", s.stop)
	}
	if !tr.step(&s, 99, 4, 1e-3) || s.call != 0 || s.reason != reasonStopped {
		t.Fatalf("not stopped out: %+v", s)
	}
	if tr.step(&s, 99, 4, 1e-3) || s.call != 0 {
		t.Fatalf("re-entered while blocked: %+v", s)
	}
	tr.step(&s, 99, 0.2, 1e-3) // momentum faded: re-armed
	if !tr.step(&s, 99, -3.6, 1e-3) || s.call != -1 || s.stop <= 99 {
		t.Fatalf("no short after re-arming: %+v", s)
	}
}

// TestRegimeProbsRule: every regime_probs signal follows a material move
// (more than ProbsDelta in some state since the instrument's previous one) or
// a regime change at the same step, or is the first after warm-up.
func TestRegimeProbsRule(t *testing.T) {
	s := Synthesize(SynthConfig{Seed: 6, Instruments: 2, Steps: 8000})
	d := newDet(t, Config{})
	sigs := collect(t, d, synthRecords(s, 0, 8000))
	last := map[string]map[string]float64{}
	change := map[string]int64{}
	n := 0
	for _, x := range sigs {
		switch x.Type {
		case market.TypeRegimeChange:
			if x.Values["switch"] == 1 {
				change[x.Instrument] = x.Time
			}
		case market.TypeRegimeProbs:
			n++
			prev, ok := last[x.Instrument]
			last[x.Instrument] = x.Values
			if !ok || change[x.Instrument] == x.Time {
				continue
			}
			move := 0.0
			for k, v := range x.Values {
				move = max(move, math.Abs(v-prev[k]))
			}
			if move <= DefaultProbsDelta-2e-6 { // values are rounded to 1e-6
				t.Errorf("regime_probs at %d moved only %v: %v after %v", x.Time, move, x.Values, prev)
			}
		}
	}
	if n < 10 {
		t.Errorf("only %d regime_probs signals", n)
	}
}

// TestDetectorsReplayAndMetrics: a replayed record is skipped whole and
// counted; NaN inputs (warm-up) are counted, not fatal.
func TestDetectorsReplayAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := NewDetectors(Config{}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	sc := featSchema(defaultCols...)
	rng := newSplitMix(2)
	for k := range 200 {
		r := quietRow("X", rng, 100)
		if k < 10 {
			delete(r.v, "mid_ret_std_60") // NaN: warming up
		}
		rec := featRecord(sc, SynthT0+int64(k+1)*sec, r)
		if err := d.Step(rec, nil); err != nil {
			t.Fatal(err)
		}
		before := d.States()
		if err := d.Step(rec, nil); err != nil { // replayed
			t.Fatal(err)
		}
		if fmt.Sprint(before) != fmt.Sprint(d.States()) {
			t.Fatalf("step %d: a replayed record changed the state", k)
		}
		rec.Release()
	}
	if got := testutil.ToFloat64(d.m.skippedRows); got != 200 {
		t.Errorf("skipped rows %v, want 200", got)
	}
	if got := testutil.ToFloat64(d.m.noInput); got != 10 {
		t.Errorf("rows without inputs %v, want 10", got)
	}
	st := d.States()
	if len(st) != 1 || !st[0].Warm || st[0].Regime == "" || len(st[0].RegimeProbs) != 3 || st[0].Time != SynthT0+200*sec {
		t.Errorf("state %+v", st)
	}
	// A second Detectors on the same registry shares the series.
	if _, err := NewDetectors(Config{}, nil, reg); err != nil {
		t.Error(err)
	}
}

// TestDetectorsConcurrentStates exercises States during Step (run with -race).
func TestDetectorsConcurrentStates(t *testing.T) {
	s := Synthesize(SynthConfig{Seed: 7, Instruments: 4, Steps: 800})
	d := newDet(t, Config{WarmUp: 10})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_ = d.States()
			}
		}
	}()
	collect(t, d, synthRecords(s, 0, 800))
	close(stop)
	wg.Wait()
	if len(d.States()) != 4 {
		t.Error("states")
	}
}

// BenchmarkDetectorsStep: one Step over 1000 instruments in steady state
// (past warm-up), next to a baseline measured in the same run: "read" only
// resolves the columns and, per row, reads every input and looks the
// instrument up in a map, which any per-instrument detector must do.
func BenchmarkDetectorsStep(b *testing.B) {
	const n = 1000
	sc := featSchema(defaultCols...)
	rng := newSplitMix(1)
	var recs []arrow.Record
	mk := func(k int) arrow.Record {
		rows := make([]row, n)
		for i := range rows {
			rows[i] = quietRow("", rng, 100)
			rows[i].venue, rows[i].inst = "v", string(rune('A'+i%26))+strings.Repeat("x", i/26)
		}
		return featRecord(sc, SynthT0+int64(k+1)*sec, rows...)
	}
	rec := func(b *testing.B, k int) arrow.Record {
		for len(recs) <= k {
			b.StopTimer()
			recs = append(recs, mk(len(recs)))
			b.StartTimer()
		}
		return recs[k]
	}
	b.Run("read", func(b *testing.B) {
		d := newDet(b, Config{})
		seen := map[instKey]*float64{}
		sum := 0.0
		b.ReportAllocs()
		for i := range b.N {
			r := rec(b, i)
			if d.cols.schema != r.Schema() {
				d.cols, _ = d.resolve(r.Schema())
			}
			c := &d.cols
			c.bind(r)
			for j := range int(r.NumRows()) {
				k := instKey{c.venueA.Value(j), c.instA.Value(j)}
				p := seen[k]
				if p == nil {
					p = new(float64)
					seen[instKey{strings.Clone(k.venue), strings.Clone(k.instrument)}] = p
				}
				*p += float64(c.timeA.Value(j)) + value(c.midA, j) + value(c.retA, j) + value(c.meanA, j) + value(c.stdA, j)
				for _, a := range c.novA {
					sum += value(a, j)
				}
			}
			c.unbind()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/instrument")
	})
	b.Run("detectors", func(b *testing.B) {
		d := newDet(b, Config{})
		for k := range 300 { // past warm-up, into steady state
			d.Step(rec(b, k), nil)
		}
		sigs := 0
		count := func(market.Signal) error { sigs++; return nil }
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := d.Step(rec(b, 300+i), count); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		hyps := 0
		for _, st := range d.insts {
			hyps += len(st.cp.p)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/instrument")
		b.ReportMetric(float64(hyps)/n, "runlengths/instrument")
		b.ReportMetric(float64(sigs)/float64(b.N), "signals/op")
	})
	b.Run("states", func(b *testing.B) {
		d := newDet(b, Config{})
		for k := range 300 {
			d.Step(rec(b, k), nil)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if len(d.States()) != n {
				b.Fatal("states")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/instrument")
	})
	for _, r := range recs {
		r.Release()
	}
}

func TestInstrumentStateJSON(t *testing.T) {
	b, err := json.Marshal([]market.InstrumentState{{Venue: "v", Instrument: "X", TrendStop: math.NaN(), RegimeProbs: map[string]float64{"calm": 1}},
		{Venue: "v", Instrument: "Y", Trend: 1, TrendStop: 101.5}})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"venue":"v","instrument":"X","time":0,"warm":false,"regime":"","regime_probs":{"calm":1},"run_length":0,"novelty":0,"trend":0,"trend_strength":0,"trend_stop":null},` +
		`{"venue":"v","instrument":"Y","time":0,"warm":false,"regime":"","run_length":0,"novelty":0,"trend":1,"trend_strength":0,"trend_stop":101.5}]`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// TestStepAllocations: in steady state a Step allocates nothing unless it
// emits a signal.
func TestStepAllocations(t *testing.T) {
	const n, steps = 200, 400
	sc := featSchema(defaultCols...)
	rng := newSplitMix(4)
	recs := make([]arrow.Record, steps)
	for k := range recs {
		rows := make([]row, n)
		for i := range rows {
			rows[i] = quietRow(fmt.Sprint("I", i), rng, 100)
		}
		recs[k] = featRecord(sc, SynthT0+int64(k+1)*sec, rows...)
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	// thresholds no quiet input reaches: no signals
	d := newDet(t, Config{ProbsDelta: 1, MinDwell: 1 << 30, Changepoint: ChangepointConfig{MinDrop: 1 << 30},
		Novelty: NoveltyConfig{Threshold: 1e9}, Trend: TrendConfig{Enter: 1e6}})
	k := 0
	emitted := 0
	emit := func(market.Signal) error { emitted++; return nil }
	for ; k < 300; k++ {
		d.Step(recs[k], emit)
	}
	emitted = 0
	allocs := testing.AllocsPerRun(90, func() {
		if err := d.Step(recs[k], emit); err != nil {
			t.Fatal(err)
		}
		k++
	})
	if emitted != 0 || allocs != 0 {
		t.Errorf("%v allocations per Step of %d instruments (%d signals)", allocs, n, emitted)
	}
}

// TestNoveltyPinnedFeature: a feature stuck at one value (a one-tick spread)
// that then doubles scores 1/MinRelStd, not an arbitrary huge number.
func TestNoveltyPinnedFeature(t *testing.T) {
	nv := &novelty{d: 1, alpha: halfLifeAlpha(300), clip: 3, warmUp: 100, threshold: 8, rearm: 4, minRelStd: DefaultNoveltyMinRelStd}
	s := nv.newState()
	for range 500 {
		if nv.step(&s, []float64{0.0014}) {
			t.Fatal("alarm on a constant")
		}
	}
	if !nv.step(&s, []float64{0.0028}) || math.Abs(s.score-1000) > 1 {
		t.Errorf("doubling: score %v, want 1000", s.score)
	}
}
