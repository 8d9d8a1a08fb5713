package features

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// Tolerances of the stability tests, against a corrected two-pass reference
// over the same window (with a compensated mean):
//
//	std:   relative error <= 1e-9
//	mean:  |error| <= 1e-9 * std + 4 ulp of |mean|
//	sumSq: relative error <= 1e-12
//
// The observed errors are several orders of magnitude below these (logged).
const (
	tolStdRel   = 1e-9
	tolMeanStd  = 1e-9
	tolSumSqRel = 1e-12
)

// compMean is the mean of xs with a Neumaier-compensated sum, so the
// reference mean is accurate to about one ulp.
func compMean(xs []float64) float64 {
	var k ksum
	for _, x := range xs {
		k.add(x)
	}
	return k.value() / float64(len(xs))
}

// twoPass returns the mean and the corrected two-pass sample std of xs.
func twoPass(xs []float64) (mean, std float64) {
	mean = compMean(xs)
	var s, c float64
	for _, x := range xs {
		d := x - mean
		s += d * d
		c += d
	}
	n := float64(len(xs))
	return mean, math.Sqrt(max(s-c*c/n, 0) / (n - 1))
}

type errStats struct{ std, mean, sumSq float64 }

func (e *errStats) check(t *testing.T, what string, step int, xs []float64, gotMean, gotStd, gotSumSq float64) {
	t.Helper()
	mean, std := twoPass(xs)
	var sq ksum
	for _, x := range xs {
		sq.add(x * x)
	}
	relStd := math.Abs(gotStd-std) / std
	if std == 0 {
		relStd = gotStd
	}
	absMean := math.Abs(gotMean - mean)
	relSq := math.Abs(gotSumSq-sq.value()) / sq.value()
	e.std, e.mean, e.sumSq = max(e.std, relStd), max(e.mean, absMean/std), max(e.sumSq, relSq)
	if relStd > tolStdRel || absMean > tolMeanStd*std+4*ulp(mean) || relSq > tolSumSqRel {
		t.Fatalf("%s step %d: std %v want %v (rel %.2e), mean %v want %v, sumSq %v want %v",
			what, step, gotStd, std, relStd, gotMean, mean, gotSumSq, sq.value())
	}
}

func steps(t *testing.T) int {
	if testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// TestMomentWindowStability feeds price-level data (~1e5 with a standard
// deviation of 1e-3, level shifts and a slow drift) through the rolling
// windows for 1e6 steps and compares every step with the two-pass reference.
// A naive running sum/sum-of-squares over the same data is checked to fail,
// showing the data does provoke catastrophic cancellation.
func TestMomentWindowStability(t *testing.T) {
	n := steps(t)
	rng := rand.New(rand.NewPCG(11, 13))
	windows := []int{10, 60}
	ser := newSeries(60)
	wins := make([]momentWindow, len(windows))
	for i, w := range windows {
		wins[i].w = w
	}
	hist := make([]float64, 0, n)
	var naiveS, naiveQ [2]float64 // plain running sums, for contrast
	var worstNaive float64
	var es errStats
	level := 1e5
	for k := range n {
		if k%100_000 == 99_999 {
			level += 37.25 // level shift: forces re-anchoring
		}
		level += 1e-7
		x := level + 1e-3*rng.NormFloat64()
		hist = append(hist, x)
		for i := range wins {
			old, ok := ser.evicted(windows[i])
			wins[i].push(x, old, ok)
			naiveS[i] += x
			naiveQ[i] += x * x
			if ok {
				naiveS[i] -= old
				naiveQ[i] -= old * old
			}
		}
		ser.push(x)
		for i := range wins {
			wins[i].maybeReanchor(&ser)
		}
		for i, w := range windows {
			if len(hist) < w {
				continue
			}
			xs := hist[len(hist)-w:]
			m := &wins[i]
			es.check(t, "prices", k, xs, m.mean(), m.std(), m.sumSq())
			_, std := twoPass(xs)
			nv := (naiveQ[i] - naiveS[i]*naiveS[i]/float64(w)) / float64(w-1)
			worstNaive = max(worstNaive, math.Abs(math.Sqrt(math.Abs(nv))-std)/std)
		}
	}
	t.Logf("max errors over %d steps: std rel %.2e, mean %.2e std, sumSq rel %.2e; naive one-pass std rel error %.2e",
		n, es.std, es.mean, es.sumSq, worstNaive)
	if worstNaive < 1 {
		t.Errorf("naive formula error only %.2e: the data does not stress cancellation", worstNaive)
	}
}

// TestEngineStabilityLongRun runs the engine for 1e6 steps on quotes around
// 1e5 whose log returns have a mean of 1e-6 and a standard deviation of 1e-10
// (mean/std = 1e4), and compares ret_mean, ret_std and rv of every window at
// every step with the two-pass reference over the returns computed from the
// same mids.
func TestEngineStabilityLongRun(t *testing.T) {
	n := steps(t)
	e, _, _ := newTestEngine(t, Config{}) // windows 10, 60
	rng := rand.New(rand.NewPCG(5, 8))
	price := 1e5
	var rets []float64
	prevMid := math.NaN()
	var es errStats
	records := 0
	idx := map[string]int{}
	for i, f := range e.Schema().Fields() {
		idx[f.Name] = i
	}
	emit := func(rec arrow.Record) error {
		records++
		k := records - 1 // step index; one row per record
		if len(rets) <= k {
			t.Fatalf("record for step %d before its ticks", k)
		}
		rs := rets[:k+1]
		col := func(name string) float64 { return rec.Column(idx[name]).(*array.Float64).Value(0) }
		if got := col("ret"); math.Float64bits(got) != math.Float64bits(rs[k]) {
			t.Fatalf("step %d: ret %v, want %v", k, got, rs[k])
		}
		for _, w := range []int{10, 60} {
			ws := []string{"ret_mean_10", "ret_std_10", "rv_10"}
			if w == 60 {
				ws = []string{"ret_mean_60", "ret_std_60", "rv_60"}
			}
			if k < w { // the first step has no return: w+1 steps of warm-up counted from step 0
				if !math.IsNaN(col(ws[1])) {
					t.Fatalf("step %d: %s = %v during warm-up", k, ws[1], col(ws[1]))
				}
				continue
			}
			rv := col(ws[2])
			es.check(t, "returns", k, rs[k+1-w:k+1], col(ws[0]), col(ws[1]), rv*rv)
		}
		return nil
	}
	for k := range n {
		price *= math.Exp(1e-6 + 1e-10*rng.NormFloat64())
		bid, ask := price-0.005, price+0.005
		mid := (bid + ask) / 2
		rets = append(rets, math.Log(mid/prevMid))
		prevMid = mid
		if err := e.Apply(quote("v", "X", (base+int64(k))*sec+1, bid, ask), emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(emit); err != nil {
		t.Fatal(err)
	}
	if records != n {
		t.Fatalf("%d records, want %d", records, n)
	}
	t.Logf("max errors over %d steps: std rel %.2e, mean %.2e std, rv^2 rel %.2e", n, es.std, es.mean, es.sumSq)
}
