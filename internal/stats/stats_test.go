package stats

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// Exact references: sums, means and variances in 1024-bit floats, rounded
// to float64 once. The data below span less than 300 bits, so the sums are
// exact and the rest is off by far less than a float64 ulp.

const prec = 1024

func bigf(x float64) *big.Float { return new(big.Float).SetPrec(prec).SetFloat64(x) }

func exactSum(xs []float64) float64 {
	s := new(big.Float).SetPrec(prec)
	for _, x := range xs {
		s.Add(s, bigf(x))
	}
	f, _ := s.Float64()
	return f
}

// exactMoments is the exact mean and sum of squared deviations (two passes
// in big floats).
func exactMoments(xs []float64) (mean, m2 float64) {
	s := new(big.Float).SetPrec(prec)
	for _, x := range xs {
		s.Add(s, bigf(x))
	}
	mu := new(big.Float).SetPrec(prec).Quo(s, new(big.Float).SetPrec(prec).SetInt64(int64(len(xs))))
	ss := new(big.Float).SetPrec(prec)
	for _, x := range xs {
		d := new(big.Float).SetPrec(prec).Sub(bigf(x), mu)
		ss.Add(ss, d.Mul(d, d))
	}
	mean, _ = mu.Float64()
	m2, _ = ss.Float64()
	return mean, m2
}

func ulp(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

func sameBits(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b)
}

// cancelling is data whose plain float64 sum is wrong in most of its bits:
// values over 80 binary orders of magnitude, each other one cancelling its
// predecessor to 12 digits, and a few huge pairs that cancel exactly.
func cancelling(r *rand.Rand, n int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = math.Ldexp(r.NormFloat64(), r.IntN(80)-40)
		if i%2 == 1 {
			xs[i] = -xs[i-1] * (1 + 1e-12*r.NormFloat64())
		}
	}
	for range n / 50 {
		i, j := r.IntN(n), r.IntN(n)
		big := math.Ldexp(1, 60+r.IntN(40))
		xs[i], xs[j] = big, -big
	}
	return xs
}

func TestNeumaierExact(t *testing.T) {
	cases := [][]float64{
		{},
		{1e16, 1, -1e16, 1},
		{1, 1e100, 1, -1e100},
		{0.1, 0.2, 0.3, -0.6},
		{math.MaxFloat64 / 2, -math.MaxFloat64 / 2, 3},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		cases = append(cases, cancelling(r, 1+r.IntN(3000)))
	}
	for i, xs := range cases {
		var k Neumaier
		var naive, abs float64
		for _, x := range xs {
			k.Add(x)
			naive += x
			abs += math.Abs(x)
		}
		want := exactSum(xs)
		// Neumaier's bound: about an ulp of the result, plus n*eps^2 of
		// the sum of magnitudes.
		if got := k.Value(); math.Abs(got-want) > 2*ulp(want)+float64(len(xs))*0x1p-104*abs {
			t.Fatalf("case %d (%d values): sum %v, exact %v (naive %v)", i, len(xs), got, want, naive)
		}
	}
	// The data are hard: the plain sum misses.
	naive := 0.0
	for _, x := range cases[1] {
		naive += x
	}
	if naive == 2 {
		t.Fatal("the plain sum is exact: the case does not exercise compensation")
	}
}

// Rolling: adding a window's values and removing them again for a million
// steps leaves the sum of the window's values, not a drift.
func TestNeumaierRolling(t *testing.T) {
	steps := 1_000_000
	if testing.Short() {
		steps = 100_000
	}
	const w = 50
	r := rand.New(rand.NewPCG(3, 4))
	ring := make([]float64, w)
	var k Neumaier
	var naive float64
	for step := range steps {
		x := 1e5 + 1e-3*r.NormFloat64()
		old := ring[step%w]
		ring[step%w] = x
		k.Add(x)
		k.Add(-old)
		naive += x - old
	}
	want := exactSum(ring)
	if got := k.Value(); math.Abs(got-want) > 4*ulp(want) {
		t.Fatalf("after %d steps: %v, exact %v (naive %v)", steps, got, want, naive)
	}
}

// NeumaierAdd on (s, c) is the Neumaier type's Add.
func TestNeumaierAddIsAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	xs := append(cancelling(r, 1000), special...)
	var k Neumaier
	var s, c float64
	for _, x := range xs {
		k.Add(x)
		s, c = NeumaierAdd(s, c, x)
		if !sameBits(k.s, s) || !sameBits(k.c, c) {
			t.Fatalf("after %v: type (%v, %v), function (%v, %v)", x, k.s, k.c, s, c)
		}
	}
}

