package regime

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/signald-dev/signald/internal/stats"
)

// ModelFormat is the format version of a model file. Bump it when a field
// changes meaning; readers reject other versions.
const ModelFormat = 1

// MaxStates bounds the number of HMM states (the per-instrument filter keeps
// its probabilities in a fixed array).
const MaxStates = 4

// HMM input features, computed per instrument by the detectors from the
// feature columns (see Inputs):
//
//	log_vol_ratio = ln(ret_std_W) - EW mean of ln(ret_std_W)   (vol vs its own baseline)
//	abs_trend_t   = |ret_mean_W * sqrt(W) / ret_std_W|        (t-statistic of the W-step return)
//
// Both are scale-free, so one model serves instruments of any price or
// volatility level.
var hmmFeatures = []string{"log_vol_ratio", "abs_trend_t"}

// Inputs are the parameters of the per-instrument input derivation; they are
// part of the model because a model is only valid for the inputs it was
// fitted on.
type Inputs struct {
	// Window is W above, in steps: the window of the ret_mean and ret_std
	// columns.
	Window int `json:"window"`
	// VolHalfLife is the half-life, in steps, of the EW baseline of
	// ln(ret_std_W).
	VolHalfLife int `json:"vol_half_life"`
}

// Training records how a model was fitted.
type Training struct {
	Source        string  `json:"source"`
	Sequences     int     `json:"sequences"`
	Observations  int     `json:"observations"`
	LogLikelihood float64 `json:"log_likelihood"` // per observation
	Restarts      int     `json:"restarts"`
	Iterations    int     `json:"iterations"` // of the best restart
	Seed          uint64  `json:"seed"`
}

// Model is a Gaussian HMM with diagonal covariances over the HMM input
// features. States are ordered and named by volatility and trend (see
// labelStates). It is the content of a model file (JSON).
type Model struct {
	Format      int         `json:"format"`
	Version     string      `json:"version"` // content hash, set by Finalize
	Features    []string    `json:"features"`
	Inputs      Inputs      `json:"inputs"`
	States      []string    `json:"states"`
	Means       [][]float64 `json:"means"`     // [state][feature]
	Variances   [][]float64 `json:"variances"` // [state][feature]
	Transitions [][]float64 `json:"transitions"`
	Initial     []float64   `json:"initial"`
	Training    Training    `json:"training"`
}

// minVariance and minProb keep a fitted model usable: no state collapses onto
// a point and every transition stays possible, so the filter can always leave
// a state.
const (
	minVariance = 1e-4
	minProb     = 1e-6
)

// Validate checks the model's shape and values.
func (m *Model) Validate() error {
	k := len(m.States)
	switch {
	case m.Format != ModelFormat:
		return fmt.Errorf("regime model: format %d, this build reads format %d", m.Format, ModelFormat)
	case !slices.Equal(m.Features, hmmFeatures):
		return fmt.Errorf("regime model: features %q, want %q", m.Features, hmmFeatures)
	case k < 2 || k > MaxStates:
		return fmt.Errorf("regime model: %d states, want 2 to %d", k, MaxStates)
	case m.Inputs.Window < 2:
		return fmt.Errorf("regime model: inputs.window %d: must be >= 2", m.Inputs.Window)
	case m.Inputs.VolHalfLife < 1:
		return fmt.Errorf("regime model: inputs.vol_half_life %d: must be >= 1", m.Inputs.VolHalfLife)
	case len(m.Means) != k || len(m.Variances) != k || len(m.Transitions) != k || len(m.Initial) != k:
		return fmt.Errorf("regime model: means, variances, transitions and initial must have one entry per state (%d)", k)
	}
	seen := map[string]bool{}
	for _, s := range m.States {
		if s == "" || seen[s] || reservedValue[s] {
			return fmt.Errorf("regime model: state name %q: empty, duplicate or reserved", s)
		}
		seen[s] = true
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if err := checkDist(m.Initial); err != nil {
		return fmt.Errorf("regime model: initial: %w", err)
	}
	for i := range k {
		if len(m.Means[i]) != len(m.Features) || len(m.Variances[i]) != len(m.Features) || len(m.Transitions[i]) != k {
			return fmt.Errorf("regime model: state %s: wrong number of means, variances or transitions", m.States[i])
		}
		for d := range m.Features {
			if !finite(m.Means[i][d]) || !finite(m.Variances[i][d]) || m.Variances[i][d] <= 0 {
				return fmt.Errorf("regime model: state %s feature %s: mean %v variance %v: want finite, variance > 0",
					m.States[i], m.Features[d], m.Means[i][d], m.Variances[i][d])
			}
		}
		if err := checkDist(m.Transitions[i]); err != nil {
			return fmt.Errorf("regime model: transitions from %s: %w", m.States[i], err)
		}
	}
	return nil
}

func checkDist(p []float64) error {
	s := 0.0
	for _, v := range p {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("probability %v not in [0,1]", v)
		}
		s += v
	}
	if math.Abs(s-1) > 1e-6 {
		return fmt.Errorf("probabilities sum to %v, want 1", s)
	}
	return nil
}

