package features

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/market"
)

func newTestEngine(t testing.TB, cfg Config) (*Engine, *prometheus.Registry, *collector) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := NewEngine(cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return e, reg, &collector{t: t, schema: e.Schema()}
}

func apply(t testing.TB, e *Engine, c *collector, ticks ...*market.Tick) {
	t.Helper()
	for _, tk := range ticks {
		if err := e.Apply(tk, c.emit); err != nil {
			t.Fatal(err)
		}
	}
}

// refInst is the test's own model of one instrument: the step values derived
// directly from the generated ticks.
type refInst struct {
	venue, inst string
	first       int // first step with a tick
	firstQuote  int
	mid         []float64
	base        map[string][]float64 // per-step base series, NaN until defined
}

type refTick struct {
	off int64
	t   *market.Tick
}

// genStream generates ticks for three instruments (two of them the same
// instrument on two venues) over n steps and the reference step values.
// Ticks are returned in RecvTS order.
func genStream(rng *rand.Rand, n int) ([]*market.Tick, []*refInst) {
	insts := []*refInst{
		{venue: "binance", inst: "BTC-USDT", first: 0, firstQuote: 0},
		{venue: "okx", inst: "BTC-USDT", first: 3, firstQuote: 4},
		{venue: "okx", inst: "ETH-USDT", first: 7, firstQuote: 9},
	}
	var ticks []*market.Tick
	btc := 30000.0
	btcPath := make([]float64, n)
	for k := range n {
		btc *= math.Exp(0.001 * rng.NormFloat64())
		btcPath[k] = btc
	}
	for ii, ri := range insts {
		ri.base = map[string][]float64{}
		mid := 2000.0
		var (
			lastMid, lastSpread, lastMicro, lastImb = math.NaN(), math.NaN(), math.NaN(), math.NaN()
			lastTradePx, tradeSize, tradeIAT        = math.NaN(), math.NaN(), math.NaN()
			lastTradeTS                             int64
		)
		for k := range n {
			if k < ri.first {
				continue
			}
			if ri.inst == "BTC-USDT" {
				mid = btcPath[k]
			}
			silent := ii == 0 && k >= 100 && k < 121 // 21 steps without ticks
			var evs []refTick
			nq := 0
			if !silent && k >= ri.firstQuote && (k == ri.firstQuote || rng.Float64() < 0.85) {
				nq = 1 + rng.IntN(3)
			}
			for range nq {
				m := mid * math.Exp(0.0005*rng.NormFloat64())
				if ri.inst != "BTC-USDT" {
					mid *= math.Exp(0.001 * rng.NormFloat64())
					m = mid
				}
				half := m * 1e-4 * (0.5 + rng.Float64())
				q := quote(ri.venue, ri.inst, 0, m-half, m+half)
				q.BidSz, q.AskSz = rng.ExpFloat64(), rng.ExpFloat64()
				if rng.IntN(10) == 0 {
					q.BidSz, q.AskSz = 0, 0
				}
				evs = append(evs, refTick{rng.Int64N(sec), q})
			}
			nt := 0
			if !silent && (k == ri.first || rng.Float64() < 0.7) {
				nt = 1 + rng.IntN(3)
			}
			for range nt {
				side := []market.Side{market.SideBuy, market.SideSell, market.SideUnknown}[rng.IntN(3)]
				if k == ri.first {
					side = market.SideBuy
				}
				px := mid * math.Exp(0.0003*rng.NormFloat64())
				evs = append(evs, refTick{rng.Int64N(sec), trade(ri.venue, ri.inst, 0, side, px, 0.001+rng.Float64())})
			}
			slices.SortStableFunc(evs, func(a, b refTick) int { return int(a.off - b.off) })
			var tc, vol, buy, sell, notional, quotes float64
			midMin, midMax := math.Inf(1), math.Inf(-1)
			var stepLastPx float64
			var stepFirstTS, stepLastTS int64
			for _, e := range evs {
				e.t.RecvTS = (base+int64(k))*sec + e.off
				ticks = append(ticks, e.t)
				switch e.t.Kind {
				case market.KindQuote:
					quotes++
					m := (e.t.BidPx + e.t.AskPx) / 2
					lastMid = m
					midMin, midMax = min(midMin, m), max(midMax, m)
					lastSpread = (e.t.AskPx - e.t.BidPx) / m * 1e4
					if tot := e.t.BidSz + e.t.AskSz; tot > 0 {
						micro := (e.t.BidPx*e.t.AskSz + e.t.AskPx*e.t.BidSz) / tot
						lastMicro = (micro - m) / m * 1e4
						lastImb = (e.t.BidSz - e.t.AskSz) / tot
					} else {
						lastMicro, lastImb = 0, 0
					}
				case market.KindTrade:
					if tc == 0 {
						stepFirstTS = e.t.RecvTS
					}
					tc++
					vol += e.t.Size
					notional += e.t.Price * e.t.Size
					stepLastPx, stepLastTS = e.t.Price, e.t.RecvTS
					switch e.t.Side {
					case market.SideBuy:
						buy += e.t.Size
					case market.SideSell:
						sell += e.t.Size
					}
				}
			}
			prev := math.NaN()
			if len(ri.mid) > 0 {
				prev = ri.mid[len(ri.mid)-1]
			}
			ri.mid = append(ri.mid, lastMid)
			add := func(name string, v float64) { ri.base[name] = append(ri.base[name], v) }
			if quotes > 0 {
				add("mid_ret", math.Log(lastMid/prev))
				add("mid_range_bps", (midMax-midMin)/lastMid*1e4)
			} else {
				add("mid_ret", 0*prev)
				add("mid_range_bps", 0)
			}
			add("spread_bps", lastSpread)
			add("micro_dev_bps", lastMicro)
			add("bbo_imb", lastImb)
			add("signed_vol", buy-sell)
			add("volume", vol)
			add("notional", notional)
			add("trade_count", tc)
			add("quote_rate", quotes)
			if tc > 0 {
				add("trade_ret", math.Log(stepLastPx/lastTradePx))
				add("vwap_dev_bps", (notional/vol-lastMid)/lastMid*1e4)
				add("trade_imb", (buy-sell)/vol)
				tradeSize = vol / tc
				if lastTradeTS != 0 {
					tradeIAT = float64(stepLastTS-lastTradeTS) / 1e9 / tc
				} else if tc > 1 {
					tradeIAT = float64(stepLastTS-stepFirstTS) / 1e9 / (tc - 1)
				}
				lastTradePx, lastTradeTS = stepLastPx, stepLastTS
			} else {
				add("trade_ret", 0*lastTradePx)
				add("vwap_dev_bps", 0*lastMid)
				add("trade_imb", 0)
			}
			add("trade_size", tradeSize)
			add("trade_iat", tradeIAT)
		}
	}
	// Basis: against the mean mid of the instrument's venues at each step.
	for _, ri := range insts {
		for j := range ri.mid {
			k := ri.first + j
			var sum float64
			cnt := 0
			for _, o := range insts {
				if o.inst == ri.inst && k >= o.first && !math.IsNaN(o.mid[k-o.first]) {
					sum += o.mid[k-o.first]
					cnt++
				}
			}
			v := math.NaN()
			if !math.IsNaN(ri.mid[j]) {
				v = (ri.mid[j] - sum/float64(cnt)) / (sum / float64(cnt)) * 1e4
			}
			ri.base["basis_bps"] = append(ri.base["basis_bps"], v)
		}
	}
	slices.SortStableFunc(ticks, func(a, b *market.Tick) int { return int(a.RecvTS - b.RecvTS) })
	return ticks, insts
}

