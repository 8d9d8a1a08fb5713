package features

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// Tolerances of the stability tests against the naive two-pass references
// (helpers_test.go) over the same window, as |got-want| <= rel*|want| + abs
// with abs on the scale of the window's standard deviation sd (or, for sums,
// its largest |value|):
//
//	mean:                 1e-9 sd + 4 ulp of the mean
//	std:                  relative 1e-9
//	sum, rv:              relative 1e-12 + 1e-15 of n*max|x|
//	z, skew, kurt, ac1, r2: 1e-6 (dimensionless)
//	slope:                1e-9 sd per step
//	ewm, ewstd:           1e-9 sd + 4 ulp
//	min, max, ages, range_pos, pos_share, updown: exact
//
// The observed errors are orders of magnitude below these (logged).
type stabErr map[string]float64

func (e stabErr) note(stat string, v float64) {
	if v > e[stat] || math.IsNaN(v) {
		e[stat] = v
	}
}

// checkStat compares one statistic with the reference and returns the error
// in units of its tolerance (<= 1 passes).
func checkStat(stat string, got float64, xs, hist []float64) (float64, float64) {
	want := refStat(stat, xs, hist)
	if math.IsNaN(want) || math.IsNaN(got) {
		if math.IsNaN(want) && math.IsNaN(got) {
			return 0, want
		}
		return math.Inf(1), want
	}
	_, m2, _, _ := refCentral(xs)
	sd := math.Sqrt(m2 / float64(len(xs)))
	big := 0.0
	for _, x := range xs {
		big = max(big, math.Abs(x))
	}
	var tol float64
	switch stat {
	case "mean":
		tol = 1e-9*sd + 4*ulp(want)
	case "std":
		tol = 1e-9 * want
	case "sum", "rv":
		tol = 1e-12*math.Abs(want) + 1e-15*float64(len(xs))*big*big/max(big, 1e-300)
		if stat == "rv" {
			tol = 1e-12*want + 1e-300
		}
	case "z", "skew", "kurt", "ac1", "r2":
		tol = 1e-6
	case "slope":
		tol = 1e-9*sd + 1e-300
	case "ewm", "ewstd":
		tol = 1e-9*sd + 4*ulp(want) + 1e-300
	default:
		tol = 0
	}
	d := math.Abs(got - want)
	if tol == 0 {
		if d == 0 {
			return 0, want
		}
		return math.Inf(1), want
	}
	return d / tol, want
}

var statNames = func() []string {
	var out []string
	for _, s := range statDefs {
		out = append(out, s.name)
	}
	return out
}()

// fastStats are checked at every step of the long runs, the rest at every
// 101st step (their references are slower).
var fastStats = map[string]bool{"mean": true, "std": true, "z": true, "sum": true, "rv": true}

