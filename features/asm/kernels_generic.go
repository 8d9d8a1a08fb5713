package asm

import (
	"math"

	"github.com/signald-dev/signald/internal/stats"
)

// The pure-Go kernels, compiled on every platform and build tag: the path
// without AVX2, the tails of the assembly path, and the reference its tests
// and fuzzers compare against. Their operation order is the contract the
// assembly follows (see kernels.go). Every product that may feed an addition,
// also through a variable or an inlined call, is wrapped in float64(): an
// explicit conversion forbids the compiler to fuse the two into an FMA (which
// it does on arm64, ppc64, s390x and with GOAMD64=v3), and the assembly does
// not fuse either. The tests pass with GOAMD64=v3, which checks this.
// Compensated adds are stats.NeumaierAdd, the engine's one Neumaier step,
// which the generator's neumaier mirrors.

func addMomentsGeneric(m *Moments, x []float64) {
	n := len(x)
	shift, s1, s2, s3, s4 := m.Shift[:n], m.S1[:n], m.S2[:n], m.S3[:n], m.S4[:n]
	c1, c2, c3, c4 := m.C1[:n], m.C2[:n], m.C3[:n], m.C4[:n]
	for i, xi := range x {
		d := xi - shift[i]
		d2 := float64(d * d)
		d3 := float64(d2 * d)
		d4 := float64(d2 * d2)
		s1[i], c1[i] = stats.NeumaierAdd(s1[i], c1[i], d)
		s2[i], c2[i] = stats.NeumaierAdd(s2[i], c2[i], d2)
		s3[i], c3[i] = stats.NeumaierAdd(s3[i], c3[i], d3)
		s4[i], c4[i] = stats.NeumaierAdd(s4[i], c4[i], d4)
	}
}

// statsConsts are MomentStats' per-call constants (see its documentation).
type statsConsts struct{ invW, corr, c15 float64 }

func newStatsConsts(w int) statsConsts {
	nw := float64(w)
	corr := nw / (nw - 1)
	return statsConsts{invW: 1 / nw, corr: corr, c15: corr * math.Sqrt(corr)}
}

func momentStatsGeneric(mean, std, skew, kurt, z []float64, m *Moments, last []float64, k *statsConsts) {
	nan := math.NaN()
	invW, corr, c15 := k.invW, k.corr, k.c15
	n := len(m.Shift)
	S1, S2, S3, S4 := m.S1[:n], m.S2[:n], m.S3[:n], m.S4[:n]
	C1, C2, C3, C4 := m.C1[:n], m.C2[:n], m.C3[:n], m.C4[:n]
	for i, shift := range m.Shift {
		s1 := S1[i] + C1[i]
		s2 := S2[i] + C2[i]
		s3 := S3[i] + C3[i]
		s4 := S4[i] + C4[i]
		mu := float64(s1 * invW)
		e2 := float64(s2 * invW)
		e3 := float64(s3 * invW)
		e4 := float64(s4 * invW)
		mu2 := float64(mu * mu)
		m2 := e2 - mu2
		m3 := (e3 - float64(3*float64(mu*e2))) + float64(2*float64(mu*mu2))
		m4 := ((e4 - float64(4*float64(mu*e3))) + float64(6*float64(mu2*e2))) - float64(3*float64(mu2*mu2))
		if mean != nil {
			mean[i] = shift + mu
		}
		var sd, zi, g1, g2 float64
		if m2 <= 0 {
			sd, zi, g1, g2 = 0, nan, nan, nan
		} else {
			sd = math.Sqrt(m2 * corr)
			isd := 1 / sd
			isd2 := isd * isd
			i2 := isd2 * corr
			g1 = m3 * ((isd2 * isd) * c15)
			g2 = float64(m4*(i2*i2)) - 3
			if z != nil {
				zi = ((last[i] - shift) - mu) * isd
			}
		}
		if std != nil {
			std[i] = sd
		}
		if skew != nil {
			skew[i] = g1
		}
		if kurt != nil {
			kurt[i] = g2
		}
		if z != nil {
			z[i] = zi
		}
	}
}

