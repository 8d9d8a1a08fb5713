package evaluate

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/signald-dev/signald/market"
)

const sec = int64(time.Second)

func quote(venue, inst string, ts int64, mid, halfSpread float64) market.Tick {
	return market.Tick{Venue: venue, Instrument: inst, Kind: market.KindQuote, RecvTS: ts, BidPx: mid - halfSpread, AskPx: mid + halfSpread, BidSz: 1, AskSz: 1}
}

func call(inst string, ts int64, state string, stop float64) market.Signal {
	s := market.Signal{Venue: "v", Instrument: inst, Type: market.TypeTrendCall, State: state, Time: ts, ModelVersion: "test", Values: map[string]float64{}}
	if state != "flat" {
		s.Values["stop"] = stop
	}
	return s
}

// feed adds signals (sorted by time) before the ticks after their time, the
// order the package documentation asks for.
func feed(ev *Evaluator, ticks []market.Tick, sigs []market.Signal) {
	j := 0
	for i := range ticks {
		for j < len(sigs) && sigs[j].Time <= ticks[i].RecvTS {
			ev.AddSignal(sigs[j])
			j++
		}
		ev.AddTicks(ticks[i : i+1])
	}
	for ; j < len(sigs); j++ {
		ev.AddSignal(sigs[j])
	}
}

// The return of a given sequence of calls with fees, slippage (fixed and a
// fraction of the spread) and an execution delay, computed by hand.
func TestStrategyKnownReturn(t *testing.T) {
	prices := []float64{100, 101, 102, 103, 104, 106, 105, 103, 100, 98, 99, 97, 96}
	const t0 = 1000 * sec
	const half = 0.05 // spread 0.1
	var ticks []market.Tick
	for k, p := range prices {
		ticks = append(ticks, quote("v", "A", t0+int64(k)*sec+sec/2, p, half))
	}
	sigs := []market.Signal{
		call("A", t0+2*sec, "long", 50),         // exec after 1003 s: the quote at 1003.5 (k=3)
		call("A", t0+5*sec+sec/5, "short", 500), // exec after 1006.2 s: k=6
		call("A", t0+8*sec, "flat", 0),          // exec after 1009 s: k=9
	}
	o := Options{FeeBps: 10, SlippageBps: 5, SpreadFraction: 0.5, Delay: time.Second}
	ev, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	feed(ev, ticks, sigs)
	rep, err := ev.Finish()
	if err != nil {
		t.Fatal(err)
	}
	cost := func(p float64) float64 { return 15e-4 + 0.5*(2*half/p) }
	p3, p6, p9 := prices[3], prices[6], prices[9]
	v := 1 - cost(p3)    // enter long at 103
	v *= p6 / p3         // hold to 105
	v *= 1 - cost(p6)    // exit long
	long := v - 1        // trade return: from the equity before the entry cost
	vShort := v          // equity at the short's entry, before its cost
	v *= 1 - cost(p6)    // enter short at 105
	v *= 1 - (p9/p6 - 1) // short from 105 to 98
	v *= 1 - cost(p9)    // exit
	short := v/vShort - 1
	want := v - 1
	got := float64(rep.Strategy.TotalReturn)
	if math.Abs(got-want) > 1e-12 {
		t.Fatalf("total return %.15f, want %.15f", got, want)
	}
	if got := float64(rep.Instruments[0].Strategy.TotalReturn); math.Abs(got-want) > 1e-12 {
		t.Fatalf("instrument return %.15f, want %.15f", got, want)
	}
	if len(rep.Trades) != 2 {
		t.Fatalf("%d trades, want 2: %+v", len(rep.Trades), rep.Trades)
	}
	tr := rep.Trades
	if tr[0].Side != "long" || tr[0].EntryPrice != p3 || tr[0].ExitPrice != p6 || tr[0].EntryTime != t0+3*sec+sec/2 || math.Abs(tr[0].Return-long) > 1e-12 {
		t.Errorf("long trade %+v, want entry %v exit %v return %v", tr[0], p3, p6, long)
	}
	if tr[1].Side != "short" || tr[1].EntryPrice != p6 || tr[1].ExitPrice != p9 || math.Abs(tr[1].Return-short) > 1e-12 {
		t.Errorf("short trade %+v, want entry %v exit %v return %v", tr[1], p6, p9, short)
	}
	if rep.Strategy.Trades != 2 || rep.Strategy.HitRate != 1 || rep.Strategy.Turnover != 4 {
		t.Errorf("trades %d hit rate %v turnover %v, want 2, 1, 4", rep.Strategy.Trades, rep.Strategy.HitRate, rep.Strategy.Turnover)
	}
	// buy and hold: bought at the first price with one entry cost
	wantBH := (1-cost(prices[0]))*prices[len(prices)-1]/prices[0] - 1
	if got := float64(rep.BuyHold.TotalReturn); math.Abs(got-wantBH) > 1e-12 {
		t.Errorf("buy and hold %.15f, want %.15f", got, wantBH)
	}
	// drawdown of buy and hold: peak at 106 (k=5), trough 96 at the end
	if got, want := float64(rep.BuyHold.MaxDrawdown), 1-96.0/106; math.Abs(got-want) > 1e-12 {
		t.Errorf("buy-and-hold max drawdown %v, want %v", got, want)
	}
	if rep.Random.Draws != 200 || !(rep.Random.Percentile >= 0 && rep.Random.Percentile <= 100) {
		t.Errorf("random baseline %+v", rep.Random)
	}
}

