package features

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

func TestXRank(t *testing.T) {
	nan := math.NaN()
	src := []float64{3, nan, 1, 3, 2, -5}
	dst := make([]float64, len(src))
	xrank(dst, src, nil)
	// Sorted: -5 (0), 1 (1), 2 (2), 3 3 (3, 4 -> 3.5); count 5.
	want := []float64{3.5 / 4, nan, 1.0 / 4, 3.5 / 4, 2.0 / 4, 0}
	for i := range want {
		if !closeTo(dst[i], want[i], 0, 0) {
			t.Errorf("rank %d = %v, want %v", i, dst[i], want[i])
		}
	}
	// Many ties (a quiet market's zero returns) and signed zeros.
	big := make([]float64, 1001)
	big[1000] = math.Copysign(0, -1)
	big[0] = math.Copysign(0, -1)
	bigDst := make([]float64, len(big))
	xrank(bigDst, big, nil)
	for i, r := range bigDst {
		if r != 0.5 {
			t.Fatalf("tie %d ranked %v, want 0.5", i, r)
		}
	}
	xrank(dst[:1], []float64{7}, nil)
	if !math.IsNaN(dst[0]) {
		t.Errorf("single value ranked %v, want NaN", dst[0])
	}
}

// TestXRankAndMarketInEngine checks the rank columns and the market
// aggregates of an engine step against values computed from the record.
func TestXRankAndMarketInEngine(t *testing.T) {
	e, _, c := newTestEngine(t, Config{Windows: []int{3, 60}, XRank: []string{"mid_ret", "spread_bps"}})
	rng := rand.New(rand.NewPCG(4, 4))
	insts := []string{"A", "B", "C", "D", "E"}
	for k := range int64(70) {
		for i, in := range insts {
			m := 100 * (1 + 0.01*float64(i)) * math.Exp(0.001*rng.NormFloat64())
			apply(t, e, c, quote("v", in, (base+k)*sec+int64(i), m-0.01*float64(i+1), m+0.01*float64(i+1)),
				trade("v", in, (base+k)*sec+10+int64(i), 1, m, 1+rng.Float64()))
		}
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	rows := c.steps[len(c.steps)-1]
	var rets []float64
	for _, r := range rows {
		rets = append(rets, r.vals["mid_ret"])
	}
	sorted := slices.Clone(rets)
	slices.Sort(sorted)
	for _, r := range rows {
		want := float64(slices.Index(sorted, r.vals["mid_ret"])) / 4
		if r.vals["mid_ret_xrank"] != want {
			t.Errorf("%s mid_ret_xrank %v, want %v", r.instrument, r.vals["mid_ret_xrank"], want)
		}
		// Spreads grow with the instrument index: ranks 0, 1/4, ... 1.
		if got, want := r.vals["spread_bps_xrank"], float64(slices.Index(insts, r.instrument))/4; math.Abs(got-want) > 1e-15 {
			t.Errorf("%s spread_bps_xrank %v, want %v", r.instrument, got, want)
		}
	}
	mk := e.Market()
	if mk.Rows != 5 || mk.Time.UnixNano() != rows[0].time {
		t.Errorf("market rows %d time %v", mk.Rows, mk.Time)
	}
	if got, want := mk.Get("mid_ret_mean"), refMean(rets); math.Abs(got-want) > 1e-18 {
		t.Errorf("mid_ret_mean %v, want %v", got, want)
	}
	_, m2, _, _ := refCentral(rets)
	if got, want := mk.Get("mid_ret_xstd"), math.Sqrt(m2/5); math.Abs(got-want) > 1e-12*want {
		t.Errorf("mid_ret_xstd %v, want %v", got, want)
	}
	var tc float64
	for _, r := range rows {
		tc += r.vals["trade_count"]
	}
	if got := mk.Get("trade_count_total"); got != tc || tc != 5 {
		t.Errorf("trade_count_total %v, want %v", got, tc)
	}
	if got := mk.Get("breadth_300"); !math.IsNaN(got) {
		t.Errorf("breadth_300 without a 300 window = %v, want NaN", got)
	}
	pos := 0
	for _, r := range rows {
		if r.vals["mid_ret_sum_60"] > 0 {
			pos++
		}
	}
	if got := mk.Get("breadth_60"); got != float64(pos)/5 {
		t.Errorf("breadth_60 %v, want %v", got, float64(pos)/5)
	}
}

// TestSkipConstant checks the closed form the gap skip applies to the
// exponentially weighted state against stepping the same constant value.
func TestSkipConstant(t *testing.T) {
	windows := []int{3, 20}
	mk := func() (*roller, [][]float64, [][][numStats]int) {
		r := newRoller(windows, []bool{false})
		r.resize([]int32{-1, -1})
		wc := [][][numStats]int{make([][numStats]int, len(windows))}
		cols := make([][]float64, len(windows)*numStats)
		for wi := range windows {
			for s := range numStats {
				wc[0][wi][s] = wi*numStats + s
				cols[wi*numStats+s] = make([]float64, 2)
			}
		}
		return r, cols, wc
	}
	a, colsA, wc := mk()
	b, colsB, _ := mk()
	rng := rand.New(rand.NewPCG(2, 3))
	for range 50 {
		x := [][]float64{{rng.NormFloat64(), 100 + rng.NormFloat64()}}
		a.step(x, colsA, wc)
		b.step(x, colsB, wc)
	}
	x := [][]float64{{0.5, 101}}
	for range 20 { // fill every window with the constant
		a.step(x, colsA, wc)
		b.step(x, colsB, wc)
	}
	const k = 200
	for range k {
		a.step(x, colsA, wc)
	}
	b.skipConstant(k)
	for wi := range windows {
		wa, wb := &a.series[0].win[wi], &b.series[0].win[wi]
		for i := range 2 {
			if !closeTo(wb.ewm[i], wa.ewm[i], 1e-14, 0) || !closeTo(wb.ewv[i], wa.ewv[i], 1e-9, 1e-300) {
				t.Errorf("window %d inst %d: skip gives %v/%v, stepping %v/%v", windows[wi], i, wb.ewm[i], wb.ewv[i], wa.ewm[i], wa.ewv[i])
			}
		}
	}
}

// TestXRankNaive compares xrank with an O(n^2) count on data mixing
// distinct values, runs of ties, signed zeros and NaN.
func TestXRankNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for trial := range 200 {
		n := 1 + rng.IntN(300)
		src := make([]float64, n)
		for i := range src {
			switch rng.IntN(5) {
			case 0:
				src[i] = float64(rng.IntN(4)) // ties
			case 1:
				src[i] = math.NaN()
			case 2:
				src[i] = math.Copysign(0, -1)
			default:
				src[i] = rng.NormFloat64()
			}
		}
		dst := make([]float64, n)
		xrank(dst, src, nil)
		m := 0
		for _, v := range src {
			if !math.IsNaN(v) {
				m++
			}
		}
		for i, v := range src {
			if math.IsNaN(v) || m < 2 {
				if !math.IsNaN(dst[i]) {
					t.Fatalf("trial %d: rank %d of %v = %v, want NaN", trial, i, v, dst[i])
				}
				continue
			}
			less, eq := 0, 0
			for _, u := range src {
				switch {
				case math.IsNaN(u):
				case u < v:
					less++
				case u == v:
					eq++
				}
			}
			want := (float64(less) + float64(eq-1)/2) / float64(m-1)
			if math.Abs(dst[i]-want) > 1e-12 {
				t.Fatalf("trial %d: rank %d of %v = %v, want %v", trial, i, v, dst[i], want)
			}
		}
	}
}