// expected returns the reference value of feature f at step index j (steps
// since ri.first).
func (ri *refInst) expected(f FeatureDoc, j int) float64 {
	if f.Name == "mid" {
		return ri.mid[j]
	}
	ser := ri.base[f.Base]
	if ser == nil {
		panic(f.Name)
	}
	if f.Kind == KindStep {
		return ser[j]
	}
	start := 0
	for start < len(ser) && math.IsNaN(ser[start]) {
		start++
	}
	if j-start+1 < f.Window {
		return math.NaN()
	}
	return refStat(f.Stat, ser[j+1-f.Window:j+1], ser[start:j+1])
}

// tolerance of a window statistic against the naive reference: relative,
// plus an absolute part on the scale of the window's values.
func tolerance(f FeatureDoc, xs []float64) (rel, abs float64) {
	scale := 0.0
	for _, x := range xs {
		scale = max(scale, math.Abs(x))
	}
	switch f.Stat {
	case "z", "skew", "kurt", "ac1", "r2", "range_pos":
		return 1e-7, 1e-7
	case "slope":
		return 1e-8, 1e-12 * scale
	}
	return 1e-9, 1e-12 * scale
}

func TestFeaturesMatchReference(t *testing.T) {
	const n = 400
	rng := rand.New(rand.NewPCG(1, 2))
	ticks, insts := genStream(rng, n)

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	e, reg, c := newTestEngine(t, Config{Windows: []int{3, 5, 20}, Allocator: mem})
	apply(t, e, c, ticks...)
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0) // every record released after emit

	if len(c.steps) != n {
		t.Fatalf("got %d records, want %d", len(c.steps), n)
	}
	feats := e.Features()
	checked, nonNaN := 0, 0
	for k, rows := range c.steps {
		var want []*refInst
		for _, ri := range insts {
			if k >= ri.first {
				want = append(want, ri)
			}
		}
		slices.SortFunc(want, func(a, b *refInst) int { return strings.Compare(a.venue+"/"+a.inst, b.venue+"/"+b.inst) })
		if len(rows) != len(want) {
			t.Fatalf("step %d: %d rows, want %d", k, len(rows), len(want))
		}
		for i, r := range rows {
			ri := want[i]
			if r.venue != ri.venue || r.instrument != ri.inst {
				t.Fatalf("step %d row %d: %s/%s, want %s/%s", k, i, r.venue, r.instrument, ri.venue, ri.inst)
			}
			if wt := (base + int64(k) + 1) * sec; r.time != wt {
				t.Fatalf("step %d: time %d, want step end %d", k, r.time, wt)
			}
			j := k - ri.first
			for _, f := range feats {
				if f.Kind == KindXRank {
					continue // TestXRank
				}
				got, w := r.vals[f.Name], ri.expected(f, j)
				var ok bool
				if f.Kind == KindStep && f.Name != "basis_bps" {
					ok = math.Float64bits(got) == math.Float64bits(w) || (math.IsNaN(got) && math.IsNaN(w))
				} else {
					var xs []float64
					if f.Kind == KindWindow && !math.IsNaN(w) {
						xs = ri.base[f.Base][j+1-f.Window : j+1]
					}
					rel, abs := tolerance(f, xs)
					ok = closeTo(got, w, rel, abs+1e-300)
				}
				if !ok {
					t.Fatalf("step %d %s/%s %s: got %v, want %v", k, ri.venue, ri.inst, f.Name, got, w)
				}
				checked++
				if !math.IsNaN(got) {
					nonNaN++
				}
			}
		}
	}
	t.Logf("checked %d values (%d not NaN)", checked, nonNaN)
	if got := metric(t, reg, "signald_features_steps_total"); got != n {
		t.Errorf("steps_total = %v, want %d", got, n)
	}
	if got := metric(t, reg, "signald_features_instruments"); got != 3 {
		t.Errorf("instruments = %v, want 3", got)
	}
	if got := metric(t, reg, "signald_features_step_duration_seconds"); got != n {
		t.Errorf("step_duration count = %v, want %d", got, n)
	}
}

