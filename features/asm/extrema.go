package asm

// Extrema are per-instrument running extremes of a series with the step of
// each one's latest occurrence: the max and min of a set of steps and when
// they last occurred (steps as float64, exact below 2^53). They are the
// parts from which the feature engine assembles the min, max and their ages
// over a sliding window (block decomposition: the suffix of the oldest
// block, the whole blocks in between, the prefix of the current block),
// element-wise over instruments like every kernel here.
//
// Ties go to the later step, so an age is that of the latest occurrence.
// Values are finite (the engine never stores NaN or Inf in its ring); the
// empty set is Max = -Inf, Min = +Inf.
type Extrema struct {
	Max, MaxT, Min, MinT []float64
}

// len checks that every slice of e has length n and returns it.
func (e *Extrema) len(n int, kernel string) int {
	if len(e.Max) != n || len(e.MaxT) != n || len(e.Min) != n || len(e.MinT) != n {
		panic("asm: " + kernel + ": Extrema slices and input lengths differ")
	}
	return n
}

func (e *Extrema) from(k int) Extrema {
	return Extrema{Max: e.Max[k:], MaxT: e.MaxT[k:], Min: e.Min[k:], MinT: e.MinT[k:]}
}

// ExtremaMerge merges later into e, where every step of later is after
// every step of e: Max, MaxT = later's where later.Max >= Max, and Min,
// MinT = later's where later.Min <= Min. Bit-identical between paths.
// Panics unless all eight slices have the same length.
func ExtremaMerge(e, later *Extrema) {
	n := e.len(len(later.Max), "ExtremaMerge")
	later.len(n, "ExtremaMerge")
	k := 0
	if useAVX2 {
		k = n &^ 3
		extremaMergeAVX2(e.Max[:k], e.MaxT[:k], e.Min[:k], e.MinT[:k],
			later.Max[:k], later.MaxT[:k], later.Min[:k], later.MinT[:k])
	}
	if k < n {
		a, b := e.from(k), later.from(k)
		extremaMergeGeneric(&a, &b)
	}
}

// ExtremaPrepend sets dst to later with x[i], seen at step t (before
// every step of later), added: dst.Max, dst.MaxT = later's where
// later.Max >= x (ties to the later step), else x, t; dst.Min, dst.MinT
// likewise with <=. It builds a block's suffix extremes from its last step
// back. Bit-identical between paths.
// Panics unless every slice has len(x) elements.
func ExtremaPrepend(dst, later *Extrema, x []float64, t float64) {
	n := dst.len(len(x), "ExtremaPrepend")
	later.len(n, "ExtremaPrepend")
	k := 0
	if useAVX2 {
		k = n &^ 3
		extremaPrependAVX2(dst.Max[:k], dst.MaxT[:k], dst.Min[:k], dst.MinT[:k],
			later.Max[:k], later.MaxT[:k], later.Min[:k], later.MinT[:k], x[:k], t)
	}
	if k < n {
		a, b := dst.from(k), later.from(k)
		extremaPrependGeneric(&a, &b, x[k:], t)
	}
}

// ExtremaWindow first adds last[i], the value at step t (later than every
// step in the three parts), to cur, the current block's prefix: Max, MaxT =
// last, t where last >= Max (ties go to the later step), Min, MinT = last, t
// where last <= Min. Then it merges the three consecutive parts of the
// window, oldest first (each may be empty), and writes per instrument the
// window's max, min, the ages of their latest occurrences at step t (t -
// MaxT, t - MinT) and rangePos = (last-min)/(max-min), NaN when max <= min.
// Where cnt[i] < w (the instrument's series has fewer than w values: warming
// up) all five are NaN. The merge is ExtremaMerge's (ties to the later part).
// Bit-identical between paths.
// Panics unless every slice has the length of last.
func ExtremaWindow(max, min, maxAge, minAge, rangePos []float64, old, mid, cur *Extrema,
	last []float64, cnt []int32, w int, t float64) {
	n := len(last)
	old.len(n, "ExtremaWindow")
	mid.len(n, "ExtremaWindow")
	cur.len(n, "ExtremaWindow")
	if len(max) != n || len(min) != n || len(maxAge) != n || len(minAge) != n || len(rangePos) != n || len(cnt) != n {
		panic("asm: ExtremaWindow: lengths differ")
	}
	fw := float64(w)
	k := 0
	if useAVX2 {
		k = n &^ 3
		extremaWindowAVX2(max[:k], min[:k], maxAge[:k], minAge[:k], rangePos[:k],
			old.Max[:k], old.MaxT[:k], old.Min[:k], old.MinT[:k],
			mid.Max[:k], mid.MaxT[:k], mid.Min[:k], mid.MinT[:k],
			cur.Max[:k], cur.MaxT[:k], cur.Min[:k], cur.MinT[:k],
			last[:k], cnt[:k], fw, t)
	}
	if k < n {
		o, m, c := old.from(k), mid.from(k), cur.from(k)
		extremaWindowGeneric(max[k:], min[k:], maxAge[k:], minAge[k:], rangePos[k:], &o, &m, &c,
			last[k:], cnt[k:], fw, t)
	}
}
