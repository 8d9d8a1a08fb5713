package asm

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// WindowRoll against the sequence of updates it fuses (RollProducts on each
// path, and the Go references of reference_test.go), and its AVX2 path
// against its generic path.

// rollCase is WindowRoll's arguments; st.SqS and st.SqC are nil without rv.
type rollCase struct {
	m                           Moments
	st                          Window
	xNew, xPrev, xOld, xOldNext []float64
	w                           int
	alpha                       float64
}

func (c *rollCase) clone() *rollCase {
	d := *c
	d.m = *c.m.clone()
	st := &d.st
	for _, s := range []*[]float64{&st.SumS, &st.SumC, &st.SqS, &st.SqC, &st.PS, &st.PC, &st.TS, &st.TC,
		&st.EWM, &st.EWV} {
		if *s != nil {
			*s = slices.Clone(*s)
		}
	}
	st.Pos, st.UD = slices.Clone(st.Pos), slices.Clone(st.UD)
	return &d
}

// state lists every float64 slice WindowRoll may write, and their names.
func (c *rollCase) state() [][]float64 {
	m, st := &c.m, &c.st
	return [][]float64{m.S1, m.S2, m.S3, m.S4, m.C1, m.C2, m.C3, m.C4, st.TS, st.TC, st.SumS, st.SumC, st.SqS,
		st.SqC, st.PS, st.PC, st.EWM, st.EWV}
}

var rollNames = []string{"S1", "S2", "S3", "S4", "C1", "C2", "C3", "C4", "TS", "TC", "SumS", "SumC", "SqS",
	"SqC", "PS", "PC", "EWM", "EWV"}

func (c *rollCase) roll() {
	WindowRoll(&c.m, &c.st, c.xNew, c.xPrev, c.xOld, c.xOldNext, c.w, c.alpha)
}

// sequence is WindowRoll's definition, one update at a time: the
// differences and counts (exact subtractions, written out here), then the
// sums' updates in their order, with the constants 1 and w-1 as arrays.
func (c *rollCase) sequence() {
	n := len(c.xNew)
	m, st := &c.m, &c.st
	dNew, dPrev, dOld, dOldNext, tOld := make([]float64, n), make([]float64, n), make([]float64, n),
		make([]float64, n), make([]float64, n)
	ones, wm1 := make([]float64, n), make([]float64, n)
	for i := range n {
		sh := m.Shift[i]
		xn, xp, xo, xon := c.xNew[i], c.xPrev[i], c.xOld[i], c.xOldNext[i]
		dNew[i], dPrev[i], dOld[i], dOldNext[i] = xn-sh, xp-sh, xo-sh, xon-sh
		tOld[i] = (m.S1[i] + m.C1[i]) - dOld[i]
		st.Pos[i] += b2i(xn > 0) - b2i(xo > 0)
		st.UD[i] += sgn(xn-xp) - sgn(xon-xo)
		ones[i], wm1[i] = 1, float64(c.w-1)
	}
	RollProducts(st.TS, st.TC, dNew, wm1, tOld, ones)
	rollMomentsRef(m, c.xNew, c.xOld)
	RollProducts(st.SumS, st.SumC, c.xNew, ones, c.xOld, ones)
	if st.SqS != nil {
		RollProducts(st.SqS, st.SqC, c.xNew, c.xNew, c.xOld, c.xOld)
	}
	RollProducts(st.PS, st.PC, dNew, dPrev, dOldNext, dOld)
	ewMeanVarRef(st.EWM, st.EWV, c.xNew, c.alpha)
}

// checkSameRoll compares every slice WindowRoll writes.
func checkSameRoll(t testing.TB, what string, a, b *rollCase) {
	t.Helper()
	sa, sb := a.state(), b.state()
	for k, name := range rollNames {
		checkSame(t, what+" "+name, sa[k], sb[k])
	}
	if !slices.Equal(a.st.Pos, b.st.Pos) || !slices.Equal(a.st.UD, b.st.UD) {
		t.Fatalf("%s: pos %v and %v, ud %v and %v", what, a.st.Pos, b.st.Pos, a.st.UD, b.st.UD)
	}
}

