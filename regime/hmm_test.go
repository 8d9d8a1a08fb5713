package regime

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func testModel2() *Model {
	m := &Model{
		Format: ModelFormat, Features: hmmFeatures, Inputs: Inputs{Window: 60, VolHalfLife: 900},
		States:      []string{StateCalm, StateVolatile},
		Means:       [][]float64{{0, 0}, {2, 0}},
		Variances:   [][]float64{{1, 1}, {1, 1}},
		Transitions: [][]float64{{0.9, 0.1}, {0.2, 0.8}},
		Initial:     []float64{0.5, 0.5},
	}
	m.Finalize()
	return m
}

// TestHMMFilterHandComputed: a two-state example worked by hand.
//
//	x1 = (1,0): both states equally likely: p = (0.5, 0.5)
//	x2 = (2,0): prediction (0.55, 0.45); emissions ∝ (e^-2, 1)
//	            p_calm = 0.55 e^-2 / (0.55 e^-2 + 0.45) = 0.141932727829727
//	x3 = (0,0): prediction (0.2 + 0.7 p_calm, ...); emissions ∝ (1, e^-2)
//	            p_calm = 0.759441292114800
func TestHMMFilterHandComputed(t *testing.T) {
	h := newHMM(testModel2())
	var f filter
	for i, c := range []struct {
		x    [2]float64
		want float64
	}{{[2]float64{1, 0}, 0.5}, {[2]float64{2, 0}, 0.141932727829727}, {[2]float64{0, 0}, 0.759441292114800}} {
		h.step(&f, &c.x)
		if math.Abs(f.p[0]-c.want) > 1e-12 || math.Abs(f.p[0]+f.p[1]-1) > 1e-15 {
			t.Errorf("step %d: p = %v, want calm %v", i, f.p[:2], c.want)
		}
	}
}

// TestHMMFilterMatchesNaive compares the normalized filter with the plain
// unnormalized forward recursion on a 3-state model, and its log-likelihood
// with ln Σ alpha_T.
func TestHMMFilterMatchesNaive(t *testing.T) {
	m := DefaultModel()
	h := newHMM(m)
	rng := newSplitMix(5)
	var f filter
	k := len(m.States)
	alpha := make([]float64, k)
	for step := range 60 {
		x := [2]float64{0.6 * rng.norm(), math.Abs(1.5 * rng.norm())}
		b := func(j int) float64 {
			p := 1.0
			for d := range 2 {
				v := m.Variances[j][d]
				e := x[d] - m.Means[j][d]
				p *= math.Exp(-0.5*e*e/v) / math.Sqrt(2*math.Pi*v)
			}
			return p
		}
		next := make([]float64, k)
		for j := range k {
			if step == 0 {
				next[j] = m.Initial[j] * b(j)
				continue
			}
			s := 0.0
			for i := range k {
				s += alpha[i] * m.Transitions[i][j]
			}
			next[j] = s * b(j)
		}
		alpha = next
		h.step(&f, &x)
		sum := 0.0
		for _, a := range alpha {
			sum += a
		}
		for j := range k {
			if math.Abs(f.p[j]-alpha[j]/sum) > 1e-12 {
				t.Fatalf("step %d state %d: filter %v, naive %v", step, j, f.p[j], alpha[j]/sum)
			}
		}
		if math.Abs(f.loglk-math.Log(sum)) > 1e-9*math.Abs(math.Log(sum)) {
			t.Fatalf("step %d: log-likelihood %v, naive %v", step, f.loglk, math.Log(sum))
		}
	}
}

// TestHMMFilterExtremes: observations far from every state neither underflow
// nor produce NaN, and the filter recovers afterwards.
func TestHMMFilterExtremes(t *testing.T) {
	h := newHMM(DefaultModel())
	var f filter
	for _, x := range [][2]float64{{1e6, 1e6}, {-1e6, 0}, {0, 1e300}, {0.6, 0.8}, {0.6, 0.8}, {0.6, 0.8}} {
		h.step(&f, &x)
		sum := 0.0
		for j := range h.k {
			if math.IsNaN(f.p[j]) || f.p[j] < 0 {
				t.Fatalf("x %v: p %v", x, f.p)
			}
			sum += f.p[j]
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Fatalf("x %v: p sums to %v", x, sum)
		}
	}
	if f.p[2] < 0.5 {
		t.Errorf("after volatile-looking inputs, P(volatile) = %v", f.p[2])
	}
}

