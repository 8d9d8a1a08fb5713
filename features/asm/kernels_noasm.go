//go:build !amd64 || !gc || noasm

package asm

// No assembly in this build (not amd64, gccgo, or -tags noasm): the exported
// kernels always take the generic path, and these are never called.

const haveAsm = false

func addMomentsAVX2(shift, s1, s2, s3, s4, c1, c2, c3, c4, x []float64) { panic("asm: no AVX2 build") }

func momentStatsAVX2(mean, std, skew, kurt, z, shift, s1, s2, s3, s4, c1, c2, c3, c4, last []float64,
	invW, corr, c15 float64) {
	panic("asm: no AVX2 build")
}

func rollProductsAVX2(s, c, aNew, bNew, aOld, bOld []float64) { panic("asm: no AVX2 build") }

func sumNaNAVX2(x []float64, s, c *[4]float64, n *[4]int) { panic("asm: no AVX2 build") }

func extremaMergeAVX2(mx, mxt, mn, mnt, lx, lxt, ln, lnt []float64) { panic("asm: no AVX2 build") }

func extremaPrependAVX2(mx, mxt, mn, mnt, lx, lxt, ln, lnt, x []float64, t float64) {
	panic("asm: no AVX2 build")
}

func extremaWindowAVX2(max, min, maxAge, minAge, rangePos, ox, oxt, on, ont, mx, mxt, mn, mnt,
	cx, cxt, cn, cnt2, last []float64, cnt []int32, fw, t float64) {
	panic("asm: no AVX2 build")
}

func windowStatsAVX2(mean, std, skew, kurt, z, sum, rv, ac1, slope, r2, ewm, ewstd, posShare, updown,
	shift, s1, c1, s2, c2, sumS, sumC, sqS, sqC, pS, pC, tS, tC, ewmS, ewvS, xNew, xOldNext []float64,
	pos, ud, cnt, run, flagged []int32, anchor []uint32,
	wm1 int64, wu, tNow uint32, fw, invW, fm1, tbar, invStt, ratio1, ratioW, floorW float64) int {
	panic("asm: no AVX2 build")
}

func windowRollAVX2(shift, s1, s2, s3, s4, c1, c2, c3, c4, tS, tC, sumS, sumC, sqS, sqC, pS, pC, ewm, ewv,
	xNew, xPrev, xOld, xOldNext []float64, pos, ud []int32, fm1, alpha, oneMinus float64) {
	panic("asm: no AVX2 build")
}
