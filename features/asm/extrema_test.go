package asm

import (
	"math"
	"math/rand/v2"
	"testing"
)

func (e *Extrema) clone() *Extrema {
	c := func(s []float64) []float64 { return append([]float64(nil), s...) }
	return &Extrema{Max: c(e.Max), MaxT: c(e.MaxT), Min: c(e.Min), MinT: c(e.MinT)}
}

func checkSameExtrema(t testing.TB, what string, a, b *Extrema) {
	t.Helper()
	checkSame(t, what+" Max", a.Max, b.Max)
	checkSame(t, what+" MaxT", a.MaxT, b.MaxT)
	checkSame(t, what+" Min", a.Min, b.Min)
	checkSame(t, what+" MinT", a.MinT, b.MinT)
}

// tieValue is a small integer (many ties between parts), or g's value.
func tieValue(g gen, i int) float64 {
	if g.r.IntN(2) == 0 {
		return float64(g.r.IntN(4)) - 1.5
	}
	return g.value(i)
}

func randomExtrema(g gen, n int, t0 float64) *Extrema {
	e := &Extrema{Max: make([]float64, n), MaxT: make([]float64, n), Min: make([]float64, n), MinT: make([]float64, n)}
	for i := range n {
		e.Max[i], e.Min[i] = tieValue(g, i), tieValue(g, i)
		e.MaxT[i], e.MinT[i] = t0-float64(g.r.IntN(10)), t0-float64(g.r.IntN(10))
	}
	return e
}

// extremaRun merges, prepends and reads windows on the current path.
func extremaRun(old, mid, cur *Extrema, xs [][]float64, cnt []int32, w int) (*Extrema, *Extrema, [5][]float64) {
	// The last window reads the prepended mid and the prefix the earlier
	// windows grew: every kernel's result reaches the outputs.
	o, m, c := old.clone(), mid.clone(), cur.clone()
	n := len(cnt)
	var out [5][]float64
	for k := range out {
		out[k] = make([]float64, n)
	}
	for k, x := range xs[:len(xs)-1] {
		ExtremaWindow(out[0], out[1], out[2], out[3], out[4], o, m, c, x, cnt, w, 100+float64(k))
	}
	ExtremaMerge(o, m)
	p := m.clone()
	ExtremaPrepend(m, p, xs[0], 40) // in place over later's copy: as the roller's rows
	ExtremaPrepend(m, m, xs[1], 39) // and dst == later
	ExtremaWindow(out[0], out[1], out[2], out[3], out[4], o, m, c, xs[len(xs)-1], cnt, w, 110)
	return o, c, out
}

func TestCompareExtrema(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(41, 42))
	for _, n := range cmpLengths() {
		for kind := range numKinds {
			g := gen{r, kind}
			old, mid, cur := randomExtrema(g, n, 50), randomExtrema(g, n, 80), randomExtrema(g, n, 99)
			xs := make([][]float64, 3)
			for k := range xs {
				xs[k] = make([]float64, n)
				for i := range n {
					xs[k][i] = tieValue(g, i)
				}
			}
			cnt := make([]int32, n)
			const w = 20
			for i := range cnt {
				cnt[i] = int32(w - 2 + r.IntN(4)) // warming up or not
			}
			var res [2][3]any
			onBoth(func(generic bool) {
				o, c, out := extremaRun(old, mid, cur, xs, cnt, w)
				res[boolIndex(generic)] = [3]any{o, c, out}
			})
			checkSameExtrema(t, "merged n "+itoa(n), res[0][0].(*Extrema), res[1][0].(*Extrema))
			checkSameExtrema(t, "pushed n "+itoa(n), res[0][1].(*Extrema), res[1][1].(*Extrema))
			a, b := res[0][2].([5][]float64), res[1][2].([5][]float64)
			for k := range a {
				checkSame(t, "window output "+itoa(k)+" n "+itoa(n), a[k], b[k])
			}
		}
	}
}

