package stats

import "math"

// Neumaier is a compensated sum (Neumaier's variant of Kahan summation): the
// value is s + c, where c collects the low-order bits each addition loses.
// Its error is about an ulp of the result plus n*eps^2 times the sum of the
// magnitudes, whatever the cancellation (adding x and later -x), which is
// what lets rolling sums add and remove values for millions of steps
// without drifting. The zero value is an empty sum.
type Neumaier struct{ s, c float64 }

// Add adds x to the sum.
func (k *Neumaier) Add(x float64) { k.s, k.c = NeumaierAdd(k.s, k.c, x) }

// Value is the compensated sum.
func (k Neumaier) Value() float64 { return k.s + k.c }

// NeumaierAdd is Neumaier's step for a sum kept as two numbers (s, c), as
// the structure-of-arrays kernels of features/asm keep theirs: it returns the
// new s and c after adding x. Its operation order is what the AVX2 kernels
// mirror, so that both agree bit for bit; a NaN in s or x takes the else
// branch, as the kernels' blend does.
func NeumaierAdd(s, c, x float64) (float64, float64) {
	t := s + x
	if math.Abs(s) >= math.Abs(x) {
		c += (s - t) + x
	} else {
		c += (x - t) + s
	}
	return t, c
}