// special values: signed zeros, subnormals, infinities, NaN, huge.
var special = []float64{0, math.Copysign(0, -1), 5e-324, -5e-324, 1e-310, math.MaxFloat64, -math.MaxFloat64,
	1e308, math.Inf(1), math.Inf(-1), math.NaN(), 1, -1}

// The implementations Welford and Neumaier replaced, written out as they
// were: the results must stay theirs bit for bit.

// regimeWelford is regime's former welford (no shift, sample variance).
type regimeWelford struct {
	n        int
	mean, m2 float64
}

func (w *regimeWelford) add(x float64) {
	w.n++
	d := x - w.mean
	w.mean += d / float64(w.n)
	w.m2 += d * (x - w.mean)
}

func (w *regimeWelford) variance() float64 {
	if w.n < 2 {
		return 0
	}
	return w.m2 / float64(w.n-1)
}

// macroWelford is the macro snapshot's former welford (about the first
// value, population standard deviation).
type macroWelford struct {
	n              int
	shift, mean, s float64
}

func (w *macroWelford) add(x float64) {
	if w.n == 0 {
		w.shift = x
	}
	x -= w.shift
	w.n++
	d := x - w.mean
	w.mean += d / float64(w.n)
	w.s += d * (x - w.mean)
}

func (w *macroWelford) avg() float64 { return w.shift + w.mean }

func (w *macroWelford) std() float64 {
	if w.n == 0 {
		return math.NaN()
	}
	return math.Sqrt(max(w.s, 0) / float64(w.n))
}

// ksum is features' former ksum (and the macro snapshot's kahan, the same
// code).
type ksum struct{ s, c float64 }

func (k *ksum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

func (k *ksum) value() float64 { return k.s + k.c }

// streams are inputs of every kind the replaced code saw or could see.
func streams() [][]float64 {
	r := rand.New(rand.NewPCG(7, 8))
	var out [][]float64
	for _, off := range []float64{0, 1, -1e5, 1e9, 1e15} {
		for _, scale := range []float64{1e-3, 1, 1e6} {
			xs := make([]float64, 2000)
			for i := range xs {
				xs[i] = off + scale*r.NormFloat64()
			}
			out = append(out, xs)
		}
	}
	out = append(out, cancelling(r, 2000))
	// special values mixed into normal data, each in its own stream (a NaN
	// or an infinity makes every later value NaN)
	for _, v := range special {
		xs := []float64{v}
		for range 20 {
			xs = append(xs, r.NormFloat64(), v, math.Copysign(0, -1))
		}
		out = append(out, xs)
	}
	out = append(out, []float64{math.Copysign(0, -1)}, []float64{math.Copysign(0, -1), math.Copysign(0, -1)})
	return out
}

// NaN equals NaN here only with the same bits: the same code gives the same
// payload.
func TestWelfordBitsAsReplaced(t *testing.T) {
	for si, xs := range streams() {
		var w Welford
		sw := ShiftedWelford()
		var rw regimeWelford
		var mw macroWelford
		for i, x := range xs {
			w.Add(x)
			sw.Add(x)
			rw.add(x)
			mw.add(x)
			if w.N() != rw.n || !sameBits(w.Mean(), rw.mean) || !sameBits(w.Var(), rw.variance()) {
				t.Fatalf("stream %d value %d: Welford n %d mean %v var %v, regime's %d %v %v",
					si, i, w.N(), w.Mean(), w.Var(), rw.n, rw.mean, rw.variance())
			}
			if std := math.Sqrt(sw.PopVar()); sw.N() != mw.n || !sameBits(sw.Mean(), mw.avg()) || !sameBits(std, mw.std()) {
				t.Fatalf("stream %d value %d: ShiftedWelford n %d mean %v std %v, macro's %d %v %v",
					si, i, sw.N(), sw.Mean(), std, mw.n, mw.avg(), mw.std())
			}
		}
	}
}

func TestNeumaierBitsAsReplaced(t *testing.T) {
	for si, xs := range streams() {
		var k Neumaier
		var o ksum
		for i, x := range xs {
			k.Add(x)
			o.add(x)
			if !sameBits(k.Value(), o.value()) {
				t.Fatalf("stream %d value %d: Neumaier %v, replaced %v", si, i, k.Value(), o.value())
			}
		}
	}
}

// Welford against the exact two-pass mean and variance, where the naive
// one-pass formula (sum of squares) cancels: offsets up to 1e9 with a
// spread of 1e-3, the macro snapshot's case. The shifted form keeps the mean
// to a few ulp of the offset and the spread to 1e-9 at any offset; the
// plain form, which the regime code uses on returns and standardized data,
// is held to that at small offsets.
func TestWelfordExact(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		offset  float64
		shifted bool
	}{{0, false}, {1, false}, {0, true}, {1e6, true}, {1e9, true}, {-1e9, true}} {
		xs := make([]float64, 100_000)
		w := Welford{}
		if tc.shifted {
			w = ShiftedWelford()
		}
		for i := range xs {
			xs[i] = tc.offset + 1e-3*r.NormFloat64()
			w.Add(xs[i])
		}
		mean, m2 := exactMoments(xs)
		n := float64(len(xs))
		wantStd := math.Sqrt(m2 / n)
		tol := 1e-15 * math.Max(1, math.Abs(tc.offset)) // a few ulp of the offset
		if !tc.shifted {
			tol = 1e-10 * wantStd
		}
		if math.Abs(w.Mean()-mean) > tol {
			t.Fatalf("offset %g shifted %v: mean %v, exact %v", tc.offset, tc.shifted, w.Mean(), mean)
		}
		if got := math.Sqrt(w.PopVar()); math.Abs(got-wantStd) > 1e-9*wantStd {
			t.Fatalf("offset %g shifted %v: population std %v, exact %v", tc.offset, tc.shifted, got, wantStd)
		}
		if got, want := w.Var(), m2/(n-1); math.Abs(got-want) > 2e-9*want {
			t.Fatalf("offset %g shifted %v: sample variance %v, exact %v", tc.offset, tc.shifted, got, want)
		}
		if math.Abs(tc.offset) == 1e9 {
			// The naive formula loses it: the data are hard enough.
			var s1, s2 float64
			for _, x := range xs {
				s1 += x
				s2 += x * x
			}
			naive := math.Sqrt(math.Max(s2/n-(s1/n)*(s1/n), 0))
			if math.Abs(naive-wantStd) < 0.5*wantStd {
				t.Fatalf("the naive std is close (%v vs %v): the data do not exercise cancellation", naive, wantStd)
			}
		}
	}
}