// xrankBisect is the previous xrank (sort the keys, two bisections per
// value): the reference of TestXRankRadix and BenchmarkXRank's baseline.
func xrankBisect(dst, src []float64, keys []uint64) []uint64 {
	keys = keys[:0]
	for _, v := range src {
		if !math.IsNaN(v) {
			keys = append(keys, rankKey(v))
		}
	}
	m := len(keys)
	if m < 2 {
		for i := range dst {
			dst[i] = math.NaN()
		}
		return keys
	}
	slices.Sort(keys)
	den := float64(m - 1)
	for i, v := range src {
		if math.IsNaN(v) {
			dst[i] = math.NaN()
			continue
		}
		k := rankKey(v)
		lo, _ := slices.BinarySearch(keys, k)
		hi, _ := slices.BinarySearch(keys[lo:], k+1)
		dst[i] = float64(2*lo+hi-1) / 2 / den
	}
	return keys
}

// rankInputs are columns like the engine ranks: returns near zero with
// ties at exactly zero, prices near 1e5, counts, and a few NaN.
func rankInputs(n int) [][]float64 {
	rng := rand.New(rand.NewPCG(5, 5))
	cols := make([][]float64, 4)
	for c := range cols {
		cols[c] = make([]float64, n)
		for i := range n {
			switch c {
			case 0:
				if rng.IntN(4) > 0 {
					cols[c][i] = 1e-4 * rng.NormFloat64()
				}
			case 1:
				cols[c][i] = 1e5 + rng.NormFloat64()
			case 2:
				cols[c][i] = float64(rng.IntN(50))
			case 3:
				cols[c][i] = rng.NormFloat64()
				if rng.IntN(10) == 0 {
					cols[c][i] = math.NaN()
				}
			}
		}
	}
	return cols
}

