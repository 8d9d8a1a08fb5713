package asm

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// The kernels against naive references, on every path this binary has
// (generic always, avx2 where built and supported).

func forEachPath(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	paths := []bool{true}
	if detectedAVX2 {
		paths = append(paths, false)
	}
	for _, generic := range paths {
		prev := SetGeneric(generic)
		t.Run(Path(), f)
		SetGeneric(prev)
	}
}

func newMoments(n int) *Moments {
	f := func() []float64 { return make([]float64, n) }
	return &Moments{Shift: f(), S1: f(), S2: f(), S3: f(), S4: f(), C1: f(), C2: f(), C3: f(), C4: f()}
}

// refStats is a two-pass computation over a window's values, taken about
// the window's first value (differences of nearby doubles are exact), so
// that a mean near 1e12 does not cost the reference its precision.
type refStats struct{ mean, std, skew, kurt, z float64 }

func twoPass(win []float64, last float64) refStats {
	w := float64(len(win))
	v0 := win[0]
	var s float64
	for _, v := range win {
		s += v - v0
	}
	meanD := s / w
	var corr float64
	for _, v := range win {
		corr += (v - v0) - meanD
	}
	meanD += corr / w
	var m2, m3, m4 float64
	for _, v := range win {
		d := (v - v0) - meanD
		m2 += d * d
		m3 += d * d * d
		m4 += d * d * d * d
	}
	m2, m3, m4 = m2/w, m3/w, m4/w
	std := math.Sqrt(m2 * w / (w - 1))
	return refStats{v0 + meanD, std, m3 / math.Pow(m2, 1.5), m4/(m2*m2) - 3, ((last - v0) - meanD) / std}
}

func momentStatsOf(m *Moments, last []float64, w int) []refStats {
	n := len(m.Shift)
	mean, std, skew, kurt, z := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	MomentStats(mean, std, skew, kurt, z, m, last, w)
	out := make([]refStats, n)
	for i := range out {
		out[i] = refStats{mean[i], std[i], skew[i], kurt[i], z[i]}
	}
	return out
}

// checkStats compares with tolerances relative to the window's spread: the
// sums are taken about the shift, so the mean is good to a tiny fraction of
// the standard deviation however large the offset.
func checkStats(t *testing.T, what string, got, want refStats) {
	t.Helper()
	if d := math.Abs(got.mean - want.mean); d > 1e-9*want.std+4*ulp(want.mean) {
		t.Fatalf("%s: mean %v, two-pass %v (off by %.3g std)", what, got.mean, want.mean, d/want.std)
	}
	if r := math.Abs(got.std/want.std - 1); r > 1e-9 {
		t.Fatalf("%s: std %v, two-pass %v (relative error %.3g)", what, got.std, want.std, r)
	}
	if d := math.Abs(got.skew - want.skew); d > 1e-7 {
		t.Fatalf("%s: skew %v, two-pass %v", what, got.skew, want.skew)
	}
	if d := math.Abs(got.kurt - want.kurt); d > 1e-7 {
		t.Fatalf("%s: kurt %v, two-pass %v", what, got.kurt, want.kurt)
	}
	if d := math.Abs(got.z - want.z); d > 1e-8 {
		t.Fatalf("%s: z %v, two-pass %v", what, got.z, want.z)
	}
}

