package features

import (
	"math"
	"slices"

	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/internal/stats"
)

// roller keeps the rolling state of the base series of n instruments over
// the configured windows as a structure of arrays: every state variable is
// one []float64 indexed by instrument, and the ring buffer of a series holds
// one row per step with every instrument's value, so the value leaving a
// window is one contiguous row for all instruments and the per-step work is a
// handful of vector kernels (features/asm) per series and window.
//
// Before a series starts for an instrument (its first defined value x0) the
// instrument's entries are filler; at the start its whole ring column is set
// to x0 and every window state to "w copies of x0", which in the shifted
// sums (shift x0) is exactly zero. The fillers then leave the windows like
// any value, and a window's statistics are reported once it holds w real
// values.
type roller struct {
	windows []int
	maxW    int
	rows    int64  // ring rows: maxW+1, so the value leaving the largest window is still there
	t       uint32 // steps taken; step t is ring row t mod rows
	tt      int64  // the same, not wrapped
	n       int
	series  []rseries
	// scratch
	start             []int32
	flagged           []int32 // instruments whose shift may be stale (asm.WindowStats)
	flag1             []int32 // the same for one instrument, cap 1
	one1, one2, zero1 [1]float64

	reanchors int // re-anchors done, for metrics
	restarts  int // series that stopped being defined, for metrics
}

type rseries struct {
	rv   bool
	ring [][]float64 // rows x n
	cnt  []int32     // values since the series started, saturating at maxW+1; 0 = not started
	run  []int32     // consecutive values equal to the latest, saturating at maxW+1
	ext  []extWin    // per window: min/max state
	win  []rwin
}

// extWin is the min/max state of one series over one window of w steps, a
// block decomposition (van Herk / Gil-Werman) whose every update is a
// vector kernel over instruments: steps are cut into blocks of b (1 <= b <
// w), so a window is the suffix of its oldest block, the whole blocks after
// it and the prefix of the current block. The prefix grows by one step per
// step; each completed block's extremes are kept in a ring; when the
// window's oldest step enters a new block, that block's suffix extremes are
// computed from the series' ring and the whole blocks' extremes are merged
// anew. With b near sqrt(w) that is O(1) vector work per step amortized,
// whatever the data (a monotone series included), and no per-instrument
// branches.
//
// Extremes of steps before an instrument's series (re)started at step t0 are
// stale but never reach an output. A window [first, t] is reported only once
// first >= t0. Its oldest block holds first, so that block's suffix was
// computed at a step >= first >= t0, from the ring, which the start filled
// with the first value. Its whole blocks lie after first; they were merged
// anew when first entered the oldest block, or completed later. The current
// block started after first (b < w), with an empty prefix.
type extWin struct {
	b      int64
	phase  int64         // blocks start at steps k*b - phase
	prefix asm.Extrema   // the current block's steps so far
	whole  asm.Extrema   // the whole blocks between the oldest and the current block
	blocks []asm.Extrema // completed block k at k mod len(blocks)
	suffix []asm.Extrema // suffix[j]: steps j.. of the window's oldest block
}

// extBlock is the block size of a window of w steps: about sqrt(w), so the
// suffix (b steps) and whole-block (w/b blocks) recomputations, each done
// once per b steps, cost about one vector merge per step each.
func extBlock(w int) int64 {
	b := int64(math.Round(math.Sqrt(float64(w))))
	return max(1, min(b, int64(w)-1))
}

func (x *extWin) extrema(fn func(*asm.Extrema)) {
	fn(&x.prefix)
	fn(&x.whole)
	for k := range x.blocks {
		fn(&x.blocks[k])
	}
	for k := range x.suffix {
		fn(&x.suffix[k])
	}
}