func TestXRankRadix(t *testing.T) {
	var sc rankScratch
	for _, n := range []int{0, 1, 2, 3, 17, 1000, 4096} {
		for c, src := range rankInputs(n) {
			got, want := make([]float64, n), make([]float64, n)
			xrank(got, src, &sc) // scratch reused across sizes
			xrankBisect(want, src, nil)
			for i := range got {
				if got[i] != want[i] && !(math.IsNaN(got[i]) && math.IsNaN(want[i])) {
					t.Fatalf("n %d column %d: rank %d = %v, bisection %v", n, c, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkXRank: the radix ranking against the bisection one, on 1000
// instruments' columns, alternating in one run.
func BenchmarkXRank(b *testing.B) {
	cols := rankInputs(1000)
	dst := make([]float64, 1000)
	b.Run("radix", func(b *testing.B) {
		var sc rankScratch
		for range b.N {
			for _, c := range cols {
				xrank(dst, c, &sc)
			}
		}
	})
	b.Run("bisect", func(b *testing.B) {
		var keys []uint64
		for range b.N {
			for _, c := range cols {
				keys = xrankBisect(dst, c, keys)
			}
		}
	})
}

// TestRollerExtremes checks min, max, their ages and range_pos of windows
// of 2 to 61 steps (block sizes 1 to 8) at every step against a scan, on
// the data that stress the block decomposition: monotone runs (the window's
// extreme always at its oldest or newest step), many ties (ages are those
// of the latest occurrence), a constant stretch, and restarts (undefined
// values) at random steps, for five instruments that restart at different
// steps.
func TestRollerExtremes(t *testing.T) {
	windows := []int{2, 3, 4, 7, 16, 61}
	const ni = 5
	// Three series of the same values: their blocks start at different
	// steps (staggered phases), and all must give the same, exact answers.
	const ns = 3
	r := newRoller(windows, []bool{false, false, false})
	r.resize([]int32{-1, -1, -1, -1, -1})
	wc := make([][][numStats]int, ns)
	cols := make([][]float64, ns*len(windows)*numStats)
	for b := range ns {
		wc[b] = make([][numStats]int, len(windows))
		for wi := range windows {
			for s := range numStats {
				c := (b*len(windows)+wi)*numStats + s
				wc[b][wi][s] = c
				cols[c] = make([]float64, ni)
			}
		}
	}
	phases := map[int64]bool{}
	for b := range ns {
		phases[r.series[b].ext[len(windows)-1].phase] = true
	}
	if len(phases) != ns {
		t.Fatalf("the series' blocks of window %d share phases: %v", windows[len(windows)-1], phases)
	}
	rng := rand.New(rand.NewPCG(8, 1))
	hist := make([][]float64, ni)
	v0 := make([]float64, ni)
	x := [][]float64{v0, v0, v0}
	checked := 0
	for k := range 6000 {
		for i := range ni {
			var v float64
			switch ph := (k + 97*i) % 1500; {
			case ph < 300:
				v = float64(ph) // increasing
			case ph < 600:
				v = float64(600 - ph) // decreasing
			case ph < 700:
				v = 3.5 // constant
			default:
				v = float64(rng.IntN(5)) - 2 // many ties, -0 never
			}
			if rng.IntN(400) == 0 {
				v = math.NaN() // the series restarts
			}
			x[0][i] = v
			if math.IsNaN(v) {
				hist[i] = hist[i][:0]
			} else {
				hist[i] = append(hist[i], v)
			}
		}
		r.step(x, cols, wc)
		for i := range ni {
			h := hist[i]
			for b := range ns {
				for wi, w := range windows {
					for _, st := range []int{sMax, sMin, sArgmaxAge, sArgminAge, sRangePos} {
						got := cols[wc[b][wi][st]][i]
						name := statDefs[st].name
						if len(h) < w {
							if !math.IsNaN(got) {
								t.Fatalf("step %d series %d inst %d %s_%d = %v during warm-up", k, b, i, name, w, got)
							}
							continue
						}
						want := refStat(name, h[len(h)-w:], nil)
						if got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
							t.Fatalf("step %d series %d inst %d %s_%d = %v, want %v", k, b, i, name, w, got, want)
						}
						checked++
					}
				}
			}
			if len(h) > 200 {
				hist[i] = append(h[:0], h[len(h)-100:]...)
			}
		}
	}
	if checked < 300_000 {
		t.Errorf("only %d values checked", checked)
	}
}

// TestStaggeredLayout checks what keeps the kernels' slices out of each
// other's L1 sets: the roller's per-instrument slices and the record's
// feature columns start an odd number of 64-byte lines apart, also for
// instrument counts whose natural stride is a 4 KiB multiple.
func TestStaggeredLayout(t *testing.T) {
	oddLines := func(a, b unsafe.Pointer) bool {
		d := int64(uintptr(b)) - int64(uintptr(a))
		return d%64 == 0 && (d/64)%2 != 0
	}
	for _, n := range []int{1, 512, 1000, 1024} {
		r := newRoller([]int{5, 60}, []bool{true, false})
		from := make([]int32, n)
		for i := range from {
			from[i] = -1 // every instrument new
		}
		r.resize(from)
		var prev unsafe.Pointer
		k := 0
		r.f64s(func(p *[]float64) {
			cur := unsafe.Pointer(unsafe.SliceData(*p))
			if prev != nil && !oddLines(prev, cur) {
				t.Fatalf("n %d: roller slice %d starts %d bytes after the previous one", n, k, uintptr(cur)-uintptr(prev))
			}
			prev = cur
			k++
		})

		e, err := NewEngine(Config{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var rec arrow.Record
		emit := func(r arrow.Record) error {
			if rec == nil {
				r.Retain()
				rec = r
			}
			return nil
		}
		for i := range n {
			if err := e.Apply(quote("binance", fmt.Sprintf("I%05d-USDT", i), base*sec, 100, 101), emit); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Apply(quote("binance", "I00000-USDT", (base+60)*sec, 100, 101), emit); err != nil {
			t.Fatal(err)
		}
		if rec == nil || rec.NumRows() != int64(n) {
			t.Fatalf("n %d: no record of %d rows", n, n)
		}
		for j := 4; j < int(rec.NumCols()); j++ {
			a := unsafe.Pointer(unsafe.SliceData(rec.Column(j - 1).(*array.Float64).Float64Values()))
			b := unsafe.Pointer(unsafe.SliceData(rec.Column(j).(*array.Float64).Float64Values()))
			if !oddLines(a, b) {
				t.Fatalf("n %d: feature column %d starts %d bytes after the previous one", n, j, uintptr(b)-uintptr(a))
			}
		}
		rec.Release()
	}
}