func ulp(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

// streams are instruments of the long-run tests: a price near 1e5 with a tiny
// variance, returns with a skewed distribution, a level near 1e12, and a
// noisy series about zero. Each is given a few times so the assembly's
// vectors and the Go tail both see every kind.
var streams = []func(r *rand.Rand) float64{
	func(r *rand.Rand) float64 { return 1e5 + 1e-3*r.NormFloat64() },
	func(r *rand.Rand) float64 { return 1e-4 * (r.ExpFloat64() - 1) },
	func(r *rand.Rand) float64 { return 1e12 + r.NormFloat64() },
	func(r *rand.Rand) float64 { return r.NormFloat64() },
}

// newWindow is a Window of n zeros (no squares).
func newWindow(n int) *Window {
	f := func() []float64 { return make([]float64, n) }
	return &Window{SumS: f(), SumC: f(), PS: f(), PC: f(), TS: f(), TC: f(), EWM: f(), EWV: f(),
		Pos: make([]int32, n), UD: make([]int32, n), Anchor: make([]uint32, n)}
}

// WindowRoll's moments over a million steps equal a two-pass computation of
// the window at checkpoints along the way: the compensated sums do not drift.
func TestWindowRollMomentsLongStream(t *testing.T) {
	steps := 1_000_000
	if testing.Short() {
		steps = 100_000
	}
	forEachPath(t, func(t *testing.T) {
		const w = 50
		n := 2*len(streams) + 1
		r := rand.New(rand.NewPCG(1, 2))
		m, st := newMoments(n), newWindow(n)
		ring := make([][]float64, n) // ring[i][step%w]
		for i := range ring {
			ring[i] = make([]float64, w)
		}
		x, prev, old, oldNext, last := make([]float64, n), make([]float64, n), make([]float64, n),
			make([]float64, n), make([]float64, n)
		for step := 0; step < steps; step++ {
			copy(prev, x)
			for i := range x {
				x[i] = streams[i%len(streams)](r)
				if step == 0 {
					m.Shift[i] = x[i]
				}
				old[i] = ring[i][step%w]
				oldNext[i] = ring[i][(step+1)%w]
				ring[i][step%w] = x[i]
			}
			if step < w {
				AddMoments(m, x)
			} else {
				WindowRoll(m, st, x, prev, old, oldNext, w, 0.1)
			}
			copy(last, x)
			if step+1 >= w && (step%(steps/10) == 0 || step == steps-1 || step == w-1) {
				got := momentStatsOf(m, last, w)
				for i := range got {
					checkStats(t, "step "+itoa(step)+" instrument "+itoa(i), got[i], twoPass(ring[i], last[i]))
				}
			}
		}
	})
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

// AddMoments of one window at offsets up to 1e15 with noise near 1 equals
// the two-pass statistics.
func TestAddMomentsOffsets(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		offsets := []float64{0, 1, 1e5, -1e5, 1e9, 1e15, -3e14}
		n := len(offsets)
		r := rand.New(rand.NewPCG(3, 4))
		for _, w := range []int{2, 3, 17, 500} {
			m := newMoments(n)
			win := make([][]float64, n)
			x := make([]float64, n)
			for k := 0; k < w; k++ {
				for i, off := range offsets {
					x[i] = off + r.NormFloat64()*8
					if k == 0 {
						m.Shift[i] = off
					}
					win[i] = append(win[i], x[i])
				}
				AddMoments(m, x)
			}
			got := momentStatsOf(m, x, w)
			for i := range got {
				if w == 2 { // skew of two values is 0 and kurt -2 exactly; rounding decides
					got[i].skew, got[i].kurt = 0, -2
				}
				want := twoPass(win[i], x[i])
				if w == 2 {
					want.skew, want.kurt = 0, -2
				}
				checkStats(t, "w "+itoa(w)+" offset "+itoa(int(offsets[i])), got[i], want)
			}
		}
	})
}

// A window of equal values has std 0 and NaN z, skew and kurt; nil outputs
// are skipped and the others still written.
func TestMomentStatsConstantAndNil(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		const n, w = 9, 20
		m := newMoments(n)
		x := make([]float64, n)
		for i := range x {
			x[i] = 1e5 + float64(i)
			m.Shift[i] = 1e5 // d = i, not 0: the sums are not trivially zero
		}
		for range w {
			AddMoments(m, x)
		}
		mean, std, skew, kurt, z := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		MomentStats(mean, std, skew, kurt, z, m, x, w)
		for i := range x {
			if mean[i] != x[i] || std[i] != 0 || !math.IsNaN(skew[i]) || !math.IsNaN(kurt[i]) || !math.IsNaN(z[i]) {
				t.Fatalf("constant %v: mean %v std %v skew %v kurt %v z %v", x[i], mean[i], std[i], skew[i], kurt[i], z[i])
			}
		}
		// A varying window with only std requested.
		r := rand.New(rand.NewPCG(5, 6))
		m = newMoments(n)
		for range w {
			for i := range x {
				x[i] = r.NormFloat64()
			}
			AddMoments(m, x)
		}
		full := momentStatsOf(m, x, w)
		std2 := make([]float64, n)
		MomentStats(nil, std2, nil, nil, nil, m, nil, w)
		for i := range std2 {
			if std2[i] != full[i].std || std2[i] <= 0 {
				t.Fatalf("std alone %v, with the others %v", std2[i], full[i].std)
			}
		}
	})
}

