// Command _generate writes features/asm's AVX2 kernels (kernels_amd64.s) and
// their Go declarations (kernels_amd64.go) with avo. Run it through
// `make generate`; `make check-generated` fails when the committed files
// differ from what it writes.
//
// Every kernel performs the IEEE operations of its Go version
// (kernels_generic.go) in the same order, four instruments per YMM register,
// so that both paths agree bit for bit; the comments name the Go
// expression each step mirrors. No FMA: a fused multiply-add rounds once
// where Go rounds twice. The Go wrappers (kernels.go) pass whole vectors
// only (lengths that are multiples of 4) and run the last n%4 instruments
// through the Go version.
//
// Register operands follow Go assembly's order: sources first, destination
// last, so VSUBPD(b, a, d) is d = a - b and VCMPPD(imm, b, a, d) is
// d = a <imm> b.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// VCMPPD predicates.
const (
	cmpLEOS  = 0x02 // a <= b, false if either is NaN
	cmpORDQ  = 0x07 // neither is NaN
	cmpGEOS  = 0x0d // a >= b, false if either is NaN
	lanes    = 4    // float64 per YMM register
	elemSize = 8
)

var (
	absMask, signMask, nanBits Mem
	one, two, three, four, six Mem
)

func main() {
	ConstraintExpr("amd64,gc,!noasm")

	absMask = constant("absmask", 0x7fffffffffffffff)
	signMask = constant("signmask", 0x8000000000000000)
	nanBits = constant("nan", 0x7ff8000000000001) // math.NaN()
	one = constant("one", 0x3ff0000000000000)
	two = constant("two", 0x4000000000000000)
	three = constant("three", 0x4008000000000000)
	four = constant("four", 0x4010000000000000)
	six = constant("six", 0x4018000000000000)

	addMoments()
	rollMoments()
	momentStats()
	ewMeanVar()
	rollProducts()
	sumNaN()
	extremaPush()
	extremaMerge()
	extremaPrepend()
	extremaWindow()
	Generate()
}

// constant is a read-only 32-byte vector of v in every lane.
func constant(name string, v uint64) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := range lanes {
		DATA(i*elemSize, U64(v))
	}
	return m
}

// loop is a kernel's main loop over vectors: the slices' base pointers are
// moved to their ends and a negative element index counts up to zero, so
// one register serves every slice and the flags of the increment end the
// loop. body(off) processes the vector at element index i+off; the loop
// runs it unroll times per iteration while enough vectors remain, then once
// per iteration for the rest.
type loop struct {
	n    GPVirtual // element count, a multiple of lanes
	i    GPVirtual // negative index
	end  GPVirtual // i + n, for slices whose pointer is not moved (momentStats)
	ptrs map[string]GPVirtual

	epilogue func() // after the loop, before VZEROUPPER and RET
}

func newLoop(lenOf string, slices ...string) *loop {
	l := &loop{ptrs: map[string]GPVirtual{}}
	l.n = GP64()
	Load(Param(lenOf).Len(), l.n)
	for _, s := range slices {
		p := GP64()
		Load(Param(s).Base(), p)
		LEAQ(Mem{Base: p, Index: l.n, Scale: elemSize}, p)
		l.ptrs[s] = p
	}
	l.i = GP64()
	MOVQ(l.n, l.i)
	NEGQ(l.i)
	return l
}

// at is slice s's element i+off.
func (l *loop) at(s string, off int) Mem {
	p, ok := l.ptrs[s]
	if !ok {
		panic("no slice " + s)
	}
	return Mem{Base: p, Index: l.i, Scale: elemSize, Disp: off * elemSize}
}

