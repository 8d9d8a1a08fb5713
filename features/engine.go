package features

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// Engine computes per-instrument features over fixed steps of receive time.
// See the package documentation for the time, gap and record semantics.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	lay    *layout
	schema *arrow.Schema
	mem    memory.Allocator
	step   int64 // ns
	late   int64 // ns
	slots  int64 // len(instState.pending)
	maxW   int

	insts   []*instState // in the SoA store, sorted by key: the row order
	waiting []*instState // seen, but their first step has not closed yet
	byKey   map[instKey]*instState
	groups  []basisGroup // by instState.group
	roll    *roller

	started bool
	next    int64 // oldest open step
	clock   int64 // largest RecvTS seen

	// The clock guard: ticks past clock+maxJump wait in held until enough
	// of them confirm the jump (or enough normal ticks refute it).
	maxJump, minTS int64
	held           []market.Tick
	refuted        int // normal ticks since the first held one

	market Market

	cols    [][]float64   // scratch: feature columns of the step being closed
	xs      [][]float64   // scratch: the base series' columns
	scratch []float64     // feature values when no record is built
	acols   []arrow.Array // scratch: columns of the record being built
	rank    rankScratch   // scratch: cross-sectional ranking
}

// basisGroup accumulates the mids of one instrument name across venues.
type basisGroup struct {
	sum float64
	n   int
}