func TestKernelsPanicOnBadLengths(t *testing.T) {
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s: no panic", what)
			}
		}()
		f()
	}
	m := newMoments(5)
	short := make([]float64, 4)
	five := make([]float64, 5)
	mustPanic("AddMoments", func() { AddMoments(m, short) })
	mustPanic("MomentStats w", func() { MomentStats(five, nil, nil, nil, nil, m, nil, 1) })
	mustPanic("MomentStats out", func() { MomentStats(short, nil, nil, nil, nil, m, nil, 3) })
	mustPanic("MomentStats last", func() { MomentStats(nil, nil, nil, nil, five, m, nil, 3) })
	mustPanic("RollProducts", func() { RollProducts(five, five, five, five, five, short) })
	m.C3 = short
	mustPanic("Moments", func() { AddMoments(m, five) })
}

// WindowRoll's exponentially weighted mean and variance after t steps equal
// the weighted mean and variance with weights alpha*(1-alpha)^k for
// x[t-1-k] and (1-alpha)^t for the initial state.
func TestWindowRollEWClosedForm(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		const steps = 300
		alphas := []float64{1, 0.5, 0.1, 0.01, 0.3, 0.05}
		r := rand.New(rand.NewPCG(7, 8))
		for _, off := range []float64{0, 1e5, 1e12} {
			n := len(alphas) * 2
			m, st := newMoments(n), newWindow(n)
			mean, vari := st.EWM, st.EWV
			zeros := make([]float64, n) // the values leaving and their neighbours
			mean0 := make([]float64, n)
			for i := range mean {
				mean0[i] = off + r.NormFloat64()
				mean[i] = mean0[i]
				vari[i] = 0
			}
			hist := make([][]float64, n)
			x := make([]float64, n)
			for range steps {
				for i := range x {
					x[i] = off + r.NormFloat64()
					hist[i] = append(hist[i], x[i])
				}
				// One alpha per call, as the engine does: split by alpha.
				for a, alpha := range alphas {
					lo, hi := 2*a, 2*a+2
					ma, sa := m.Slice(lo, hi), st.Slice(lo, hi)
					WindowRoll(&ma, &sa, x[lo:hi], zeros[lo:hi], zeros[lo:hi], zeros[lo:hi], 10, alpha)
				}
			}
			for i := range mean {
				alpha := alphas[i/2]
				w0 := math.Pow(1-alpha, steps)
				wm, ws := w0*(mean0[i]-off), w0
				for k := range steps {
					wk := alpha * math.Pow(1-alpha, float64(k))
					wm += wk * (hist[i][steps-1-k] - off)
					ws += wk
				}
				refMean := off + wm/ws
				refVar := w0 * (mean0[i] - refMean) * (mean0[i] - refMean)
				for k := range steps {
					wk := alpha * math.Pow(1-alpha, float64(k))
					d := hist[i][steps-1-k] - refMean
					refVar += wk * d * d
				}
				refVar /= ws
				// The state is a float64 mean near off: its rounding,
				// ulp(off) per step, damped by 1-alpha, bounds what any
				// implementation can do.
				tol := 1e-9*math.Sqrt(refVar) + ulp(off)/alpha + 2*ulp(refMean)
				if d := math.Abs(mean[i] - refMean); d > tol {
					t.Fatalf("alpha %v offset %v: mean %v, reference %v", alpha, off, mean[i], refMean)
				}
				if alpha == 1 {
					if vari[i] != 0 {
						t.Fatalf("alpha 1: variance %v, want 0", vari[i])
					}
				} else if math.Abs(vari[i]-refVar) > 1e-9*refVar+4*ulp(off)/alpha*math.Sqrt(refVar) {
					t.Fatalf("alpha %v offset %v: variance %v, reference %v", alpha, off, vari[i], refVar)
				}
			}
		}
	})
}

// RollProducts over a long stream equals the window's sum of products
// computed afresh.
func TestRollProductsLongStream(t *testing.T) {
	steps := 300_000
	if testing.Short() {
		steps = 30_000
	}
	forEachPath(t, func(t *testing.T) {
		const n, w = 7, 40
		r := rand.New(rand.NewPCG(9, 10))
		s, c := make([]float64, n), make([]float64, n)
		a, b, ao, bo := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		ra, rb := make([][]float64, n), make([][]float64, n)
		for i := range ra {
			ra[i], rb[i] = make([]float64, w), make([]float64, w)
		}
		for step := range steps {
			for i := range a {
				a[i] = 1e-3 * r.NormFloat64() * float64(i+1)
				b[i] = 1e3*float64(i) + r.NormFloat64()
				ao[i], bo[i] = ra[i][step%w], rb[i][step%w] // zeros while filling
				ra[i][step%w], rb[i][step%w] = a[i], b[i]
			}
			RollProducts(s, c, a, b, ao, bo)
			if step%(steps/5) == 0 || step == steps-1 {
				for i := range s {
					var ref, abs float64
					for k := range w {
						p := ra[i][k] * rb[i][k]
						ref += p
						abs += math.Abs(p)
					}
					if d := math.Abs(s[i] + c[i] - ref); d > 1e-13*abs {
						t.Fatalf("step %d instrument %d: sum %v, afresh %v", step, i, s[i]+c[i], ref)
					}
				}
			}
		}
	})
}