// rwin is the state of one series over one window.
type rwin struct {
	w      int
	alpha  float64
	m      asm.Moments // shifted power sums: mean, std, z, skew, kurt
	sumS   []float64   // sum of x (compensated: sumS + sumC)
	sumC   []float64
	sqS    []float64 // sum of x^2 (rv series only)
	sqC    []float64
	pS     []float64 // sum over the window's lag-1 pairs of d_t*d_{t-1}, d = x - shift
	pC     []float64
	tS     []float64 // sum of j*d_j, j = 0 for the oldest value (OLS slope)
	tC     []float64
	ewm    []float64
	ewv    []float64
	pos    []int32  // values > 0
	ud     []int32  // rises minus falls
	anchor []uint32 // step of the last (re-)anchor of the shift
}

func newRoller(windows []int, rv []bool) *roller {
	r := &roller{windows: windows, maxW: slices.Max(windows)}
	r.rows = int64(r.maxW) + 1
	r.series = make([]rseries, len(rv))
	for b := range r.series {
		s := &r.series[b]
		s.rv = rv[b]
		s.ring = make([][]float64, r.rows)
		s.win = make([]rwin, len(windows))
		s.ext = make([]extWin, len(windows))
		for wi, w := range windows {
			s.win[wi].w = w
			s.win[wi].alpha = 2 / float64(w+1)
			x := &s.ext[wi]
			x.b = extBlock(w)
			// The recomputations happen when a block starts; staggering the
			// blocks of the series and windows spreads them over the steps
			// instead of stacking them all on one (a step's time would jump
			// every b steps).
			x.phase = (int64(b)*x.b/int64(len(rv)) + int64(wi)) % x.b
			// The whole blocks are read when the oldest step enters block
			// ob, at step ob*b+w-1 in block c = ob+(w-1)/b: blocks ob+1 to
			// c-1, so a ring of (w-1)/b - 1 blocks still holds them all
			// (TestRollerExtremes fails with one fewer).
			x.blocks = make([]asm.Extrema, max(1, (int64(w)-1)/x.b-1))
			x.suffix = make([]asm.Extrema, x.b)
		}
	}
	return r
}

// f64s lists every per-instrument float64 slice, for resizing.
func (r *roller) f64s(fn func(*[]float64)) {
	for b := range r.series {
		s := &r.series[b]
		for k := range s.ring {
			fn(&s.ring[k])
		}
		for wi := range s.win {
			w := &s.win[wi]
			m := &w.m
			for _, p := range []*[]float64{&m.Shift, &m.S1, &m.S2, &m.S3, &m.S4, &m.C1, &m.C2, &m.C3, &m.C4,
				&w.sumS, &w.sumC, &w.pS, &w.pC, &w.tS, &w.tC, &w.ewm, &w.ewv} {
				fn(p)
			}
			if s.rv {
				fn(&w.sqS)
				fn(&w.sqC)
			}
		}
		for wi := range s.ext {
			s.ext[wi].extrema(func(e *asm.Extrema) {
				for _, p := range []*[]float64{&e.Max, &e.MaxT, &e.Min, &e.MinT} {
					fn(p)
				}
			})
		}
	}
}

// resize makes room for new instruments: from[j] is the old index of
// instrument j in the new order, or -1 for a new instrument (zero state, not
// started). O(state); done when instruments appear, not per step.
func (r *roller) resize(from []int32) {
	n := len(from)
	// Every float64 slice is cut from one slab, an odd number of cache lines
	// apart: a kernel reads and writes up to 25 of them at the same index,
	// and slices allocated one by one (multiples of 4 KiB apart for n = 512,
	// 1000, ...) map to the same L1 sets, more slices than the sets have
	// ways (asm.WindowRoll ran 4x slower on such slices, the step 1.5x on
	// the AVX2 path and 1.9x on the Go path). An odd stride in lines
	// spreads up to 64 slices over distinct sets.
	lines := (8*n + 63) / 64
	if lines%2 == 0 {
		lines++
	}
	stride := 8 * lines
	count := 0
	r.f64s(func(*[]float64) { count++ })
	slab := make([]float64, count*stride)
	k := 0
	r.f64s(func(p *[]float64) {
		nw := slab[k*stride : k*stride+n : k*stride+n]
		for j, f := range from {
			if f >= 0 {
				nw[j] = (*p)[f]
			}
		}
		*p = nw
		k++
	})
	for b := range r.series {
		s := &r.series[b]
		s.cnt = remap(s.cnt, from)
		s.run = remap(s.run, from)
		for wi := range s.win {
			w := &s.win[wi]
			w.pos = remap(w.pos, from)
			w.ud = remap(w.ud, from)
			w.anchor = remap(w.anchor, from)
		}
	}
	r.start = slices.Grow(r.start[:0], n)
	r.flagged = slices.Grow(r.flagged[:0], n)
	r.flag1 = make([]int32, 0, 1)
	r.n = n
}