// A stop is a resting order: the position closes at the first price beyond
// it, without the execution delay.
func TestStrategyStop(t *testing.T) {
	prices := []float64{100, 101, 102, 101, 99.5, 98, 97, 99, 102}
	const t0 = 1000 * sec
	var ticks []market.Tick
	for k, p := range prices {
		ticks = append(ticks, quote("v", "A", t0+int64(k)*sec+sec/2, p, 0))
	}
	ev, _ := New(Options{FeeBps: 20, Delay: 500 * time.Millisecond})
	feed(ev, ticks, []market.Signal{call("A", t0+1*sec, "long", 99.7)}) // fills at k=2 (102)
	rep, _ := ev.Finish()
	if len(rep.Trades) != 1 || rep.Trades[0].Exit != "stop" || rep.Trades[0].ExitPrice != 99.5 || rep.Trades[0].EntryPrice != 102 {
		t.Fatalf("trades %+v, want one long 102 -> 99.5 stopped", rep.Trades)
	}
	want := (1-20e-4)*(99.5/102)*(1-20e-4) - 1
	if got := float64(rep.Strategy.TotalReturn); math.Abs(got-want) > 1e-12 {
		t.Fatalf("total %v, want %v", got, want)
	}
	// Without stops the call is held to the end (open, no exit cost).
	ev, _ = New(Options{FeeBps: 20, Delay: 500 * time.Millisecond, NoStops: true})
	feed(ev, ticks, []market.Signal{call("A", t0+1*sec, "long", 99.7)})
	rep, _ = ev.Finish()
	want = (1-20e-4)*(102.0/102) - 1
	if got := float64(rep.Strategy.TotalReturn); len(rep.Trades) != 1 || rep.Trades[0].Exit != "open" || math.Abs(got-want) > 1e-12 {
		t.Fatalf("no stops: total %v, want %v; trades %+v", got, want, rep.Trades)
	}
}

