package features

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/ingest"
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

func apply(t testing.TB, e *Engine, c *collector, ticks ...*ingest.Tick) {
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
	mid, spread []float64
	ret         []float64
	tc, vol     []float64
	buy, sell   []float64
	firstQuote  int
}

// genStream generates ticks for two instruments over n steps and the
// reference step values. Ticks are returned in RecvTS order.
func genStream(rng *rand.Rand, n int) ([]*ingest.Tick, []*refInst) {
	insts := []*refInst{
		{venue: "binance", inst: "BTC-USDT", first: 0, firstQuote: 0},
		{venue: "okx", inst: "ETH-USDT", first: 7, firstQuote: 9},
	}
	var ticks []*ingest.Tick
	for ii, ri := range insts {
		mid := 30000.0 / float64(ii+1)
		lastMid, lastSpread := math.NaN(), math.NaN()
		for k := range n {
			if k < ri.first {
				continue
			}
			silent := ii == 0 && k >= 100 && k < 121 // 21 steps without ticks
			var step []*ingest.Tick
			type ev struct {
				off int64
				t   *ingest.Tick
			}
			var evs []ev
			nq := 0
			if !silent && k >= ri.firstQuote && (k == ri.firstQuote || rng.Float64() < 0.85) {
				nq = 1 + rng.IntN(3)
			}
			for range nq {
				mid *= math.Exp(0.001 * rng.NormFloat64())
				half := mid * 1e-4 * (0.5 + rng.Float64())
				evs = append(evs, ev{rng.Int64N(sec), quote(ri.venue, ri.inst, 0, mid-half, mid+half)})
			}
			nt := 0
			if !silent && (k == ri.first || rng.Float64() < 0.7) {
				nt = 1 + rng.IntN(3)
			}
			for range nt {
				side := []ingest.Side{ingest.SideBuy, ingest.SideSell, ingest.SideUnknown}[rng.IntN(3)]
				if k == ri.first {
					side = ingest.SideBuy
				}
				evs = append(evs, ev{rng.Int64N(sec), trade(ri.venue, ri.inst, 0, side, mid, 0.001+rng.Float64())})
			}
			slices.SortStableFunc(evs, func(a, b ev) int { return int(a.off - b.off) })
			var tc, vol, buy, sell float64
			for _, e := range evs {
				e.t.RecvTS = (base+int64(k))*sec + e.off
				step = append(step, e.t)
				switch e.t.Kind {
				case ingest.KindQuote:
					lastMid = (e.t.BidPx + e.t.AskPx) / 2
					lastSpread = (e.t.AskPx - e.t.BidPx) / lastMid * 1e4
				case ingest.KindTrade:
					tc++
					vol += e.t.Size
					switch e.t.Side {
					case ingest.SideBuy:
						buy += e.t.Size
					case ingest.SideSell:
						sell += e.t.Size
					}
				}
			}
			prev := math.NaN()
			if len(ri.mid) > 0 {
				prev = ri.mid[len(ri.mid)-1]
			}
			ri.mid = append(ri.mid, lastMid)
			ri.spread = append(ri.spread, lastSpread)
			ri.ret = append(ri.ret, math.Log(lastMid/prev))
			ri.tc = append(ri.tc, tc)
			ri.vol = append(ri.vol, vol)
			ri.buy = append(ri.buy, buy)
			ri.sell = append(ri.sell, sell)
			ticks = append(ticks, step...)
		}
	}
	slices.SortStableFunc(ticks, func(a, b *ingest.Tick) int { return int(a.RecvTS - b.RecvTS) })
	return ticks, insts
}