// TestWarmUp checks that every feature is NaN for exactly its documented
// WarmUp steps when two venues' instrument quote and trade (at least twice)
// every step, with values varied enough that no statistic is undefined.
func TestWarmUp(t *testing.T) {
	cfg := Config{Windows: []int{4, 9}, XRank: []string{"mid_ret", "spread_bps_mean_4", "volume_sum_9"}}
	e, _, c := newTestEngine(t, cfg)
	const n = 30
	mid := 100.0
	for k := range int64(n) {
		ts := (base + k) * sec
		mid *= math.Exp(0.01 * math.Sin(float64(k)))
		for v, venue := range []string{"v1", "v2"} {
			m := mid * (1 + 1e-3*float64(v)*math.Cos(float64(k)))
			off := int64(v) * 100
			half := 0.01 * (1 + 0.5*math.Sin(float64(3*k+int64(v))))
			q := quote(venue, "X", ts+off+1, m-half, m+half)
			q.BidSz, q.AskSz = 1+math.Sin(float64(k)), 1+math.Cos(float64(2*k))
			ticks := []*market.Tick{q,
				trade(venue, "X", ts+off+2+k%5, market.SideBuy, m*(1+1e-4*math.Sin(float64(k))), 1+0.1*float64(k%4)),
				trade(venue, "X", ts+off+3+2*(k%3), market.SideSell, m, 0.5)}
			if k%3 == 0 {
				ticks = append(ticks, quote(venue, "X", ts+off+4, m-2*half, m+half),
					trade(venue, "X", ts+off+50, market.SideUnknown, m, 0.25))
			}
			apply(t, e, c, ticks...)
		}
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.steps) != n {
		t.Fatalf("%d records", len(c.steps))
	}
	for _, f := range e.Features() {
		for k, rows := range c.steps {
			for _, r := range rows {
				v := r.vals[f.Name]
				if k < f.WarmUp && !math.IsNaN(v) {
					t.Errorf("%s %s step %d: %v during warm-up %d", r.venue, f.Name, k, v, f.WarmUp)
				}
				if k >= f.WarmUp && math.IsNaN(v) {
					t.Errorf("%s %s step %d: NaN after warm-up %d", r.venue, f.Name, k, f.WarmUp)
				}
			}
		}
	}
	// Spot values of the last step (k = 29: no third trade).
	last := c.steps[n-1][0].vals
	if got, want := last["trade_imb"], (1.1-0.5)/(1.1+0.5); math.Abs(got-want) > 1e-15 {
		t.Errorf("trade_imb = %v, want %v", got, want)
	}
	if got := last["trade_count_sum_4"]; got != 2+2+2+3 {
		t.Errorf("trade_count_sum_4 = %v, want 9", got)
	}
	if got := last["quote_rate_max_9"]; got != 2 {
		t.Errorf("quote_rate_max_9 = %v, want 2", got)
	}
	if a, b := c.steps[n-1][0].vals["basis_bps"], c.steps[n-1][1].vals["basis_bps"]; math.Abs(a+b) > 1e-9 || a == 0 {
		t.Errorf("basis of two venues %v, %v: want opposite, non-zero", a, b)
	}
}

