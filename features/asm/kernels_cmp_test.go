package asm

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The AVX2 path against the generic path in one binary: every kernel must
// give bit-identical results (a NaN equals any NaN: payload and sign may
// differ, as kernels.go documents). The exported kernels run once with
// SetGeneric(false), once with SetGeneric(true), on copies of the same state.

// maxUnroll is at least the generator's largest unroll factor (2, of
// rollProducts and sumNaN), so that cmpLengths reaches every unrolled loop
// more than twice.
const maxUnroll = 4

// cmpLengths are 0 to twice the widest loop step plus a tail, and a few
// large lengths whose vectors take the unrolled loop many times.
func cmpLengths() []int {
	var ns []int
	for n := 0; n <= 2*lanesTest*maxUnroll+3; n++ {
		ns = append(ns, n)
	}
	return append(ns, 100, 1000, 4099)
}

const lanesTest = 4

func needAVX2(t testing.TB) {
	t.Helper()
	if !detectedAVX2 {
		t.Skipf("no AVX2 path to compare in this build (assembly %v, CPU AVX2 %v)", haveAsm, detected.AVX2)
	}
}

func sameBits(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (a != a && b != b)
}

func checkSame(t testing.TB, what string, avx, gen []float64) {
	t.Helper()
	if len(avx) != len(gen) {
		t.Fatalf("%s: lengths %d and %d", what, len(avx), len(gen))
	}
	for i := range avx {
		if !sameBits(avx[i], gen[i]) {
			t.Fatalf("%s[%d] of %d: avx2 %v (%#x), generic %v (%#x)", what, i, len(avx),
				avx[i], math.Float64bits(avx[i]), gen[i], math.Float64bits(gen[i]))
		}
	}
}

// onBoth runs f on the AVX2 path, then on the generic path.
func onBoth(f func(generic bool)) {
	prev := SetGeneric(false)
	defer SetGeneric(prev) // also when f fails the test
	f(false)
	SetGeneric(true)
	f(true)
}

// gen makes inputs of one kind.
type gen struct {
	r    *rand.Rand
	kind int
}

const (
	kindNormal  = iota // N(0,1) scaled over many magnitudes
	kindSpecial        // with NaN, +-Inf, +-0, subnormals, huge values
	kindOffset         // 1e5..1e15 with tiny noise
	kindReturns        // small values of both signs
	numKinds
)

var offsets = []float64{1e5, -1e5, 3.7e7, 1e9, 1e12, -1e15, 1e15}

func (g gen) value(i int) float64 {
	r := g.r
	switch g.kind {
	case kindSpecial:
		switch r.IntN(12) {
		case 0:
			return math.NaN()
		case 1:
			return math.Inf(1)
		case 2:
			return math.Inf(-1)
		case 3:
			return math.Copysign(0, -1)
		case 4:
			return 0
		case 5:
			return math.SmallestNonzeroFloat64 * float64(r.IntN(1000)-500)
		case 6:
			return math.Ldexp(r.NormFloat64(), 1000)
		case 7:
			return math.Float64frombits(0x7ff8000000000000 | r.Uint64()&0xfffffffffffff) // other NaN payloads
		}
		return r.NormFloat64()
	case kindOffset:
		off := offsets[i%len(offsets)]
		return off + off*1e-9*r.NormFloat64()
	case kindReturns:
		return 1e-4 * r.NormFloat64()
	}
	return math.Ldexp(r.NormFloat64(), r.IntN(40)-20)
}

func (g gen) slice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = g.value(i)
	}
	return s
}

func (m *Moments) clone() *Moments {
	c := func(s []float64) []float64 { return append([]float64(nil), s...) }
	return &Moments{Shift: c(m.Shift), S1: c(m.S1), S2: c(m.S2), S3: c(m.S3), S4: c(m.S4),
		C1: c(m.C1), C2: c(m.C2), C3: c(m.C3), C4: c(m.C4)}
}

func checkSameMoments(t testing.TB, what string, a, b *Moments) {
	t.Helper()
	checkSame(t, what+" S1", a.S1, b.S1)
	checkSame(t, what+" S2", a.S2, b.S2)
	checkSame(t, what+" S3", a.S3, b.S3)
	checkSame(t, what+" S4", a.S4, b.S4)
	checkSame(t, what+" C1", a.C1, b.C1)
	checkSame(t, what+" C2", a.C2, b.C2)
	checkSame(t, what+" C3", a.C3, b.C3)
	checkSame(t, what+" C4", a.C4, b.C4)
}