// expected returns the reference value of feature name at step index j (steps
// since ri.first).
func (ri *refInst) expected(name string, j int) float64 {
	switch name {
	case "mid":
		return ri.mid[j]
	case "spread_bps":
		return ri.spread[j]
	case "ret":
		return ri.ret[j]
	case "trade_count":
		return ri.tc[j]
	case "volume":
		return ri.vol[j]
	}
	i := strings.LastIndexByte(name, '_')
	w, err := strconv.Atoi(name[i+1:])
	if err != nil {
		panic(name)
	}
	if j+1 < w {
		return math.NaN()
	}
	switch name[:i] {
	case "trade_imb":
		b, s := 0.0, 0.0
		for _, x := range ri.buy[j+1-w : j+1] {
			b += x
		}
		for _, x := range ri.sell[j+1-w : j+1] {
			s += x
		}
		if b+s == 0 {
			return math.NaN()
		}
		return (b - s) / (b + s)
	}
	rets := ri.ret[j+1-w : j+1]
	for _, r := range rets {
		if math.IsNaN(r) {
			return math.NaN() // window not yet filled with returns
		}
	}
	switch name[:i] {
	case "ret_mean":
		return refMean(rets)
	case "ret_std":
		return refStd(rets)
	case "rv":
		return refRV(rets)
	}
	panic(name)
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
	exact := map[string]bool{"mid": true, "spread_bps": true, "ret": true, "trade_count": true, "volume": true}
	checked := 0
	for k, rows := range c.steps {
		var want []*refInst
		for _, ri := range insts {
			if k >= ri.first {
				want = append(want, ri)
			}
		}
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
			for _, f := range e.Features() {
				got, w := r.vals[f.Name], ri.expected(f.Name, k-ri.first)
				ok := closeTo(got, w, 1e-9, 1e-15)
				if exact[f.Name] {
					ok = math.Float64bits(got) == math.Float64bits(w) || (math.IsNaN(got) && math.IsNaN(w))
				}
				if !ok {
					t.Fatalf("step %d %s %s: got %v, want %v", k, ri.inst, f.Name, got, w)
				}
				checked++
			}
		}
	}
	t.Logf("checked %d values", checked)
	if got := metric(t, reg, "signald_features_steps_total"); got != n {
		t.Errorf("steps_total = %v, want %d", got, n)
	}
	if got := metric(t, reg, "signald_features_instruments"); got != 2 {
		t.Errorf("instruments = %v, want 2", got)
	}
	if got := metric(t, reg, "signald_features_step_duration_seconds"); got != n {
		t.Errorf("step_duration count = %v, want %d", got, n)
	}
}

// TestWarmUp checks that every feature is NaN for exactly its documented
// WarmUp steps when the instrument quotes and trades every step.
func TestWarmUp(t *testing.T) {
	cfg := Config{Windows: []int{4, 9}}
	e, _, c := newTestEngine(t, cfg)
	const n = 30
	mid := 100.0
	for k := range int64(n) {
		ts := (base + k) * sec
		mid *= math.Exp(0.01 * math.Sin(float64(k)))
		apply(t, e, c,
			quote("v", "X", ts+1, mid-0.01, mid+0.01),
			trade("v", "X", ts+2, ingest.SideBuy, mid, 1),
			trade("v", "X", ts+3, ingest.SideSell, mid, 0.5))
	}
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.steps) != n {
		t.Fatalf("%d records", len(c.steps))
	}
	for _, f := range e.Features() {
		for k, rows := range c.steps {
			v := rows[0].vals[f.Name]
			if k < f.WarmUp && !math.IsNaN(v) {
				t.Errorf("%s step %d: %v during warm-up %d", f.Name, k, v, f.WarmUp)
			}
			if k >= f.WarmUp && math.IsNaN(v) {
				t.Errorf("%s step %d: NaN after warm-up %d", f.Name, k, f.WarmUp)
			}
		}
	}
	// Spot values: trade_imb = (1-0.5)/(1+0.5) once warm.
	if got := c.steps[n-1][0].vals["trade_imb_9"]; math.Abs(got-1.0/3) > 1e-15 {
		t.Errorf("trade_imb_9 = %v, want 1/3", got)
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
		trade("v", "X", s0+999, ingest.SideBuy, 100, 5), // late too
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
			trade("v", "X", s0+k*sec+2, ingest.SideSell, 100, 1))
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
	for name, want := range map[string]float64{
		"mid": 109, "ret": 0, "volume": 0, "trade_count": 0,
		"ret_mean_3": 0, "ret_std_3": 0, "rv_3": 0, "ret_mean_5": 0, "ret_std_5": 0, "rv_5": 0,
	} {
		if last[name] != want {
			t.Errorf("after the fill %s = %v, want exactly %v", name, last[name], want)
		}
	}
	if v := last["trade_imb_5"]; !math.IsNaN(v) {
		t.Errorf("trade_imb_5 = %v after 5 steps without trades, want NaN", v)
	}
	if v := c.steps[10][0].vals["trade_imb_5"]; v != -1 {
		t.Errorf("trade_imb_5 one step into the gap = %v, want -1 (sells only)", v)
	}
	// Skipped steps would have repeated the last fill record.
	if a, b := c.steps[15][0].vals, last; !maps(a, b) {
		t.Errorf("first record after the skip %v differs from the last fill record %v", a, b)
	}
	if got, want := c.steps[17][0].vals["ret"], math.Log(200.0/109); got != want {
		t.Errorf("ret after the gap = %v, want %v", got, want)
	}
}

func maps(a, b map[string]float64) bool {
	for k, v := range a {
		if math.Float64bits(v) != math.Float64bits(b[k]) {
			return false
		}
	}
	return len(a) == len(b)
}