func remap[T any](old []T, from []int32) []T {
	nw := make([]T, len(from))
	for j, f := range from {
		if f >= 0 {
			nw[j] = old[f]
		}
	}
	return nw
}

func (r *roller) row(s *rseries, t int64) []float64 {
	return s.ring[floorMod(t, r.rows)]
}

// bytesPerInstrument is the state size per instrument.
func (r *roller) bytesPerInstrument() int {
	if r.n == 0 {
		return 0
	}
	total := 0
	r.f64s(func(p *[]float64) { total += 8 * len(*p) })
	for b := range r.series {
		s := &r.series[b]
		total += 8 * len(s.cnt) // cnt, run
		total += 12 * len(s.win) * len(s.cnt)
	}
	return total / r.n
}

// step pushes one step: x[b][i] is series b's value for instrument i (NaN:
// not defined), and the statistics are written to cols through winCol (see
// layout): cols[winCol[b][wi][s]][i].
func (r *roller) step(x [][]float64, cols [][]float64, winCol [][][numStats]int) {
	r.tt++
	r.t++
	for b := range r.series {
		r.stepSeries(b, x[b], cols, winCol[b])
	}
}

func (r *roller) stepSeries(b int, x []float64, cols [][]float64, wc [][numStats]int) {
	s := &r.series[b]
	n := r.n
	tt := r.tt
	capN := int32(r.maxW + 1)
	cur := r.row(s, tt)
	prev := r.row(s, tt-1)
	start := r.start[:0]
	for i := range n {
		v := x[i]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if s.cnt[i] > 0 {
				r.restarts++ // a defined series became undefined: it warms up again
			}
			s.cnt[i], s.run[i] = 0, 0
			cur[i] = 0
			continue
		}
		cur[i] = v
		switch {
		case s.cnt[i] == 0:
			start = append(start, int32(i))
			s.run[i] = 1
		case v == prev[i]:
			s.run[i] = min(s.run[i]+1, capN)
		default:
			s.run[i] = 1
		}
		s.cnt[i] = min(s.cnt[i]+1, capN)
	}
	r.start = start
	for _, i := range start {
		r.begin(s, int(i), x[i])
	}
	for wi := range s.win {
		r.extremes(s, wi, cols, &wc[wi])
		r.stepWindow(s, wi, cols, &wc[wi])
	}
}

// begin starts series s for instrument i at value v: its ring column and
// every window hold w copies of v.
func (r *roller) begin(s *rseries, i int, v float64) {
	for k := range s.ring {
		s.ring[k][i] = v
	}
	var pos int32
	if v > 0 {
		pos = 1
	}
	for wi := range s.win {
		w := &s.win[wi]
		m := &w.m
		m.Shift[i] = v
		m.S1[i], m.S2[i], m.S3[i], m.S4[i] = 0, 0, 0, 0
		m.C1[i], m.C2[i], m.C3[i], m.C4[i] = 0, 0, 0, 0
		fw := float64(w.w)
		// w*v as an exact compensated pair: the fillers leave one by one.
		w.sumS[i] = fw * v
		w.sumC[i] = math.FMA(fw, v, -w.sumS[i])
		if s.rv {
			q := float64(v * v)
			w.sqS[i] = fw * q
			w.sqC[i] = math.FMA(fw, q, -w.sqS[i])
		}
		w.pS[i], w.pC[i], w.tS[i], w.tC[i] = 0, 0, 0, 0
		w.ewm[i], w.ewv[i] = v, 0
		w.pos[i] = pos * int32(w.w)
		w.ud[i] = 0
		w.anchor[i] = r.t
	}
}