func (l *loop) run(name string, unroll int, body func(off int)) {
	single, done := name+"_single", name+"_done"
	if unroll > 1 {
		big := name + "_unrolled"
		step := unroll * lanes
		CMPQ(l.i, I32(-step))
		JG(LabelRef(single))
		Label(big)
		for u := range unroll {
			body(u * lanes)
		}
		ADDQ(Imm(uint64(step)), l.i)
		CMPQ(l.i, I32(-step))
		JLE(LabelRef(big))
	}
	Label(single)
	TESTQ(l.i, l.i)
	JZ(LabelRef(done))
	loopLabel := name + "_loop"
	Label(loopLabel)
	body(0)
	ADDQ(Imm(lanes), l.i)
	JNZ(LabelRef(loopLabel))
	Label(done)
	if l.epilogue != nil {
		l.epilogue()
	}
	VZEROUPPER()
	RET()
}

// neumaier adds v to the compensated sum (s, c) in place, as Go's
//
//	t := s + v
//	if math.Abs(s) >= math.Abs(v) { c += (s - t) + v } else { c += (v - t) + s }
//	s = t
//
// with the branch as a blend: hi, lo = s, v where |s| >= |v| and v, s
// elsewhere (a NaN compares false, so it takes Go's else branch too), then
// c = c + ((hi - t) + lo). abs holds absMask.
func neumaier(s, c, v, abs VecVirtual) {
	t := YMM()
	VADDPD(v, s, t)
	as, av := YMM(), YMM()
	VANDPD(abs, s, as)
	VANDPD(abs, v, av)
	ge := YMM()
	VCMPPD(U8(cmpGEOS), av, as, ge)
	hi, lo := YMM(), YMM()
	VBLENDVPD(ge, s, v, hi)
	VBLENDVPD(ge, v, s, lo)
	VSUBPD(t, hi, hi)
	VADDPD(lo, hi, hi)
	VADDPD(hi, c, c)
	VMOVAPD(t, s)
}

// powers returns d, d2 = d*d, d3 = d2*d, d4 = d2*d2 for d = x - shift.
func powers(x, shift Mem) [4]VecVirtual {
	d, d2, d3, d4 := YMM(), YMM(), YMM(), YMM()
	VMOVUPD(x, d)
	VSUBPD(shift, d, d)
	VMULPD(d, d, d2)
	VMULPD(d, d2, d3)
	VMULPD(d2, d2, d4)
	return [4]VecVirtual{d, d2, d3, d4}
}

var momentSlices = []string{"shift", "s1", "s2", "s3", "s4", "c1", "c2", "c3", "c4"}

// addSum does (s_k, c_k) += v in memory.
func addSum(l *loop, k, off int, v, abs VecVirtual, negate bool) {
	sName, cName := fmt.Sprintf("s%d", k), fmt.Sprintf("c%d", k)
	s, c := YMM(), YMM()
	VMOVUPD(l.at(sName, off), s)
	VMOVUPD(l.at(cName, off), c)
	neumaier(s, c, v, abs)
	VMOVUPD(s, l.at(sName, off))
	VMOVUPD(c, l.at(cName, off))
}

func addMoments() {
	TEXT("addMomentsAVX2", NOSPLIT, "func(shift, s1, s2, s3, s4, c1, c2, c3, c4, x []float64)")
	Pragma("noescape")
	Doc("addMomentsAVX2 is addMomentsGeneric on AVX2; len(x) must be a multiple of 4.")
	l := newLoop("x", append(momentSlices, "x")...)
	abs := YMM()
	VMOVUPD(absMask, abs)
	l.run("addmoments", 1, func(off int) {
		p := powers(l.at("x", off), l.at("shift", off))
		for k := range 4 {
			addSum(l, k+1, off, p[k], abs, false)
		}
	})
}

