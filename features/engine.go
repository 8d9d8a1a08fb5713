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

	"github.com/signald-dev/signald/ingest"
)

// Engine computes per-instrument features over fixed steps of receive time.
// See the package documentation for the time, gap and record semantics.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	feats  []feature
	schema *arrow.Schema
	step   int64 // ns
	late   int64 // ns
	slots  int64 // len(instState.pending)
	maxW   int

	insts []*instState // sorted by key: the row order
	byKey map[instKey]*instState

	started bool
	next    int64 // oldest open step
	clock   int64 // largest RecvTS seen

	rows []*instState  // scratch: rows of the step being closed
	cols []arrow.Array // scratch: columns of the record being built
	vals [][]float64   // scratch: feature columns of the step being closed
}

// NewEngine validates cfg, fills in its defaults and returns an engine. logger
// and reg may be nil.
func NewEngine(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:   cfg,
		log:   logger.With("component", "features"),
		m:     m,
		feats: buildFeatures(&cfg),
		step:  int64(cfg.Step),
		late:  int64(cfg.AllowedLateness),
		slots: int64(cfg.openSlots()),
		maxW:  cfg.maxWindow(),
		byKey: make(map[instKey]*instState),
	}
	e.schema = buildSchema(&cfg, e.feats)
	return e, nil
}

// Schema is the schema of every record the engine emits.
func (e *Engine) Schema() *arrow.Schema { return e.schema }

// Features documents the engine's feature columns, in column order.
func (e *Engine) Features() []FeatureDoc { return docs(e.feats) }

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config {
	c := e.cfg
	c.Windows = slices.Clone(c.Windows)
	return c
}

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
func (e *Engine) Apply(t *ingest.Tick, emit func(arrow.Record) error) error {
	if t == nil {
		return errors.New("features: nil tick")
	}
	if t.RecvTS <= 0 {
		e.m.invalid[invRecvTS].Inc()
		return nil
	}
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
	case ingest.KindQuote:
		switch {
		case !positiveFinite(t.BidPx) || !positiveFinite(t.AskPx):
			e.m.invalid[invPrice].Inc()
			return err
		case t.AskPx < t.BidPx:
			e.m.invalid[invCrossed].Inc()
			return err
		}
		if acc := e.acc(t, s); acc != nil {
			acc.applyQuote(t)
		}
	case ingest.KindTrade:
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
	if !e.started {
		return nil
	}
	last := floorDiv(e.clock, e.step)
	return e.closeThrough(last, last, emit)
}

func positiveFinite(p float64) bool { return p > 0 && !math.IsInf(p, 1) } // false for NaN

// acc returns the accumulator of step s for the tick's instrument, creating
// the instrument on its first accepted tick, or nil (counted) if s has closed.
func (e *Engine) acc(t *ingest.Tick, s int64) *stepAcc {
	if s < e.next {
		e.m.lateTicks.Inc()
		return nil
	}
	key := instKey{t.Venue, t.Instrument}
	st := e.byKey[key]
	if st == nil {
		st = newInstState(key, s, &e.cfg)
		e.byKey[key] = st
		i, _ := slices.BinarySearchFunc(e.insts, key, func(a *instState, k instKey) int {
			switch {
			case a.key.less(k):
				return -1
			case k.less(a.key):
				return 1
			}
			return 0
		})
		e.insts = slices.Insert(e.insts, i, st)
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
	n := 0
	for _, s := range e.insts {
		if s.firstStep <= k {
			n++
		}
	}
	if n == 0 {
		return nil // before the first instrument: no record
	}

	// All feature columns share one allocation, each column 64-byte aligned.
	var (
		fbuf   *memory.Buffer
		stride int
		vals   = e.vals[:0]
	)
	if emit != nil {
		stride = (n*arrow.Float64SizeBytes + 63) &^ 63
		fbuf = newBuffer(e.cfg.Allocator, stride*len(e.feats))
		all := fbuf.Bytes()
		for j := range e.feats {
			vals = append(vals, arrow.Float64Traits.CastFromBytes(all[j*stride:j*stride+n*arrow.Float64SizeBytes]))
		}
	}

	// One pass: fold the step into each instrument's state and read its
	// features while the state is in cache.
	slot := floorMod(k, e.slots)
	rows := e.rows[:0]
	for _, s := range e.insts {
		if s.firstStep > k {
			continue // first seen in a later open step
		}
		s.closeStep(&s.pending[slot])
		i := len(rows)
		for j := range vals {
			vals[j][i] = e.feats[j].value(s)
		}
		rows = append(rows, s)
	}
	e.rows = rows
	clear(vals)
	e.vals = vals[:0]
	e.m.steps.Inc()
	if emit == nil {
		e.m.stepDuration.Observe(time.Since(start).Seconds())
		return nil
	}
	rec := e.buildRecord(k, rows, fbuf, stride)
	e.m.stepDuration.Observe(time.Since(start).Seconds())
	defer rec.Release()
	if err := emit(rec); err != nil {
		return fmt.Errorf("features: emit step %d: %w", k, err)
	}
	return nil
}

// buildRecord assembles the record of step k from the rows' keys and the
// feature values already written to fbuf (one column per stride bytes). It
// takes over the reference to fbuf.
func (e *Engine) buildRecord(k int64, rows []*instState, fbuf *memory.Buffer, stride int) arrow.Record {
	mem := e.cfg.Allocator
	n := len(rows)
	cols := e.cols[:0]

	tbuf := newBuffer(mem, n*arrow.TimestampSizeBytes)
	ts := arrow.TimestampTraits.CastFromBytes(tbuf.Bytes())
	end := arrow.Timestamp((k + 1) * e.step)
	for i := range ts {
		ts[i] = end
	}
	cols = append(cols, makeArray(e.schema.Field(0).Type, n, tbuf, nil))
	cols = append(cols, stringArray(mem, rows, func(s *instState) string { return s.key.venue }))
	cols = append(cols, stringArray(mem, rows, func(s *instState) string { return s.key.instrument }))
	for j := range e.feats {
		col := memory.SliceBuffer(fbuf, j*stride, n*arrow.Float64SizeBytes)
		cols = append(cols, makeArray(arrow.PrimitiveTypes.Float64, n, col, nil))
	}
	fbuf.Release() // the column slices hold it

	rec := array.NewRecord(e.schema, cols, int64(n))
	for i, c := range cols {
		c.Release() // the record holds its own reference
		cols[i] = nil
	}
	e.cols = cols[:0]
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