// randomRoll is a state of g's values in every slice (the sums of all sizes
// from randomMoments), counts of both signs, and inputs with equal
// neighbours (sgn 0) now and then.
func randomRoll(g gen, n, w int, rv bool) *rollCase {
	c := &rollCase{m: *randomMoments(g, n), w: w, alpha: 2 / float64(w+1)}
	st := &c.st
	for _, s := range []*[]float64{&st.SumS, &st.SumC, &st.PS, &st.PC, &st.TS, &st.TC, &st.EWM, &st.EWV} {
		*s = g.slice(n)
	}
	if rv {
		st.SqS, st.SqC = g.slice(n), g.slice(n)
	}
	st.Pos, st.UD = make([]int32, n), make([]int32, n)
	c.xNew, c.xPrev, c.xOld, c.xOldNext = g.slice(n), g.slice(n), g.slice(n), g.slice(n)
	for i := range n {
		st.Pos[i] = int32(g.r.IntN(w + 1))
		st.UD[i] = int32(g.r.IntN(2*w+1) - w)
		if g.r.IntN(4) == 0 {
			c.xPrev[i] = c.xNew[i]
		}
		if g.r.IntN(4) == 0 {
			c.xOldNext[i] = c.xOld[i]
		}
	}
	return c
}

// rollSteps runs three steps of c (the inputs rotated between steps, so the
// state evolves) through WindowRoll, or through the sequence.
func rollSteps(c *rollCase, fused bool) *rollCase {
	d := c.clone()
	for range 3 {
		if fused {
			d.roll()
		} else {
			d.sequence()
		}
		d.xNew, d.xPrev, d.xOld, d.xOldNext = d.xOldNext, d.xNew, d.xPrev, d.xOld
	}
	return d
}

// WindowRoll equals the kernel sequence bit for bit, on each path.
func TestWindowRollSequence(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(51, 52))
		for _, n := range cmpLengths() {
			for kind := range numKinds {
				for _, w := range []int{2, 50} {
					for _, rv := range []bool{false, true} {
						c := randomRoll(gen{r, kind}, n, w, rv)
						what := "fused (as avx2) vs sequence (as generic): n " + itoa(n) + " kind " + itoa(kind) + " w " + itoa(w)
						checkSameRoll(t, what, rollSteps(c, true), rollSteps(c, false))
					}
				}
			}
		}
	})
}

// compareRoll runs c's steps on both paths.
func compareRoll(t testing.TB, what string, c *rollCase) {
	t.Helper()
	var res [2]*rollCase
	onBoth(func(generic bool) { res[boolIndex(generic)] = rollSteps(c, true) })
	checkSameRoll(t, what, res[0], res[1])
}

func TestCompareWindowRoll(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(53, 54))
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			for _, rv := range []bool{false, true} {
				compareRoll(t, "n "+itoa(n)+" kind "+itoa(kind), randomRoll(gen{r, kind}, n, 20, rv))
			}
		}
	}
}

func TestWindowRollPanics(t *testing.T) {
	c := randomRoll(gen{rand.New(rand.NewPCG(55, 56)), kindNormal}, 5, 10, true)
	for k, bad := range []func(d *rollCase){
		func(d *rollCase) { d.w = 1 },
		func(d *rollCase) { d.xOldNext = d.xOldNext[:4] },
		func(d *rollCase) { d.st.EWV = d.st.EWV[:4] },
		func(d *rollCase) { d.st.UD = d.st.UD[:4] },
		func(d *rollCase) { d.st.SqC = nil },
		func(d *rollCase) { d.m.C4 = d.m.C4[:4] },
	} {
		d := c.clone()
		bad(d)
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("case %d: no panic", k)
				}
			}()
			d.roll()
		}()
	}
}

func FuzzWindowRoll(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		v := floats(raw, 23, n)
		c := &rollCase{w: 2 + int(n8)%60, alpha: float64(1+int(n8)%100) / 100}
		c.m = Moments{Shift: v[0], S1: v[1], S2: v[2], S3: v[3], S4: v[4], C1: v[5], C2: v[6], C3: v[7], C4: v[8]}
		st := &c.st
		st.SumS, st.SumC, st.PS, st.PC, st.TS, st.TC, st.EWM, st.EWV = v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16]
		if n8%2 == 1 {
			st.SqS, st.SqC = v[17], v[18]
		}
		c.xNew, c.xPrev, c.xOld, c.xOldNext = v[19], v[20], v[21], v[22]
		st.Pos, st.UD = make([]int32, n), make([]int32, n)
		for i := range n {
			st.Pos[i], st.UD[i] = int32(i*int(n8)), int32(int(n8)-3*i)
		}
		compareRoll(t, "fuzz", c)
		// and against the sequence, on the AVX2 path
		var res [2]*rollCase
		onBoth(func(generic bool) {
			if !generic {
				res[0], res[1] = rollSteps(c, true), rollSteps(c, false)
			}
		})
		checkSameRoll(t, "fuzz: fused (as avx2) vs sequence (as generic)", res[0], res[1])
	})
}
