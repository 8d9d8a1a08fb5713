package evaluate

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/signald-dev/signald/internal/stats"
)

// Event is one regime_change or novelty signal (or a matched control) with
// its forward values per horizon (NaN beyond the data).
type Event struct {
	Type        string    `json:"type"`
	Venue       string    `json:"venue"`
	Instrument  string    `json:"instrument"`
	Time        int64     `json:"time"`
	State       string    `json:"state"`
	Score       float64   `json:"score"`
	Changepoint bool      `json:"changepoint"`
	Switch      bool      `json:"switch"`
	Control     bool      `json:"control"`
	Base        int64     `json:"base"` // grid time of the base mark; -1 when none came
	Ret         []float64 `json:"-"`    // forward log return
	RV          []float64 `json:"-"`    // forward realized volatility
	Spread      []float64 `json:"-"`    // spread at the horizon, bps
}

func (ev *Event) init(nh int) {
	ev.Ret, ev.RV, ev.Spread = nanSlice(nh), nanSlice(nh), nanSlice(nh)
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// studyAcc accumulates forward values at one horizon.
type studyAcc struct {
	ret, abs, rv, spread welford
}

func (a *studyAcc) add(ret, rv, spread float64) {
	a.ret.add(ret)
	a.abs.add(math.Abs(ret))
	a.rv.add(rv)
	if !math.IsNaN(spread) {
		a.spread.add(spread)
	}
}

// welford is internal/stats' Welford, skipping NaN (an undefined return).
type welford struct{ w stats.Welford }

func (a *welford) add(x float64) {
	if !math.IsNaN(x) {
		a.w.Add(x)
	}
}

func (a *welford) count() int64  { return int64(a.w.N()) }
func (a *welford) mean() float64 { return a.w.Mean() }

func (a *welford) sd() float64 {
	if a.w.N() < 2 {
		return math.NaN()
	}
	return math.Sqrt(a.w.Var())
}

func (a *welford) se() float64 { return a.sd() / math.Sqrt(float64(a.w.N())) }

func (a *welford) meanOrNaN() float64 {
	if a.w.N() == 0 {
		return math.NaN()
	}
	return a.w.Mean()
}

// reservoirSlot is where a uniform sample of size reservoirSize keeps the
// next value of a stream, seen values before it and n held: n (append), an
// index to replace, or -1 (not kept).
func reservoirSlot(n int, seen int64, rng *rand.Rand) int {
	if n < reservoirSize {
		return n
	}
	if j := rng.Int64N(seen + 1); j < reservoirSize {
		return int(j)
	}
	return -1
}

// quantile of sorted xs (linear interpolation); NaN when empty.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	p := q * float64(len(xs)-1)
	i := int(p)
	if i >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	return xs[i] + (p-float64(i))*(xs[i+1]-xs[i])
}

// Dist summarizes a sample: n, mean with a 95% normal-approximation interval,
// standard deviation and quantiles.
type Dist struct {
	N    int64 `json:"n"`
	Mean F     `json:"mean"`
	Lo   F     `json:"ci_lo"`
	Hi   F     `json:"ci_hi"`
	SD   F     `json:"sd"`
	P05  F     `json:"p05"`
	P50  F     `json:"p50"`
	P95  F     `json:"p95"`
}

func distOf(xs []float64) Dist {
	var w welford
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			w.add(x)
			s = append(s, x)
		}
	}
	slices.Sort(s)
	return distFrom(w, s)
}

func distFrom(w welford, sorted []float64) Dist {
	se := w.se()
	return Dist{N: w.count(), Mean: F(w.meanOrNaN()), Lo: F(w.mean() - 1.96*se), Hi: F(w.mean() + 1.96*se), SD: F(w.sd()),
		P05: F(quantile(sorted, 0.05)), P50: F(quantile(sorted, 0.5)), P95: F(quantile(sorted, 0.95))}
}

func sortedOf(xs []float32) []float64 {
	s := make([]float64, len(xs))
	for i, x := range xs {
		s[i] = float64(x)
	}
	slices.Sort(s)
	return s
}