func TestLateTicks(t *testing.T) {
	e, reg, c := newTestEngine(t, Config{}) // step 1s, lateness 2s
	s0 := base * sec
	apply(t, e, c,
		quote("v", "X", s0+100, 99, 101),        // step 0: mid 100
		quote("v", "X", s0+1*sec+500, 109, 111), // step 1: mid 110
		quote("v", "X", s0+2*sec+500, 119, 121), // step 2: mid 120 (clock 2.5s: nothing closes)
		quote("v", "X", s0+1*sec+100, 1, 3),     // step 1, 1.4s behind the clock: accepted, but older than the 110 quote
		quote("v", "X", s0+3*sec+100, 129, 131), // clock 3.0000001s: step 0 closes
	)
	if len(c.steps) != 1 {
		t.Fatalf("%d records after clock passed step 0 end + lateness, want 1", len(c.steps))
	}
	apply(t, e, c,
		quote("v", "X", s0+900, 1, 3),                   // step 0 is closed: late
		trade("v", "X", s0+999, market.SideBuy, 100, 5), // late too
		quote("v", "X", s0+2*sec+900, 139, 141),         // step 2 still open: applied, latest of step 2
	)
	if got := metric(t, reg, "signald_features_late_ticks_total"); got != 2 {
		t.Errorf("late_ticks_total = %v, want 2", got)
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	var mids, vols []float64
	for _, rows := range c.steps {
		mids = append(mids, rows[0].vals["mid"])
		vols = append(vols, rows[0].vals["volume"])
	}
	if want := []float64{100, 110, 140, 130}; !slices.Equal(mids, want) {
		t.Errorf("mids %v, want %v", mids, want)
	}
	if want := []float64{0, 0, 0, 0}; !slices.Equal(vols, want) {
		t.Errorf("volumes %v, want %v (late trade must not be applied)", vols, want)
	}
	// After Flush every step up to the clock is closed.
	apply(t, e, c, quote("v", "X", s0+3*sec+900, 1, 3))
	if got := metric(t, reg, "signald_features_late_ticks_total"); got != 3 {
		t.Errorf("late_ticks_total = %v after Flush, want 3", got)
	}
}

func TestGap(t *testing.T) {
	cfg := Config{Windows: []int{3, 5}}
	e, reg, c := newTestEngine(t, cfg)
	s0 := base * sec
	for k := range int64(10) {
		apply(t, e, c,
			quote("v", "X", s0+k*sec+1, 100+float64(k)-0.5, 100+float64(k)+0.5),
			trade("v", "X", s0+k*sec+2, market.SideSell, 100, 1))
	}
	// The clock jumps 10,000 steps.
	apply(t, e, c, quote("v", "X", s0+10000*sec+1, 199.5, 200.5))
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	// Steps 0..9 with data, 5 (= max window) empty steps, then the steps the
	// jump left open (9998, 9999) and 10000.
	wantSteps := []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 9998, 9999, 10000}
	var got []int64
	for _, rows := range c.steps {
		got = append(got, rows[0].time/sec-base-1)
	}
	if !slices.Equal(got, wantSteps) {
		t.Fatalf("closed steps %v, want %v", got, wantSteps)
	}
	if got := metric(t, reg, "signald_features_skipped_steps_total"); got != 9998-15 {
		t.Errorf("skipped_steps_total = %v, want %d", got, 9998-15)
	}
	last := c.steps[14][0].vals // the 5th empty step: every window holds empty steps only
	exact := map[string]float64{"mid": 109, "mid_ret": 0, "volume": 0, "trade_count": 0, "trade_imb": 0}
	for _, w := range []string{"3", "5"} {
		for _, b := range []string{"mid_ret", "volume", "signed_vol", "trade_imb", "notional"} {
			for st, v := range map[string]float64{"mean": 0, "std": 0, "sum": 0, "min": 0, "max": 0, "slope": 0,
				"pos_share": 0, "updown": 0, "argmax_age": 0, "argmin_age": 0} {
				exact[b+"_"+st+"_"+w] = v
			}
		}
		exact["mid_ret_rv_"+w] = 0
		exact["spread_bps_std_"+w] = 0
		exact["spread_bps_mean_"+w] = 1 / 109.0 * 1e4
	}
	for name, want := range exact {
		if last[name] != want {
			t.Errorf("after the fill %s = %v, want exactly %v", name, last[name], want)
		}
	}
	for _, name := range []string{"mid_ret_z_5", "volume_skew_5", "volume_kurt_5", "volume_ac1_5", "volume_r2_5", "volume_range_pos_5"} {
		if v := last[name]; !math.IsNaN(v) {
			t.Errorf("%s = %v over a flat window, want NaN", name, v)
		}
	}
	if v := c.steps[10][0].vals["trade_imb_mean_5"]; math.Abs(v+0.8) > 1e-15 {
		t.Errorf("trade_imb_mean_5 one step into the gap = %v, want -0.8 (four sell-only steps, one empty)", v)
	}
	// Skipped steps would have repeated the last fill record but for the
	// exponentially weighted statistics, which the skip advances in closed
	// form (TestSkipConstant).
	a, b := maps.Clone(c.steps[15][0].vals), maps.Clone(last)
	moved := 0
	for name := range a {
		if strings.Contains(name, "_ewm_") || strings.Contains(name, "_ewstd_") {
			if a[name] != b[name] {
				moved++
			}
			delete(a, name)
			delete(b, name)
		}
	}
	if !sameVals(a, b) {
		t.Errorf("first record after the skip differs from the last fill record")
	}
	if moved == 0 {
		t.Errorf("the skip did not advance the exponentially weighted statistics")
	}
	if got, want := c.steps[17][0].vals["mid_ret"], math.Log(200.0/109); got != want {
		t.Errorf("mid_ret after the gap = %v, want %v", got, want)
	}
}

