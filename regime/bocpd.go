package regime

import (
	"math"
)

// bocpd is Bayesian online changepoint detection (Adams & MacKay 2007) with a
// Normal-Gamma prior on each segment's mean and precision, a constant hazard
// and a truncated set of run-length hypotheses. Its parameters are shared by
// every instrument; bocpdState is one instrument's posterior.
type bocpd struct {
	hazard  float64
	logH    float64 // ln hazard
	log1mH  float64 // ln(1-hazard)
	maxHyp  int
	kappa0  float64
	alpha0  float64
	beta0   float64
	minDrop int
	confirm int
	// lps is scratch for the log predictives of one step. A bocpd is used
	// by one goroutine at a time (Detectors.Step holds its lock).
	lps []float64
	// gTab[n] = lgamma(alpha0+n/2+1/2) - lgamma(alpha0+n/2): the Student-t
	// normalizer depends on the run's observation count only.
	gTab []float64
}

// pruneBelow drops hypotheses whose posterior probability falls below it.
const pruneBelow = 1e-8

func newBOCPD(hazard float64, maxHyp, minDrop, confirm int) *bocpd {
	b := &bocpd{hazard: hazard, logH: math.Log(hazard), log1mH: math.Log1p(-hazard), maxHyp: maxHyp,
		kappa0: 1, alpha0: 1, beta0: 1, minDrop: minDrop, confirm: confirm}
	b.lps = make([]float64, maxHyp+1)
	b.gTab = make([]float64, 4096)
	for n := range b.gTab {
		b.gTab[n] = b.g(n)
	}
	return b
}

// logPred is the log predictive density of x for a run with n observations
// and posterior mean mu and beta: Student-t with 2*alpha degrees of freedom,
// location mu and squared scale beta(kappa+1)/(alpha kappa).
func (b *bocpd) logPred(n int, mu, beta, x float64) float64 {
	kappa := b.kappa0 + float64(n)
	alpha := b.alpha0 + float64(n)/2
	var g float64
	if n < len(b.gTab) {
		g = b.gTab[n]
	} else {
		g = b.g(n)
	}
	d := x - mu
	v := 2 * beta * (kappa + 1) / kappa // = 2 alpha * scale²
	return g - 0.5*math.Log(math.Pi*v) - (alpha+0.5)*math.Log1p(d*d/v)
}

func (b *bocpd) g(n int) float64 {
	a := b.alpha0 + float64(n)/2
	l1, _ := math.Lgamma(a + 0.5)
	l0, _ := math.Lgamma(a)
	return l1 - l0
}

// bocpdState holds the run-length hypotheses of one instrument, in no
// particular order (the newest, run length 0, is appended each step). Its slices
// are allocated once with capacity maxHyp+1.
type bocpdState struct {
	n     []int32   // observations in the run (= run length)
	mu    []float64 // posterior mean
	beta  []float64 // posterior beta (kappa and alpha follow from n)
	p     []float64 // posterior probability, normalized
	steps int
	mapRL int     // most probable run length after the last step
	mapMu float64 // that run's posterior mean of x
	// candidate changepoint: the step its run began (0: none) and the MAP
	// run length before the drop
	candStart, candAt, candPrev int
}

func (b *bocpd) newState() bocpdState {
	c := b.maxHyp + 1
	return bocpdState{n: make([]int32, 0, c), mu: make([]float64, 0, c), beta: make([]float64, 0, c), p: make([]float64, 0, c)}
}