// RegimeRow is the forward distribution after one group of signals (a
// regime state, "changepoint", or "unconditional") at one horizon.
type RegimeRow struct {
	Group   string `json:"group"`
	Horizon int    `json:"horizon"`
	RV      Dist   `json:"rv"`  // forward realized volatility (log return units)
	Ret     Dist   `json:"ret"` // forward log return
	// RVRatio is the group's mean RV over the unconditional mean.
	RVRatio F `json:"rv_ratio"`
}

// EventRow compares novelty signals with matched controls at one horizon.
type EventRow struct {
	Horizon       int  `json:"horizon"`
	Signal        Dist `json:"signal_abs_ret"` // |forward log return|
	Control       Dist `json:"control_abs_ret"`
	SignalSpread  F    `json:"signal_spread_bps"`
	ControlSpread F    `json:"control_spread_bps"`
	// T is Welch's t-statistic of the mean |return|, signal minus control.
	T F `json:"t"`
}

func welch(a, b welford) float64 {
	if a.count() < 2 || b.count() < 2 {
		return math.NaN()
	}
	va, vb := a.w.Var()/float64(a.count()), b.w.Var()/float64(b.count())
	return ratio(a.mean()-b.mean(), math.Sqrt(va+vb))
}

// studies builds the regime rows, the controls and the event-study rows.
func (e *Evaluator) studies() (reg []RegimeRow, evRows []EventRow, controls []*Event) {
	hs := e.o.Horizons
	// unconditional
	uncMean := make([]float64, len(hs))
	for hi, h := range hs {
		a := e.uncond[hi]
		sorted, sortedRV := sortedOf(e.uncRes[hi]), sortedOf(e.uncRV[hi])
		rv := distFrom(a.rv, sortedRV)
		uncMean[hi] = a.rv.meanOrNaN()
		reg = append(reg, RegimeRow{Group: "unconditional", Horizon: h, RV: rv, Ret: distFrom(a.ret, sorted), RVRatio: 1})
	}
	// regime groups
	groups := map[string][]*Event{}
	var names []string
	for _, ev := range e.events {
		if ev.Type != "regime_change" {
			continue
		}
		var gs []string
		if ev.Switch || !ev.Changepoint {
			gs = append(gs, ev.State)
		}
		if ev.Changepoint {
			gs = append(gs, "changepoint")
		}
		for _, g := range gs {
			if groups[g] == nil {
				names = append(names, g)
			}
			groups[g] = append(groups[g], ev)
		}
	}
	slices.Sort(names)
	for _, g := range names {
		for hi, h := range hs {
			var rv, ret []float64
			for _, ev := range groups[g] {
				rv = append(rv, ev.RV[hi])
				ret = append(ret, ev.Ret[hi])
			}
			d := distOf(rv)
			reg = append(reg, RegimeRow{Group: g, Horizon: h, RV: d, Ret: distOf(ret), RVRatio: F(float64(d.Mean) / uncMean[hi])})
		}
	}
	// novelty controls: one per signal, from the same instrument's pool
	rng := rand.New(rand.NewPCG(e.o.Seed, 0xc0de))
	var sig []*Event
	for _, ev := range e.events {
		if ev.Type != "novelty" {
			continue
		}
		sig = append(sig, ev)
		in := e.insts[Key{ev.Venue, ev.Instrument}]
		if in == nil || len(in.res) == 0 {
			continue
		}
		vals := in.res[rng.IntN(len(in.res))]
		c := &Event{Type: ev.Type, Venue: ev.Venue, Instrument: ev.Instrument, Time: ev.Time, Control: true, Base: -1}
		c.init(len(hs))
		for hi := range hs {
			c.Ret[hi], c.RV[hi], c.Spread[hi] = float64(vals[3*hi]), float64(vals[3*hi+1]), float64(vals[3*hi+2])
		}
		controls = append(controls, c)
	}
	if len(sig) == 0 {
		return reg, nil, controls
	}
	for hi, h := range hs {
		var sa, ca []float64
		var sw, cw welford
		var ssw, csw welford
		for _, ev := range sig {
			sa = append(sa, math.Abs(ev.Ret[hi]))
			sw.add(math.Abs(ev.Ret[hi]))
			ssw.add(ev.Spread[hi])
		}
		for _, c := range controls {
			ca = append(ca, math.Abs(c.Ret[hi]))
			cw.add(math.Abs(c.Ret[hi]))
			csw.add(c.Spread[hi])
		}
		evRows = append(evRows, EventRow{Horizon: h, Signal: distOf(sa), Control: distOf(ca),
			SignalSpread: F(ssw.meanOrNaN()), ControlSpread: F(csw.meanOrNaN()), T: F(welch(sw, cw))})
	}
	return reg, evRows, controls
}