func rollMoments() {
	TEXT("rollMomentsAVX2", NOSPLIT, "func(shift, s1, s2, s3, s4, c1, c2, c3, c4, xNew, xOld []float64)")
	Pragma("noescape")
	Doc("rollMomentsAVX2 is rollMomentsGeneric on AVX2; len(xNew) must be a multiple of 4.")
	l := newLoop("xNew", append(momentSlices, "xNew", "xOld")...)
	abs, sign := YMM(), YMM()
	VMOVUPD(absMask, abs)
	VMOVUPD(signMask, sign)
	l.run("rollmoments", 1, func(off int) {
		pn := powers(l.at("xNew", off), l.at("shift", off))
		po := powers(l.at("xOld", off), l.at("shift", off))
		for k := range 4 {
			sName, cName := fmt.Sprintf("s%d", k+1), fmt.Sprintf("c%d", k+1)
			s, c := YMM(), YMM()
			VMOVUPD(l.at(sName, off), s)
			VMOVUPD(l.at(cName, off), c)
			neumaier(s, c, pn[k], abs)
			VXORPD(sign, po[k], po[k]) // -o^k: Go's negation flips the sign bit
			neumaier(s, c, po[k], abs)
			VMOVUPD(s, l.at(sName, off))
			VMOVUPD(c, l.at(cName, off))
		}
	})
}

// storeIfSet stores v to output slice name's element i+off unless the slice
// is nil. The output pointers stay in the argument frame (there are not
// registers enough for all fifteen slices); the loads hit L1.
func storeIfSet(l *loop, name string, off int, v VecVirtual) {
	p := Load(Param(name).Base(), GP64())
	skip := fmt.Sprintf("momentstats_skip_%s_%d", name, off)
	TESTQ(p, p)
	JZ(LabelRef(skip))
	// The pointer is the slice's start: index it from the end-relative i.
	VMOVUPD(v, Mem{Base: p, Index: l.end, Scale: elemSize, Disp: off * elemSize})
	Label(skip)
}

