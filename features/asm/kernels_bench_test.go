package asm

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkKernels times each kernel on 1000 instruments on the generic path
// and, where available, on the AVX2 path; the "speedup" sub-benchmark runs
// both alternately in the same loop and reports the AVX2 path's speed-up as
// "x-generic" (the ratio of the fastest calls of each).
// The state is realistic: prices near 1e5 with the shift near the window
// mean, returns, volumes.
//
//	go test -run '^$' -bench Kernels -benchtime 1s -count 1 ./features/asm/
func BenchmarkKernels(b *testing.B) {
	const n = 1000
	r := rand.New(rand.NewPCG(41, 42))
	price := func() []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 1e5 + float64(i) + 0.5*r.NormFloat64()
		}
		return s
	}
	ret := func() []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 1e-4 * r.NormFloat64()
		}
		return s
	}
	// Windows of 50 prices; the AddMoments benchmark changes its own state,
	// MomentStats reads a state of its own.
	window := func() *Moments {
		m := newMoments(n)
		for i := range m.Shift {
			m.Shift[i] = 1e5 + float64(i)
		}
		for range 50 {
			AddMoments(m, price())
		}
		return m
	}
	m, mStats := window(), window()
	xNew, xOld, last := price(), price(), price()
	mean, std, skew, kurt, z := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	ps, pc := make([]float64, n), make([]float64, n)
	aNew, bNew, aOld, bOld := ret(), ret(), ret(), ret()
	sumX := ret()
	for i := range sumX {
		if i%50 == 0 {
			sumX[i] = nan()
		}
	}
	// A window step of prices: the sums' update, then the statistics of
	// warm, varying windows (no instrument constant or flagged).
	xPrev, xOldNext := price(), price()
	ws := randomStats(gen{r, kindOffset}, n, 50, true)
	ws.m = *mStats
	for i := range n {
		ws.cnt[i], ws.run[i] = 100, 1
		ws.xNew[i], ws.xOldNext[i] = price()[i], price()[i]
		ws.st.Anchor[i] = ws.tNow
	}
	flagged := make([]int32, 0, n)
	// Extremes of prices: a block prefix, the whole blocks and the oldest
	// block's suffix of a warm window.
	exOld, exMid, exCur := priceExtrema(price, n, 10), priceExtrema(price, n, 20), priceExtrema(price, n, 30)
	exMax, exMin, exMaxAge, exMinAge, exPos := make([]float64, n), make([]float64, n), make([]float64, n),
		make([]float64, n), make([]float64, n)
	exCnt := make([]int32, n)
	for i := range exCnt {
		exCnt[i] = 100
	}
	exDst := priceExtrema(price, n, 0)
	// The same step fused (RV series: with the squares), on a price state.
	wr := randomRoll(gen{r, kindOffset}, n, 50, true)
	wr.m = *window()
	wr.xNew, wr.xPrev, wr.xOld, wr.xOldNext = xNew, xPrev, xOld, xOldNext
	var sink float64
	kernels := []struct {
		name string
		f    func()
	}{
		{"AddMoments", func() { AddMoments(m, xNew) }},
		{"MomentStats", func() { MomentStats(mean, std, skew, kurt, z, mStats, last, 50) }},
		{"RollProducts", func() { RollProducts(ps, pc, aNew, bNew, aOld, bOld) }},
		{"SumNaN", func() { s, _ := SumNaN(sumX); sink += s }},
		{"WindowRoll", func() { wr.roll() }},
		{"WindowStats", func() { flagged = ws.stats(flagged) }},
		{"ExtremaMerge", func() { ExtremaMerge(exMid, exCur) }},
		{"ExtremaPrepend", func() { ExtremaPrepend(exDst, exCur, xOld, 5) }},
		{"ExtremaWindow", func() {
			ExtremaWindow(exMax, exMin, exMaxAge, exMinAge, exPos, exOld, exMid, exCur, last, exCnt, 50, 40)
		}},
	}
	for _, k := range kernels {
		b.Run("kernel="+k.name, func(b *testing.B) {
			for _, generic := range []bool{true, false} {
				if !generic && !detectedAVX2 {
					continue
				}
				prev := SetGeneric(generic)
				b.Run("path="+Path(), func(b *testing.B) {
					b.SetBytes(n * 8)
					for b.Loop() {
						k.f()
					}
				})
				SetGeneric(prev)
			}
			if !detectedAVX2 {
				return
			}
			// The machine is shared: the two paths measured one after the
			// other see different loads. Here they alternate call by call,
			// and the speed-up is the ratio of each path's fastest call
			// (the minimum leaves out calls that were preempted or shared
			// a core). ns/op is one call of each.
			b.Run("speedup", func(b *testing.B) {
				tg, ta := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
				prev := SetGeneric(false)
				defer SetGeneric(prev)
				for b.Loop() {
					SetGeneric(true)
					t0 := time.Now()
					k.f()
					t1 := time.Now()
					SetGeneric(false)
					k.f()
					t2 := time.Now()
					tg, ta = min(tg, t1.Sub(t0)), min(ta, t2.Sub(t1))
				}
				b.ReportMetric(float64(tg)/float64(ta), "x-generic")
			})
		})
	}
	_ = sink
}

// priceExtrema is a block's extremes: two prices, at steps near t.
func priceExtrema(price func() []float64, n int, t float64) *Extrema {
	a, b := price(), price()
	e := &Extrema{Max: make([]float64, n), MaxT: make([]float64, n), Min: make([]float64, n), MinT: make([]float64, n)}
	for i := range n {
		e.Max[i], e.MaxT[i] = max(a[i], b[i]), t+float64(i%3)
		e.Min[i], e.MinT[i] = min(a[i], b[i]), t+float64(i%5)
	}
	return e
}

func nan() float64 { var z float64; return z / z }
