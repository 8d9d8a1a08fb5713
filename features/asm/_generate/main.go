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
	cmpLTOS  = 0x01 // a < b, false if either is NaN
	cmpLEOS  = 0x02 // a <= b, false if either is NaN
	cmpORDQ  = 0x07 // neither is NaN
	cmpGEOS  = 0x0d // a >= b, false if either is NaN
	cmpGTOS  = 0x0e // a > b, false if either is NaN
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
	momentStats()
	rollProducts()
	sumNaN()
	extremaMerge()
	extremaPrepend()
	extremaWindow()
	windowRoll()
	windowStats()
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
// stats.NeumaierAdd (internal/stats)
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

// paramAt is scalar parameter name's address in the argument frame, for
// instructions that read it from memory (VBROADCASTSD, VPBROADCASTQ).
func paramAt(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// broadcast32 sets every dword of x to uint32 parameter name, through a
// general register (go vet takes VPBROADCASTD's memory operand for more
// than 4 bytes).
func broadcast32(name string, x VecVirtual) {
	VMOVD(Load(Param(name), GP32()), x)
	VPBROADCASTD(x, x)
}

// frameAt is slice name's element i+off (elements of size bytes) for a
// slice whose pointer stays in the argument frame, like storeIfSet's: the
// kernels below read more slices than there are registers. l.end must hold
// i + n.
func (l *loop) frameAt(name string, off int, size uint8) Mem {
	p := Load(Param(name).Base(), GP64())
	return Mem{Base: p, Index: l.end, Scale: size, Disp: off * int(size)}
}

// get is slice name's element i+off, through its moved pointer if it has
// one, else through the argument frame.
func (l *loop) get(name string, off int) Mem {
	if _, ok := l.ptrs[name]; ok {
		return l.at(name, off)
	}
	return l.frameAt(name, off, elemSize)
}

// The counts are int32, as in Go. A comparison's mask is -1 (all ones) in
// a true lane, so Go's b(c) (1 or 0) is -mask and sgn(d) = b(d > 0) -
// b(d < 0) is mask(d < 0) - mask(d > 0), in int64 lanes; narrow then keeps
// the low dword of each lane (exact: the values are small).

// sgnOf returns sgn(a - b) in int64 lanes.
func sgnOf(a, b, zero VecVirtual) VecVirtual {
	d, gt, lt := YMM(), YMM(), YMM()
	VSUBPD(b, a, d)
	VCMPPD(U8(cmpGTOS), zero, d, gt)
	VCMPPD(U8(cmpLTOS), zero, d, lt)
	VPSUBQ(gt, lt, lt) // mask(d < 0) - mask(d > 0)
	return lt
}

// narrow returns v's four int64 lanes as four int32 in an XMM register.
func narrow(v VecVirtual) VecVirtual {
	hi, x := XMM(), XMM()
	VEXTRACTI128(U8(1), v, hi)
	VSHUFPS(U8(0x88), hi, v.AsX(), x) // dwords 0 and 2 of each half
	return x
}

// addInt32 adds v's int64 lanes to the four int32 at m.
func addInt32(m Mem, v VecVirtual) {
	x := narrow(v)
	VPADDD(m, x, x)
	VMOVDQU(x, m)
}

// windowRoll fuses the window step's updates into one pass: the values
// are loaded once, the differences stay in registers, and the constants
// (w-1, alpha, 1-alpha) are broadcast from the argument frame. The sums are
// updated in dependency order, so that each value is used while it is in a
// register: counts and lag-1 products (which need xPrev and xOldNext), the
// sums of x and x^2 and the exponentially weighted state (x only), the OLS
// cross term (S1 before the slide), then the moments. rv is decided once
// per call: two loops, with and without the squares. Seven slices (xNew,
// xOld, shift, s1, c1, s2, c2) have their pointers in registers; the other
// eighteen's stay in the frame, each loaded once per vector for both a
// sum's load and its store (L1 hits): there are not registers enough for
// all twenty-five.
func windowRoll() {
	TEXT("windowRollAVX2", NOSPLIT,
		"func(shift, s1, s2, s3, s4, c1, c2, c3, c4, tS, tC, sumS, sumC, sqS, sqC, pS, pC, ewm, ewv,"+
			" xNew, xPrev, xOld, xOldNext []float64, pos, ud []int32, fm1, alpha, oneMinus float64)")
	Pragma("noescape")
	Doc("windowRollAVX2 is windowRollGeneric on AVX2; len(xNew) must be a multiple of 4,",
		"and every slice as long (sqS and sqC nil or as long).")
	l := newLoop("xNew", "xNew", "xOld", "shift", "s1", "c1", "s2", "c2")
	l.end = GP64()
	abs, sign := YMM(), YMM()
	VMOVUPD(absMask, abs)
	VMOVUPD(signMask, sign)
	sq := Load(Param("sqS").Base(), GP64())
	TESTQ(sq, sq)
	JZ(LabelRef("windowroll_norv"))
	l.run("windowroll_rv", 1, func(off int) { windowRollBody(l, off, true, abs, sign) })
	Label("windowroll_norv")
	l.run("windowroll", 1, func(off int) { windowRollBody(l, off, false, abs, sign) })
}

// rollSum does (s, c) += p, then (s, c) += -q, on slices sName and cName
// (windowRoll's RollProducts step); q is negated in place.
func rollSum(l *loop, sName, cName string, off int, p, q, abs, sign VecVirtual) {
	sAt, cAt := l.get(sName, off), l.get(cName, off)
	s, c := YMM(), YMM()
	VMOVUPD(sAt, s)
	VMOVUPD(cAt, c)
	neumaier(s, c, p, abs)
	VXORPD(sign, q, q) // -q
	neumaier(s, c, q, abs)
	VMOVUPD(s, sAt)
	VMOVUPD(c, cAt)
}

func windowRollBody(l *loop, off int, rv bool, abs, sign VecVirtual) {
	MOVQ(l.i, l.end)
	ADDQ(l.n, l.end)
	sh, xn, xo, dn, do := YMM(), YMM(), YMM(), YMM(), YMM()
	VMOVUPD(l.at("shift", off), sh)
	VMOVUPD(l.at("xNew", off), xn)
	VMOVUPD(l.at("xOld", off), xo)
	VSUBPD(sh, xn, dn) // dNew = xn - sh
	VSUBPD(sh, xo, do) // dOld = xo - sh

	// pos += b(xn > 0) - b(xo > 0), that is mask(xo > 0) - mask(xn > 0)
	zero, gn, gp := YMM(), YMM(), YMM()
	VXORPD(zero, zero, zero)
	VCMPPD(U8(cmpGTOS), zero, xn, gn)
	VCMPPD(U8(cmpGTOS), zero, xo, gp)
	VPSUBQ(gn, gp, gp)
	addInt32(l.frameAt("pos", off, 4), gp)
	// ud += sgn(xn - xp) - sgn(xon - xo)
	xp, xon := YMM(), YMM()
	VMOVUPD(l.get("xPrev", off), xp)
	VMOVUPD(l.get("xOldNext", off), xon)
	up := sgnOf(xn, xp, zero)
	VPSUBQ(sgnOf(xon, xo, zero), up, up)
	addInt32(l.frameAt("ud", off, 4), up)

	// pS, pC: p = dNew*dPrev, q = dOldNext*dOld
	VSUBPD(sh, xp, xp) // dPrev
	VMULPD(dn, xp, xp)
	VSUBPD(sh, xon, xon) // dOldNext
	VMULPD(do, xon, xon)
	rollSum(l, "pS", "pC", off, xp, xon, abs, sign)

	// sumS, sumC: p = xn, q = xo (the products with 1 are exact)
	q := YMM()
	VMOVAPD(xo, q)
	rollSum(l, "sumS", "sumC", off, xn, q, abs, sign)
	if rv { // sqS, sqC: p = xn*xn, q = xo*xo
		p := YMM()
		VMULPD(xn, xn, p)
		VMULPD(xo, xo, q)
		rollSum(l, "sqS", "sqC", off, p, q, abs, sign)
	}

	// ewm, ewv: d = xn - ewm; ad = alpha*d; ewm = ewm + ad;
	// ewv = (1-alpha)*(ewv + ad*d)
	emAt, evAt := l.get("ewm", off), l.get("ewv", off)
	m, d, ad, k := YMM(), YMM(), YMM(), YMM()
	VMOVUPD(emAt, m)
	VSUBPD(m, xn, d)
	VBROADCASTSD(paramAt("alpha"), k)
	VMULPD(d, k, ad)
	VADDPD(ad, m, m)
	VMOVUPD(m, emAt)
	VMULPD(d, ad, ad)
	v := YMM()
	VMOVUPD(evAt, v)
	VADDPD(ad, v, v)
	VBROADCASTSD(paramAt("oneMinus"), k)
	VMULPD(v, k, v)
	VMOVUPD(v, evAt)

	// tS, tC: p = dNew*(w-1), q = tOld = (S1 + C1) - dOld, S1 and C1 before
	// the moments' update (the products with 1 are exact)
	s1, c1 := YMM(), YMM()
	VMOVUPD(l.at("s1", off), s1)
	VMOVUPD(l.at("c1", off), c1)
	t := YMM()
	VADDPD(c1, s1, t)
	VSUBPD(do, t, t)
	p := YMM()
	VBROADCASTSD(paramAt("fm1"), p)
	VMULPD(dn, p, p)
	rollSum(l, "tS", "tC", off, p, t, abs, sign)

	// The moments: (S_k, C_k) += dNew^k, then += -(dOld^k), with
	// d2 = d*d, d3 = d2*d, d4 = d2*d2.
	neumaier(s1, c1, dn, abs)
	q = YMM()
	VXORPD(sign, do, q)
	neumaier(s1, c1, q, abs)
	VMOVUPD(s1, l.at("s1", off))
	VMOVUPD(c1, l.at("c1", off))
	d2, o2 := YMM(), YMM()
	VMULPD(dn, dn, d2)
	VMULPD(do, do, o2)
	moment := func(k int, pn, po VecVirtual) { // negates po
		rollSum(l, fmt.Sprintf("s%d", k), fmt.Sprintf("c%d", k), off, pn, po, abs, sign)
	}
	q = YMM()
	VMOVAPD(o2, q) // o2 is needed for o3 and o4
	moment(2, d2, q)
	d3, o3 := YMM(), YMM()
	VMULPD(dn, d2, d3)
	VMULPD(do, o2, o3)
	moment(3, d3, o3)
	VMULPD(d2, d2, d2) // d4
	VMULPD(o2, o2, o2) // o4
	moment(4, d2, o2)
}

// windowStats computes every branch of windowStatsGeneric for all four
// lanes and blends: ok = not warming up and not constant (the Go version's
// else branch), good = ok and m2 > 0; a constant lane takes its flat value
// where ok is clear, then a warming-up lane takes NaN where nw (cnt >= w)
// is clear. The comparisons of cnt and run with w run on int64 lanes
// (VPMOVSXDQ), exact; so do the counts' conversions (VCVTDQ2PD). Go's max(v, 0) is ((0 > v) ? 0 : v) + 0: VMAXPD keeps
// its second operand for a NaN, and adding +0 turns -0 into Go's +0.
// Stale lanes go to flagged through VMOVMSKPD and a bit loop, only when
// there are any.
func windowStats() {
	TEXT("windowStatsAVX2", NOSPLIT,
		"func(mean, std, skew, kurt, z, sum, rv, ac1, slope, r2, ewm, ewstd, posShare, updown,"+
			" shift, s1, c1, s2, c2, sumS, sumC, sqS, sqC, pS, pC, tS, tC, ewmS, ewvS, xNew, xOldNext []float64,"+
			" pos, ud, cnt, run, flagged []int32, anchor []uint32,"+
			" wm1 int64, wu, tNow uint32, fw, invW, fm1, tbar, invStt, ratio1, ratioW, floorW float64) int")
	Pragma("noescape")
	Doc("windowStatsAVX2 is windowStatsGeneric on AVX2 (base 0) and returns the number of",
		"indices written to flagged; len(xNew) must be a multiple of 4, every slice but",
		"flagged as long (sqS and sqC too unless rv is nil), and flagged at least as long.")
	l := newLoop("xNew", "xNew", "shift", "s1", "c1", "s2", "c2")
	l.end = GP64()
	count := GP64()
	XORQ(count, count)
	l.epilogue = func() { Store(count, ReturnIndex(0)) }
	l.run("windowstats", 1, func(off int) {
		MOVQ(l.i, l.end)
		ADDQ(l.n, l.end)
		label := func(s string) string { return fmt.Sprintf("windowstats_%s_%d", s, off) }
		nw, fl, ok := YMM(), YMM(), YMM()
		wm1 := YMM()
		VPBROADCASTQ(paramAt("wm1"), wm1)
		VPMOVSXDQ(l.frameAt("cnt", off, 4), nw)
		VPCMPGTQ(wm1, nw, nw) // cnt > w-1: not warming up
		VPMOVSXDQ(l.frameAt("run", off, 4), fl)
		VPCMPGTQ(wm1, fl, fl) // run >= w: constant
		VANDNPD(nw, fl, ok)   // ok = nw &^ fl
		nan, zero, xn, fw := YMM(), YMM(), YMM(), YMM()
		VMOVUPD(nanBits, nan)
		VXORPD(zero, zero, zero)
		VMOVUPD(l.at("xNew", off), xn)
		VBROADCASTSD(paramAt("fw"), fw)

		// MomentStats' outputs change only in lanes that are not ok.
		mask := GP64()
		VMOVMSKPD(ok, mask.As32())
		CMPQ(mask, U8(0xf))
		JE(LabelRef(label("allok")))
		for _, o := range []struct {
			name string
			flat VecVirtual
		}{{"mean", xn}, {"std", zero}, {"skew", nan}, {"kurt", nan}, {"z", nan}} {
			v, at := YMM(), l.get(o.name, off)
			VBLENDVPD(ok, at, o.flat, v)
			VBLENDVPD(nw, v, nan, v)
			VMOVUPD(v, at)
		}
		Label(label("allok"))

		s1, s2, sh := YMM(), YMM(), YMM()
		VMOVUPD(l.at("s1", off), s1)
		VADDPD(l.at("c1", off), s1, s1) // s1 = S1 + C1
		VMOVUPD(l.at("s2", off), s2)
		VADDPD(l.at("c2", off), s2, s2) // s2 = S2 + C2
		VMOVUPD(l.at("shift", off), sh)

		// Stale: tNow - anchor >= w (uint32, wrapping: max(age, w) == age)
		// && ratio1*(s1*s1) > ratioW*s2 && |s1| > floorW*|sh|, in ok lanes.
		age, wu := XMM(), XMM()
		broadcast32("tNow", age)
		VPSUBD(l.frameAt("anchor", off, 4), age, age)
		broadcast32("wu", wu)
		VPMAXUD(wu, age, wu)
		VPCMPEQD(age, wu, wu)
		st, u, v := YMM(), YMM(), YMM()
		VPMOVSXDQ(wu, st)
		VANDPD(ok, st, st)
		VMULPD(s1, s1, u)
		VBROADCASTSD(paramAt("ratio1"), v)
		VMULPD(v, u, u)
		VBROADCASTSD(paramAt("ratioW"), v)
		VMULPD(s2, v, v)
		VCMPPD(U8(cmpGTOS), v, u, u)
		VANDPD(u, st, st)
		VANDPD(absMask, s1, u)
		VANDPD(absMask, sh, v)
		w := YMM()
		VBROADCASTSD(paramAt("floorW"), w)
		VMULPD(w, v, v)
		VCMPPD(U8(cmpGTOS), v, u, u)
		VANDPD(u, st, st)
		VMOVMSKPD(st, mask.As32())
		TESTQ(mask, mask)
		JZ(LabelRef(label("noflag")))
		Label(label("flag"))
		bit, idx, fp := GP64(), GP64(), GP64()
		BSFQ(mask, bit)
		LEAQ(Mem{Base: l.end, Index: bit, Scale: 1, Disp: off}, idx)
		Load(Param("flagged").Base(), fp)
		MOVL(idx.As32(), Mem{Base: fp, Index: count, Scale: 4})
		INCQ(count)
		LEAQ(Mem{Base: mask, Disp: -1}, idx)
		ANDQ(idx, mask) // clear the lowest set bit
		JNZ(LabelRef(label("flag")))
		Label(label("noflag"))

		// sum = ok ? SumS + SumC : W*x
		sm, t := YMM(), YMM()
		VMOVUPD(l.get("sumS", off), sm)
		VADDPD(l.get("sumC", off), sm, sm)
		VMULPD(xn, fw, t)
		VBLENDVPD(ok, sm, t, sm)
		VBLENDVPD(nw, sm, nan, sm)
		VMOVUPD(sm, l.get("sum", off))

		// rv = sqrt(ok ? max(SqS + SqC, 0) : W*(x*x)), if rv is wanted
		rvp := Load(Param("rv").Base(), GP64())
		TESTQ(rvp, rvp)
		JZ(LabelRef(label("norv")))
		q := YMM()
		VMOVUPD(l.get("sqS", off), q)
		VADDPD(l.get("sqC", off), q, q)
		VMAXPD(q, zero, q)
		VADDPD(zero, q, q)
		VMULPD(xn, xn, t)
		VMULPD(fw, t, t)
		VBLENDVPD(ok, q, t, q)
		VSQRTPD(q, q)
		VBLENDVPD(nw, q, nan, q)
		VMOVUPD(q, Mem{Base: rvp, Index: l.end, Scale: elemSize, Disp: off * elemSize})
		Label(label("norv"))

		// md = s1*invW; m2 = s2 - s1*md, into s2
		md := YMM()
		VBROADCASTSD(paramAt("invW"), md)
		VMULPD(s1, md, md)
		VMULPD(md, s1, t)
		VSUBPD(t, s2, s2)
		m2 := s2
		good := YMM()
		VCMPPD(U8(cmpGTOS), zero, m2, good)
		VANDPD(ok, good, good)
		inv, one1 := YMM(), YMM()
		VMOVUPD(one, one1)
		VDIVPD(m2, one1, inv) // inv = 1/m2
		// ac1 = (((pS + pC) - md*(a + b)) + (fm1*md)*md)*inv with
		// a = s1 - (xOldNext - sh), b = s1 - (x - sh)
		a, b := YMM(), YMM()
		VMOVUPD(l.get("xOldNext", off), a)
		VSUBPD(sh, a, a)
		VSUBPD(a, s1, a)
		VSUBPD(sh, xn, b)
		VSUBPD(b, s1, b)
		VADDPD(b, a, a)
		VMULPD(md, a, a)
		num := YMM()
		VMOVUPD(l.get("pS", off), num)
		VADDPD(l.get("pC", off), num, num)
		VSUBPD(a, num, num)
		VBROADCASTSD(paramAt("fm1"), b)
		VMULPD(md, b, b)
		VMULPD(md, b, b)
		VADDPD(b, num, num)
		VMULPD(inv, num, num)
		VBLENDVPD(good, num, nan, num)
		VMOVUPD(num, l.get("ac1", off))
		// cov = (tS + tC) - tbar*s1; slope = cov*invStt
		cov := YMM()
		VMOVUPD(l.get("tS", off), cov)
		VADDPD(l.get("tC", off), cov, cov)
		VBROADCASTSD(paramAt("tbar"), a)
		VMULPD(s1, a, a)
		VSUBPD(a, cov, cov)
		VBROADCASTSD(paramAt("invStt"), a)
		VMULPD(a, cov, b)
		VBLENDVPD(good, b, zero, b)
		VBLENDVPD(nw, b, nan, b)
		VMOVUPD(b, l.get("slope", off))
		// r2 = min(((cov*cov)*invStt)*inv, 1): VMINPD keeps its second
		// operand, a NaN r2, as Go's min does.
		VMULPD(cov, cov, cov)
		VMULPD(a, cov, cov)
		VMULPD(inv, cov, cov)
		VMINPD(cov, one1, cov)
		VBLENDVPD(good, cov, nan, cov)
		VMOVUPD(cov, l.get("r2", off))

		// ewm, ewstd = sqrt(max(ewv, 0)), posShare = float64(pos)/W, updown =
		// float64(ud)
		e := YMM()
		VBLENDVPD(nw, l.get("ewmS", off), nan, e)
		VMOVUPD(e, l.get("ewm", off))
		VMOVUPD(l.get("ewvS", off), e)
		VMAXPD(e, zero, e)
		VADDPD(zero, e, e)
		VSQRTPD(e, e)
		VBLENDVPD(nw, e, nan, e)
		VMOVUPD(e, l.get("ewstd", off))
		VCVTDQ2PD(l.frameAt("pos", off, 4), e)
		VDIVPD(fw, e, e)
		VBLENDVPD(nw, e, nan, e)
		VMOVUPD(e, l.get("posShare", off))
		VCVTDQ2PD(l.frameAt("ud", off, 4), e)
		VBLENDVPD(nw, e, nan, e)
		VMOVUPD(e, l.get("updown", off))
	})
}