// randomMoments is a state with sums of all signs and sizes, so that both
// sides of the Neumaier branch are taken: sums larger and smaller than the
// added powers.
func randomMoments(g gen, n int) *Moments {
	m := newMoments(n)
	m.Shift = g.slice(n)
	for _, s := range [][]float64{m.S1, m.S2, m.S3, m.S4} {
		for i := range s {
			s[i] = math.Ldexp(g.r.NormFloat64(), g.r.IntN(60)-30)
		}
	}
	for _, c := range [][]float64{m.C1, m.C2, m.C3, m.C4} {
		for i := range c {
			c[i] = math.Ldexp(g.r.NormFloat64(), g.r.IntN(60)-90)
		}
	}
	if g.kind == kindOffset { // shift near the values, as the engine keeps it
		for i := range m.Shift {
			m.Shift[i] = offsets[i%len(offsets)]
		}
	}
	return m
}

func TestCompareMoments(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(21, 22))
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			g := gen{r, kind}
			m0 := randomMoments(g, n)
			steps := make([][2][]float64, 6)
			for k := range steps {
				steps[k] = [2][]float64{g.slice(n), g.slice(n)}
			}
			last := g.slice(n)
			var ms [2]*Moments
			var outs [2][5][]float64
			for w := range []int{2, 50} {
				onBoth(func(generic bool) {
					m := m0.clone()
					for k, s := range steps {
						if k < 2 {
							AddMoments(m, s[0])
						} else {
							rollMomentsRef(m, s[0], s[1]) // WindowRoll's moments, path-independent
						}
					}
					o := [5][]float64{make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)}
					MomentStats(o[0], o[1], o[2], o[3], o[4], m, last, []int{2, 50}[w])
					j := 0
					if generic {
						j = 1
					}
					ms[j], outs[j] = m, o
				})
				what := "n " + itoa(n) + " kind " + itoa(kind)
				checkSameMoments(t, what, ms[0], ms[1])
				for k, name := range []string{"mean", "std", "skew", "kurt", "z"} {
					checkSame(t, what+" "+name, outs[0][k], outs[1][k])
				}
			}
		}
	}
}

// MomentStats with outputs left out writes the others exactly as with all of
// them, on both paths.
func TestCompareMomentStatsNil(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(23, 24))
	for _, n := range []int{4, 13, 64} {
		g := gen{r, kindNormal}
		m := randomMoments(g, n)
		last := g.slice(n)
		var full [5][]float64
		for k := range full {
			full[k] = make([]float64, n)
		}
		MomentStats(full[0], full[1], full[2], full[3], full[4], m, last, 30)
		for mask := range 32 {
			onBoth(func(generic bool) {
				var o [5][]float64
				for k := range o {
					if mask&(1<<k) != 0 {
						o[k] = make([]float64, n)
					}
				}
				l := last
				if o[4] == nil {
					l = nil
				}
				MomentStats(o[0], o[1], o[2], o[3], o[4], m, l, 30)
				for k := range o {
					if o[k] != nil {
						checkSame(t, "mask "+itoa(mask)+" output "+itoa(k), o[k], full[k])
					}
				}
			})
		}
	}
}

func TestCompareRollProducts(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(27, 28))
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			g := gen{r, kind}
			s0, c0 := g.slice(n), g.slice(n)
			ins := make([][4][]float64, 4)
			for k := range ins {
				ins[k] = [4][]float64{g.slice(n), g.slice(n), g.slice(n), g.slice(n)}
			}
			var res [2][2][]float64
			onBoth(func(generic bool) {
				s, c := append([]float64(nil), s0...), append([]float64(nil), c0...)
				for _, in := range ins {
					RollProducts(s, c, in[0], in[1], in[2], in[3])
				}
				j := 0
				if generic {
					j = 1
				}
				res[j] = [2][]float64{s, c}
			})
			checkSame(t, "s n "+itoa(n), res[0][0], res[1][0])
			checkSame(t, "c n "+itoa(n), res[0][1], res[1][1])
		}
	}
}