// TestExtremaSemantics checks each kernel on both paths against the
// definition: ties go to the later step, the window merges oldest first,
// warm-up and a flat range give NaN.
func TestExtremaSemantics(t *testing.T) {
	for _, generic := range []bool{false, true} {
		prev := SetGeneric(generic)
		const n = 9 // two vectors and a tail
		e := &Extrema{Max: make([]float64, n), MaxT: make([]float64, n), Min: make([]float64, n), MinT: make([]float64, n)}
		for i := range n {
			e.Max[i], e.MaxT[i], e.Min[i], e.MinT[i] = 2, 1, 1, 1
		}
		x := []float64{2, 3, 1, 0, 1.5, 2, 1, 3, 0}
		empty := &Extrema{Max: make([]float64, n), MaxT: make([]float64, n), Min: make([]float64, n), MinT: make([]float64, n)}
		for i := range n {
			empty.Max[i], empty.Min[i] = math.Inf(-1), math.Inf(1)
		}
		var win [5][]float64
		for k := range win {
			win[k] = make([]float64, n)
		}
		warm := []int32{3, 3, 3, 3, 3, 3, 3, 3, 3}
		// The window first adds x at step 5 to the prefix e (steps 1).
		ExtremaWindow(win[0], win[1], win[2], win[3], win[4], empty, empty, e, x, warm, 3, 5)
		for i, v := range x {
			wantMax, wantMaxT := 2.0, 1.0
			if v >= 2 {
				wantMax, wantMaxT = v, 5
			}
			wantMin, wantMinT := 1.0, 1.0
			if v <= 1 {
				wantMin, wantMinT = v, 5
			}
			if e.Max[i] != wantMax || e.MaxT[i] != wantMaxT || e.Min[i] != wantMin || e.MinT[i] != wantMinT {
				t.Fatalf("generic %v: push %v into (2@1, 1@1) = (%v@%v, %v@%v)", generic, v, e.Max[i], e.MaxT[i], e.Min[i], e.MinT[i])
			}
			if win[0][i] != wantMax || win[1][i] != wantMin || win[2][i] != 5-wantMaxT || win[3][i] != 5-wantMinT {
				t.Fatalf("generic %v: window of the prefix alone after %v: %v %v %v %v", generic, v,
					win[0][i], win[1][i], win[2][i], win[3][i])
			}
		}
		// Prepend x at step 0 to e (steps 1 and 5): e wins ties.
		pre := &Extrema{Max: make([]float64, n), MaxT: make([]float64, n), Min: make([]float64, n), MinT: make([]float64, n)}
		ExtremaPrepend(pre, e, x, 0)
		for i, v := range x {
			if want := max(e.Max[i], v); pre.Max[i] != want || (pre.MaxT[i] == 0) != (v > e.Max[i]) {
				t.Fatalf("generic %v: prepend %v@0 to max %v@%v = %v@%v", generic, v, e.Max[i], e.MaxT[i], pre.Max[i], pre.MaxT[i])
			}
			if want := min(e.Min[i], v); pre.Min[i] != want || (pre.MinT[i] == 0) != (v < e.Min[i]) {
				t.Fatalf("generic %v: prepend %v@0 to min %v@%v = %v@%v", generic, v, e.Min[i], e.MinT[i], pre.Min[i], pre.MinT[i])
			}
		}
		// Window = old (max 4@10, min 0@11), mid (4@20, 0@21: ties, later
		// wins), cur (x@30): expected max/min and ages at t = 30.
		fill := func(mx, mxt, mn, mnt float64) *Extrema {
			e := &Extrema{make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)}
			for i := range n {
				e.Max[i], e.MaxT[i], e.Min[i], e.MinT[i] = mx, mxt, mn, mnt
			}
			return e
		}
		old, mid := fill(4, 10, 0, 11), fill(4, 20, 0, 21)
		cur := &Extrema{Max: []float64{1, 4, 5, 1, 1, 1, 1, 1, 1}, MaxT: make([]float64, n),
			Min: []float64{1, 1, 1, 0, -1, 1, 1, 1, 1}, MinT: make([]float64, n)}
		for i := range n {
			cur.MaxT[i], cur.MinT[i] = 30, 30
		}
		last := []float64{1, 4, 5, 0, -1, 2, 3, 1, 1}
		curMax0 := append([]float64(nil), cur.Max...)
		cnt := []int32{7, 7, 7, 7, 7, 7, 6, 7, 7} // w = 7: instrument 6 warming up
		var out [5][]float64
		for k := range out {
			out[k] = make([]float64, n)
		}
		ExtremaWindow(out[0], out[1], out[2], out[3], out[4], old, mid, cur, last, cnt, 7, 30)
		for i := range n {
			// cur holds last now (all at step 30).
			if got, want := cur.Max[i], max(curMax0[i], last[i]); got != want || cur.MaxT[i] != 30 {
				t.Fatalf("generic %v: prefix max %v@%v after adding %v, want %v@30", generic, got, cur.MaxT[i], last[i], want)
			}
			hi, hiAge := 4.0, 10.0
			if cur.Max[i] >= 4 {
				hi, hiAge = cur.Max[i], 0
			}
			lo, loAge := 0.0, 9.0
			if cur.Min[i] <= 0 {
				lo, loAge = cur.Min[i], 0
			}
			pos := (last[i] - lo) / (hi - lo)
			want := [5]float64{hi, lo, hiAge, loAge, pos}
			for k := range want {
				if cnt[i] < 7 {
					want[k] = math.NaN()
				}
				if !sameBits(out[k][i], want[k]) {
					t.Fatalf("generic %v: window output %d of instrument %d = %v, want %v", generic, k, i, out[k][i], want[k])
				}
			}
		}
		// A flat window: range_pos NaN, the rest defined; the latest
		// occurrence is the value added now.
		flat, threes := fill(3, 1, 3, 1), make([]float64, n)
		for i := range threes {
			threes[i] = 3
		}
		ExtremaWindow(out[0], out[1], out[2], out[3], out[4], flat, flat, fill(3, 2, 3, 2), threes,
			[]int32{7, 7, 7, 7, 7, 7, 7, 7, 7}, 7, 30)
		for i := range n {
			if out[0][i] != 3 || out[1][i] != 3 || out[2][i] != 0 || out[3][i] != 0 || !math.IsNaN(out[4][i]) {
				t.Fatalf("generic %v: flat window instrument %d: %v %v %v %v %v", generic, i,
					out[0][i], out[1][i], out[2][i], out[3][i], out[4][i])
			}
		}
		SetGeneric(prev)
	}
}

func FuzzExtrema(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte, n8 uint8) {
		needAVX2(t)
		n := int(n8) % 64
		v := floats(raw, 15, n)
		ex := func(k int) *Extrema { return &Extrema{Max: v[k], MaxT: v[k+1], Min: v[k+2], MinT: v[k+3]} }
		cnt := make([]int32, n)
		for i := range cnt {
			cnt[i] = int32(i % 5)
		}
		var res [2][3]any
		onBoth(func(generic bool) {
			o, c, out := extremaRun(ex(0), ex(4), ex(8), [][]float64{v[12], v[13], v[14]}, cnt, 3)
			res[boolIndex(generic)] = [3]any{o, c, out}
		})
		checkSameExtrema(t, "merged", res[0][0].(*Extrema), res[1][0].(*Extrema))
		checkSameExtrema(t, "pushed", res[0][1].(*Extrema), res[1][1].(*Extrema))
		a, b := res[0][2].([5][]float64), res[1][2].([5][]float64)
		for k := range a {
			checkSame(t, "window output "+itoa(k), a[k], b[k])
		}
	})
}