func sameVals(a, b map[string]float64) bool {
	for k, v := range a {
		if math.Float64bits(v) != math.Float64bits(b[k]) {
			return false
		}
	}
	return len(a) == len(b)
}

func TestHugeClockJumpIsBounded(t *testing.T) {
	// The clock guard off: the skip over empty steps itself is under test.
	e, reg, c := newTestEngine(t, Config{Step: time.Millisecond, AllowedLateness: 10 * time.Millisecond, MaxClockJump: -1})
	s0 := base * sec
	apply(t, e, c, quote("v", "X", s0, 99, 101))
	apply(t, e, c, quote("v", "X", s0+int64(100*365*24*time.Hour), 99, 101)) // 100 years of 1ms steps
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	// The work is bounded by the records built, not by the steps skipped.
	if len(c.steps) > 1+900+11 { // the data step, max window empty steps, the open steps

		t.Fatalf("%d records for a jump", len(c.steps))
	}
	if got := metric(t, reg, "signald_features_skipped_steps_total"); got < 3e12 {
		t.Errorf("skipped_steps_total = %v", got)
	}
}

func TestMultipleInstrumentsSorted(t *testing.T) {
	e, reg, c := newTestEngine(t, Config{})
	s0 := base * sec
	apply(t, e, c,
		quote("okx", "BTC-USDT", s0+1, 1, 2),
		quote("binance", "ETH-USDT", s0+2, 1, 2),
		quote("okx", "ETH-USDT", s0+sec+1, 1, 2),       // first seen in step 1
		quote("binance", "BTC-USDT", s0+3*sec+1, 1, 2), // step 3; closes step 0
		quote("binance", "AAA-USDT", s0+2*sec+1, 1, 2), // step 2, arriving after a step-3 tick
		trade("bybit", "BTC-USDT", s0+3*sec+5, market.SideBuy, 1, 1),
	)
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"binance/ETH-USDT", "okx/BTC-USDT"},
		{"binance/ETH-USDT", "okx/BTC-USDT", "okx/ETH-USDT"},
		{"binance/AAA-USDT", "binance/ETH-USDT", "okx/BTC-USDT", "okx/ETH-USDT"},
		{"binance/AAA-USDT", "binance/BTC-USDT", "binance/ETH-USDT", "bybit/BTC-USDT", "okx/BTC-USDT", "okx/ETH-USDT"},
	}
	if len(c.steps) != len(want) {
		t.Fatalf("%d records", len(c.steps))
	}
	for k, rows := range c.steps {
		var got []string
		for _, r := range rows {
			got = append(got, r.venue+"/"+r.instrument)
		}
		if !slices.Equal(got, want[k]) {
			t.Errorf("step %d rows %v, want %v", k, got, want[k])
		}
	}
	if got := metric(t, reg, "signald_features_instruments"); got != 6 {
		t.Errorf("instruments gauge = %v", got)
	}
	// An instrument seen first in an older open step gets its row from then on.
	e2, _, c2 := newTestEngine(t, Config{})
	apply(t, e2, c2,
		quote("v", "X", s0+sec+1, 1, 2),
		quote("v", "X", s0+1, 3, 4), // step 0, still open
	)
	if err := e2.Flush(c2.emit); err != nil {
		t.Fatal(err)
	}
	if len(c2.steps) != 2 || len(c2.steps[0]) != 1 || c2.steps[0][0].vals["mid"] != 3.5 {
		t.Errorf("records %+v", c2.steps)
	}
}