func compareSumNaN(t testing.TB, x []float64) {
	t.Helper()
	var sum [2]float64
	var cnt [2]int
	onBoth(func(generic bool) {
		j := 0
		if generic {
			j = 1
		}
		sum[j], cnt[j] = SumNaN(x)
	})
	if !sameBits(sum[0], sum[1]) || cnt[0] != cnt[1] {
		t.Fatalf("SumNaN of %d values: avx2 %v (%d), generic %v (%d)", len(x), sum[0], cnt[0], sum[1], cnt[1])
	}
}

func TestCompareSumNaN(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(29, 30))
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			for range 3 {
				compareSumNaN(t, gen{r, kind}.slice(n))
			}
		}
	}
	// Infinities that overflow the lanes, and opposite infinities.
	big := []float64{math.MaxFloat64, math.MaxFloat64, math.MaxFloat64, math.MaxFloat64, 1, 2, 3, 4, -1}
	compareSumNaN(t, big)
	compareSumNaN(t, append(big, math.Inf(-1)))
	compareSumNaN(t, []float64{math.Inf(1), 1, 1, 1, 1, math.NaN(), 1, 1, math.Inf(-1)})
}

// floats decodes raw as little-endian float64s (any bit pattern: NaNs,
// infinities and subnormals included), cycling them to fill k slices of n.
func floats(raw []byte, k, n int) [][]float64 {
	vals := make([]float64, len(raw)/8)
	for i := range vals {
		vals[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	out := make([][]float64, k)
	for j := range out {
		out[j] = make([]float64, n)
		if len(vals) == 0 {
			continue
		}
		for i := range out[j] {
			out[j][i] = vals[(j*n+i*(j+1))%len(vals)]
		}
	}
	return out
}

func encode(v ...float64) []byte {
	b := make([]byte, 8*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(f))
	}
	return b
}

func fuzzSeeds(f *testing.F) {
	f.Add(encode(1e5, 1e5+1e-3, 1e5-2e-3, 0.5, 1e-20, -3, 7), uint8(13))
	f.Add(encode(math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 5e-324, 1e308, -1e-310), uint8(21))
	f.Add(encode(1e15, 1e15+0.125, -1e15, 1, 2, 3), uint8(37))
	f.Add(encode(1, 2), uint8(0))
	f.Add([]byte{}, uint8(5))
}

func FuzzAddMoments(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		v := floats(raw, 11, n)
		m := &Moments{Shift: v[0], S1: v[1], S2: v[2], S3: v[3], S4: v[4], C1: v[5], C2: v[6], C3: v[7], C4: v[8]}
		var res [2]*Moments
		onBoth(func(generic bool) {
			c := m.clone()
			AddMoments(c, v[9])
			AddMoments(c, v[10])
			res[boolIndex(generic)] = c
		})
		checkSameMoments(t, "AddMoments", res[0], res[1])
	})
}

func FuzzMomentStats(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		v := floats(raw, 10, n)
		m := &Moments{Shift: v[0], S1: v[1], S2: v[2], S3: v[3], S4: v[4], C1: v[5], C2: v[6], C3: v[7], C4: v[8]}
		w := 2 + int(n8)%200
		var res [2][5][]float64
		onBoth(func(generic bool) {
			o := [5][]float64{make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)}
			MomentStats(o[0], o[1], o[2], o[3], o[4], m, v[9], w)
			res[boolIndex(generic)] = o
		})
		for k := range res[0] {
			checkSame(t, "MomentStats output "+itoa(k), res[0][k], res[1][k])
		}
	})
}

func FuzzRollProducts(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		v := floats(raw, 6, n)
		var res [2][2][]float64
		onBoth(func(generic bool) {
			s, c := append([]float64(nil), v[0]...), append([]float64(nil), v[1]...)
			RollProducts(s, c, v[2], v[3], v[4], v[5])
			RollProducts(s, c, v[5], v[4], v[3], v[2])
			res[boolIndex(generic)] = [2][]float64{s, c}
		})
		checkSame(t, "s", res[0][0], res[1][0])
		checkSame(t, "c", res[0][1], res[1][1])
	})
}

func FuzzSumNaN(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		vals := floats(raw, 1, len(raw)/8)[0]
		compareSumNaN(t, vals)
		compareSumNaN(t, floats(raw, 1, int(n8)%80)[0])
	})
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