// Finalize sets Version to a hash of the model's parameters (not of its
// training metadata), so that the same parameters always have the same
// version and signal ids.
func (m *Model) Finalize() {
	h := xxhash.New()
	b, _ := json.Marshal(struct {
		F  int
		Fs []string
		I  Inputs
		S  []string
		M  [][]float64
		V  [][]float64
		T  [][]float64
		P  []float64
	}{m.Format, m.Features, m.Inputs, m.States, m.Means, m.Variances, m.Transitions, m.Initial})
	h.Write(b)
	m.Version = fmt.Sprintf("hmm%d-%016x", len(m.States), h.Sum64())
}

// ParseModel decodes and validates a model file.
func ParseModel(b []byte) (*Model, error) {
	var m Model
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("regime model: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	want := m.Version
	m.Finalize()
	if want != m.Version {
		return nil, fmt.Errorf("regime model: version %q does not match its parameters (%q): edited by hand? refit it or set version to the latter", want, m.Version)
	}
	return &m, nil
}

// hmm is a model prepared for filtering.
type hmm struct {
	k       int
	d       int
	mean    [MaxStates][2]float64
	invVar  [MaxStates][2]float64
	logNorm [MaxStates]float64 // -0.5 * sum ln(2 pi var)
	trans   [MaxStates][MaxStates]float64
	initial [MaxStates]float64
}

func newHMM(m *Model) *hmm {
	h := &hmm{k: len(m.States), d: len(m.Features)}
	for i := range h.k {
		h.initial[i] = m.Initial[i]
		for j := range h.k {
			h.trans[i][j] = m.Transitions[i][j]
		}
		for d := range h.d {
			h.mean[i][d] = m.Means[i][d]
			h.invVar[i][d] = 1 / m.Variances[i][d]
			h.logNorm[i] -= 0.5 * math.Log(2*math.Pi*m.Variances[i][d])
		}
	}
	return h
}

// logEmission returns ln N(x; mean_j, diag var_j).
func (h *hmm) logEmission(j int, x *[2]float64) float64 {
	s := h.logNorm[j]
	for d := range h.d {
		e := x[d] - h.mean[j][d]
		s -= 0.5 * e * e * h.invVar[j][d]
	}
	return s
}

// filter is one instrument's forward-filter state: the filtered
// probabilities P(state_t | x_1..x_t).
type filter struct {
	p     [MaxStates]float64
	n     int // observations filtered
	loglk float64
}

// step advances the forward recursion by one observation:
//
//	p_t(j) ∝ b_j(x_t) · Σ_i p_{t-1}(i) A_ij      (p_0 = initial)
//
// normalized every step. Emissions are taken relative to their largest log
// value, so an observation far from every state cannot underflow all of them
// to zero; the prediction is positive for every state because transitions are
// floored at minProb when fitting.
func (h *hmm) step(f *filter, x *[2]float64) {
	var pred, lb [MaxStates]float64
	if f.n == 0 {
		pred = h.initial
	} else {
		for j := range h.k {
			s := 0.0
			for i := range h.k {
				s += f.p[i] * h.trans[i][j]
			}
			pred[j] = s
		}
	}
	maxLB := math.Inf(-1)
	for j := range h.k {
		lb[j] = h.logEmission(j, x)
		maxLB = max(maxLB, lb[j])
	}
	sum := 0.0
	for j := range h.k {
		v := pred[j] * math.Exp(lb[j]-maxLB)
		f.p[j] = v
		sum += v
	}
	if !(sum > 0) || math.IsInf(maxLB, 0) || math.IsNaN(maxLB) {
		// Cannot happen with a valid model and finite x; keep the
		// prediction rather than produce NaN.
		copy(f.p[:h.k], pred[:h.k])
		return
	}
	for j := range h.k {
		f.p[j] /= sum
	}
	f.loglk += math.Log(sum) + maxLB
	f.n++
}

// FitConfig configures Fit. The zero value of each field selects its default.
type FitConfig struct {
	// States is the number of states, 2 to 4; default 3 (calm, trending,
	// volatile).
	States int
	// Restarts is the number of k-means initializations, each with its own
	// seed derived from Seed; the fit with the best likelihood wins; default 4.
	Restarts int
	// Seed makes the fit deterministic; default 1.
	Seed uint64
	// MaxIter bounds Baum-Welch iterations per restart; default 200.
	MaxIter int
	// Tol stops a restart when the log-likelihood per observation improves by
	// less; default 1e-7.
	Tol float64
	// Inputs are the input derivation parameters the sequences were computed
	// with; default Window 60, VolHalfLife 900.
	Inputs Inputs
	// Source describes the training data in the model's metadata.
	Source string
}

// Defaults of FitConfig and Inputs.
const (
	DefaultStates      = 3
	DefaultRestarts    = 4
	DefaultMaxIter     = 200
	DefaultWindow      = 60
	DefaultVolHalfLife = 900
)

func (c FitConfig) withDefaults() (FitConfig, error) {
	c.States = cmp.Or(c.States, DefaultStates)
	c.Restarts = cmp.Or(c.Restarts, DefaultRestarts)
	c.Seed = cmp.Or(c.Seed, 1)
	c.MaxIter = cmp.Or(c.MaxIter, DefaultMaxIter)
	c.Tol = cmp.Or(c.Tol, 1e-7)
	c.Inputs = c.Inputs.withDefaults()
	if c.States < 2 || c.States > MaxStates {
		return c, fmt.Errorf("regime fit: states %d: want 2 to %d", c.States, MaxStates)
	}
	if c.Restarts < 1 || c.MaxIter < 1 {
		return c, errors.New("regime fit: restarts and max iterations must be >= 1")
	}
	return c, nil
}

func (in Inputs) withDefaults() Inputs {
	in.Window = cmp.Or(in.Window, DefaultWindow)
	in.VolHalfLife = cmp.Or(in.VolHalfLife, DefaultVolHalfLife)
	return in
}

// Fit estimates a Gaussian HMM from observation sequences (each a slice of
// HMM input vectors of one instrument, in time order; a gap starts a new
// sequence) by Baum-Welch with per-step scaling, from k-means
// initializations, and names the states (see labelStates). Deterministic for
// a given input and config.
func Fit(seqs [][][2]float64, cfg FitConfig) (*Model, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var seqsOK [][][2]float64
	n := 0
	for _, s := range seqs {
		if len(s) >= 2 {
			seqsOK = append(seqsOK, s)
			n += len(s)
		}
	}
	if n < 20*cfg.States {
		return nil, fmt.Errorf("regime fit: %d observations, need at least %d (more history, or fewer states)", n, 20*cfg.States)
	}
	var best *bwModel
	for r := range cfg.Restarts {
		m := kmeansInit(seqsOK, cfg.States, cfg.Seed+uint64(r)*0x9e3779b97f4a7c15)
		baumWelch(m, seqsOK, cfg.MaxIter, cfg.Tol)
		if best == nil || m.ll > best.ll {
			best = m
		}
	}
	out := best.model(cfg, len(seqsOK), n)
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("regime fit: %w", err)
	}
	return out, nil
}