// exactSum is the correctly rounded sum of the non-NaN values.
func exactSum(x []float64) (float64, int) {
	var s big.Float
	s.SetPrec(4096)
	n := 0
	for _, v := range x {
		if v == v {
			s.Add(&s, new(big.Float).SetFloat64(v))
			n++
		}
	}
	f, _ := s.Float64()
	return f, n
}

func TestSumNaN(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		nan, inf := math.NaN(), math.Inf(1)
		cases := []struct {
			x     []float64
			sum   float64
			n     int
			isNaN bool
		}{
			{nil, 0, 0, false},
			{[]float64{nan, nan}, 0, 0, false},
			{[]float64{1e16, 1, -1e16, 1}, 2, 4, false},
			{[]float64{1, 1e100, 1, -1e100, nan, 3}, 5, 5, false},
			{[]float64{1, inf, 2, 3, 4, 5}, inf, 6, false},
			{[]float64{1, 2, 3, 4, -inf}, -inf, 5, false},
			{[]float64{inf, 1, 2, 3, -inf}, 0, 5, true},
			{[]float64{math.MaxFloat64, math.MaxFloat64, 1, 2, 3}, inf, 5, false},
		}
		for _, tc := range cases {
			s, n := SumNaN(tc.x)
			if n != tc.n || (tc.isNaN && !math.IsNaN(s)) || (!tc.isNaN && s != tc.sum) {
				t.Fatalf("SumNaN(%v) = %v, %d; want %v, %d", tc.x, s, n, tc.sum, tc.n)
			}
		}
		r := rand.New(rand.NewPCG(11, 12))
		for trial := range 200 {
			n := r.IntN(3000)
			x := make([]float64, n)
			var abs float64
			for i := range x {
				x[i] = math.Ldexp(r.NormFloat64(), r.IntN(80)-40)
				if trial%3 == 0 && i%2 == 1 {
					x[i] = -x[i-1] * (1 + 1e-12*r.NormFloat64()) // heavy cancellation
				}
				if r.IntN(10) == 0 {
					x[i] = nan
				} else {
					abs += math.Abs(x[i])
				}
			}
			got, gn := SumNaN(x)
			want, wn := exactSum(x)
			if gn != wn || math.Abs(got-want) > 2*ulp(want)+1e-28*abs {
				t.Fatalf("trial %d (n %d): SumNaN %v (%d), exact %v (%d)", trial, n, got, gn, want, wn)
			}
		}
	})
}

func TestPathAndSetGeneric(t *testing.T) {
	want := "generic"
	if detectedAVX2 {
		want = "avx2"
	}
	if Path() != want {
		t.Fatalf("Path %q, want %q (AVX2 %v, assembly built %v)", Path(), want, detected.AVX2, haveAsm)
	}
	if prev := SetGeneric(true); prev || Path() != "generic" {
		t.Fatalf("SetGeneric(true): prev %v, path %q", prev, Path())
	}
	if prev := SetGeneric(false); !prev || Path() != want {
		t.Fatalf("SetGeneric(false): prev %v, path %q", prev, Path())
	}
}

// The kernels run once per step for every instrument: they must not
// allocate (SumNaN's lanes stay on the stack because the assembly is
// declared noescape).
func TestKernelsDoNotAllocate(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		const n = 103
		m, st := newMoments(n), newWindow(n)
		a, b, c, d, e, f := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range a {
			a[i], b[i] = float64(i), float64(2*i)
		}
		var sink float64
		allocs := testing.AllocsPerRun(20, func() {
			AddMoments(m, a)
			WindowRoll(m, st, b, a, a, b, 10, 0.1)
			MomentStats(c, d, e, f, nil, m, nil, 10)
			MomentStats(c, d, e, f, c, m, a, 10)
			RollProducts(e, f, a, b, b, a)
			s, _ := SumNaN(a)
			sink += s
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per round of kernels", allocs)
		}
		_ = sink
	})
}