func steps(t *testing.T) int {
	if testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// TestRollerStability drives the structure-of-arrays windows directly for a
// million steps with three instruments: prices near 1e5 with a standard
// deviation of 1e-3, level shifts and a slow drift; returns with a mean of
// 1e-6 and a standard deviation of 1e-10 (mean/std 1e4); and a volume-like
// series, mostly exact zeros, that starts late (NaN first). Every statistic
// of every window is compared with the naive two-pass reference: the
// moments path at every step, the others at every 101st. A naive running
// sum/sum-of-squares over the price data is checked to fail, showing the
// data does provoke catastrophic cancellation.
func TestRollerStability(t *testing.T) {
	n := steps(t)
	windows := []int{10, 60}
	const ni = 3
	r := newRoller(windows, []bool{true})
	r.resize([]int32{-1, -1, -1})
	wc := [][][numStats]int{make([][numStats]int, len(windows))}
	cols := make([][]float64, len(windows)*numStats)
	for wi := range windows {
		for s := range numStats {
			wc[0][wi][s] = wi*numStats + s
			cols[wi*numStats+s] = make([]float64, ni)
		}
	}
	rng := rand.New(rand.NewPCG(11, 13))
	hist := [ni][]float64{}
	starts := [ni]int{}
	x := [][]float64{make([]float64, ni)}
	level, ret := 1e5, 0.0
	var naiveS, naiveQ float64
	var worstNaive float64
	errs := stabErr{}
	var ews [ni][2][2]float64 // [instrument][window]{mean, var}
	const lateStart = 1000
	for k := range n {
		if k%20_000 == 19_999 {
			level += 37.25 // level shift: forces re-anchoring
		}
		level += 1e-7
		x[0][0] = level + 1e-3*rng.NormFloat64()
		ret = 1e-6 + 1e-10*rng.NormFloat64()
		x[0][1] = ret
		switch {
		case k < lateStart:
			x[0][2] = math.NaN()
		case rng.IntN(10) < 7:
			x[0][2] = 0
		default:
			x[0][2] = rng.ExpFloat64()
		}
		for i := range ni {
			if math.IsNaN(x[0][i]) {
				starts[i] = k + 1
				continue
			}
			hist[i] = append(hist[i], x[0][i])
		}
		r.step(x, cols, wc)

		// Naive one-pass moments of the price window, for contrast.
		naiveS += x[0][0]
		naiveQ += x[0][0] * x[0][0]
		if k >= 60 {
			old := hist[0][len(hist[0])-61]
			naiveS -= old
			naiveQ -= old * old
			xs := hist[0][len(hist[0])-60:]
			nv := (naiveQ - naiveS*naiveS/60) / 59
			std := refStd(xs)
			worstNaive = max(worstNaive, math.Abs(math.Sqrt(math.Abs(nv))-std)/std)
		}

		all := k%101 == 0
		for i := range ni {
			h := hist[i]
			for wi, w := range windows {
				// The exponentially weighted reference: the recursion from
				// the series' first value, in plain float64.
				if v := x[0][i]; !math.IsNaN(v) {
					ew := &ews[i][wi]
					if len(h) == 1 {
						*ew = [2]float64{v, 0}
					} else {
						alpha := 2 / float64(w+1)
						d := v - ew[0]
						ew[0] += alpha * d
						ew[1] = (1 - alpha) * (ew[1] + alpha*d*d)
					}
				}
				for s, name := range statNames {
					if !all && !fastStats[name] {
						continue
					}
					got := cols[wc[0][wi][s]][i]
					if len(h) < w {
						if !math.IsNaN(got) {
							t.Fatalf("step %d inst %d %s_%d = %v during warm-up", k, i, name, w, got)
						}
						continue
					}
					xs := h[len(h)-w:]
					var e, want float64
					switch name {
					case "ewm", "ewstd":
						want = ews[i][wi][0]
						if name == "ewstd" {
							want = math.Sqrt(ews[i][wi][1])
						}
						_, m2, _, _ := refCentral(xs)
						e = math.Abs(got-want) / (1e-9*math.Sqrt(m2/float64(w)) + 4*ulp(want) + 1e-300)
					default:
						e, want = checkStat(name, got, xs, h)
					}
					errs.note(fmt.Sprintf("%d/%s", i, name), e)
					if e > 1 {
						t.Fatalf("step %d inst %d (start %d) %s_%d: got %v, want %v (%.2g x tolerance)",
							k, i, starts[i], name, w, got, want, e)
					}
				}
			}
		}
		// Bound the references' memory.
		for i := range ni {
			if len(hist[i]) > 200_000 {
				hist[i] = append(hist[i][:0], hist[i][len(hist[i])-100:]...)
			}
		}
	}
	t.Logf("%d steps, %d re-anchors; max error / tolerance: %v; naive one-pass std rel error %.2e",
		n, r.reanchors, errs, worstNaive)
	if worstNaive < 1 {
		t.Errorf("naive formula error only %.2e: the data does not stress cancellation", worstNaive)
	}
	if r.reanchors == 0 {
		t.Error("no re-anchor: the level shifts did not exercise it")
	}
}

// TestEngineStabilityLongRun runs the engine on quotes around 1e5 whose log
// returns have a mean of 1e-6 and a standard deviation of 1e-10 (mean/std =
// 1e4), and compares every mid_ret statistic of both windows with the
// two-pass reference over the returns computed from the same mids, at every
// 7th step (records are built only for those).
func TestEngineStabilityLongRun(t *testing.T) {
	n := steps(t) / 5
	windows := []int{10, 60}
	e, _, _ := newTestEngine(t, Config{Windows: windows})
	rng := rand.New(rand.NewPCG(5, 8))
	price := 1e5
	var rets []float64
	prevMid := math.NaN()
	errs := stabErr{}
	idx := map[string]int{}
	for i, f := range e.Schema().Fields() {
		idx[f.Name] = i
	}
	records := 0
	// The exponentially weighted reference by step: the recursion from the
	// first return, in plain float64.
	ewAt := map[int][][2]float64{}
	emit := func(rec arrow.Record) error {
		records++
		k := int((int64(rec.Column(0).(*array.Timestamp).Value(0)))/sec - base - 1) // step index
		col := func(name string) float64 { return rec.Column(idx[name]).(*array.Float64).Value(0) }
		if got := col("mid_ret"); math.Float64bits(got) != math.Float64bits(rets[k]) {
			t.Fatalf("step %d: mid_ret %v, want %v", k, got, rets[k])
		}
		h := rets[1 : k+1] // the first step has no return
		for _, w := range windows {
			for _, name := range statNames {
				got := col(fmt.Sprintf("mid_ret_%s_%d", name, w))
				if len(h) < w {
					if !math.IsNaN(got) {
						t.Fatalf("step %d: %s_%d = %v during warm-up", k, name, w, got)
					}
					continue
				}
				var er, want float64
				if name == "ewm" || name == "ewstd" {
					ew := ewAt[w][k]
					want = ew[0]
					if name == "ewstd" {
						want = math.Sqrt(ew[1])
					}
					_, m2, _, _ := refCentral(h[len(h)-w:])
					er = math.Abs(got-want) / (1e-9*math.Sqrt(m2/float64(w)) + 4*ulp(want) + 1e-300)
				} else {
					er, want = checkStat(name, got, h[len(h)-w:], h)
				}
				errs.note(name, er)
				if er > 1 {
					t.Fatalf("step %d mid_ret_%s_%d: got %v, want %v (%.2g x tolerance)", k, name, w, got, want, er)
				}
			}
		}
		return nil
	}
	for k := range n {
		price *= math.Exp(1e-6 + 1e-10*rng.NormFloat64())
		bid, ask := price-0.005, price+0.005
		mid := (bid + ask) / 2
		rets = append(rets, math.Log(mid/prevMid))
		prevMid = mid
		for _, w := range windows {
			hs := ewAt[w]
			switch k {
			case 0:
				hs = append(hs, [2]float64{math.NaN(), math.NaN()})
			case 1:
				hs = append(hs, [2]float64{rets[1], 0})
			default:
				ew := hs[k-1]
				alpha := 2 / float64(w+1)
				d := rets[k] - ew[0]
				ew[0] += alpha * d
				ew[1] = (1 - alpha) * (ew[1] + alpha*d*d)
				hs = append(hs, ew)
			}
			ewAt[w] = hs
		}
		var em func(arrow.Record) error
		if k%7 == 3 {
			em = emit // this tick closes step k-1
		}
		if err := e.Apply(quote("v", "X", (base+int64(k))*sec+1, bid, ask), em); err != nil {
			t.Fatal(err)
		}
	}
	if records < n/7-1 {
		t.Fatalf("%d records checked, want about %d", records, n/7)
	}
	t.Logf("%d steps, %d records checked; max error / tolerance: %v", n, records, errs)
}