// bwModel is the working model of Baum-Welch.
type bwModel struct {
	k     int
	mean  [][2]float64
	vr    [][2]float64
	trans [][]float64
	init  []float64
	ll    float64 // per observation
	iters int
}

func newBW(k int) *bwModel {
	m := &bwModel{k: k, mean: make([][2]float64, k), vr: make([][2]float64, k), init: make([]float64, k), trans: make([][]float64, k)}
	for i := range k {
		m.trans[i] = make([]float64, k)
	}
	return m
}

func (m *bwModel) logEmission(j int, x [2]float64) float64 {
	s := 0.0
	for d := range 2 {
		e := x[d] - m.mean[j][d]
		s -= 0.5 * (e*e/m.vr[j][d] + math.Log(2*math.Pi*m.vr[j][d]))
	}
	return s
}

// baumWelch runs EM until the log-likelihood per observation improves by
// less than tol. Forward and backward passes are scaled per step (Rabiner):
// alpha is normalized at every t with its sum c_t, beta divided by the same
// c_{t+1}, and ln L = Σ ln c_t + Σ m_t, where m_t is the largest log emission
// at t, subtracted before exponentiating.
func baumWelch(m *bwModel, seqs [][][2]float64, maxIter int, tol float64) {
	k := m.k
	maxT := 0
	total := 0
	for _, s := range seqs {
		maxT = max(maxT, len(s))
		total += len(s)
	}
	alpha := make([]float64, maxT*k)
	beta := make([]float64, maxT*k)
	b := make([]float64, maxT*k)
	c := make([]float64, maxT)
	prev := math.Inf(-1)
	for it := 1; it <= maxIter; it++ {
		initAcc := make([]float64, k)
		transNum := make([][]float64, k)
		for i := range transNum {
			transNum[i] = make([]float64, k)
		}
		gSum := make([]float64, k)   // Σγ over all t
		gSumTr := make([]float64, k) // Σγ over t < T-1
		gx := make([][2]float64, k)  // Σγ x
		gxx := make([][2]float64, k) // Σγ x² (about the current mean: stable)
		ll := 0.0
		for _, s := range seqs {
			T := len(s)
			for t := range T {
				mx := math.Inf(-1)
				for j := range k {
					b[t*k+j] = m.logEmission(j, s[t])
					mx = max(mx, b[t*k+j])
				}
				for j := range k {
					b[t*k+j] = math.Exp(b[t*k+j] - mx)
				}
				ll += mx
			}
			// forward
			for t := range T {
				sum := 0.0
				for j := range k {
					var p float64
					if t == 0 {
						p = m.init[j]
					} else {
						for i := range k {
							p += alpha[(t-1)*k+i] * m.trans[i][j]
						}
					}
					p *= b[t*k+j]
					alpha[t*k+j] = p
					sum += p
				}
				if sum <= 0 {
					sum = math.SmallestNonzeroFloat64
				}
				c[t] = sum
				for j := range k {
					alpha[t*k+j] /= sum
				}
				ll += math.Log(sum)
			}
			// backward
			for j := range k {
				beta[(T-1)*k+j] = 1
			}
			for t := T - 2; t >= 0; t-- {
				for i := range k {
					s := 0.0
					for j := range k {
						s += m.trans[i][j] * b[(t+1)*k+j] * beta[(t+1)*k+j]
					}
					beta[t*k+i] = s / c[t+1]
				}
			}
			// accumulate
			for t := range T {
				for i := range k {
					g := alpha[t*k+i] * beta[t*k+i]
					if t == 0 {
						initAcc[i] += g
					}
					gSum[i] += g
					for d := range 2 {
						e := s[t][d] - m.mean[i][d]
						gx[i][d] += g * e
						gxx[i][d] += g * e * e
					}
					if t < T-1 {
						gSumTr[i] += g
						for j := range k {
							transNum[i][j] += alpha[t*k+i] * m.trans[i][j] * b[(t+1)*k+j] * beta[(t+1)*k+j] / c[t+1]
						}
					}
				}
			}
		}
		ll /= float64(total)
		m.ll, m.iters = ll, it
		// M step
		for i := range k {
			m.init[i] = initAcc[i] / float64(len(seqs))
			for j := range k {
				m.trans[i][j] = transNum[i][j] / max(gSumTr[i], 1e-300)
			}
			if gSum[i] > 0 {
				for d := range 2 {
					dm := gx[i][d] / gSum[i]
					m.vr[i][d] = max(gxx[i][d]/gSum[i]-dm*dm, minVariance)
					m.mean[i][d] += dm
				}
			}
		}
		m.floor()
		if ll-prev < tol {
			break
		}
		prev = ll
	}
}

