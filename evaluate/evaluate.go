// Package evaluate gives a backtest's verdict on the signals: the trend calls
// traded as a strategy against buy-and-hold and random-timing baselines,
// realized volatility after regime and changepoint signals, an event study of
// novelty signals against matched non-signal times, and the information
// coefficient of feature columns against forward returns.
//
// # Use
//
//	ev, err := evaluate.New(evaluate.Options{Step: step, Delay: lateness})
//	// per batch of stored ticks, in (RecvTS, venue, instrument) order:
//	//   run the batch through the engine and detectors, passing every signal
//	//   to ev.AddSignal and every feature record to ev.AddRecord, then
//	ev.AddTicks(batch)
//	rep, err := ev.Finish()
//	rep.Summary(os.Stderr)
//	err = rep.WriteDir(dir) // report.json, report.html, *.parquet
//
// A step's signals must reach the Evaluator before the ticks after the
// step's execution time (Time + Delay) do; the order above gives that when
// Delay is at least the engine's allowed lateness, which is also when a live
// run could first act on the signal. A signal that comes later is executed at
// the next price and counted in Report.LateSignals.
//
// # Prices and causality
//
// The price of an instrument is the mid of its last quote (KindQuote), or
// its last trade price while it has had no quote. Prices are marked on a grid
// of Options.Step: the mark of grid point g is the last price received
// before g (like the feature engine's mid at a step's end). A signal at time
// t acts only on prices received strictly after t + Delay: a trend call
// fills at the first such price; a study's base is the first grid point whose
// mark is such a price, and its forward values at horizon h compare the marks
// h steps later with it.
//
// # Trend calls as a strategy
//
// Per instrument the position is +1, 0 or -1 times the instrument's equity
// (long, flat, short calls); a change of |d| units costs d*(FeeBps +
// SlippageBps)/1e4 + d*SpreadFraction*spread/mid of the equity, at the fill.
// A long (short) position whose price falls to (rises to) the call's stop is
// closed at that price (a resting stop order: no delay). The total is the
// equal-capital portfolio of the instruments. Returns and drawdowns are
// measured on the grid; annualization assumes a market open all year (365
// days). The buy-and-hold baseline buys at the instrument's first price;
// the random baseline places the strategy's own trades (same number, sides,
// durations and costs) at random times of the same instrument, Options.Draws
// times with Options.Seed, on the instrument's sampled price path.
//
// # Studies
//
// For every grid step with a fresh price (unconditional), every regime_change
// (grouped by the new state, and changepoints apart) and every novelty
// signal, the forward log return, realized volatility sqrt(sum r^2) and spread
// at each horizon. Confidence intervals are normal approximations (mean +-
// 1.96 standard errors); t-statistics compare signal and control means
// (Welch). Controls for novelty are drawn, one per signal, from a seeded
// reservoir of the same instrument's steps with no novelty signal within the
// longest horizon before or after them.
//
// # Information coefficient
//
// Spearman rank correlation between a feature column at step t and the
// forward return from t's base: across instruments per step (mean, standard
// deviation and t-statistic over steps) and per instrument over time, on
// every h-th step for horizon h (forward windows that do not overlap), in
// blocks of ICBlock such steps (mean and t over blocks). Overlapping horizons
// make successive steps' cross-sectional values dependent, so their
// t-statistics above horizon 1 overstate significance.
//
// Memory is bounded by the number of instruments: fixed-size sampled paths
// (Options.MaxPoints per instrument), reservoirs and pending windows of the
// longest horizon; trades and regime_change and novelty events are kept
// (they are few). Work is per tick plus per grid step and instrument, also
// over gaps in the data (every empty step is marked).
package evaluate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/signald-dev/signald/market"
)

// Options configure an Evaluator; the zero value works.
type Options struct {
	// Step is the price grid; default 1s (use the backtest's feature step).
	Step time.Duration
	// Delay is the execution delay after a signal's time; default 0. Use at
	// least the feature engine's allowed lateness to act when a live run could.
	Delay time.Duration
	// FeeBps is the fee per unit of equity traded, in basis points.
	FeeBps float64
	// SlippageBps is a fixed slippage per unit traded, in basis points.
	SlippageBps float64
	// SpreadFraction is slippage as a fraction of the quoted spread per unit
	// traded (0.5 pays the half-spread: a fill at the bid or ask).
	SpreadFraction float64
	// NoStops ignores the trend calls' stops.
	NoStops bool
	// Horizons of the studies and the IC, in steps; default 1, 5, 30, 300.
	Horizons []int
	// Features are the columns whose IC AddRecord computes; default
	// DefaultFeatures (those present in the record).
	Features []string
	// Draws of the random-timing baseline; default 200.
	Draws int
	// Seed of every random choice; default 1.
	Seed uint64
	// MaxPoints bounds each instrument's sampled path (charts, equity table,
	// random baseline); default 8192. A longer range is sampled more coarsely.
	MaxPoints int
	// ICBlock is the number of (feature, forward return) pairs per block of
	// the per-instrument IC; default 256.
	ICBlock int
}