// step adds observation x, with mu0 the prior mean of a new run, and reports a confirmed changepoint (see below) and
// the posterior probability that a change happened within the last mapRL+1
// steps.
//
// Cost: O(maxHyp) with two logarithms per hypothesis; maxHyp is a constant,
// so O(1) per step and instrument.
func (b *bocpd) step(s *bocpdState, x, mu0 float64) (changed bool, cpProb float64) {
	if s.steps == 0 {
		// The first observation starts the first run.
		s.n, s.mu, s.beta, s.p = s.n[:0], s.mu[:0], s.beta[:0], s.p[:0]
	}
	// Predictive likelihood of x under each hypothesis, relative to the
	// largest: Student-t with 2*alpha dof, location mu, scale² beta(k+1)/(alpha k).
	h := len(s.n)
	// The new run (a change at this step) predicts x from the prior.
	lpNew := b.logPred(0, mu0, b.beta0, x)
	maxLP := lpNew
	lps := b.lps[:h]
	for i := range h {
		n := int(s.n[i])
		lp := b.logPred(n, s.mu[i], s.beta[i], x)
		lps[i] = lp
		maxLP = max(maxLP, lp)
		// posterior update of the hypothesis with x
		kappa := b.kappa0 + float64(n)
		d := x - s.mu[i]
		s.mu[i] += d / (kappa + 1)
		s.beta[i] += kappa * d * d / (2 * (kappa + 1))
		s.n[i]++
	}
	// P(r_t = r+1, x_1..t) ∝ P(r_{t-1} = r | x_1..t-1) p(x_t | run r) (1-H)
	// P(r_t = 0,   x_1..t) ∝ p(x_t | prior) H
	// (predictives relative to the largest, so nothing underflows to 0
	// together; the common factor goes away in the normalization)
	for i := range h {
		s.p[i] *= math.Exp(lps[i]-maxLP) * (1 - b.hazard)
	}
	cp := math.Exp(lpNew-maxLP) * b.hazard
	if h == 0 {
		cp = 1
	}
	// The new run's posterior has seen x.
	d := x - mu0
	s.n = append(s.n, 1)
	s.mu = append(s.mu, mu0+d/(b.kappa0+1))
	s.beta = append(s.beta, b.beta0+b.kappa0*d*d/(2*(b.kappa0+1)))
	s.p = append(s.p, cp)

	// normalize, prune, truncate
	sum := 0.0
	for _, v := range s.p {
		sum += v
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		// x was NaN or Inf: cannot happen (callers filter); start over.
		s.steps = 0
		return false, 0
	}
	j := 0
	minI, minP := -1, math.Inf(1)
	for i := range s.p {
		p := s.p[i] / sum
		if p < pruneBelow && i != len(s.p)-1 {
			continue
		}
		s.n[j], s.mu[j], s.beta[j], s.p[j] = s.n[i], s.mu[i], s.beta[i], p
		if p < minP {
			minI, minP = j, p
		}
		j++
	}
	s.n, s.mu, s.beta, s.p = s.n[:j], s.mu[:j], s.beta[:j], s.p[:j]
	if j > b.maxHyp {
		// Drop the least probable hypothesis (one per step keeps the set
		// at maxHyp): the last one takes its slot (order does not matter),
		// then renormalize.
		j--
		s.n[minI], s.mu[minI], s.beta[minI], s.p[minI] = s.n[j], s.mu[j], s.beta[j], s.p[j]
		s.n, s.mu, s.beta, s.p = s.n[:j], s.mu[:j], s.beta[:j], s.p[:j]
		r := 1 / (1 - minP)
		for i := range s.p {
			s.p[i] *= r
		}
	}
	// MAP run length (run length = observations in the run - 1, so that a
	// run that started at this step has run length 0)
	best := 0
	for i := range s.p {
		if s.p[i] > s.p[best] {
			best = i
		}
	}
	prev := s.mapRL
	s.mapRL = int(s.n[best]) - 1
	s.mapMu = s.mu[best]
	s.steps++
	// A drop of the MAP run length by minDrop or more, to less than half,
	// starts a candidate changepoint; it is confirmed once the new run has
	// stayed the most probable for confirm more steps (a single fat-tailed print briefly favours
	// a fresh run, then the old run takes over again and the candidate is
	// dropped).
	start := s.steps - s.mapRL
	switch {
	case s.steps > 1 && prev-s.mapRL >= b.minDrop && 2*s.mapRL < prev:
		// A drop to a much more recent run. (A small relative drop between
		// two old runs only moves the estimated date of an old change.)
		if s.candStart == 0 {
			s.candPrev = prev
		}
		s.candStart, s.candAt = start, s.steps
	case s.candStart != 0 && start < s.candStart-b.minDrop:
		s.candStart = 0 // an old run is back
	case s.candStart != 0:
		s.candStart = start // the change's estimated date moved a little
	}
	if s.candStart != 0 && s.steps-s.candAt >= b.confirm {
		s.candStart = 0
		for i := range s.p {
			if int(s.n[i])-1 <= s.mapRL {
				cpProb += s.p[i]
			}
		}
		return true, cpProb
	}
	return false, 0
}