func rollProductsGeneric(s, c, aNew, bNew, aOld, bOld []float64) {
	n := len(s)
	c, aNew, bNew, aOld, bOld = c[:n], aNew[:n], bNew[:n], aOld[:n], bOld[:n]
	for i := range s {
		p := float64(aNew[i] * bNew[i])
		q := float64(aOld[i] * bOld[i])
		si, ci := stats.NeumaierAdd(s[i], c[i], p)
		s[i], c[i] = stats.NeumaierAdd(si, ci, -q)
	}
}

// sumLanes are SumNaN's four lane accumulators and its count.
type sumLanes struct {
	s, c [4]float64
	n    [4]int
}

// sumNaNLanesGeneric adds x[i] to lane i%4, skipping NaNs. x must start at a
// multiple of 4 in the summed slice.
func sumNaNLanesGeneric(x []float64, l *sumLanes) {
	// Blocks of four with the lanes in locals (what the compiler keeps in
	// registers), then the rest.
	s0, s1, s2, s3 := l.s[0], l.s[1], l.s[2], l.s[3]
	c0, c1, c2, c3 := l.c[0], l.c[1], l.c[2], l.c[3]
	n0, n1, n2, n3 := l.n[0], l.n[1], l.n[2], l.n[3]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		b := x[i : i+4 : i+4]
		if v := b[0]; v == v {
			s0, c0 = stats.NeumaierAdd(s0, c0, v)
			n0++
		}
		if v := b[1]; v == v {
			s1, c1 = stats.NeumaierAdd(s1, c1, v)
			n1++
		}
		if v := b[2]; v == v {
			s2, c2 = stats.NeumaierAdd(s2, c2, v)
			n2++
		}
		if v := b[3]; v == v {
			s3, c3 = stats.NeumaierAdd(s3, c3, v)
			n3++
		}
	}
	l.s, l.c, l.n = [4]float64{s0, s1, s2, s3}, [4]float64{c0, c1, c2, c3}, [4]int{n0, n1, n2, n3}
	for j, v := range x[i:] {
		if v == v {
			l.s[j], l.c[j] = stats.NeumaierAdd(l.s[j], l.c[j], v)
			l.n[j]++
		}
	}
}

func (l *sumLanes) combine() (float64, int) {
	var s, c float64
	for _, v := range l.s {
		s, c = stats.NeumaierAdd(s, c, v)
	}
	c += (l.c[0] + l.c[1]) + (l.c[2] + l.c[3])
	n := l.n[0] + l.n[1] + l.n[2] + l.n[3]
	if math.IsInf(s, 0) {
		return s, n
	}
	return s + c, n
}

// b2i and sgn are written to compile without branches: the signs of price
// changes are close to random, so branches mispredict.
func b2i(b bool) int32 {
	var v int32
	if b {
		v = 1
	}
	return v
}

func sgn(d float64) int32 { return b2i(d > 0) - b2i(d < 0) }