// NewEngine validates cfg, fills in its defaults and returns an engine. logger
// and reg may be nil.
func NewEngine(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	recycle := cfg.Allocator == nil
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	lay, err := buildLayout(&cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("features: register metrics: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:     cfg,
		log:     logger.With("component", "features"),
		m:       m,
		lay:     lay,
		mem:     cfg.Allocator,
		step:    int64(cfg.Step),
		late:    int64(cfg.AllowedLateness),
		slots:   int64(cfg.openSlots()),
		maxW:    cfg.maxWindow(),
		byKey:   make(map[instKey]*instState),
		maxJump: int64(cfg.MaxClockJump),
		minTS:   cfg.MinRecvTime.UnixNano(),
	}
	if recycle {
		e.mem = newRecycler(cfg.Allocator)
	}
	rv := make([]bool, numBases)
	for b := range rv {
		rv[b] = bases[b].rv
	}
	e.roll = newRoller(cfg.Windows, rv)
	e.schema = buildSchema(&cfg, lay.docs)
	e.market.Values = make([]float64, len(marketDefs))
	for i := range e.market.Values {
		e.market.Values[i] = math.NaN()
	}
	return e, nil
}

// Schema is the schema of every record the engine emits.
func (e *Engine) Schema() *arrow.Schema { return e.schema }

// Features documents the engine's feature columns, in column order.
func (e *Engine) Features() []FeatureDoc { return slices.Clone(e.lay.docs) }

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config {
	c := e.cfg
	c.Windows = slices.Clone(c.Windows)
	c.XRank = slices.Clone(c.XRank)
	return c
}

// StateBytesPerInstrument is the rolling state's memory per instrument in
// the structure-of-arrays store (ring buffers, window sums, block extremes), as now
// allocated; 0 before the first step.
func (e *Engine) StateBytesPerInstrument() int { return e.roll.bytesPerInstrument() }

// Apply feeds one tick. If it advances the clock far enough it first closes
// one or more steps, calling emit once per closed step in step order; the
// record is released when emit returns (Retain it to keep it). emit may be nil
// to advance the state without building records.
//
// Quotes drive mid and spread, trades drive volume, trade count and imbalance;
// other kinds are counted as ignored. Ticks with RecvTS <= 0, a NaN, Inf or
// non-positive price (or trade size), or a crossed quote are counted and
// skipped; ticks whose step has closed are counted as late and skipped.
//
// The engine's state never depends on emit's result: a step whose emit fails
// is still closed, and the errors of all emits are joined and returned.
func (e *Engine) Apply(t *market.Tick, emit func(arrow.Record) error) error {
	if t == nil {
		return errors.New("features: nil tick")
	}
	if t.RecvTS <= 0 {
		e.m.invalid[invRecvTS].Inc()
		return nil
	}
	if t.RecvTS < e.minTS {
		e.m.invalid[invTooEarly].Inc()
		return nil
	}
	if e.started && e.maxJump > 0 && t.RecvTS > e.clock+e.maxJump {
		return e.hold(t, emit)
	}
	if len(e.held) > 0 {
		if e.refuted++; e.refuted >= e.cfg.ClockJumpConfirm {
			e.quarantineHeld()
		}
	}
	return e.apply(t, emit)
}

// hold keeps a tick past the clock guard. Once ClockJumpConfirm ticks are
// held, the jump is real (a replay continuing at a later day): the clock
// moves to the earliest of them and they are applied in order. Held ticks
// far from the latest one are the stray ones and are quarantined.
func (e *Engine) hold(t *market.Tick, emit func(arrow.Record) error) error {
	if len(e.held) == 0 {
		e.refuted = 0
	}
	e.held = append(e.held, *t)
	if len(e.held) < e.cfg.ClockJumpConfirm {
		return nil
	}
	return e.confirmHeld(emit)
}

// confirmHeld moves the clock past the guard and applies the held ticks.
func (e *Engine) confirmHeld(emit func(arrow.Record) error) error {
	last := e.held[len(e.held)-1].RecvTS
	held := e.held
	e.held = nil
	var errs []error
	for i := range held {
		if d := last - held[i].RecvTS; d > e.maxJump || d < -e.maxJump {
			e.m.invalid[invClockJump].Inc()
			continue
		}
		if err := e.apply(&held[i], emit); err != nil {
			errs = append(errs, err)
		}
	}
	e.log.Warn("clock jump confirmed: the clock moved past the guard", "to", time.Unix(0, last).UTC(), "ticks", len(held))
	return errors.Join(errs...)
}

// quarantineHeld drops the held ticks: the stream went on at the old time.
func (e *Engine) quarantineHeld() {
	e.m.invalid[invClockJump].Add(float64(len(e.held)))
	e.log.Warn("ticks quarantined: their time jumped past the clock guard and the stream did not follow",
		"ticks", len(e.held), "first_recv_ts", time.Unix(0, e.held[0].RecvTS).UTC(), "clock", time.Unix(0, e.clock).UTC())
	e.held = e.held[:0]
}

// apply is Apply past the clock guard.
func (e *Engine) apply(t *market.Tick, emit func(arrow.Record) error) error {
	s := floorDiv(t.RecvTS, e.step)
	if !e.started {
		// Open every step the clock has not closed, so that the first tick
		// does not make slightly older ticks of other venues late.
		e.started = true
		e.clock = t.RecvTS
		e.next = floorDiv(e.clock-e.late, e.step)
	}
	var err error
	if t.RecvTS > e.clock {
		prevClockStep := floorDiv(e.clock, e.step)
		e.clock = t.RecvTS
		// Step k closes once clock >= (k+1)*step + late.
		err = e.closeThrough(floorDiv(e.clock-e.late, e.step)-1, prevClockStep, emit)
	}

	switch t.Kind {
	case market.KindQuote:
		switch {
		case !positiveFinite(t.BidPx) || !positiveFinite(t.AskPx):
			e.m.invalid[invPrice].Inc()
			return err
		case t.AskPx < t.BidPx:
			e.m.invalid[invCrossed].Inc()
			return err
		case !sizeOK(t.BidSz) || !sizeOK(t.AskSz):
			e.m.invalid[invSize].Inc()
			return err
		}
		if acc := e.acc(t, s); acc != nil {
			acc.applyQuote(t)
		}
	case market.KindTrade:
		switch {
		case !positiveFinite(t.Price):
			e.m.invalid[invPrice].Inc()
			return err
		case !positiveFinite(t.Size):
			e.m.invalid[invSize].Inc()
			return err
		}
		if acc := e.acc(t, s); acc != nil {
			acc.applyTrade(t)
		}
	default:
		// Book deltas and snapshots will feed book features; funding,
		// liquidations (also reported as trades by the venues) and gap markers
		// are not used yet.
		e.m.ignoredTick(t.Kind)
	}
	return err
}

// Flush closes every open step, emitting their records, as at the end of a
// backtest. Ticks applied afterwards must belong to later steps or they are
// late.
func (e *Engine) Flush(emit func(arrow.Record) error) error {
	if len(e.held) > 0 {
		if e.refuted > 0 {
			e.quarantineHeld()
		} else if err := e.confirmHeld(emit); err != nil {
			// The stream ended on the jump with nothing against it: a
			// quiet period before its last ticks, not a stray frame.
			return err
		}
	}
	if !e.started {
		return nil
	}
	last := floorDiv(e.clock, e.step)
	return e.closeThrough(last, last, emit)
}

func positiveFinite(p float64) bool { return p > 0 && !math.IsInf(p, 1) } // false for NaN

// sizeOK accepts a quote's size: finite and >= 0 (0: the venue sent none).
func sizeOK(s float64) bool { return s >= 0 && !math.IsInf(s, 1) }

// acc returns the accumulator of step s for the tick's instrument, creating
// the instrument on its first accepted tick, or nil (counted) if s has closed.
func (e *Engine) acc(t *market.Tick, s int64) *stepAcc {
	if s < e.next {
		e.m.lateTicks.Inc()
		return nil
	}
	key := instKey{t.Venue, t.Instrument}
	st := e.byKey[key]
	if st == nil {
		st = newInstState(key, s, int(e.slots))
		e.byKey[key] = st
		e.waiting = append(e.waiting, st)
		e.m.instruments.Inc()
	} else if s < st.firstStep {
		st.firstStep = s // an accepted tick of an older open step arrived later
	}
	return &st.pending[floorMod(s, e.slots)]
}

// closeThrough closes the open steps up to and including target. Steps after
// lastData hold no ticks; of those at most maxW are closed and emitted, the
// rest are skipped (see the package documentation on gaps).
func (e *Engine) closeThrough(target, lastData int64, emit func(arrow.Record) error) error {
	var errs []error
	closeNext := func() {
		if err := e.closeStep(e.next, emit); err != nil {
			errs = append(errs, err)
		}
		e.next++
	}
	for e.next <= target {
		if empty := target - e.next + 1; e.next > lastData && empty > int64(e.maxW) {
			// Every remaining step is empty: after maxW of them every window
			// holds only empty steps and later steps would only repeat the
			// last record with a later time.
			for range e.maxW {
				closeNext()
			}
			skip := target - e.next + 1
			e.m.skippedSteps.Add(float64(skip))
			e.roll.skipConstant(skip)
			e.log.Warn("time gap: skipped empty steps",
				"from", time.Unix(0, e.next*e.step).UTC(),
				"to", time.Unix(0, (target+1)*e.step).UTC(),
				"steps", skip)
			e.next = target + 1
			break
		}
		closeNext()
	}
	return errors.Join(errs...)
}

func (e *Engine) closeStep(k int64, emit func(arrow.Record) error) error {
	start := time.Now() // metrics only; never affects the output
	e.admit(k)
	n := len(e.insts)
	if n == 0 {
		return nil // before the first instrument: no record
	}
	nf := len(e.lay.docs)

	// All feature columns share one allocation, each column 64-byte aligned
	// and an odd number of cache lines from the next: the kernels write up
	// to 15 columns at the same index, which would map to the same L1 sets
	// if the columns were 4 KiB multiples apart (n = 512, 1024, ...; see
	// roller.resize). The statistics are written straight into it.
	var (
		fbuf   *memory.Buffer
		stride int // in float64s
	)
	cols := e.cols[:0]
	if emit != nil {
		stride = (n + 7) &^ 7
		if stride/8%2 == 0 {
			stride += 8
		}
		fbuf = newBuffer(e.mem, stride*nf*arrow.Float64SizeBytes)
		all := arrow.Float64Traits.CastFromBytes(fbuf.Bytes())
		for j := range nf {
			cols = append(cols, all[j*stride:j*stride+n])
		}
	} else {
		if len(e.scratch) < n*nf {
			e.scratch = make([]float64, n*nf)
		}
		for j := range nf {
			cols = append(cols, e.scratch[j*n:(j+1)*n])
		}
	}
	e.cols = cols

	// Per-instrument pass: fold the step's ticks into the carried values and
	// write the base series.
	slot := floorMod(k, e.slots)
	stepSec := float64(e.step) / 1e9
	lay := e.lay
	midCol := cols[lay.midCol]
	var x [numBases]float64
	for g := range e.groups {
		e.groups[g] = basisGroup{}
	}
	nonFinite := 0
	for i, s := range e.insts {
		s.closeStep(&s.pending[slot], stepSec, &x)
		midCol[i] = s.mid
		for b := range numBases {
			v := x[b]
			if math.IsInf(v, 0) {
				nonFinite++ // overflow of absurd but valid input: treated as undefined
				v = math.NaN()
			}
			cols[lay.stepCol[b]][i] = v
		}
		if !math.IsNaN(s.mid) {
			g := &e.groups[s.group]
			g.sum += s.mid
			g.n++
		}
	}
	basis := cols[lay.stepCol[bBasis]]
	for i, s := range e.insts {
		if g := &e.groups[s.group]; !math.IsNaN(s.mid) {
			cons := g.sum / float64(g.n)
			basis[i] = (s.mid - cons) / cons * 1e4
			if g.n == 1 {
				basis[i] = 0 // exactly, whatever the rounding of the sum
			}
		}
	}
	if nonFinite > 0 {
		e.m.nonFinite.Add(float64(nonFinite))
	}

	// Rolling windows, vectorized over instruments.
	xs := e.xs[:0]
	for b := range numBases {
		xs = append(xs, cols[lay.stepCol[b]])
	}
	e.xs = xs
	ra, rs := e.roll.reanchors, e.roll.restarts
	e.roll.step(xs, cols, lay.winCol[:])
	e.m.reanchors.Add(float64(e.roll.reanchors - ra))
	e.m.restarts.Add(float64(e.roll.restarts - rs))

	// Cross-section: ranks and the market aggregates.
	for _, p := range lay.xrank {
		xrank(cols[p[1]], cols[p[0]], &e.rank)
	}
	e.computeMarket(k, cols)

	e.m.steps.Inc()
	if emit == nil {
		e.m.stepDuration.Observe(time.Since(start).Seconds())
		return nil
	}
	rec := e.buildRecord(k, fbuf, stride)
	e.m.stepDuration.Observe(time.Since(start).Seconds())
	defer rec.Release()
	if err := emit(rec); err != nil {
		return fmt.Errorf("features: emit step %d: %w", k, err)
	}
	return nil
}

// admit moves the instruments whose first step is k or earlier into the
// SoA store, in key order. It reallocates the whole store, O(state), once
// per step in which instruments appear (not per instrument).
func (e *Engine) admit(k int64) {
	var in []*instState
	keep := e.waiting[:0]
	for _, s := range e.waiting {
		if s.firstStep <= k {
			in = append(in, s)
		} else {
			keep = append(keep, s)
		}
	}
	e.waiting = keep
	if len(in) == 0 {
		return
	}
	slices.SortFunc(in, func(a, b *instState) int { return a.key.cmp(b.key) })
	merged := make([]*instState, 0, len(e.insts)+len(in))
	from := make([]int32, 0, cap(merged))
	i, j := 0, 0
	for i < len(e.insts) || j < len(in) {
		if j == len(in) || (i < len(e.insts) && e.insts[i].key.less(in[j].key)) {
			merged = append(merged, e.insts[i])
			from = append(from, int32(i))
			i++
		} else {
			merged = append(merged, in[j])
			from = append(from, -1)
			j++
		}
	}
	e.insts = merged
	for i, s := range merged {
		s.idx = i
	}
	e.roll.resize(from)
	// Basis groups: instruments of the same name across venues.
	ids := map[string]int{}
	for _, s := range merged {
		g, ok := ids[s.key.instrument]
		if !ok {
			g = len(ids)
			ids[s.key.instrument] = g
		}
		s.group = g
	}
	e.groups = make([]basisGroup, len(ids))
	e.m.stateBytes.Set(float64(e.roll.bytesPerInstrument()))
}

// rankKey maps a float64 (not NaN) to a uint64 of the same order, -0 and
// +0 alike, so that ranking sorts plain integers.
func rankKey(v float64) uint64 {
	b := math.Float64bits(v + 0) // -0 + 0 = +0
	if b>>63 == 1 {
		return ^b
	}
	return b | 1<<63
}

// xrank writes to dst the cross-sectional rank of src's values, (rank-1)/
// (count-1) with ties averaged, NaN for NaN values or fewer than two values.
// It sorts (key, index) pairs with an LSD radix sort, skipping the bytes all
// keys share (values of similar magnitude share their exponent bytes), then
// walks the sorted order once: O(n) per column, no comparisons to mispredict.
// sc is scratch kept between calls (nil: allocated here).
func xrank(dst, src []float64, sc *rankScratch) {
	if sc == nil {
		sc = new(rankScratch)
	}
	keys, idx := sc.keys[:0], sc.idx[:0]
	var hist [8][256]int32
	for i, v := range src {
		if math.IsNaN(v) {
			dst[i] = math.NaN()
			continue
		}
		k := rankKey(v)
		keys = append(keys, k)
		idx = append(idx, int32(i))
		for d := range 8 {
			hist[d][byte(k>>(8*d))]++
		}
	}
	m := len(keys)
	if m < 2 {
		for i := range src {
			dst[i] = math.NaN()
		}
		sc.keys, sc.idx = keys, idx
		return
	}
	k2, i2 := slices.Grow(sc.keys2[:0], m)[:m], slices.Grow(sc.idx2[:0], m)[:m]
	for d := range 8 {
		h := &hist[d]
		if h[byte(keys[0]>>(8*d))] == int32(m) {
			continue // every key has this byte
		}
		var pos [256]int32
		sum := int32(0)
		for j := range 256 {
			pos[j] = sum
			sum += h[j]
		}
		shift := uint(8 * d)
		for j, k := range keys {
			b := byte(k >> shift)
			p := pos[b]
			pos[b]++
			k2[p], i2[p] = k, idx[j]
		}
		keys, k2 = k2, keys
		idx, i2 = i2, idx
	}
	den := float64(m - 1)
	for lo := 0; lo < m; {
		hi := lo + 1
		for hi < m && keys[hi] == keys[lo] {
			hi++
		}
		r := float64(lo+hi-1) / 2 / den
		for _, i := range idx[lo:hi] {
			dst[i] = r
		}
		lo = hi
	}
	sc.keys, sc.idx, sc.keys2, sc.idx2 = keys, idx, k2, i2
}

// rankScratch holds xrank's buffers between calls.
type rankScratch struct {
	keys, keys2 []uint64
	idx, idx2   []int32
}

// buildRecord assembles the record of step k from the rows' keys and the
// feature values already written to fbuf (one column per stride float64s).
// It takes over the reference to fbuf.
func (e *Engine) buildRecord(k int64, fbuf *memory.Buffer, stride int) arrow.Record {
	mem := e.mem
	rows := e.insts
	n := len(rows)
	cols := e.acols[:0]

	tbuf := newBuffer(mem, n*arrow.TimestampSizeBytes)
	ts := arrow.TimestampTraits.CastFromBytes(tbuf.Bytes())
	end := arrow.Timestamp((k + 1) * e.step)
	for i := range ts {
		ts[i] = end
	}
	cols = append(cols, makeArray(e.schema.Field(0).Type, n, tbuf, nil))
	cols = append(cols, stringArray(mem, rows, func(s *instState) string { return s.key.venue }))
	cols = append(cols, stringArray(mem, rows, func(s *instState) string { return s.key.instrument }))
	// Every feature column is fbuf at its own offset: one buffer list for
	// all (Data never changes it) and no buffer header per column. Readers
	// (Float64Values, Value, the IPC and Parquet writers) honour the offset.
	bufs := []*memory.Buffer{nil, fbuf}
	for j := range e.lay.docs {
		data := array.NewData(arrow.PrimitiveTypes.Float64, n, bufs, nil, 0, j*stride)
		cols = append(cols, array.NewFloat64Data(data))
		data.Release()
	}
	fbuf.Release() // the columns hold it

	rec := array.NewRecord(e.schema, cols, int64(n))
	for i, c := range cols {
		c.Release() // the record holds its own reference
		cols[i] = nil
	}
	e.acols = cols[:0]
	return rec
}

func newBuffer(mem memory.Allocator, size int) *memory.Buffer {
	b := memory.NewResizableBuffer(mem)
	b.Resize(size)
	return b
}

// makeArray builds an array without a validity bitmap (no nulls) from its
// value buffer (and offsets buffer for strings), taking over their references.
func makeArray(dt arrow.DataType, n int, values, offsets *memory.Buffer) arrow.Array {
	bufs := []*memory.Buffer{nil, values}
	if offsets != nil {
		bufs = []*memory.Buffer{nil, offsets, values}
	}
	data := array.NewData(dt, n, bufs, nil, 0, 0)
	arr := array.MakeFromData(data)
	data.Release()
	values.Release()
	if offsets != nil {
		offsets.Release()
	}
	return arr
}

func stringArray(mem memory.Allocator, rows []*instState, get func(*instState) string) arrow.Array {
	size := 0
	for _, s := range rows {
		size += len(get(s))
	}
	obuf := newBuffer(mem, (len(rows)+1)*arrow.Int32SizeBytes)
	offs := arrow.Int32Traits.CastFromBytes(obuf.Bytes())
	vbuf := newBuffer(mem, size)
	vals := vbuf.Bytes()
	pos := 0
	offs[0] = 0
	for i, s := range rows {
		pos += copy(vals[pos:], get(s))
		offs[i+1] = int32(pos)
	}
	return makeArray(arrow.BinaryTypes.String, len(rows), vbuf, obuf)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