// DefaultFeatures are the IC columns when Options.Features is empty.
var DefaultFeatures = []string{"mid_ret_sum_60", "mid_ret_z_60", "trade_imb_mean_60", "bbo_imb", "micro_dev_bps"}

const reservoirSize = 1024

func (o Options) withDefaults() (Options, error) {
	if o.Step == 0 {
		o.Step = time.Second
	}
	if o.Step < 0 {
		return o, fmt.Errorf("evaluate: step %v: must be positive", o.Step)
	}
	if o.Delay < 0 {
		return o, fmt.Errorf("evaluate: delay %v: must be >= 0", o.Delay)
	}
	if o.FeeBps < 0 || o.SlippageBps < 0 || o.SpreadFraction < 0 {
		return o, errors.New("evaluate: fees and slippage must be >= 0")
	}
	if len(o.Horizons) == 0 {
		o.Horizons = []int{1, 5, 30, 300}
	}
	for i, h := range o.Horizons {
		if h <= 0 || (i > 0 && h <= o.Horizons[i-1]) {
			return o, fmt.Errorf("evaluate: horizons %v: must be positive and increasing", o.Horizons)
		}
	}
	if o.Draws == 0 {
		o.Draws = 200
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.MaxPoints == 0 {
		o.MaxPoints = 8192
	}
	if o.MaxPoints < 16 {
		o.MaxPoints = 16
	}
	if o.ICBlock == 0 {
		o.ICBlock = 256
	}
	return o, nil
}

// Key names an instrument on a venue.
type Key struct{ Venue, Instrument string }

// Evaluator accumulates ticks, signals and features of one backtest. It is
// not safe for concurrent use.
type Evaluator struct {
	o    Options
	step int64
	hmax int
	rng  *rand.Rand

	insts map[Key]*inst
	order []*inst // in order of appearance

	clock    int64 // largest RecvTS seen
	nextGrid int64 // time of the next grid point to close; 0 before the first tick
	gi       int64 // index of the next grid point
	first    int64 // time of grid point 0

	ticks, late int64
	lateSig     int64
	sigCount    map[string]int64

	total, totalBH curve
	totalSer       series

	uncond []studyAcc  // per horizon
	uncRes [][]float32 // uniform samples of the forward returns, per horizon
	uncRV  [][]float32 // and of the realized volatilities, same rows
	uncN   int64

	events   []*Event
	icCols   []string
	icSeq    int64
	rs       rankScratch
	ic       [][]icAcc // [col][h]
	finished bool
}

// New returns an Evaluator.
func New(o Options) (*Evaluator, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Evaluator{o: o, step: int64(o.Step), hmax: o.Horizons[len(o.Horizons)-1],
		rng: rand.New(rand.NewPCG(o.Seed, 0x5eed)), insts: map[Key]*inst{}, sigCount: map[string]int64{}}
	e.total = newCurve()
	e.totalBH = newCurve()
	e.totalSer = newSeries(o.MaxPoints)
	e.uncond = make([]studyAcc, len(o.Horizons))
	e.uncRes = make([][]float32, len(o.Horizons))
	e.uncRV = make([][]float32, len(o.Horizons))
	return e, nil
}

// inst is one instrument's state.
type inst struct {
	key      Key
	hasQuote bool
	px       float64 // last price
	pxTS     int64   // its RecvTS
	spread   float64 // last quote's spread, bps of mid (NaN without quotes)
	started  bool    // has a price
	p0       float64 // first price
	bhV0     float64 // buy-and-hold value per unit of price ratio
	firstGI  int64   // grid index of its first mark

	// forward-value ring: hmax+1 rows
	ring        []row
	n           int64 // rows pushed
	lastLP      float64
	cumR2       float64
	st          strat
	eq, bh      curve
	ser         series
	waiting     []*pend     // no base yet
	active      []*pend     // base set
	res         [][]float32 // reservoir of fwd rows (control pool)
	lastSigBase int64       // row of the latest novelty base
	resN        int64
	icBlk       [][]icBlock // [col][h]
	icI         [][]icAcc   // [col][h] over blocks
}

type row struct {
	lp, cr float64
	spread float64
	fresh  bool
}

func (e *Evaluator) instOf(k Key) *inst {
	in := e.insts[k]
	if in == nil {
		in = &inst{key: k, spread: math.NaN(), lastSigBase: math.MinInt64 / 2, ring: make([]row, e.hmax+1), eq: newCurve(), bh: newCurve(), ser: newSeries(e.o.MaxPoints)}
		in.st = strat{stop: math.NaN(), v: 1, ref: 1}
		e.insts[k] = in
		e.order = append(e.order, in)
	}
	return in
}

// AddTicks adds ticks in (RecvTS, venue, instrument) order. Quotes and trades
// set prices; other kinds only advance the clock. A tick older than the last
// closed grid point is counted as late and ignored.
func (e *Evaluator) AddTicks(ticks []market.Tick) {
	for i := range ticks {
		e.addTick(&ticks[i])
	}
}

func (e *Evaluator) addTick(t *market.Tick) {
	r := t.RecvTS
	if r <= 0 {
		return
	}
	e.ticks++
	if e.nextGrid == 0 {
		e.nextGrid = floorDiv(r, e.step)*e.step + e.step
		e.first = e.nextGrid
	}
	if r < e.nextGrid-e.step {
		e.late++
		return
	}
	for r >= e.nextGrid {
		e.closeGrid()
	}
	if r > e.clock {
		e.clock = r
	}
	var px, spread float64
	switch t.Kind {
	case market.KindQuote:
		if !(t.BidPx > 0 && t.AskPx >= t.BidPx) {
			return
		}
		px = (t.BidPx + t.AskPx) / 2
		spread = (t.AskPx - t.BidPx) / px * 1e4
	case market.KindTrade:
		if !(t.Price > 0) {
			return
		}
		in := e.insts[Key{t.Venue, t.Instrument}]
		if in != nil && in.hasQuote {
			return
		}
		px, spread = t.Price, math.NaN()
	default:
		return
	}
	if math.IsInf(px, 0) || math.IsNaN(px) {
		return
	}
	in := e.instOf(Key{t.Venue, t.Instrument})
	if t.Kind == market.KindQuote {
		in.hasQuote = true
	}
	in.px, in.pxTS, in.spread = px, r, spread
	if !in.started {
		in.started, in.p0, in.lastLP = true, px, math.Log(px)
		in.firstGI = e.gi
		in.bhEntry(e.o, px, spread)
	}
	in.st.onPrice(e, in, px, spread, r)
}

// closeGrid marks every instrument at grid point e.nextGrid.
func (e *Evaluator) closeGrid() {
	g := e.nextGrid
	var sumPrev, sumNow, bhPrev, bhNow float64
	for _, in := range e.order {
		if !in.started {
			continue
		}
		v := in.st.value(in.px)
		b := in.bhValue(e.o)
		// an instrument's capital joins the portfolio at its first mark
		sumPrev += in.eq.prev
		sumNow += v
		bhPrev += in.bh.prev
		bhNow += b
		in.eq.add(v)
		in.bh.add(b)
		if in.st.pos != 0 {
			in.st.exposed++
		}
		lp := math.Log(in.px)
		dr := lp - in.lastLP
		in.lastLP = lp
		in.cumR2 += dr * dr
		fresh := in.pxTS >= g-e.step && in.n > 0 || in.n == 0
		in.ring[in.n%int64(len(in.ring))] = row{lp: lp, cr: in.cumR2, spread: in.spread, fresh: fresh}
		in.ser.add(e.gi, g, float32(lp-math.Log(in.p0)), v, b)
		e.advanceStudies(in)
		in.n++
	}
	if sumPrev > 0 {
		e.total.add(e.total.prev * sumNow / sumPrev)
		e.totalBH.add(e.totalBH.prev * bhNow / bhPrev)
	}
	e.totalSer.add(e.gi, g, 0, e.total.prev, e.totalBH.prev)
	e.gi++
	e.nextGrid += e.step
}

// AddSignal adds a detector signal. trend_call drives the strategy,
// regime_change and novelty the studies; regime_probs are counted only.
func (e *Evaluator) AddSignal(s market.Signal) {
	e.sigCount[s.Type]++
	execAt := s.Time + int64(e.o.Delay)
	if e.clock > execAt {
		e.lateSig++
	}
	in := e.instOf(Key{s.Venue, s.Instrument})
	switch s.Type {
	case market.TypeTrendCall:
		var pos int8
		switch s.State {
		case "long":
			pos = 1
		case "short":
			pos = -1
		}
		stop := math.NaN()
		if v, ok := s.Values["stop"]; ok && pos != 0 && !e.o.NoStops {
			stop = v
		}
		in.st.orders = append(in.st.orders, order{at: execAt, pos: pos, stop: stop, sigTime: s.Time})
	case market.TypeRegimeChange, market.TypeNovelty:
		ev := &Event{Type: s.Type, Venue: s.Venue, Instrument: s.Instrument, Time: s.Time, State: s.State, Score: s.Score,
			Changepoint: s.Values["changepoint"] == 1, Switch: s.Values["switch"] == 1, Base: -1}
		ev.init(len(e.o.Horizons))
		e.events = append(e.events, ev)
		in.waiting = append(in.waiting, &pend{execAt: execAt, ev: ev})
	}
}

// pend is a study item waiting for its base or its horizons.
type pend struct {
	execAt int64
	base   int64 // row index
	ev     *Event
	ic     *icStep
	icRow  int
}

// advanceStudies runs after row in.n was written.
func (e *Evaluator) advanceStudies(in *inst) {
	n := in.n
	// bases: the first mark received after the execution time
	keep := in.waiting[:0]
	for _, p := range in.waiting {
		if in.pxTS > p.execAt {
			p.base = n
			if p.ev != nil {
				p.ev.Base = e.first + (e.gi)*e.step
				if p.ev.Type == market.TypeNovelty {
					in.lastSigBase = n
				}
			}
			in.active = append(in.active, p)
		} else {
			keep = append(keep, p)
		}
	}
	clear(in.waiting[len(keep):])
	in.waiting = keep
	// unconditional rows complete at hmax
	if s := n - int64(e.hmax); s >= 0 {
		base := in.ring[s%int64(len(in.ring))]
		if base.fresh {
			// one reservoir slot per row for every horizon: -1 keeps none
			uj := reservoirSlot(len(e.uncRes[0]), e.uncN, e.rng)
			e.uncN++
			var vals []float32
			if in.lastSigBase < s-int64(e.hmax) { // controls: no novelty base within the longest horizon either side
				if j := reservoirSlot(len(in.res), in.resN, e.rng); j >= 0 {
					if j < len(in.res) {
						vals = in.res[j][:0]
					} else {
						vals = make([]float32, 0, 3*len(e.o.Horizons))
					}
					defer func() {
						if j < len(in.res) {
							in.res[j] = vals
						} else {
							in.res = append(in.res, vals)
						}
					}()
				}
				in.resN++
			}
			for hi, h := range e.o.Horizons {
				r := in.ring[(s+int64(h))%int64(len(in.ring))]
				ret := r.lp - base.lp
				rv := math.Sqrt(max(0, r.cr-base.cr))
				e.uncond[hi].add(ret, rv, r.spread)
				if vals != nil {
					vals = append(vals, float32(ret), float32(rv), float32(r.spread))
				}
				switch {
				case uj < 0:
				case uj < len(e.uncRes[hi]):
					e.uncRes[hi][uj], e.uncRV[hi][uj] = float32(ret), float32(rv)
				default:
					e.uncRes[hi] = append(e.uncRes[hi], float32(ret))
					e.uncRV[hi] = append(e.uncRV[hi], float32(rv))
				}
			}
		}
	}
	// signals and IC rows complete at hmax after their base; bases are set
	// in row order, so the complete ones are a prefix
	k := 0
	for k < len(in.active) && n-in.active[k].base >= int64(e.hmax) {
		e.resolve(in, in.active[k], n)
		in.active[k] = nil
		k++
	}
	in.active = in.active[k:]
}

// resolve fills p's forward values from the ring (horizons up to n).
func (e *Evaluator) resolve(in *inst, p *pend, n int64) {
	base := in.ring[p.base%int64(len(in.ring))]
	for hi, h := range e.o.Horizons {
		if p.base+int64(h) > n {
			break
		}
		r := in.ring[(p.base+int64(h))%int64(len(in.ring))]
		ret := r.lp - base.lp
		if p.ev != nil {
			p.ev.Ret[hi] = ret
			p.ev.RV[hi] = math.Sqrt(max(0, r.cr-base.cr))
			p.ev.Spread[hi] = r.spread
		}
		if p.ic != nil {
			p.ic.fwd[hi][p.icRow] = ret
		}
	}
	if p.ic != nil {
		p.ic.left--
		if p.ic.left == 0 {
			e.finishIC(p.ic)
		}
	}
}

// Finish closes the last grid point and returns the report. The Evaluator
// cannot be used afterwards.
func (e *Evaluator) Finish() (*Report, error) {
	if e.finished {
		return nil, errors.New("evaluate: Finish called twice")
	}
	e.finished = true
	if e.nextGrid != 0 {
		e.closeGrid()
	}
	for _, in := range e.order {
		for _, p := range in.active {
			e.resolve(in, p, in.n-1)
		}
		for _, p := range in.waiting {
			if p.ic != nil {
				p.ic.left--
				if p.ic.left == 0 {
					e.finishIC(p.ic)
				}
			}
		}
		in.active, in.waiting = nil, nil
	}
	return e.report(), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
