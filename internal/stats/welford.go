package stats

// Welford is a running mean and variance (Welford's algorithm). The zero
// value is empty and accumulates the values as they are; ShiftedWelford's
// accumulates them about the first value instead, so that a large common
// offset (prices near 1e9 that move by 1e-3) does not cost the incremental
// mean its precision. An empty Welford has mean and variance 0.
type Welford struct {
	n       int
	shifted bool    // shift is taken from the first value
	shift   float64 // 0 unless shifted
	mean    float64 // mean of x - shift
	m2      float64 // sum of squared deviations from the mean
}

// ShiftedWelford returns an empty Welford that takes its first value as the
// origin of the others.
func ShiftedWelford() Welford { return Welford{shifted: true} }

// Add adds x.
func (w *Welford) Add(x float64) {
	if w.n == 0 && w.shifted {
		w.shift = x
	}
	x -= w.shift // x - 0 is x: unshifted, these are the textbook recursion's bits
	w.n++
	d := x - w.mean
	w.mean += d / float64(w.n)
	w.m2 += d * (x - w.mean)
}

// N is the number of values added.
func (w Welford) N() int { return w.n }

// Mean is the mean of the values. Unshifted, 0 + mean is mean bit for bit:
// mean is never -0 (it starts at +0, and a rounded sum is -0 only if both
// addends are).
func (w Welford) Mean() float64 { return w.shift + w.mean }

// Var is the sample variance (divided by n-1), 0 with fewer than two
// values. It is never negative: each step adds d*(x-mean) with both factors
// of the same sign, also after rounding (the new mean does not pass x).
func (w Welford) Var() float64 {
	if w.n < 2 {
		return 0
	}
	return w.m2 / float64(w.n-1)
}

// PopVar is the population variance (divided by n), 0 when empty.
func (w Welford) PopVar() float64 {
	if w.n == 0 {
		return 0
	}
	// m2 is never negative; the max is the macro snapshot's, kept because
	// it decides the sign bit of a NaN result.
	return max(w.m2, 0) / float64(w.n)
}