// floor keeps every probability at least minProb and renormalizes.
func (m *bwModel) floor() {
	fl := func(p []float64) {
		s := 0.0
		for i := range p {
			if !(p[i] >= minProb) {
				p[i] = minProb
			}
			s += p[i]
		}
		for i := range p {
			p[i] /= s
		}
	}
	fl(m.init)
	for i := range m.trans {
		fl(m.trans[i])
	}
}

// kmeansInit seeds a model by k-means++ and Lloyd iterations on the pooled
// observations (standardized per feature), with a self-transition of 0.95.
func kmeansInit(seqs [][][2]float64, k int, seed uint64) *bwModel {
	var pts [][2]float64
	for _, s := range seqs {
		pts = append(pts, s...)
	}
	// Subsample deterministically: k-means only needs a rough start.
	if len(pts) > 20000 {
		stride := len(pts) / 20000
		sub := make([][2]float64, 0, 20000)
		for i := 0; i < len(pts); i += stride {
			sub = append(sub, pts[i])
		}
		pts = sub
	}
	var mu, sd [2]float64
	for d := range 2 {
		var w stats.Welford
		for _, p := range pts {
			w.Add(p[d])
		}
		mu[d], sd[d] = w.Mean(), max(math.Sqrt(w.Var()), 1e-9)
	}
	z := make([][2]float64, len(pts))
	for i, p := range pts {
		for d := range 2 {
			z[i][d] = (p[d] - mu[d]) / sd[d]
		}
	}
	rng := newSplitMix(seed)
	cent := make([][2]float64, 0, k)
	cent = append(cent, z[rng.intn(len(z))])
	dist := make([]float64, len(z))
	for len(cent) < k {
		tot := 0.0
		for i, p := range z {
			dmin := math.Inf(1)
			for _, c := range cent {
				dmin = min(dmin, sq(p[0]-c[0])+sq(p[1]-c[1]))
			}
			dist[i] = dmin
			tot += dmin
		}
		r := rng.float64() * tot
		pick := len(z) - 1
		for i, d := range dist {
			if r -= d; r <= 0 {
				pick = i
				break
			}
		}
		cent = append(cent, z[pick])
	}
	assign := make([]int, len(z))
	for range 50 {
		changed := false
		for i, p := range z {
			bi, bd := 0, math.Inf(1)
			for j, c := range cent {
				if d := sq(p[0]-c[0]) + sq(p[1]-c[1]); d < bd {
					bi, bd = j, d
				}
			}
			if assign[i] != bi {
				assign[i], changed = bi, true
			}
		}
		var sum [MaxStates][2]float64
		var cnt [MaxStates]int
		for i, p := range z {
			sum[assign[i]][0] += p[0]
			sum[assign[i]][1] += p[1]
			cnt[assign[i]]++
		}
		for j := range cent {
			if cnt[j] > 0 {
				cent[j] = [2]float64{sum[j][0] / float64(cnt[j]), sum[j][1] / float64(cnt[j])}
			}
		}
		if !changed {
			break
		}
	}
	m := newBW(k)
	var ws [MaxStates][2]stats.Welford
	for i, p := range pts {
		ws[assign[i]][0].Add(p[0])
		ws[assign[i]][1].Add(p[1])
	}
	for j := range k {
		for d := range 2 {
			if ws[j][d].N() > 1 {
				m.mean[j][d] = ws[j][d].Mean()
				m.vr[j][d] = max(ws[j][d].Var(), minVariance)
			} else {
				m.mean[j][d] = cent[j][d]*sd[d] + mu[d]
				m.vr[j][d] = max(sd[d]*sd[d], minVariance)
			}
		}
		m.init[j] = 1 / float64(k)
		for i := range k {
			m.trans[j][i] = 0.05 / float64(k-1)
		}
		m.trans[j][j] = 0.95
	}
	return m
}