// Causality: a price received at or before a signal's time never enters its
// evaluation. A quote at exactly the signal's time (105) and earlier (100)
// differ from the first one after it (110); all later prices stay 110, so
// the signal's returns are exactly 0 unless an earlier price is used.
func TestCausality(t *testing.T) {
	const ts = 1010 * sec
	var ticks []market.Tick
	for k := int64(0); k < 10; k++ {
		ticks = append(ticks, quote("v", "A", 1000*sec+k*sec+sec/2, 100, 0))
	}
	ticks = append(ticks, quote("v", "A", ts, 105, 0))
	for k := int64(0); k < 400; k++ {
		ticks = append(ticks, quote("v", "A", ts+3*sec/2+k*sec, 110, 0))
	}
	for _, delay := range []time.Duration{0, 200 * time.Millisecond} {
		ev, _ := New(Options{Delay: delay})
		nov := market.Signal{Venue: "v", Instrument: "A", Type: market.TypeNovelty, State: "novel", Time: ts, Score: 5, ModelVersion: "t"}
		rc := market.Signal{Venue: "v", Instrument: "A", Type: market.TypeRegimeChange, State: "volatile", Time: ts, ModelVersion: "t", Values: map[string]float64{"switch": 1}}
		feed(ev, ticks, []market.Signal{call("A", ts, "long", 1), nov, rc})
		if err := ev.AddFeatures(ts, []Key{{"v", "A"}}, map[string][]float64{"mid_ret_sum_60": {1}}); err != nil {
			t.Fatal(err)
		}
		rep, _ := ev.Finish()
		if len(rep.Trades) != 1 || rep.Trades[0].EntryPrice != 110 {
			t.Fatalf("delay %v: trades %+v, want a long filled at 110 (the first price after the call)", delay, rep.Trades)
		}
		if rep.Strategy.TotalReturn != 0 {
			t.Errorf("delay %v: strategy return %v, want 0", delay, rep.Strategy.TotalReturn)
		}
		for _, e := range rep.events {
			for hi, h := range rep.Horizons {
				if e.Ret[hi] != 0 || e.RV[hi] != 0 {
					t.Errorf("delay %v: %s at horizon %d: return %v rv %v, want 0 (a price at or before the signal was used)", delay, e.Type, h, e.Ret[hi], e.RV[hi])
				}
			}
			if e.Base != ts+2*sec {
				t.Errorf("delay %v: %s base %d, want the grid point after the first later quote %d", delay, e.Type, e.Base, ts+2*sec)
			}
		}
	}
}

// walk makes n instruments of seeded random walks quoted every quarter step,
// with jumps of ±jump at the given steps (per instrument); it returns the
// ticks in time order.
func walk(n, steps int, sigma float64, jumps map[int][]int, jump float64, seed uint64) []market.Tick {
	rng := rand.New(rand.NewPCG(seed, 1))
	lp := make([]float64, n)
	var ticks []market.Tick
	const t0 = 1_700_000_000 * sec
	isJump := make([]map[int]bool, n)
	for i := range isJump {
		isJump[i] = map[int]bool{}
		for _, s := range jumps[i] {
			isJump[i][s] = true
		}
	}
	for k := 0; k < steps; k++ {
		for q := int64(0); q < 4; q++ {
			for i := 0; i < n; i++ {
				lp[i] += sigma / 2 * rng.NormFloat64()
				if q == 2 && isJump[i][k] {
					if rng.IntN(2) == 0 {
						lp[i] += jump
					} else {
						lp[i] -= jump
					}
				}
				mid := 100 * math.Exp(lp[i])
				ticks = append(ticks, quote("v", instName(i), t0+int64(k)*sec+q*sec/4+sec/8, mid, mid*1e-4))
			}
		}
	}
	return ticks
}

func instName(i int) string { return string(rune('A'+i%26)) + "-USD" }

// Novelty signals planted 2.5 steps before known jumps: the event study
// shows the jumps from horizon 5 on, the matched controls do not.
func TestEventStudyFindsJumps(t *testing.T) {
	const n, steps = 4, 6400
	rng := rand.New(rand.NewPCG(7, 7))
	jumps := map[int][]int{}
	var sigs []market.Signal
	const t0 = 1_700_000_000 * sec
	for i := 0; i < n; i++ {
		for j := 0; j < 8; j++ {
			s := 100 + j*800 + rng.IntN(100)
			jumps[i] = append(jumps[i], s)
			// the jump is at time s + 0.625 steps; the signal at s-2: its base
			// mark is at s-1 and its horizon-1 mark at s, both before it
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: instName(i), Type: market.TypeNovelty, State: "novel", Time: t0 + int64(s-2)*sec, Score: 4, ModelVersion: "t"})
		}
	}
	sortSignals(sigs)
	ticks := walk(n, steps, 1e-4, jumps, 0.02, 3)
	ev, _ := New(Options{})
	feed(ev, ticks, sigs)
	rep, _ := ev.Finish()
	if len(rep.Events) != 4 {
		t.Fatalf("event rows %d, want 4", len(rep.Events))
	}
	for _, row := range rep.Events {
		t.Logf("h=%d signal %.1f bps (n=%d) control %.1f bps (n=%d) t=%.1f", row.Horizon, row.Signal.Mean*1e4, row.Signal.N, row.Control.Mean*1e4, row.Control.N, row.T)
		if row.Signal.N != n*8 || row.Control.N != n*8 {
			t.Fatalf("h=%d: %d signals, %d controls, want %d each", row.Horizon, row.Signal.N, row.Control.N, n*8)
		}
		noise := F(1e-4 * math.Sqrt(float64(row.Horizon))) // per-step sigma 1e-4
		if row.Control.Mean > 3*noise {
			t.Errorf("h=%d: controls' mean |return| %.2g, want noise level (< %.2g): matched times must not see the jumps", row.Horizon, row.Control.Mean, 3*noise)
		}
		if row.Horizon == 1 {
			if row.Signal.Mean > 3*noise {
				t.Errorf("h=1: mean |return| %.2g before the jump, want noise level", row.Signal.Mean)
			}
			continue
		}
		if row.Signal.Mean < 0.015 || row.T < 10 {
			t.Errorf("h=%d: mean |return| %.3g, t %.1f: the planted 2%% jumps are not shown", row.Horizon, row.Signal.Mean, row.T)
		}
	}
}

