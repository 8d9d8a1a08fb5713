package asm

import "github.com/signald-dev/signald/internal/stats"

// Two of the updates WindowRoll fuses, each on its own and in pure Go: the
// rolling moments' (rollMomentsRef) and the exponentially weighted state's
// (ewMeanVarRef). With RollProducts for the other sums they make the
// sequence that defines WindowRoll, which its tests compare it with bit for
// bit. Products are wrapped in float64() against FMA, as in
// kernels_generic.go.

// rollMomentsRef adds xNew[i] and removes xOld[i] (the value leaving the
// window) for every i. Order per sum k: first the Neumaier add of dNew^k,
// then the Neumaier add of -(dOld^k).
func rollMomentsRef(m *Moments, xNew, xOld []float64) {
	n := len(xNew)
	xOld = xOld[:n]
	shift, s1, s2, s3, s4 := m.Shift[:n], m.S1[:n], m.S2[:n], m.S3[:n], m.S4[:n]
	c1, c2, c3, c4 := m.C1[:n], m.C2[:n], m.C3[:n], m.C4[:n]
	for i, xi := range xNew {
		d := xi - shift[i]
		d2 := float64(d * d)
		d3 := float64(d2 * d)
		d4 := float64(d2 * d2)
		o := xOld[i] - shift[i]
		o2 := float64(o * o)
		o3 := float64(o2 * o)
		o4 := float64(o2 * o2)
		s, c := stats.NeumaierAdd(s1[i], c1[i], d)
		s1[i], c1[i] = stats.NeumaierAdd(s, c, -o)
		s, c = stats.NeumaierAdd(s2[i], c2[i], d2)
		s2[i], c2[i] = stats.NeumaierAdd(s, c, -o2)
		s, c = stats.NeumaierAdd(s3[i], c3[i], d3)
		s3[i], c3[i] = stats.NeumaierAdd(s, c, -o3)
		s, c = stats.NeumaierAdd(s4[i], c4[i], d4)
		s4[i], c4[i] = stats.NeumaierAdd(s, c, -o4)
	}
}

// ewMeanVarRef updates exponentially weighted mean and variance with weight
// alpha in (0,1]: d = x-mean; ad = alpha*d; mean = mean + ad;
// vari = (1-alpha)*(vari + ad*d), with 1-alpha computed once.
func ewMeanVarRef(mean, vari, x []float64, alpha float64) {
	oneMinus := 1 - alpha
	n := len(x)
	mean, vari = mean[:n], vari[:n]
	for i, xi := range x {
		d := xi - mean[i]
		ad := float64(alpha * d)
		mean[i] += ad
		vari[i] = oneMinus * (vari[i] + float64(ad*d))
	}
}