func sq(x float64) float64 { return x * x }

// model names and orders the states and returns the model.
func (m *bwModel) model(cfg FitConfig, nSeq, nObs int) *Model {
	order, names := labelStates(m.mean)
	out := &Model{
		Format:   ModelFormat,
		Features: slices.Clone(hmmFeatures),
		Inputs:   cfg.Inputs,
		States:   names,
		Training: Training{Source: cfg.Source, Sequences: nSeq, Observations: nObs, LogLikelihood: m.ll,
			Restarts: cfg.Restarts, Iterations: m.iters, Seed: cfg.Seed},
	}
	for _, i := range order {
		out.Means = append(out.Means, []float64{m.mean[i][0], m.mean[i][1]})
		out.Variances = append(out.Variances, []float64{m.vr[i][0], m.vr[i][1]})
		out.Initial = append(out.Initial, m.init[i])
		row := make([]float64, len(order))
		for jj, j := range order {
			row[jj] = m.trans[i][j]
		}
		out.Transitions = append(out.Transitions, row)
	}
	out.Finalize()
	return out
}

// labelStates orders states and names them: the state with the highest mean
// log_vol_ratio is "volatile"; of the others, the one with the highest mean
// abs_trend_t is "trending"; with four states the lower-volatility of the
// remaining two is "quiet". Order: quiet, calm, trending, volatile (as
// present).
func labelStates(mean [][2]float64) (order []int, names []string) {
	k := len(mean)
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	// ascending volatility
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(mean[a][0], mean[b][0]) })
	volatile := idx[k-1]
	rest := idx[:k-1]
	if k == 2 {
		return []int{rest[0], volatile}, []string{StateCalm, StateVolatile}
	}
	trend := rest[0]
	for _, i := range rest {
		if mean[i][1] > mean[trend][1] {
			trend = i
		}
	}
	var others []int // ascending volatility
	for _, i := range rest {
		if i != trend {
			others = append(others, i)
		}
	}
	if k == 3 {
		return []int{others[0], trend, volatile}, []string{StateCalm, StateTrending, StateVolatile}
	}
	return []int{others[0], others[1], trend, volatile}, []string{StateQuiet, StateCalm, StateTrending, StateVolatile}
}

// Regime state names.
const (
	StateQuiet    = "quiet"
	StateCalm     = "calm"
	StateTrending = "trending"
	StateVolatile = "volatile"
)

// splitMix is a tiny deterministic generator (SplitMix64), so fits and
// synthetic streams do not depend on math/rand's algorithm choices.
type splitMix struct{ s uint64 }

func newSplitMix(seed uint64) *splitMix { return &splitMix{seed} }

func (r *splitMix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *splitMix) float64() float64 { return float64(r.next()>>11) / (1 << 53) }
func (r *splitMix) intn(n int) int   { return int(r.next() % uint64(n)) }

// norm returns a standard normal variate (Box-Muller; one of the pair).
func (r *splitMix) norm() float64 {
	u := r.float64()
	for u == 0 {
		u = r.float64()
	}
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float64())
}