// RandomBaseline is the strategy's total return against the same trades
// placed at random times.
type RandomBaseline struct {
	Draws int `json:"draws"`
	Mean  F   `json:"mean"`
	P05   F   `json:"p05"`
	P50   F   `json:"p50"`
	P95   F   `json:"p95"`
	// Percentile is the share of draws whose total return is below the
	// strategy's (ties count half), in percent.
	Percentile F `json:"percentile"`
}

// randomDraws returns, per draw, the total return of the instrument's trades
// placed at random on its sampled path.
func (e *Evaluator) randomDraws(in *inst, rng *rand.Rand) []float64 {
	s := &in.ser
	n := len(s.t)
	trades := in.st.trades
	if in.st.pos != 0 {
		trades = append(slices.Clip(trades), in.st.open)
	}
	out := make([]float64, e.o.Draws)
	if n < 2 || len(trades) == 0 {
		for i := range out {
			out[i] = 0
		}
		return out
	}
	c := 0.0
	if in.st.costN > 0 {
		c = in.st.costSum / float64(in.st.costN)
	}
	dt := float64(s.t[1] - s.t[0])
	dur := make([]int, len(trades))
	sides := make([]float64, len(trades))
	total := 0
	for i, t := range trades {
		end := t.ExitTime
		if end == 0 {
			end = s.t[n-1]
		}
		d := max(1, int(math.Round(float64(end-t.EntryTime)/dt)))
		dur[i] = d
		total += d
		sides[i] = 1
		if t.Side == "short" {
			sides[i] = -1
		}
	}
	span := n - 1
	if total > span {
		scale := float64(span) / float64(total)
		total = 0
		for i := range dur {
			dur[i] = max(1, int(float64(dur[i])*scale))
			total += dur[i]
		}
		if total > span {
			total = span
		}
	}
	free := span - total
	cuts := make([]int, len(trades))
	perm := make([]int, len(trades))
	for d := range out {
		for i := range cuts {
			cuts[i] = rng.IntN(free + 1)
			perm[i] = i
		}
		slices.Sort(cuts)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		v, pos, prevCut := 1.0, 0, 0
		for k, ti := range perm {
			pos += cuts[k] - prevCut
			prevCut = cuts[k]
			a, b := pos, min(pos+dur[ti], span)
			ra := math.Exp(float64(s.lp[b]) - float64(s.lp[a]))
			exit := c
			if trades[ti].ExitTime == 0 {
				exit = 0 // open at the end: not closed, like the strategy's
			}
			v *= (1 - c) * (1 + sides[ti]*(ra-1)) * (1 - exit)
			pos = b
		}
		out[d] = v - 1
	}
	return out
}

func randomOf(draws []float64, strat float64) RandomBaseline {
	s := slices.Clone(draws)
	slices.Sort(s)
	var w welford
	below := 0.0
	for _, x := range s {
		w.add(x)
		switch {
		case x < strat:
			below++
		case x == strat:
			below += 0.5
		}
	}
	rb := RandomBaseline{Draws: len(s), Mean: F(w.meanOrNaN()), P05: F(quantile(s, 0.05)), P50: F(quantile(s, 0.5)), P95: F(quantile(s, 0.95))}
	rb.Percentile = F(math.NaN())
	if len(s) > 0 {
		rb.Percentile = F(100 * below / float64(len(s)))
	}
	return rb
}
