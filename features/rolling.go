package features

import "math"

// ksum is a Neumaier-compensated sum: the value is s + c, where c collects the
// low-order bits lost by each addition. Its error does not grow with the number
// of additions, which is what lets rolling sums add and remove values for
// millions of steps without drifting.
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

// series is the history of one per-step value of an instrument, sized to the
// largest window. Windows over the same series share its ring.
type series struct {
	ring []float64
	head int // index the next value is written to
	n    int // values pushed, saturating at len(ring)
}

func newSeries(capacity int) series { return series{ring: make([]float64, capacity)} }

// ago returns the value pushed k pushes ago (k = 0 is the latest); k < n.
func (s *series) ago(k int) float64 {
	i := s.head - 1 - k
	if i < 0 {
		i += len(s.ring)
	}
	return s.ring[i]
}

// evicted returns the value that leaves a window of w values when the next
// value is pushed, and whether there is one. Call it before push.
func (s *series) evicted(w int) (float64, bool) {
	if s.n < w {
		return 0, false
	}
	return s.ago(w - 1), true
}

func (s *series) push(x float64) {
	s.ring[s.head] = x
	s.head++
	if s.head == len(s.ring) {
		s.head = 0
	}
	if s.n < len(s.ring) {
		s.n++
	}
}

// sumWindow is a rolling sum over the last w values of a series of
// non-negative values (volumes).
type sumWindow struct {
	w   int
	n   int // values in the window, <= w
	nz  int // non-zero values in the window
	sum ksum
}

func (a *sumWindow) push(x, old float64, hasOld bool) {
	if hasOld {
		if old != 0 {
			a.nz--
			a.sum.add(-old)
		}
	} else {
		a.n++
	}
	if x != 0 {
		a.nz++
		a.sum.add(x)
	}
	if a.nz == 0 {
		a.sum = ksum{} // exactly zero, not a rounding residue
	}
}

func (a *sumWindow) full() bool { return a.n == a.w }

func (a *sumWindow) value() float64 { return max(a.sum.value(), 0) }

// Re-anchoring: the variance sums are taken about a shift, and their relative
// error is about eps*(1 + (mean-shift)^2/var). When (mean-shift)^2 exceeds
// reanchorRatio*var, the shift is moved to the current mean and the sums are
// recomputed from the ring: O(w), at most once per w pushes, so O(1)
// amortized. The check itself is O(1) and runs on every push.
//
// For w <= reanchorRatio a window holding values from both sides of a level
// shift has a large variance and does not trigger; the re-anchor happens on
// the first push after the window holds only post-shift values.
const reanchorRatio = 1024

// momentWindow keeps the mean, sample variance and sum of squares of the last
// w values of a series.
type momentWindow struct {
	w     int
	n     int     // values in the window, <= w
	shift float64 // d = x - shift
	nzD   int     // values with d != 0
	nzX   int     // values with x != 0
	s1    ksum    // sum of d
	s2    ksum    // sum of d*d
	sq    ksum    // sum of x*x
	since int     // pushes since the last re-anchor
	last  float64 // latest value
	run   int     // consecutive pushes equal to last
}

// push adds x, removing old (the value leaving the window) if hasOld. Read
// old with series.evicted before pushing x to the series, and call
// maybeReanchor after.
func (m *momentWindow) push(x, old float64, hasOld bool) {
	if m.n == 0 && !hasOld {
		m.shift = x
	}
	if hasOld {
		m.remove(old)
	} else {
		m.n++
	}
	m.add(x)
	if m.run > 0 && x == m.last {
		m.run++
	} else {
		m.last, m.run = x, 1
	}
	if m.nzD == 0 {
		m.s1, m.s2 = ksum{}, ksum{}
	}
	if m.nzX == 0 {
		m.sq = ksum{}
	}
}

// maybeReanchor re-anchors the shift if it has gone stale (see
// reanchorRatio). ser must already hold the latest value.
func (m *momentWindow) maybeReanchor(ser *series) {
	m.since++
	if m.since < m.w || m.nzD == 0 || m.constant() {
		return
	}
	meanD := m.s1.value() / float64(m.n)
	if math.Abs(meanD) <= 16*ulp(m.shift) || float64(meanD*meanD) <= reanchorRatio*m.popVar() {
		return
	}
	m.reanchor(ser, m.shift+meanD)
}

func ulp(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

func (m *momentWindow) add(x float64) {
	d := x - m.shift
	if d != 0 {
		m.nzD++
		m.s1.add(d)
		m.s2.add(float64(d * d)) // float64(): no fused multiply-add, same result everywhere
	}
	if x != 0 {
		m.nzX++
		m.sq.add(float64(x * x))
	}
}

func (m *momentWindow) remove(x float64) {
	d := x - m.shift
	if d != 0 {
		m.nzD--
		m.s1.add(-d)
		m.s2.add(-float64(d * d))
	}
	if x != 0 {
		m.nzX--
		m.sq.add(-float64(x * x))
	}
}

// reanchor moves the shift and recomputes the sums from the window's values
// in the ring.
func (m *momentWindow) reanchor(ser *series, shift float64) {
	m.since = 0
	m.shift = shift
	m.nzD, m.nzX = 0, 0
	m.s1, m.s2, m.sq = ksum{}, ksum{}, ksum{}
	for k := range m.n {
		m.add(ser.ago(k))
	}
}

func (m *momentWindow) full() bool { return m.n == m.w }

// constant reports whether every value in the window equals m.last; then the
// statistics are exact (mean = last, variance 0) whatever the sums' rounding.
func (m *momentWindow) constant() bool { return m.run >= m.n }

// m2 is the sum of squared deviations from the window mean.
func (m *momentWindow) m2() float64 {
	if m.nzD == 0 || m.constant() {
		return 0
	}
	s1 := m.s1.value()
	return max(m.s2.value()-float64(s1*s1)/float64(m.n), 0)
}

func (m *momentWindow) popVar() float64 { return m.m2() / float64(m.n) }

func (m *momentWindow) mean() float64 {
	if m.constant() {
		return m.last
	}
	if m.nzD == 0 {
		return m.shift
	}
	return m.shift + m.s1.value()/float64(m.n)
}

// std is the sample standard deviation (n-1 denominator).
func (m *momentWindow) std() float64 { return math.Sqrt(m.m2() / float64(m.n-1)) }

func (m *momentWindow) sumSq() float64 {
	if m.nzX == 0 {
		return 0
	}
	if m.constant() {
		return float64(m.n) * float64(m.last*m.last)
	}
	return max(m.sq.value(), 0)
}