func momentStats() {
	TEXT("momentStatsAVX2", NOSPLIT,
		"func(mean, std, skew, kurt, z, shift, s1, s2, s3, s4, c1, c2, c3, c4, last []float64, invW, corr, c15 float64)")
	Pragma("noescape")
	Doc("momentStatsAVX2 is momentStatsGeneric on AVX2; len(shift) must be a multiple of 4,",
		"and non-nil outputs and last (if z is not nil) as long.")
	l := newLoop("shift", momentSlices...)
	// Output pointers index with the element count from the start: i + n.
	l.end = GP64()
	invW, corr, c15 := YMM(), YMM(), YMM()
	VBROADCASTSD(Load(Param("invW"), XMM()), invW)
	VBROADCASTSD(Load(Param("corr"), XMM()), corr)
	VBROADCASTSD(Load(Param("c15"), XMM()), c15)
	l.run("momentstats", 1, func(off int) {
		MOVQ(l.i, l.end)
		ADDQ(l.n, l.end)
		var s [4]VecVirtual
		for k := range 4 {
			s[k] = YMM()
			VMOVUPD(l.at(fmt.Sprintf("s%d", k+1), off), s[k])
			VADDPD(l.at(fmt.Sprintf("c%d", k+1), off), s[k], s[k]) // s_k = S_k + C_k
		}
		mu, e2, e3, e4 := s[0], s[1], s[2], s[3]
		VMULPD(invW, mu, mu) // mu = s1*invW
		VMULPD(invW, e2, e2)
		VMULPD(invW, e3, e3)
		VMULPD(invW, e4, e4)
		mu2 := YMM()
		VMULPD(mu, mu, mu2)
		m2 := YMM()
		VSUBPD(mu2, e2, m2) // m2 = e2 - mu2
		// m3 = (e3 - 3*(mu*e2)) + 2*(mu*mu2), into e3
		t := YMM()
		VMULPD(e2, mu, t)
		VMULPD(three, t, t)
		VSUBPD(t, e3, e3)
		VMULPD(mu2, mu, t)
		VMULPD(two, t, t)
		VADDPD(t, e3, e3)
		m3 := e3
		// m4 = ((e4 - 4*(mu*e3)) + 6*(mu2*e2)) - 3*(mu2*mu2), into e4; e3 is
		// already m3, so reload s3*invW.
		e3b := YMM()
		VMOVUPD(l.at("s3", off), e3b)
		VADDPD(l.at("c3", off), e3b, e3b)
		VMULPD(invW, e3b, e3b)
		VMULPD(e3b, mu, t)
		VMULPD(four, t, t)
		VSUBPD(t, e4, e4)
		VMULPD(e2, mu2, t)
		VMULPD(six, t, t)
		VADDPD(t, e4, e4)
		VMULPD(mu2, mu2, t)
		VMULPD(three, t, t)
		VSUBPD(t, e4, e4)
		m4 := e4
		// mean = shift + mu
		mean := YMM()
		VMOVUPD(l.at("shift", off), mean)
		VADDPD(mu, mean, mean)
		storeIfSet(l, "mean", off, mean)
		// flat: m2 <= 0 (all equal); then std 0, z, skew, kurt NaN.
		flat := YMM()
		VXORPD(t, t, t)
		VCMPPD(U8(cmpLEOS), t, m2, flat)
		nan := YMM()
		VMOVUPD(nanBits, nan)
		// std = sqrt(m2*corr), or 0
		sd := YMM()
		VMULPD(corr, m2, sd)
		VSQRTPD(sd, sd)
		VBLENDVPD(flat, t, sd, t) // t = flat ? 0 : sd
		storeIfSet(l, "std", off, t)
		// isd = 1/std; isd2 = isd*isd
		isd := YMM()
		VMOVUPD(one, isd)
		VDIVPD(sd, isd, isd)
		isd2 := YMM()
		VMULPD(isd, isd, isd2)
		// skew = m3*((isd2*isd)*c15)
		VMULPD(isd, isd2, t)
		VMULPD(c15, t, t)
		VMULPD(t, m3, m3)
		VBLENDVPD(flat, nan, m3, m3)
		storeIfSet(l, "skew", off, m3)
		// kurt = m4*(i2*i2) - 3 with i2 = isd2*corr
		VMULPD(corr, isd2, isd2)
		VMULPD(isd2, isd2, isd2)
		VMULPD(isd2, m4, m4)
		VSUBPD(three, m4, m4)
		VBLENDVPD(flat, nan, m4, m4)
		storeIfSet(l, "kurt", off, m4)
		// z = ((last - shift) - mu)*isd, only if z is wanted (last may be nil)
		zp := Load(Param("z").Base(), GP64())
		skip := fmt.Sprintf("momentstats_skip_z_%d", off)
		TESTQ(zp, zp)
		JZ(LabelRef(skip))
		lp := Load(Param("last").Base(), GP64())
		zv := YMM()
		VMOVUPD(Mem{Base: lp, Index: l.end, Scale: elemSize, Disp: off * elemSize}, zv)
		VSUBPD(l.at("shift", off), zv, zv)
		VSUBPD(mu, zv, zv)
		VMULPD(isd, zv, zv)
		VBLENDVPD(flat, nan, zv, zv)
		VMOVUPD(zv, Mem{Base: zp, Index: l.end, Scale: elemSize, Disp: off * elemSize})
		Label(skip)
	})
}

func ewMeanVar() {
	TEXT("ewMeanVarAVX2", NOSPLIT, "func(mean, vari, x []float64, alpha, oneMinus float64)")
	Pragma("noescape")
	Doc("ewMeanVarAVX2 is ewMeanVarGeneric on AVX2; len(x) must be a multiple of 4.")
	l := newLoop("x", "mean", "vari", "x")
	alpha, om := YMM(), YMM()
	VBROADCASTSD(Load(Param("alpha"), XMM()), alpha)
	VBROADCASTSD(Load(Param("oneMinus"), XMM()), om)
	l.run("ewmeanvar", 4, func(off int) {
		m, d, ad := YMM(), YMM(), YMM()
		VMOVUPD(l.at("mean", off), m)
		VMOVUPD(l.at("x", off), d)
		VSUBPD(m, d, d)      // d = x - mean
		VMULPD(d, alpha, ad) // ad = alpha*d
		VADDPD(ad, m, m)     // mean += ad
		VMOVUPD(m, l.at("mean", off))
		VMULPD(d, ad, ad) // ad*d
		v := YMM()
		VMOVUPD(l.at("vari", off), v)
		VADDPD(ad, v, v) // vari + ad*d
		VMULPD(v, om, v) // (1-alpha)*(...)
		VMOVUPD(v, l.at("vari", off))
	})
}