// reanchorRatio: the shifted sums' relative error is about
// eps*(1 + (mean-shift)^2/var). When (mean-shift)^2 exceeds reanchorRatio*var
// (and the shift has been in place for a window), the shift moves to the
// window mean and the instrument's sums are recomputed from the ring: O(w),
// at most once per w steps, so O(1) amortized. The check runs every step.
const reanchorRatio = 1024

// staleFloor: asm.WindowStats flags an instrument's shift as possibly stale
// when, besides the age of its anchor, (ratio+1)*s1^2 > ratio*w*s2 and
// |s1| > staleFloor*w*|shift|: maybeReanchor's test without the ulp and
// without a division, cheap enough for every instrument and step (with mean
// deviation md = s1/w and m2 = s2 - s1^2/w, md^2 > ratio*m2/w is
// (ratio+1)*s1^2 > ratio*w*s2).
const staleFloor = 3.5e-15

func (r *roller) stepWindow(s *rseries, wi int, cols [][]float64, wc *[numStats]int) {
	w := &s.win[wi]
	n := r.n
	tt := r.tt
	xNew := r.row(s, tt)[:n]
	xPrev := r.row(s, tt-1)[:n]
	xOld := r.row(s, tt-int64(w.w))[:n]
	xOldNext := r.row(s, tt-int64(w.w)+1)[:n]
	m := &w.m
	st := asm.Window{SumS: w.sumS, SumC: w.sumC, SqS: w.sqS, SqC: w.sqC, PS: w.pS, PC: w.pC, TS: w.tS, TC: w.tC,
		EWM: w.ewm, EWV: w.ewv, Pos: w.pos, UD: w.ud, Anchor: w.anchor}
	// The sums, counts and exponentially weighted state in one pass (sqS
	// and sqC are nil unless the series has rv).
	asm.WindowRoll(m, &st, xNew, xPrev, xOld, xOldNext, w.w, w.alpha)

	col := func(st int) []float64 {
		if c := wc[st]; c >= 0 {
			return cols[c][:n]
		}
		return nil
	}
	// Every column but rv exists for every series (hasStat).
	out := asm.WindowOut{Mean: col(sMean), Std: col(sStd), Skew: col(sSkew), Kurt: col(sKurt), Z: col(sZ),
		Sum: col(sSum), AC1: col(sAC1), Slope: col(sSlope), R2: col(sR2),
		EWM: col(sEWM), EWStd: col(sEWStd), PosShare: col(sPosShare), UpDown: col(sUpDown)}
	if s.rv {
		out.RV = col(sRV)
	}
	asm.MomentStats(out.Mean, out.Std, out.Skew, out.Kurt, out.Z, m, xNew, w.w)
	r.flagged = asm.WindowStats(&out, m, &st, s.cnt[:n], s.run[:n], xNew, xOldNext, w.w, r.t,
		reanchorRatio, staleFloor, r.flagged)
	// Rare: a re-anchored instrument's outputs again, from its new sums
	// (maybeReanchor has redone its moment statistics). Each instrument's
	// state is its own, so this equals re-anchoring before its statistics.
	for _, fi := range r.flagged {
		i := int(fi)
		if !r.maybeReanchor(s, w, i, out.Mean, out.Std, out.Skew, out.Kurt, out.Z, xNew) {
			continue
		}
		o1, m1, st1 := out.Slice(i, i+1), m.Slice(i, i+1), st.Slice(i, i+1)
		asm.WindowStats(&o1, &m1, &st1, s.cnt[i:i+1], s.run[i:i+1], xNew[i:i+1], xOldNext[i:i+1], w.w, r.t,
			reanchorRatio, staleFloor, r.flag1)
	}
}