// sampleHMM draws sequences from a known model.
func sampleHMM(m *Model, seqs, T int, seed uint64) [][][2]float64 {
	rng := newSplitMix(seed)
	draw := func(p []float64) int {
		u := rng.float64()
		for i, v := range p {
			if u -= v; u < 0 {
				return i
			}
		}
		return len(p) - 1
	}
	out := make([][][2]float64, seqs)
	for s := range out {
		st := draw(m.Initial)
		for range T {
			var x [2]float64
			for d := range 2 {
				x[d] = m.Means[st][d] + math.Sqrt(m.Variances[st][d])*rng.norm()
			}
			out[s] = append(out[s], x)
			st = draw(m.Transitions[st])
		}
	}
	return out
}

// TestFitRecoversParameters: Baum-Welch recovers a known 3-state model from
// 4 x 10000 samples: means within 0.05, variances within 10%, transitions
// within 0.01, and names the states by their means.
func TestFitRecoversParameters(t *testing.T) {
	truth := &Model{
		Format: ModelFormat, Features: hmmFeatures, Inputs: Inputs{Window: 60, VolHalfLife: 900},
		States:      []string{StateCalm, StateTrending, StateVolatile},
		Means:       [][]float64{{-0.2, 0.6}, {-0.1, 2.8}, {0.9, 0.8}},
		Variances:   [][]float64{{0.05, 0.2}, {0.08, 0.8}, {0.1, 0.3}},
		Transitions: [][]float64{{0.98, 0.015, 0.005}, {0.02, 0.975, 0.005}, {0.01, 0.01, 0.98}},
		Initial:     []float64{0.4, 0.3, 0.3},
	}
	seqs := sampleHMM(truth, 4, 10000, 11)
	m, err := Fit(seqs, FitConfig{States: 3, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.States, ",") != "calm,trending,volatile" {
		t.Fatalf("states %v", m.States)
	}
	for i := range 3 {
		for d := range 2 {
			if e := math.Abs(m.Means[i][d] - truth.Means[i][d]); e > 0.05 {
				t.Errorf("mean[%s][%d] = %.3f, want %.3f", m.States[i], d, m.Means[i][d], truth.Means[i][d])
			}
			if r := m.Variances[i][d] / truth.Variances[i][d]; r < 0.9 || r > 1.1 {
				t.Errorf("var[%s][%d] = %.3f, want %.3f", m.States[i], d, m.Variances[i][d], truth.Variances[i][d])
			}
		}
		for j := range 3 {
			if e := math.Abs(m.Transitions[i][j] - truth.Transitions[i][j]); e > 0.01 {
				t.Errorf("A[%s][%s] = %.4f, want %.4f", m.States[i], m.States[j], m.Transitions[i][j], truth.Transitions[i][j])
			}
		}
	}
	// determinism
	m2, err := Fit(seqs, FitConfig{States: 3, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Version != m.Version {
		t.Errorf("refit gave version %s, first %s", m2.Version, m.Version)
	}
	t.Logf("fit: %+v", m.Training)
}

func TestModelFile(t *testing.T) {
	m := DefaultModel()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.States, ",") != "calm,trending,volatile" || !strings.HasPrefix(m.Version, "hmm3-") {
		t.Fatalf("built-in model: states %v version %s", m.States, m.Version)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ParseModel(b)
	if err != nil || m2.Version != m.Version {
		t.Fatalf("round trip: %v, version %s", err, m2.Version)
	}
	// A hand-edited parameter no longer matches the version.
	var edited Model
	if err := json.Unmarshal(b, &edited); err != nil {
		t.Fatal(err)
	}
	edited.Means[0][0] += 0.5
	bad, _ := json.Marshal(&edited)
	if _, err := ParseModel(bad); err == nil || !strings.Contains(err.Error(), "does not match its parameters") {
		t.Errorf("edited model: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Model)
		want string
	}{
		{func(m *Model) { m.Format = 2 }, "format 2"},
		{func(m *Model) { m.States = m.States[:1] }, "1 states"},
		{func(m *Model) { m.Transitions[0][0] = 2 }, "not in [0,1]"},
		{func(m *Model) { m.Variances[1][0] = 0 }, "variance > 0"},
		{func(m *Model) { m.States[0] = "switch" }, "reserved"},
		{func(m *Model) { m.Features = []string{"x", "y"} }, "features"},
	} {
		var c Model
		json.Unmarshal(b, &c)
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
}