func windowRollGeneric(m *Moments, st *Window, xNew, xPrev, xOld, xOldNext []float64, fm1, alpha, oneMinus float64) {
	n := len(xNew)
	// Every slice cut to n up front, so the loop runs without bounds checks
	// (but for the squares, which are optional).
	xPrev, xOld, xOldNext = xPrev[:n], xOld[:n], xOldNext[:n]
	shift, s1, s2, s3, s4 := m.Shift[:n], m.S1[:n], m.S2[:n], m.S3[:n], m.S4[:n]
	c1, c2, c3, c4 := m.C1[:n], m.C2[:n], m.C3[:n], m.C4[:n]
	tS, tC, sumS, sumC, pS, pC := st.TS[:n], st.TC[:n], st.SumS[:n], st.SumC[:n], st.PS[:n], st.PC[:n]
	ewm, ewv, pos, ud := st.EWM[:n], st.EWV[:n], st.Pos[:n], st.UD[:n]
	sqS, sqC := st.SqS, st.SqC
	rv := sqS != nil
	// Each sum's two Neumaier adds are written out: a helper doing both is
	// over the inlining budget, and a call per sum would slow the Go path.
	for i, xn := range xNew {
		sh := shift[i]
		xp, xo, xon := xPrev[i], xOld[i], xOldNext[i]
		dn, do := xn-sh, xo-sh
		pos[i] += b2i(xn > 0) - b2i(xo > 0)
		ud[i] += sgn(xn-xp) - sgn(xon-xo)
		s, c := stats.NeumaierAdd(pS[i], pC[i], float64(dn*(xp-sh)))
		pS[i], pC[i] = stats.NeumaierAdd(s, c, -float64((xon-sh)*do))
		s, c = stats.NeumaierAdd(sumS[i], sumC[i], xn)
		sumS[i], sumC[i] = stats.NeumaierAdd(s, c, -xo)
		if rv {
			s, c = stats.NeumaierAdd(sqS[i], sqC[i], float64(xn*xn))
			sqS[i], sqC[i] = stats.NeumaierAdd(s, c, -float64(xo*xo))
		}
		d := xn - ewm[i]
		ad := float64(alpha * d)
		ewm[i] += ad
		ewv[i] = oneMinus * (ewv[i] + float64(ad*d))
		// S1 before the slide minus dOld (OLS: every remaining value's
		// index drops by one, the new one enters at w-1).
		tOld := (s1[i] + c1[i]) - do
		s, c = stats.NeumaierAdd(tS[i], tC[i], float64(dn*fm1))
		tS[i], tC[i] = stats.NeumaierAdd(s, c, -tOld)
		d2, o2 := float64(dn*dn), float64(do*do)
		s, c = stats.NeumaierAdd(s1[i], c1[i], dn)
		s1[i], c1[i] = stats.NeumaierAdd(s, c, -do)
		s, c = stats.NeumaierAdd(s2[i], c2[i], d2)
		s2[i], c2[i] = stats.NeumaierAdd(s, c, -o2)
		s, c = stats.NeumaierAdd(s3[i], c3[i], float64(d2*dn))
		s3[i], c3[i] = stats.NeumaierAdd(s, c, -float64(o2*do))
		s, c = stats.NeumaierAdd(s4[i], c4[i], float64(d2*d2))
		s4[i], c4[i] = stats.NeumaierAdd(s, c, -float64(o2*o2))
	}
}

// windowConsts are WindowStats' per-call constants (see its documentation).
type windowConsts struct {
	w                           int32
	fw, invW, fm1, tbar, invStt float64
	ratio1, ratioW, floorW      float64
	tNow                        uint32
}

func newWindowConsts(w int, tNow uint32, ratio, floor float64) windowConsts {
	fw := float64(w)
	stt := fw * float64(fw*fw-1) / 12 // sum of (j - mean j)^2
	return windowConsts{w: int32(w), fw: fw, invW: 1 / fw, fm1: fw - 1, tbar: (fw - 1) / 2, invStt: 1 / stt,
		tNow: tNow, ratio1: ratio + 1, ratioW: ratio * fw, floorW: floor * fw}
}

