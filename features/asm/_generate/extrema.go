package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// keepLater merges a later candidate (v, t) into the running extremes
// (x, xt): for a max x, xt = v, t where v >= x (ties to the later step), for
// a min where v <= x; Go's `if v >= x { x, xt = v, t }`. VCMPPD(imm, x, v)
// is v <imm> x, and VBLENDVPD(mask, a, b, d) is d = mask ? a : b. v is
// loaded unless it is a register already.
func keepLater(x, xt VecVirtual, v, t Op, isMax bool) {
	vv, ok := v.(VecVirtual)
	if !ok {
		vv = YMM()
		VMOVUPD(v, vv)
	}
	pred := cmpLEOS
	if isMax {
		pred = cmpGEOS
	}
	m := YMM()
	VCMPPD(U8(pred), x, vv, m)
	VBLENDVPD(m, vv, x, x)
	VBLENDVPD(m, t, xt, xt)
}

var extremaSlices = []string{"mx", "mxt", "mn", "mnt"}

func extremaMerge() {
	TEXT("extremaMergeAVX2", NOSPLIT, "func(mx, mxt, mn, mnt, lx, lxt, ln, lnt []float64)")
	Pragma("noescape")
	Doc("extremaMergeAVX2 is extremaMergeGeneric on AVX2; len(mx) must be a multiple of 4.")
	l := newLoop("mx", append(extremaSlices, "lx", "lxt", "ln", "lnt")...)
	keepLaterLoop(l, "extremamerge", func(off int, v, vt string, x, xt VecVirtual) {
		VMOVUPD(l.at(v, off), x)
		VMOVUPD(l.at(vt, off), xt)
	})
}

func extremaPrepend() {
	TEXT("extremaPrependAVX2", NOSPLIT, "func(mx, mxt, mn, mnt, lx, lxt, ln, lnt, x []float64, t float64)")
	Pragma("noescape")
	Doc("extremaPrependAVX2 is extremaPrependGeneric on AVX2; len(x) must be a multiple of 4.")
	l := newLoop("x", append(extremaSlices, "lx", "lxt", "ln", "lnt", "x")...)
	t := YMM()
	VBROADCASTSD(Load(Param("t"), XMM()), t)
	keepLaterLoop(l, "extremaprepend", func(off int, _, _ string, x, xt VecVirtual) {
		VMOVUPD(l.at("x", off), x)
		VMOVAPD(t, xt)
	})
}

// keepLaterLoop is the loop of merge and prepend: per vector and extreme,
// start from init's (x, xt), keep the later part lx/ln where it wins, and
// store the result to mx/mn. init gets the destination's names.
func keepLaterLoop(l *loop, name string, init func(off int, v, vt string, x, xt VecVirtual)) {
	l.run(name, 2, func(off int) {
		for _, isMax := range []bool{true, false} {
			v, vt, lv, lt := "mn", "mnt", "ln", "lnt"
			if isMax {
				v, vt, lv, lt = "mx", "mxt", "lx", "lxt"
			}
			x, xt := YMM(), YMM()
			init(off, v, vt, x, xt)
			keepLater(x, xt, l.at(lv, off), l.at(lt, off), isMax)
			VMOVUPD(x, l.at(v, off))
			VMOVUPD(xt, l.at(vt, off))
		}
	})
}

// extremaWindow has more slices (20) than there are registers: every
// pointer is loaded from the argument frame where it is used (the loads hit
// L1), indexed from the start by a counter i.
func extremaWindow() {
	TEXT("extremaWindowAVX2", NOSPLIT,
		"func(max, min, maxAge, minAge, rangePos, ox, oxt, on, ont, mx, mxt, mn, mnt, cx, cxt, cn, cnt2, last []float64, cnt []int32, fw, t float64)")
	Pragma("noescape")
	Doc("extremaWindowAVX2 is extremaWindowGeneric on AVX2; len(last) must be a multiple of 4.")
	n, i := GP64(), GP64()
	Load(Param("last").Len(), n)
	XORQ(i, i)
	at := func(name string) Mem {
		p := Load(Param(name).Base(), GP64())
		return Mem{Base: p, Index: i, Scale: elemSize}
	}
	fw, t, nan := YMM(), YMM(), YMM()
	VBROADCASTSD(Load(Param("fw"), XMM()), fw)
	VBROADCASTSD(Load(Param("t"), XMM()), t)
	VMOVUPD(nanBits, nan)
	Label("extremawindow_loop")
	CMPQ(i, n)
	JGE(LabelRef("extremawindow_done"))
	// last joins the current block's prefix, stored back.
	last := YMM()
	VMOVUPD(at("last"), last)
	cx, cxt, cn, cnt2 := YMM(), YMM(), YMM(), YMM()
	VMOVUPD(at("cx"), cx)
	VMOVUPD(at("cxt"), cxt)
	VMOVUPD(at("cn"), cn)
	VMOVUPD(at("cnt2"), cnt2)
	keepLater(cx, cxt, last, t, true)
	keepLater(cn, cnt2, last, t, false)
	VMOVUPD(cx, at("cx"))
	VMOVUPD(cxt, at("cxt"))
	VMOVUPD(cn, at("cn"))
	VMOVUPD(cnt2, at("cnt2"))
	// The oldest part, then the later two merged in.
	hi, hit, lo, lot := YMM(), YMM(), YMM(), YMM()
	VMOVUPD(at("ox"), hi)
	VMOVUPD(at("oxt"), hit)
	VMOVUPD(at("on"), lo)
	VMOVUPD(at("ont"), lot)
	keepLater(hi, hit, at("mx"), at("mxt"), true)
	keepLater(lo, lot, at("mn"), at("mnt"), false)
	keepLater(hi, hit, cx, cxt, true)
	keepLater(lo, lot, cn, cnt2, false)
	// pos = hi > lo ? (last-lo)/(hi-lo) : NaN
	gt, pos, d := YMM(), YMM(), YMM()
	VCMPPD(U8(cmpGTOS), lo, hi, gt)
	VMOVAPD(last, pos)
	VSUBPD(lo, pos, pos)
	VSUBPD(lo, hi, d)
	VDIVPD(d, pos, pos)
	VBLENDVPD(gt, pos, nan, pos)
	// warm = float64(cnt) < fw: every output NaN; the ages are t - NaN.
	warm, c := YMM(), YMM()
	cp := Load(Param("cnt").Base(), GP64())
	VCVTDQ2PD(Mem{Base: cp, Index: i, Scale: 4}, c)
	VCMPPD(U8(cmpLTOS), fw, c, warm)
	VBLENDVPD(warm, nan, hi, hi)
	VBLENDVPD(warm, nan, lo, lo)
	VBLENDVPD(warm, nan, hit, hit)
	VBLENDVPD(warm, nan, lot, lot)
	VBLENDVPD(warm, nan, pos, pos)
	VSUBPD(hit, t, hit) // t - hit
	VSUBPD(lot, t, lot)
	VMOVUPD(hi, at("max"))
	VMOVUPD(lo, at("min"))
	VMOVUPD(hit, at("maxAge"))
	VMOVUPD(lot, at("minAge"))
	VMOVUPD(pos, at("rangePos"))
	ADDQ(Imm(lanes), i)
	JMP(LabelRef("extremawindow_loop"))
	Label("extremawindow_done")
	VZEROUPPER()
	RET()
}