// Too few values: mean and variance 0, as both replaced types had it (the
// macro snapshot's std of nothing was NaN, but it never read it).
func TestWelfordFewValues(t *testing.T) {
	for _, w := range []Welford{{}, ShiftedWelford()} {
		if w.N() != 0 || w.Mean() != 0 || w.Var() != 0 || w.PopVar() != 0 {
			t.Fatalf("empty: n %d mean %v var %v popvar %v", w.N(), w.Mean(), w.Var(), w.PopVar())
		}
		w.Add(1e9 + 0.5)
		if w.N() != 1 || w.Mean() != 1e9+0.5 || w.Var() != 0 || w.PopVar() != 0 {
			t.Fatalf("one value: n %d mean %v var %v popvar %v", w.N(), w.Mean(), w.Var(), w.PopVar())
		}
		w.Add(1e9 + 1.5)
		if w.Mean() != 1e9+1 || w.Var() != 0.5 || w.PopVar() != 0.25 {
			t.Fatalf("two values: mean %v var %v popvar %v", w.Mean(), w.Var(), w.PopVar())
		}
	}
}

// The sum of squared deviations never goes negative, whatever the data
// (so PopVar needs no clamp at 0, and a square root of it is never NaN
// from rounding).
func TestWelfordNonNegative(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for trial := range 300 {
		w := Welford{}
		if trial%2 == 1 {
			w = ShiftedWelford()
		}
		off := math.Ldexp(r.NormFloat64(), r.IntN(120)-60)
		for range 1 + r.IntN(500) {
			x := off
			switch r.IntN(4) {
			case 0:
				x += math.Ldexp(r.NormFloat64(), r.IntN(120)-60)
			case 1:
				x = math.Nextafter(off, math.Inf(int(r.IntN(2)*2-1)))
			case 2:
				x = -off
			}
			w.Add(x)
			if !(w.m2 >= 0) || math.Signbit(w.m2) {
				t.Fatalf("trial %d: m2 %v after %d values", trial, w.m2, w.N())
			}
		}
	}
}