// windowStatsGeneric appends the flagged instruments' indices plus base to
// flagged.
func windowStatsGeneric(o *WindowOut, m *Moments, st *Window, cnt, run []int32, xNew, xOldNext []float64,
	k *windowConsts, base int, flagged []int32) []int32 {
	n := len(xNew)
	nan := math.NaN()
	ww, fw, invW, fm1, tbar, invStt := k.w, k.fw, k.invW, k.fm1, k.tbar, k.invStt
	tNow, ratio1, ratioW, floorW := k.tNow, k.ratio1, k.ratioW, k.floorW
	// Every slice cut to n, so the loop runs without bounds checks.
	mean, std, skew, kurt, z := o.Mean[:n], o.Std[:n], o.Skew[:n], o.Kurt[:n], o.Z[:n]
	sum, ac1, slope, r2 := o.Sum[:n], o.AC1[:n], o.Slope[:n], o.R2[:n]
	ewm, ewstd, posShare, updown := o.EWM[:n], o.EWStd[:n], o.PosShare[:n], o.UpDown[:n]
	rv, sqS, sqC := o.RV, st.SqS, st.SqC
	hasRV := rv != nil
	if hasRV {
		rv, sqS, sqC = rv[:n], sqS[:n], sqC[:n]
	}
	shift, s1s, c1s, s2s, c2s := m.Shift[:n], m.S1[:n], m.C1[:n], m.S2[:n], m.C2[:n]
	sumS, sumC, pS, pC, tS, tC := st.SumS[:n], st.SumC[:n], st.PS[:n], st.PC[:n], st.TS[:n], st.TC[:n]
	ewmS, ewvS, pos, ud, anchor := st.EWM[:n], st.EWV[:n], st.Pos[:n], st.UD[:n], st.Anchor[:n]
	cnt, run, xOldNext = cnt[:n], run[:n], xOldNext[:n]
	for i, xn := range xNew {
		if cnt[i] < ww {
			// Warming up (or not started): every statistic is NaN.
			mean[i], std[i], skew[i], kurt[i], z[i] = nan, nan, nan, nan, nan
			sum[i], ac1[i], slope[i], r2[i] = nan, nan, nan, nan
			ewm[i], ewstd[i], posShare[i], updown[i] = nan, nan, nan, nan
			if hasRV {
				rv[i] = nan
			}
			continue
		}
		if run[i] >= ww {
			// Every value in the window equals the latest: exact results,
			// whatever the sums' rounding.
			mean[i], std[i], skew[i], kurt[i], z[i] = xn, 0, nan, nan, nan
			sum[i] = fw * xn
			if hasRV {
				rv[i] = math.Sqrt(fw * float64(xn*xn))
			}
			ac1[i], slope[i], r2[i] = nan, 0, nan
		} else {
			s1, s2 := s1s[i]+c1s[i], s2s[i]+c2s[i]
			sh := shift[i]
			if tNow-anchor[i] >= uint32(ww) && ratio1*(s1*s1) > ratioW*s2 && math.Abs(s1) > floorW*math.Abs(sh) {
				flagged = append(flagged, int32(base+i))
			}
			md := s1 * invW
			m2 := s2 - float64(s1*md)
			sum[i] = sumS[i] + sumC[i]
			if hasRV {
				rv[i] = math.Sqrt(max(sqS[i]+sqC[i], 0))
			}
			if m2 > 0 {
				// Lag-1 autocovariance about the window mean from the
				// shifted pair sum: the pairs' "later" values miss the
				// oldest, their "earlier" values miss the newest.
				a := s1 - (xOldNext[i] - sh)
				bb := s1 - (xn - sh)
				inv := 1 / m2 // one division for ac1 and r2
				num := ((pS[i] + pC[i]) - float64(md*(a+bb))) + float64(float64(fm1*md)*md)
				ac1[i] = num * inv
				cov := (tS[i] + tC[i]) - float64(tbar*s1)
				slope[i] = cov * invStt
				r2[i] = min(cov*cov*invStt*inv, 1)
			} else {
				ac1[i], slope[i], r2[i] = nan, 0, nan
			}
		}
		ewm[i] = ewmS[i]
		ewstd[i] = math.Sqrt(max(ewvS[i], 0))
		posShare[i] = float64(pos[i]) / fw // exact: no reciprocal
		updown[i] = float64(ud[i])
	}
	return flagged
}