// maybeReanchor re-anchors instrument i's shift of window w if it has gone
// stale and then recomputes i's moment statistics; it reports whether it
// did.
func (r *roller) maybeReanchor(s *rseries, w *rwin, i int, mean, std, skew, kurt, z, xNew []float64) bool {
	m := &w.m
	fw := float64(w.w)
	s1 := m.S1[i] + m.C1[i]
	md := s1 / fw
	popVar := max((m.S2[i]+m.C2[i])-s1*md, 0) / fw
	sh := m.Shift[i]
	if math.Abs(md) <= 16*ulp(sh) || md*md <= reanchorRatio*popVar {
		return false
	}
	r.reanchorNow(s, w, i, mean, std, skew, kurt, z, xNew, sh+md)
	return true
}

func (r *roller) reanchorNow(s *rseries, w *rwin, i int, mean, std, skew, kurt, z, xNew []float64, shift float64) {
	m := &w.m
	r.reanchor(s, w, i, shift)
	one := func(v []float64) []float64 { return v[i : i+1] }
	sub := asm.Moments{Shift: one(m.Shift), S1: one(m.S1), S2: one(m.S2), S3: one(m.S3), S4: one(m.S4),
		C1: one(m.C1), C2: one(m.C2), C3: one(m.C3), C4: one(m.C4)}
	asm.MomentStats(one(mean), one(std), one(skew), one(kurt), one(z), &sub, one(xNew), w.w)
}