func rollProducts() {
	TEXT("rollProductsAVX2", NOSPLIT, "func(s, c, aNew, bNew, aOld, bOld []float64)")
	Pragma("noescape")
	Doc("rollProductsAVX2 is rollProductsGeneric on AVX2; len(s) must be a multiple of 4.")
	l := newLoop("s", "s", "c", "aNew", "bNew", "aOld", "bOld")
	abs, sign := YMM(), YMM()
	VMOVUPD(absMask, abs)
	VMOVUPD(signMask, sign)
	l.run("rollproducts", 2, func(off int) {
		p, q := YMM(), YMM()
		VMOVUPD(l.at("aNew", off), p)
		VMULPD(l.at("bNew", off), p, p)
		VMOVUPD(l.at("aOld", off), q)
		VMULPD(l.at("bOld", off), q, q)
		VXORPD(sign, q, q) // -q
		s, c := YMM(), YMM()
		VMOVUPD(l.at("s", off), s)
		VMOVUPD(l.at("c", off), c)
		neumaier(s, c, p, abs)
		neumaier(s, c, q, abs)
		VMOVUPD(s, l.at("s", off))
		VMOVUPD(c, l.at("c", off))
	})
}

// sumNaN keeps the four lanes of SumNaN in one register each for s, c and
// the count. Go skips a NaN; here a NaN becomes +0 (ANDed with its ORD
// mask) and is added. That leaves s and c bit-identical: s starts at +0
// and, rounding to nearest, a sum is -0 only if both addends are, so s
// never is -0 and s + 0 == s; for finite s the compensation term is then
// (s - s) + 0 = +0, and c + +0 == c since c is never -0 either. For an
// infinite s the lane's c may differ (Inf - Inf is NaN), but then the
// combined S is infinite or NaN and SumNaN returns S, or NaN, regardless
// of c. The count subtracts the mask (all ones, -1) per non-NaN value.
func sumNaN() {
	TEXT("sumNaNAVX2", NOSPLIT, "func(x []float64, s, c *[4]float64, n *[4]int)")
	Pragma("noescape")
	Doc("sumNaNAVX2 adds x to SumNaN's lanes (x[i] to lane i%4) on AVX2; len(x)",
		"must be a multiple of 4.")
	sp := Load(Param("s"), GP64())
	cp := Load(Param("c"), GP64())
	np := Load(Param("n"), GP64())
	s, c, cnt := YMM(), YMM(), YMM()
	VMOVUPD(Mem{Base: sp}, s)
	VMOVUPD(Mem{Base: cp}, c)
	VMOVDQU(Mem{Base: np}, cnt)
	abs := YMM()
	VMOVUPD(absMask, abs)
	l := newLoop("x", "x")
	l.epilogue = func() {
		VMOVUPD(s, Mem{Base: sp})
		VMOVUPD(c, Mem{Base: cp})
		VMOVDQU(cnt, Mem{Base: np})
	}
	l.run("sumnan", 2, func(off int) {
		v, ord := YMM(), YMM()
		VMOVUPD(l.at("x", off), v)
		VCMPPD(U8(cmpORDQ), v, v, ord)
		VANDPD(ord, v, v)
		VPSUBQ(ord, cnt, cnt)
		neumaier(s, c, v, abs)
	})
}
