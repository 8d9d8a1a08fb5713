package asm

import "math"

// The pure-Go extrema kernels (see extrema.go). The selects are written as
// plain ifs: the AVX2 versions blend with the same comparisons, so NaN (which
// the engine never passes) would also take the same side in both.

func extremaMergeGeneric(e, later *Extrema) {
	n := len(e.Max)
	mx, mxt, mn, mnt := e.Max[:n], e.MaxT[:n], e.Min[:n], e.MinT[:n]
	lx, lxt, ln, lnt := later.Max[:n], later.MaxT[:n], later.Min[:n], later.MinT[:n]
	for i := range n {
		if lx[i] >= mx[i] {
			mx[i], mxt[i] = lx[i], lxt[i]
		}
		if ln[i] <= mn[i] {
			mn[i], mnt[i] = ln[i], lnt[i]
		}
	}
}

func extremaPrependGeneric(dst, later *Extrema, x []float64, t float64) {
	n := len(x)
	mx, mxt, mn, mnt := dst.Max[:n], dst.MaxT[:n], dst.Min[:n], dst.MinT[:n]
	lx, lxt, ln, lnt := later.Max[:n], later.MaxT[:n], later.Min[:n], later.MinT[:n]
	for i, v := range x {
		hi, hit := v, t
		if lx[i] >= v {
			hi, hit = lx[i], lxt[i]
		}
		lo, lot := v, t
		if ln[i] <= v {
			lo, lot = ln[i], lnt[i]
		}
		mx[i], mxt[i], mn[i], mnt[i] = hi, hit, lo, lot
	}
}

func extremaWindowGeneric(max, min, maxAge, minAge, rangePos []float64, old, mid, cur *Extrema,
	last []float64, cnt []int32, fw, t float64) {
	n := len(last)
	max, min, maxAge, minAge, rangePos, cnt = max[:n], min[:n], maxAge[:n], minAge[:n], rangePos[:n], cnt[:n]
	ox, oxt, on, ont := old.Max[:n], old.MaxT[:n], old.Min[:n], old.MinT[:n]
	mx, mxt, mn, mnt := mid.Max[:n], mid.MaxT[:n], mid.Min[:n], mid.MinT[:n]
	cx, cxt, cn, cnt2 := cur.Max[:n], cur.MaxT[:n], cur.Min[:n], cur.MinT[:n]
	nan := math.NaN()
	for i := range n {
		v := last[i]
		if v >= cx[i] {
			cx[i], cxt[i] = v, t
		}
		if v <= cn[i] {
			cn[i], cnt2[i] = v, t
		}
		hi, hit, lo, lot := ox[i], oxt[i], on[i], ont[i]
		if mx[i] >= hi {
			hi, hit = mx[i], mxt[i]
		}
		if mn[i] <= lo {
			lo, lot = mn[i], mnt[i]
		}
		if cx[i] >= hi {
			hi, hit = cx[i], cxt[i]
		}
		if cn[i] <= lo {
			lo, lot = cn[i], cnt2[i]
		}
		pos := nan
		if hi > lo {
			pos = (v - lo) / (hi - lo)
		}
		if float64(cnt[i]) < fw {
			hi, lo, hit, lot, pos = nan, nan, nan, nan, nan
		}
		max[i], min[i], maxAge[i], minAge[i], rangePos[i] = hi, lo, t-hit, t-lot, pos
	}
}