func ulp(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

// reanchor moves instrument i's shift of window w and recomputes the
// shifted sums from the window's values in the ring, through the same
// kernels (on one-element slices) so that values later leaving the window
// remove exactly what was added.
func (r *roller) reanchor(s *rseries, w *rwin, i int, shift float64) {
	r.reanchors++
	w.anchor[i] = r.t
	m := &w.m
	one := func(v []float64) []float64 { return v[i : i+1] }
	m.Shift[i] = shift
	m.S1[i], m.S2[i], m.S3[i], m.S4[i] = 0, 0, 0, 0
	m.C1[i], m.C2[i], m.C3[i], m.C4[i] = 0, 0, 0, 0
	w.pS[i], w.pC[i], w.tS[i], w.tC[i] = 0, 0, 0, 0
	sub := asm.Moments{Shift: one(m.Shift), S1: one(m.S1), S2: one(m.S2), S3: one(m.S3), S4: one(m.S4),
		C1: one(m.C1), C2: one(m.C2), C3: one(m.C3), C4: one(m.C4)}
	prevD := 0.0
	for j := range w.w {
		x := r.row(s, r.tt-int64(w.w)+1+int64(j))[i]
		r.one1[0] = x
		asm.AddMoments(&sub, r.one1[:])
		d := x - shift
		w.tS[i], w.tC[i] = stats.NeumaierAdd(w.tS[i], w.tC[i], float64(float64(j)*d))
		if j > 0 {
			r.one1[0], r.one2[0] = d, prevD
			asm.RollProducts(one(w.pS), one(w.pC), r.one1[:], r.one2[:], r.zero1[:], r.zero1[:])
		}
		prevD = d
	}
}

// extremes steps series s's min/max state of window wi (see extWin) and
// writes min, max, their ages and range_pos.
func (r *roller) extremes(s *rseries, wi int, cols [][]float64, wc *[numStats]int) {
	x := &s.ext[wi]
	w := int64(s.win[wi].w)
	n := r.n
	tt := r.tt
	cur := r.row(s, tt)[:n]
	b := x.b
	nb := int64(len(x.blocks))
	// Block arithmetic in steps shifted by the phase (u = step + phase);
	// rows and the extremes' steps are real steps.
	u := tt + x.phase
	c := floorDiv(u, b) // the current block
	firstU := u - w + 1 // the window's oldest step, shifted
	ob := floorDiv(firstU, b)
	if u == c*b {
		// Block c-1 completed with the previous step: keep it (the prefix's
		// arrays become the block's, the ring slot's the new prefix), and
		// it is whole in the window unless it is the oldest block.
		slot := &x.blocks[floorMod(c-1, nb)]
		*slot, x.prefix = x.prefix, *slot
		if c-1 > ob {
			asm.ExtremaMerge(&x.whole, slot)
		}
		emptyExtrema(&x.prefix, n) // ExtremaWindow adds this step
	}
	if firstU == ob*b {
		// The oldest step entered block ob (complete: b < w): its suffixes
		// from the ring, latest first, and the whole blocks after it anew.
		start := ob*b - x.phase
		last := start + b - 1
		fillExtrema(&x.suffix[b-1], r.row(s, last)[:n], float64(last))
		for j := b - 2; j >= 0; j-- {
			asm.ExtremaPrepend(&x.suffix[j], &x.suffix[j+1], r.row(s, start+j)[:n], float64(start+j))
		}
		if ob+1 < c {
			setExtrema(&x.whole, &x.blocks[floorMod(ob+1, nb)], n)
			for k := ob + 2; k < c; k++ {
				asm.ExtremaMerge(&x.whole, &x.blocks[floorMod(k, nb)])
			}
		} else {
			emptyExtrema(&x.whole, n)
		}
	}
	col := func(st int) []float64 { return cols[wc[st]][:n] }
	asm.ExtremaWindow(col(sMax), col(sMin), col(sArgmaxAge), col(sArgminAge), col(sRangePos),
		&x.suffix[firstU-ob*b], &x.whole, &x.prefix, cur, s.cnt[:n], int(w), float64(tt))
}

// fillExtrema sets e to the single step t with values v.
func fillExtrema(e *asm.Extrema, v []float64, t float64) {
	n := len(v)
	copy(e.Max[:n], v)
	copy(e.Min[:n], v)
	fillF64(e.MaxT[:n], t)
	fillF64(e.MinT[:n], t)
}

func setExtrema(dst, src *asm.Extrema, n int) {
	copy(dst.Max[:n], src.Max)
	copy(dst.MaxT[:n], src.MaxT)
	copy(dst.Min[:n], src.Min)
	copy(dst.MinT[:n], src.MinT)
}

// emptyExtrema sets e to the empty set: every step merged into it wins.
func emptyExtrema(e *asm.Extrema, n int) {
	fillF64(e.Max[:n], math.Inf(-1))
	fillF64(e.Min[:n], math.Inf(1))
	fillF64(e.MaxT[:n], 0)
	fillF64(e.MinT[:n], 0)
}

func fillF64(s []float64, v float64) {
	for i := range s {
		s[i] = v
	}
}

// skipConstant advances the exponentially weighted state over k steps that
// are not closed one by one (a time gap whose windows are already full of
// the same value; see the package documentation): with a constant input x
// and q = 1-alpha, mean_k = x + q^k (mean_0-x) and
// var_k = q^k (var_0 + (x-mean_0)^2 (1-q^k)).
func (r *roller) skipConstant(k int64) {
	for b := range r.series {
		s := &r.series[b]
		cur := r.row(s, r.tt)
		for wi := range s.win {
			w := &s.win[wi]
			qk := math.Pow(1-w.alpha, float64(k))
			for i := range r.n {
				if s.cnt[i] == 0 {
					continue
				}
				d := w.ewm[i] - cur[i]
				w.ewv[i] = qk * (w.ewv[i] + d*d*(1-qk))
				w.ewm[i] = cur[i] + qk*d
			}
		}
	}
}
