package asm

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// WindowStats: the AVX2 path against the generic path, and its branches
// against direct evaluations of its documentation.

// statsCase is WindowStats' arguments.
type statsCase struct {
	out      WindowOut
	m        Moments
	st       Window
	cnt, run []int32
	xNew     []float64
	xOldNext []float64
	w        int
	tNow     uint32
}

const (
	testRatio = 1024
	testFloor = 3.5e-15
)

func (c *statsCase) clone() *statsCase {
	d := *c
	o := &d.out
	for _, s := range []*[]float64{&o.Mean, &o.Std, &o.Skew, &o.Kurt, &o.Z, &o.Sum, &o.RV, &o.AC1, &o.Slope,
		&o.R2, &o.EWM, &o.EWStd, &o.PosShare, &o.UpDown} {
		if *s != nil {
			*s = slices.Clone(*s)
		}
	}
	return &d
}

func (c *statsCase) outputs() [][]float64 {
	o := &c.out
	return [][]float64{o.Mean, o.Std, o.Skew, o.Kurt, o.Z, o.Sum, o.RV, o.AC1, o.Slope, o.R2, o.EWM, o.EWStd,
		o.PosShare, o.UpDown}
}

var statsNames = []string{"mean", "std", "skew", "kurt", "z", "sum", "rv", "ac1", "slope", "r2", "ewm", "ewstd",
	"posShare", "updown"}

// stats runs WindowStats on c; flagged may be nil (allocated here).
func (c *statsCase) stats(flagged []int32) []int32 {
	if cap(flagged) < len(c.xNew) {
		flagged = make([]int32, 0, len(c.xNew))
	}
	return WindowStats(&c.out, &c.m, &c.st, c.cnt, c.run, c.xNew, c.xOldNext, c.w, c.tNow, testRatio, testFloor,
		flagged)
}

// randomStats is a state that takes every branch: warming up, constant,
// m2 <= 0 (s2 small or negative against s1), stale shifts (s1 large against
// s2, anchors a window back or more), with g's values in every slice
// (NaN and infinities with kindSpecial).
func randomStats(g gen, n, w int, rv bool) *statsCase {
	r := g.r
	c := &statsCase{w: w, tNow: uint32(r.IntN(1 << 20))} // near 0: anchors before it wrap
	o := &c.out
	for _, s := range []*[]float64{&o.Mean, &o.Std, &o.Skew, &o.Kurt, &o.Z, &o.Sum, &o.AC1, &o.Slope, &o.R2,
		&o.EWM, &o.EWStd, &o.PosShare, &o.UpDown} {
		*s = g.slice(n)
	}
	m := randomMoments(g, n)
	c.m = *m
	st := &c.st
	for _, s := range []*[]float64{&st.SumS, &st.SumC, &st.PS, &st.PC, &st.TS, &st.TC, &st.EWM, &st.EWV} {
		*s = g.slice(n)
	}
	if rv {
		o.RV, st.SqS, st.SqC = g.slice(n), g.slice(n), g.slice(n)
	}
	st.Pos, st.UD, st.Anchor = make([]int32, n), make([]int32, n), make([]uint32, n)
	c.cnt, c.run = make([]int32, n), make([]int32, n)
	c.xNew, c.xOldNext = g.slice(n), g.slice(n)
	for i := range n {
		st.Pos[i] = int32(r.IntN(w + 1))
		st.UD[i] = int32(r.IntN(2*w+1) - w)
		st.Anchor[i] = c.tNow - uint32([]int{0, 1, w - 1, w, w + 1, 5 * w, 1 << 31, 1<<32 - 1}[r.IntN(8)])
		c.cnt[i] = int32([]int{0, 1, w - 1, w, w + 1, w + 100}[r.IntN(6)])
		c.run[i] = int32([]int{1, w - 1, w, w + 1}[r.IntN(4)])
		switch r.IntN(4) {
		case 0: // mean far from the shift: stale, m2 small
			m.S2[i] = m.S1[i] * m.S1[i] / float64(w) * (1 + 1e-6*r.NormFloat64())
		case 1: // m2 <= 0
			m.S2[i] = -math.Abs(m.S2[i])
		}
	}
	return c
}

// compareStats runs c on both paths and compares outputs and flags.
func compareStats(t testing.TB, what string, c *statsCase) []int32 {
	t.Helper()
	var outs [2][][]float64
	var flags [2][]int32
	onBoth(func(generic bool) {
		d := c.clone()
		flags[boolIndex(generic)] = d.stats(nil)
		outs[boolIndex(generic)] = d.outputs()
	})
	for k, name := range statsNames {
		checkSame(t, what+" "+name, outs[0][k], outs[1][k])
	}
	if !slices.Equal(flags[0], flags[1]) {
		t.Fatalf("%s: flagged avx2 %v, generic %v", what, flags[0], flags[1])
	}
	return flags[1]
}

func TestCompareWindowStats(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(35, 36))
	flagged := 0
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			for _, w := range []int{2, 50} {
				for _, rv := range []bool{false, true} {
					c := randomStats(gen{r, kind}, n, w, rv)
					what := "n " + itoa(n) + " kind " + itoa(kind) + " w " + itoa(w)
					flagged += len(compareStats(t, what, c))
				}
			}
		}
	}
	if flagged == 0 {
		t.Fatal("no instrument was flagged stale: the stale lanes went untested")
	}
}