func sortSignals(s []market.Signal) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].Time < s[j-1].Time; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// IC of a feature that is by construction the forward return is 1; of seeded
// noise, near 0 within its standard error.
func TestIC(t *testing.T) {
	const n, steps = 20, 800
	ticks := walk(n, steps, 1e-3, nil, 0, 11)
	// mark of grid point k (end of step k-1): the last quote before it
	mark := make([][]float64, n)
	for i := range mark {
		mark[i] = make([]float64, steps+2)
	}
	t0 := ticks[0].RecvTS / sec * sec
	for _, tk := range ticks {
		k := int((tk.RecvTS-t0)/sec) + 1
		i := int(tk.Instrument[0] - 'A')
		mark[i][k] = (tk.BidPx + tk.AskPx) / 2
	}
	rng := rand.New(rand.NewPCG(5, 5))
	ev, _ := New(Options{Features: []string{"perfect", "noise"}})
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{"v", instName(i)}
	}
	j := 0
	for k := 1; k <= steps; k++ {
		ts := t0 + int64(k)*sec
		for ; j < len(ticks) && ticks[j].RecvTS < ts; j++ {
			ev.AddTicks(ticks[j : j+1])
		}
		perfect, noise := make([]float64, n), make([]float64, n)
		for i := 0; i < n; i++ {
			perfect[i] = math.NaN()
			if k+2 <= steps {
				// base: grid point k+1; one step later: k+2
				perfect[i] = math.Log(mark[i][k+2] / mark[i][k+1])
			}
			noise[i] = rng.NormFloat64()
		}
		if err := ev.AddFeatures(ts, keys, map[string][]float64{"perfect": perfect, "noise": noise, "other": noise}); err != nil {
			t.Fatal(err)
		}
	}
	ev.AddTicks(ticks[j:])
	rep, _ := ev.Finish()
	got := map[string]ICRow{}
	for _, r := range rep.IC {
		got[r.Feature+"/"+strconv.Itoa(r.Horizon)] = r
		t.Logf("%s h=%d steps=%d mean=%.3f t=%.1f ts=%.3f", r.Feature, r.Horizon, r.Steps, r.Mean, r.T, r.TSMean)
	}
	if p := got["perfect/1"]; p.Steps < steps-5 || math.Abs(float64(p.Mean)-1) > 1e-12 || math.Abs(float64(p.TSMean)-1) > 1e-12 {
		t.Errorf("perfect feature at horizon 1: %+v, want mean IC 1 over every step", p)
	}
	if p := got["perfect/30"]; !(p.Mean < 0.4) {
		t.Errorf("perfect (1-step) feature at horizon 30: IC %v, want it decayed (about 1/sqrt(30))", p.Mean)
	}
	for _, h := range rep.Horizons {
		r := got["noise/"+strconv.Itoa(h)]
		se := float64(r.SD) / math.Sqrt(float64(r.Steps))
		lim := 3 * se * math.Sqrt(float64(h)) // overlapping horizons: dependent steps
		if math.Abs(float64(r.Mean)) > lim || r.Steps < 100 {
			t.Errorf("noise at horizon %d: IC %v, want within %v of 0", h, r.Mean, lim)
		}
	}
	if _, ok := got["other/1"]; ok {
		t.Errorf("a column not in Options.Features was evaluated")
	}
}