func TestHugeClockJumpIsBounded(t *testing.T) {
	e, reg, c := newTestEngine(t, Config{Step: time.Millisecond, AllowedLateness: 10 * time.Millisecond})
	s0 := base * sec
	apply(t, e, c, quote("v", "X", s0, 99, 101))
	start := time.Now()
	apply(t, e, c, quote("v", "X", s0+int64(100*365*24*time.Hour), 99, 101)) // 100 years of 1ms steps
	if err := e.Flush(c.emit); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("jump took %v", d)
	}
	if len(c.steps) > 1+60+11 { // the data step, max window empty steps, the open steps

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
		trade("bybit", "BTC-USDT", s0+3*sec+5, ingest.SideBuy, 1, 1),
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
		trade("v", "X", s0+6, ingest.SideBuy, -1, 1),
		trade("v", "X", s0+7, ingest.SideBuy, 100, math.NaN()),
		trade("v", "X", s0+8, ingest.SideBuy, 100, 0),
		&ingest.Tick{Venue: "v", Instrument: "X", Kind: ingest.KindQuote, RecvTS: 0, BidPx: 1, AskPx: 2},
		&ingest.Tick{Venue: "v", Instrument: "X", Kind: ingest.KindBookDelta, RecvTS: s0 + 9, Price: 1, Size: 1},
		&ingest.Tick{Venue: "v", Instrument: "X", Kind: ingest.KindSnapshot, RecvTS: s0 + 10, Price: 1, Size: 1},
		&ingest.Tick{Venue: "v", Instrument: "X", Kind: ingest.KindSnapshot, RecvTS: s0 + 11, Price: 1, Size: 1},
		&ingest.Tick{Venue: "v", Instrument: "Y", Kind: ingest.KindFunding, RecvTS: s0 + 12, Price: 1e-4},
		&ingest.Tick{Venue: "v", Instrument: "Y", Kind: ingest.Kind(42), RecvTS: s0 + 13},
		// An ignored kind still advances the clock: step 0 closes.
		&ingest.Tick{Venue: "v", Instrument: "Y", Kind: ingest.KindBookDelta, RecvTS: s0 + 3*sec, Price: 1, Size: 1},
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
func randomStream(seed uint64, n int) []*ingest.Tick {
	rng := rand.New(rand.NewPCG(seed, 7))
	venues := []string{"binance", "okx", "bybit"}
	insts := []string{"BTC-USDT", "ETH-USDT", "SOL-USDT-PERP"}
	mids := map[string]float64{}
	var ticks []*ingest.Tick
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
		var tk *ingest.Tick
		switch r := rng.IntN(20); {
		case r < 9:
			tk = quote(v, in, recv, m*(1-1e-4), m*(1+1e-4))
		case r < 17:
			tk = trade(v, in, recv, ingest.Side(rng.IntN(3)-1), m, rng.ExpFloat64())
		case r < 18:
			tk = quote(v, in, recv, math.NaN(), m)
		default:
			tk = &ingest.Tick{Venue: v, Instrument: in, Kind: ingest.KindBookDelta, RecvTS: recv, Price: m, Size: 1}
		}
		ticks = append(ticks, tk)
	}
	return ticks
}

func TestDeterminism(t *testing.T) {
	ticks := randomStream(42, 20000)
	run := func() ([][]row, *prometheus.Registry) {
		e, reg, c := newTestEngine(t, Config{Windows: []int{5, 30}})
		apply(t, e, c, ticks...)
		if err := e.Flush(c.emit); err != nil {
			t.Fatal(err)
		}
		return c.steps, reg
	}
	a, regA := run()
	b, _ := run()
	if len(a) != len(b) || len(a) < 100 {
		t.Fatalf("%d vs %d records", len(a), len(b))
	}
	nonNaN := 0
	for k := range a {
		if len(a[k]) != len(b[k]) {
			t.Fatalf("step %d: %d vs %d rows", k, len(a[k]), len(b[k]))
		}
		for i := range a[k] {
			ra, rb := a[k][i], b[k][i]
			if ra.time != rb.time || ra.venue != rb.venue || ra.instrument != rb.instrument || !maps(ra.vals, rb.vals) {
				t.Fatalf("step %d row %d differs:\n%+v\n%+v", k, i, ra, rb)
			}
			for _, v := range ra.vals {
				if !math.IsNaN(v) {
					nonNaN++
				}
			}
		}
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
	if cfg.Step != time.Second || cfg.AllowedLateness != 2*time.Second || !slices.Equal(cfg.Windows, []int{10, 60}) {
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
	want := []string{"time", "venue", "instrument", "mid", "spread_bps", "ret", "trade_count", "volume",
		"ret_mean_10", "ret_std_10", "rv_10", "trade_imb_10", "ret_mean_60", "ret_std_60", "rv_60", "trade_imb_60"}
	var got []string
	for _, f := range s.Fields() {
		got = append(got, f.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("columns %v", got)
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
	ok, _, cOK := newTestEngine(t, Config{})
	apply(t, ok, cOK, ticks...)
	bad, _, cBad := newTestEngine(t, Config{})
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
			if !maps(rows[i].vals, want[i].vals) {
				t.Fatalf("state diverged after emit errors at %d", rows[0].time)
			}
		}
	}
}