func TestInvalidAndIgnoredTicks(t *testing.T) {
	e, reg, c := newTestEngine(t, Config{})
	s0 := base * sec
	apply(t, e, c,
		quote("v", "X", s0+1, 100, 101),
		quote("v", "X", s0+2, math.NaN(), 101),
		quote("v", "X", s0+3, 100, math.Inf(1)),
		quote("v", "X", s0+4, 0, 101),
		quote("v", "X", s0+5, 102, 101), // crossed
		trade("v", "X", s0+6, market.SideBuy, -1, 1),
		trade("v", "X", s0+7, market.SideBuy, 100, math.NaN()),
		trade("v", "X", s0+8, market.SideBuy, 100, 0),
		&market.Tick{Venue: "v", Instrument: "X", Kind: market.KindQuote, RecvTS: 0, BidPx: 1, AskPx: 2},
		&market.Tick{Venue: "v", Instrument: "X", Kind: market.KindBookDelta, RecvTS: s0 + 9, Price: 1, Size: 1},
		&market.Tick{Venue: "v", Instrument: "X", Kind: market.KindSnapshot, RecvTS: s0 + 10, Price: 1, Size: 1},
		&market.Tick{Venue: "v", Instrument: "X", Kind: market.KindSnapshot, RecvTS: s0 + 11, Price: 1, Size: 1},
		&market.Tick{Venue: "v", Instrument: "Y", Kind: market.KindFunding, RecvTS: s0 + 12, Price: 1e-4},
		&market.Tick{Venue: "v", Instrument: "Y", Kind: market.Kind(42), RecvTS: s0 + 13},
		// An ignored kind still advances the clock: step 0 closes.
		&market.Tick{Venue: "v", Instrument: "Y", Kind: market.KindBookDelta, RecvTS: s0 + 3*sec, Price: 1, Size: 1},
	)
	if err := e.Apply(nil, c.emit); err == nil {
		t.Error("nil tick: no error")
	}
	for _, tc := range []struct {
		name  string
		label []string
		want  float64
	}{
		{"signald_features_invalid_ticks_total", []string{"reason", "price"}, 4},
		{"signald_features_invalid_ticks_total", []string{"reason", "crossed"}, 1},
		{"signald_features_invalid_ticks_total", []string{"reason", "size"}, 2},
		{"signald_features_invalid_ticks_total", []string{"reason", "recv_ts"}, 1},
		{"signald_features_ignored_ticks_total", []string{"kind", "book_delta"}, 2},
		{"signald_features_ignored_ticks_total", []string{"kind", "snapshot"}, 2},
		{"signald_features_ignored_ticks_total", []string{"kind", "funding"}, 1},
		{"signald_features_ignored_ticks_total", []string{"kind", "other"}, 1},
		{"signald_features_instruments", nil, 1}, // Y had no usable tick
	} {
		if got := metric(t, reg, tc.name, tc.label...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.label, got, tc.want)
		}
	}
	if len(c.steps) != 1 || len(c.steps[0]) != 1 {
		t.Fatalf("records %+v", c.steps)
	}
	r := c.steps[0][0].vals
	if r["mid"] != 100.5 || r["trade_count"] != 0 {
		t.Errorf("invalid ticks leaked into the step: %v", r)
	}
}

// randomStream is a messy multi-instrument feed: out-of-order arrivals within
// and beyond the lateness, invalid and ignored ticks, silent periods.
func randomStream(seed uint64, n int) []*market.Tick {
	rng := rand.New(rand.NewPCG(seed, 7))
	venues := []string{"binance", "okx", "bybit"}
	insts := []string{"BTC-USDT", "ETH-USDT", "SOL-USDT-PERP"}
	mids := map[string]float64{}
	var ticks []*market.Tick
	clock := base * sec
	for range n {
		clock += rng.Int64N(sec / 5)
		if rng.IntN(500) == 0 {
			clock += rng.Int64N(300 * sec) // gaps
		}
		v, in := venues[rng.IntN(3)], insts[rng.IntN(3)]
		key := v + in
		if mids[key] == 0 {
			mids[key] = 100 + rng.Float64()*1000
		}
		mids[key] *= math.Exp(0.002 * rng.NormFloat64())
		m := mids[key]
		recv := clock - rng.Int64N(4*sec) // up to 4s behind: some late
		var tk *market.Tick
		switch r := rng.IntN(20); {
		case r < 9:
			tk = quote(v, in, recv, m*(1-1e-4), m*(1+1e-4))
		case r < 17:
			tk = trade(v, in, recv, market.Side(rng.IntN(3)-1), m, rng.ExpFloat64())
		case r < 18:
			tk = quote(v, in, recv, math.NaN(), m)
		default:
			tk = &market.Tick{Venue: v, Instrument: in, Kind: market.KindBookDelta, RecvTS: recv, Price: m, Size: 1}
		}
		ticks = append(ticks, tk)
	}
	return ticks
}

// stepDigest is one record reduced to its keys and a hash of every value's
// bits: cheap enough to keep for thousands of 1,500-column records.
type stepDigest struct {
	time   int64
	keys   string
	hash   uint64
	nonNaN int
}

func digest(rec arrow.Record) stepDigest {
	d := stepDigest{time: int64(rec.Column(0).(*array.Timestamp).Value(0))}
	vs, is := rec.Column(1).(*array.String), rec.Column(2).(*array.String)
	for i := range int(rec.NumRows()) {
		d.keys += vs.Value(i) + "/" + is.Value(i) + ","
	}
	h := fnv.New64a()
	var b [8]byte
	for j := 3; j < int(rec.NumCols()); j++ {
		for _, v := range rec.Column(j).(*array.Float64).Float64Values() {
			if math.IsNaN(v) {
				v = math.NaN() // one NaN
			} else {
				d.nonNaN++
			}
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
			h.Write(b[:])
		}
	}
	d.hash = h.Sum64()
	return d
}