// WindowStats' branches, per instrument, against its documentation; the
// flags in increasing order, with the Go tail's indices offset.
func TestWindowStatsBranches(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(37, 38))
		var seen [5]int // warm, constant, m2 <= 0, m2 > 0, flagged
		for _, n := range []int{1, 5, 64, 203} {
			for _, rv := range []bool{false, true} {
				w := 20
				c := randomStats(gen{r, kindNormal}, n, w, rv)
				in := c.clone()
				flags := c.stats(nil)
				fw := float64(w)
				var wantFlags []int32
				for i := range n {
					got := func(k int) float64 {
						if s := c.outputs()[k]; s != nil {
							return s[i]
						}
						return math.NaN()
					}
					var want [14]float64
					for k := range want {
						want[k] = math.NaN()
					}
					x := c.xNew[i]
					s1, s2 := c.m.S1[i]+c.m.C1[i], c.m.S2[i]+c.m.C2[i]
					switch {
					case c.cnt[i] < int32(w):
						seen[0]++
					case c.run[i] >= int32(w):
						seen[1]++
						want = [14]float64{x, 0, math.NaN(), math.NaN(), math.NaN(), fw * x, math.Sqrt(fw * (x * x)),
							math.NaN(), 0, math.NaN()}
					default:
						for k := range 5 { // MomentStats' results stay
							want[k] = in.outputs()[k][i]
						}
						md := s1 * (1 / fw)
						m2 := s2 - float64(s1*md) // float64(): no FMA (GOAMD64=v3)
						want[5] = c.st.SumS[i] + c.st.SumC[i]
						if rv {
							want[6] = math.Sqrt(max(c.st.SqS[i]+c.st.SqC[i], 0))
						}
						want[8] = 0
						if m2 > 0 {
							seen[3]++
							sh := c.m.Shift[i]
							a, b := s1-(c.xOldNext[i]-sh), s1-(x-sh)
							inv, invStt := 1/m2, 1/(fw*float64(fw*fw-1)/12)
							want[7] = (((c.st.PS[i] + c.st.PC[i]) - float64(md*(a+b))) + float64(float64((fw-1)*md)*md)) * inv
							cov := (c.st.TS[i] + c.st.TC[i]) - float64((fw-1)/2*s1)
							want[8] = cov * invStt
							want[9] = min(cov*cov*invStt*inv, 1)
						} else {
							seen[2]++
						}
						if c.tNow-c.st.Anchor[i] >= uint32(w) && (testRatio+1)*(s1*s1) > testRatio*fw*s2 &&
							math.Abs(s1) > testFloor*fw*math.Abs(c.m.Shift[i]) {
							wantFlags = append(wantFlags, int32(i))
						}
					}
					if !rv {
						want[6] = math.NaN() // got(6) of a nil rv
					}
					if c.cnt[i] >= int32(w) {
						want[10], want[11] = c.st.EWM[i], math.Sqrt(max(c.st.EWV[i], 0))
						want[12], want[13] = float64(c.st.Pos[i])/fw, float64(c.st.UD[i])
					}
					for k, e := range want {
						if g := got(k); !sameBits(g, e) {
							t.Fatalf("n %d rv %v instrument %d %s: %v, want %v", n, rv, i, statsNames[k], got(k), e)
						}
					}
				}
				if !slices.Equal(flags, wantFlags) {
					t.Fatalf("n %d: flagged %v, want %v", n, flags, wantFlags)
				}
				seen[4] += len(flags)
			}
		}
		for k, v := range seen {
			if v == 0 {
				t.Fatalf("branch %d never taken: %v", k, seen)
			}
		}
	})
}

func FuzzWindowStats(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		w := 2 + int(n8)%60
		v := floats(raw, 30, n)
		c := &statsCase{w: w, tNow: 1e6}
		o := &c.out
		o.Mean, o.Std, o.Skew, o.Kurt, o.Z, o.Sum, o.AC1 = v[0], v[1], v[2], v[3], v[4], v[5], v[6]
		o.Slope, o.R2, o.EWM, o.EWStd, o.PosShare, o.UpDown = v[7], v[8], v[9], v[10], v[11], v[12]
		c.m = Moments{Shift: v[13], S1: v[14], C1: v[15], S2: v[16], C2: v[17], S3: v[13], S4: v[13], C3: v[13], C4: v[13]}
		st := &c.st
		st.SumS, st.SumC, st.PS, st.PC, st.TS, st.TC, st.EWM, st.EWV = v[18], v[19], v[20], v[21], v[22], v[23], v[24], v[25]
		c.xNew, c.xOldNext = v[26], v[27]
		if n8%2 == 1 {
			o.RV, st.SqS, st.SqC = slices.Clone(v[25]), v[28], v[29]
		}
		c.cnt, c.run = make([]int32, n), make([]int32, n)
		st.Pos, st.UD, st.Anchor = make([]int32, n), make([]int32, n), make([]uint32, n)
		for i := range n {
			c.cnt[i] = int32(w - 2 + (i+int(n8))%4)
			c.run[i] = int32(w - 2 + (i*3+int(n8)/4)%4)
			st.Pos[i], st.UD[i] = int32(i), int32(int(n8)-2*i)
			st.Anchor[i] = c.tNow - uint32((i+int(n8))%(2*w))
		}
		compareStats(t, "fuzz", c)
	})
}
