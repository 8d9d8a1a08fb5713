package features

import "math"

// ksum is a Neumaier-compensated sum: the value is s + c, where c collects the
// low-order bits lost by each addition. Its error does not grow with the number
// of additions, which is what lets rolling sums add and remove values for
// millions of steps without drifting.
type ksum struct{ s, c float64 }

func (k *ksum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

func (k *ksum) value() float64 { return k.s + k.c }