func TestDeterminism(t *testing.T) {
	ticks := randomStream(42, 20000)
	run := func() ([]stepDigest, *prometheus.Registry) {
		e, reg, _ := newTestEngine(t, Config{Windows: []int{5, 30}})
		var out []stepDigest
		emit := func(rec arrow.Record) error { out = append(out, digest(rec)); return nil }
		for _, tk := range ticks {
			if err := e.Apply(tk, emit); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Flush(emit); err != nil {
			t.Fatal(err)
		}
		return out, reg
	}
	a, regA := run()
	b, _ := run()
	if len(a) != len(b) || len(a) < 100 {
		t.Fatalf("%d vs %d records", len(a), len(b))
	}
	nonNaN := 0
	for k := range a {
		if a[k] != b[k] {
			t.Fatalf("step %d differs:\n%+v\n%+v", k, a[k], b[k])
		}
		nonNaN += a[k].nonNaN
	}
	if late := metric(t, regA, "signald_features_late_ticks_total"); late == 0 {
		t.Error("stream produced no late ticks; the test does not cover them")
	}
	t.Logf("%d records, %d non-NaN values, late %v", len(a), nonNaN, metric(t, regA, "signald_features_late_ticks_total"))
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Windows: []int{0}}, "features: window 0: must be >= 2"},
		{Config{Windows: []int{10, 1}}, "features: window 1: must be >= 2"},
		{Config{Windows: []int{10, 60, 10}}, "features: window 2: 10 duplicates window 0"},
		{Config{Windows: []int{MaxWindow + 1}}, "features: window 0: must be <= "},
		{Config{Step: -time.Second}, "features: step -1s: must be > 0"},
		{Config{AllowedLateness: -1}, "features: allowed lateness -1ns: must be >= 0"},
		{Config{Step: time.Millisecond, AllowedLateness: time.Second}, "features: allowed lateness 1s is 1000 steps of 1ms: must be <= 256 steps"},
		{Config{XRank: []string{"mid_ret", "nope_7"}}, `features: xrank 1: no column "nope_7"`},
		{Config{XRank: []string{"mid_ret", "mid_ret"}}, `features: xrank 1: "mid_ret" listed twice`},
	} {
		_, err := NewEngine(tc.cfg, nil, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	e, err := NewEngine(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config()
	if cfg.Step != time.Second || cfg.AllowedLateness != 2*time.Second || !slices.Equal(cfg.Windows, []int{5, 15, 60, 300, 900}) {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestSchemaAndCatalog(t *testing.T) {
	e, err := NewEngine(Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := e.Schema()
	if v, ok := s.Metadata().GetValue(SchemaVersionKey); !ok || v != SchemaVersion {
		t.Errorf("schema version %q %v", v, ok)
	}
	// The naming scheme: per-step bases, then <base>_<stat>_<window> for
	// every base, window and statistic, then the ranks.
	var want []string
	want = append(want, "time", "venue", "instrument", "mid")
	baseNames := []string{"mid_ret", "trade_ret", "spread_bps", "micro_dev_bps", "bbo_imb", "signed_vol", "volume",
		"notional", "trade_count", "vwap_dev_bps", "trade_size", "trade_iat", "quote_rate", "basis_bps", "trade_imb", "mid_range_bps"}
	want = append(want, baseNames...)
	statList := []string{"mean", "std", "z", "min", "max", "range_pos", "skew", "kurt", "ewm", "ewstd", "slope", "r2",
		"ac1", "sum", "pos_share", "updown", "argmax_age", "argmin_age"}
	for _, b := range baseNames {
		for _, w := range []int{5, 15, 60, 300, 900} {
			for _, st := range statList {
				want = append(want, fmt.Sprintf("%s_%s_%d", b, st, w))
			}
			if b == "mid_ret" || b == "trade_ret" {
				want = append(want, fmt.Sprintf("%s_rv_%d", b, w))
			}
		}
	}
	for _, x := range DefaultXRank {
		want = append(want, x+"_xrank")
	}
	var got []string
	for _, f := range s.Fields() {
		got = append(got, f.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("columns differ from the naming scheme: got %d, want %d", len(got), len(want))
	}
	if n := len(got) - 3; n < 1400 {
		t.Errorf("%d features, want at least 1,400", n)
	}
	for _, name := range []string{"mid_ret_std_60", "mid_ret_sum_300", "volume_mean_15", "mid_ret_rv_15", "spread_bps"} {
		if !slices.Contains(got, name) {
			t.Errorf("no column %s", name)
		}
	}
	if s.Field(0).Type.String() != "timestamp[ns, tz=UTC]" {
		t.Errorf("time type %v", s.Field(0).Type)
	}
	cat := Catalog()
	if !slices.Equal(cat, e.Features()) || len(cat) != len(want)-3 {
		t.Errorf("Catalog %v", cat)
	}
	for i, f := range cat {
		if f.Description == "" || f.Unit == "" {
			t.Errorf("%s undocumented", f.Name)
		}
		fld := s.Field(i + 3)
		if d, _ := fld.Metadata.GetValue("description"); d != f.Description || fld.Type.ID() != arrow.FLOAT64 {
			t.Errorf("field %s metadata %v", fld.Name, fld.Metadata)
		}
	}
}

// TestEmitError checks that a failing consumer does not change the state.
func TestEmitError(t *testing.T) {
	ticks := randomStream(3, 3000)
	cfg := Config{Windows: []int{3, 10}}
	ok, _, cOK := newTestEngine(t, cfg)
	apply(t, ok, cOK, ticks...)
	bad, _, cBad := newTestEngine(t, cfg)
	fails := 0
	for i, tk := range ticks {
		err := bad.Apply(tk, func(rec arrow.Record) error {
			if i%3 == 0 {
				return fmt.Errorf("downstream down")
			}
			return cBad.emit(rec)
		})
		if err != nil {
			fails++
		}
	}
	if fails == 0 || len(cBad.steps) == 0 {
		t.Fatalf("fails %d, records %d", fails, len(cBad.steps))
	}
	byTime := map[int64][]row{}
	for _, rows := range cOK.steps {
		byTime[rows[0].time] = rows
	}
	if len(cBad.steps) >= len(cOK.steps) {
		t.Fatalf("%d records despite errors (%d without)", len(cBad.steps), len(cOK.steps))
	}
	for _, rows := range cBad.steps {
		want := byTime[rows[0].time]
		if len(want) != len(rows) {
			t.Fatalf("rows differ at %d", rows[0].time)
		}
		for i := range rows {
			if !sameVals(rows[i].vals, want[i].vals) {
				t.Fatalf("state diverged after emit errors at %d", rows[0].time)
			}
		}
	}
}

// TestCatalogFile fails when features/CATALOG.md no longer matches the
// registry: run `make catalog`.
func TestCatalogFile(t *testing.T) {
	got, err := os.ReadFile("CATALOG.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != CatalogMarkdown() {
		t.Fatal("features/CATALOG.md is stale: run `make catalog`")
	}
	names := map[string]bool{}
	for _, f := range Catalog() {
		if names[f.Name] {
			t.Errorf("duplicate column %s", f.Name)
		}
		names[f.Name] = true
		if !strings.Contains(string(got), "`"+f.Name+"`") {
			t.Errorf("%s not in CATALOG.md", f.Name)
		}
	}
}

// TestKernelPathsAgree runs the same stream with the AVX2 and the pure-Go
// kernels: the records must be identical bit for bit (NaN payloads aside).
func TestKernelPathsAgree(t *testing.T) {
	prev := asm.SetGeneric(false)
	defer asm.SetGeneric(prev)
	if asm.Path() != "avx2" {
		t.Skip("no AVX2 kernels in this build or on this CPU")
	}
	ticks := randomStream(17, 4000)
	run := func(generic bool) [][]row {
		asm.SetGeneric(generic)
		e, _, c := newTestEngine(t, Config{Windows: []int{3, 10, 40}})
		apply(t, e, c, ticks...)
		if err := e.Flush(c.emit); err != nil {
			t.Fatal(err)
		}
		return c.steps
	}
	a, b := run(false), run(true)
	if len(a) != len(b) || len(a) < 50 {
		t.Fatalf("%d vs %d records", len(a), len(b))
	}
	for k := range a {
		for i := range a[k] {
			for name, v := range a[k][i].vals {
				w := b[k][i].vals[name]
				if math.Float64bits(v) != math.Float64bits(w) && !(math.IsNaN(v) && math.IsNaN(w)) {
					t.Fatalf("step %d row %d %s: avx2 %v, generic %v", k, i, name, v, w)
				}
			}
		}
	}
}

// One frame stamped years ahead used to move the clock and make every later
// tick late. It is held and, once the stream goes on at the old time,
// quarantined and counted; a real jump (the replay goes on at a later day)
// is confirmed by the ticks that follow and loses nothing.
func TestClockGuard(t *testing.T) {
	cfg := Config{Windows: []int{3, 5}, ClockJumpConfirm: 4}
	s0 := base * sec

	e, reg, c := newTestEngine(t, cfg)
	for k := range int64(20) {
		apply(t, e, c, quote("v", "X", s0+k*sec+1, 99, 101))
		if k == 5 {
			apply(t, e, c, quote("v", "X", s0+int64(6*365*24*time.Hour), 99, 101)) // a 2030 stamp
		}
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	if n := len(c.steps); n != 20 {
		t.Fatalf("%d steps closed, want 20: the stray tick moved the clock", n)
	}
	if got := metric(t, reg, "signald_features_late_ticks_total"); got != 0 {
		t.Fatalf("late ticks %v after a stray frame", got)
	}
	if got := metric(t, reg, "signald_features_invalid_ticks_total", "reason", "clock_jump"); got != 1 {
		t.Fatalf("clock_jump quarantined %v, want 1", got)
	}

	// A real jump: the stream continues three days later.
	e, reg, c = newTestEngine(t, cfg)
	later := s0 + int64(72*time.Hour)
	for k := range int64(10) {
		apply(t, e, c, quote("v", "X", s0+k*sec+1, 99, 101))
	}
	for k := range int64(10) {
		apply(t, e, c, quote("v", "X", later+k*sec+1, 99, 101))
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	var after int
	for _, rows := range c.steps {
		if rows[0].time > later {
			after++
		}
	}
	if after != 10 {
		t.Fatalf("%d steps after the jump, want 10 (no held tick lost)", after)
	}
	if got := metric(t, reg, "signald_features_invalid_ticks_total", "reason", "clock_jump"); got != 0 {
		t.Fatalf("clock_jump %v on a confirmed jump", got)
	}

	// Before the earliest allowed time.
	e, reg, c = newTestEngine(t, cfg)
	apply(t, e, c, quote("v", "X", int64(time.Hour), 99, 101)) // 1970
	if got := metric(t, reg, "signald_features_invalid_ticks_total", "reason", "before_min_time"); got != 1 {
		t.Fatalf("before_min_time %v", got)
	}
}
