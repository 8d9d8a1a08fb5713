package regime

import (
	_ "embed"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// defaultModelJSON is the built-in model, fitted on a synthetic stream by
// `make regime-model` (signald regime fit --synthetic); its training metadata
// says how.
//
//go:embed default_model.json
var defaultModelJSON []byte

var defaultModel = sync.OnceValue(func() *Model {
	m, err := ParseModel(defaultModelJSON)
	if err != nil {
		panic(fmt.Sprintf("regime: built-in model: %v", err)) // a build defect, caught by the tests
	}
	return m
})

// DefaultModel returns the built-in regime model. The returned model is
// shared; do not modify it.
func DefaultModel() *Model { return defaultModel() }

// SeqBuilder collects HMM input sequences from feature records, with the same
// input derivation as the online detectors, for Fit. Each instrument's
// sequence starts after WarmUp valid steps (while its volatility baseline
// settles) and is cut where an input is missing.
type SeqBuilder struct {
	in     Inputs
	cols   Columns
	warmUp int
	volA   float64
	schema *arrow.Schema
	ix     [6]int // time, venue, instrument, ret, mean, std
	per    map[instKey]*seqInst
	order  []*seqInst
}

type seqInst struct {
	volBase float64
	volN    int
	last    int64
	cur     [][2]float64
	done    [][][2]float64
}

// NewSeqBuilder returns a builder for inputs in, reading columns cols (zero
// fields: the defaults for in.Window) and skipping the first warmUp valid
// steps of each instrument (0: DefaultWarmUp).
func NewSeqBuilder(in Inputs, cols Columns, warmUp int) *SeqBuilder {
	in = in.withDefaults()
	w := fmt.Sprint(in.Window)
	if cols.Ret == "" {
		cols.Ret = "mid_ret"
	}
	if cols.RetMean == "" {
		cols.RetMean = "mid_ret_mean_" + w
	}
	if cols.RetStd == "" {
		cols.RetStd = "mid_ret_std_" + w
	}
	if warmUp == 0 {
		warmUp = DefaultWarmUp
	}
	return &SeqBuilder{in: in, cols: cols, warmUp: warmUp, volA: halfLifeAlpha(in.VolHalfLife), per: map[instKey]*seqInst{}}
}

// Add adds one feature record (rows = instruments).
func (b *SeqBuilder) Add(rec arrow.Record) error {
	if rec.Schema() != b.schema {
		sc := rec.Schema()
		var missing []string
		for i, name := range []string{colTime, colVenue, colInstrument, b.cols.Ret, b.cols.RetMean, b.cols.RetStd} {
			ii := sc.FieldIndices(name)
			if len(ii) != 1 {
				missing = append(missing, name)
				continue
			}
			b.ix[i] = ii[0]
		}
		if len(missing) > 0 {
			return fmt.Errorf("regime fit: feature records lack columns %s", strings.Join(missing, ", "))
		}
		b.schema = sc
	}
	tm, ok1 := rec.Column(b.ix[0]).(*array.Timestamp)
	ven, ok2 := rec.Column(b.ix[1]).(*array.String)
	ins, ok3 := rec.Column(b.ix[2]).(*array.String)
	ret, ok4 := rec.Column(b.ix[3]).(*array.Float64)
	mean, ok5 := rec.Column(b.ix[4]).(*array.Float64)
	std, ok6 := rec.Column(b.ix[5]).(*array.Float64)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return fmt.Errorf("regime fit: feature record columns have unexpected types")
	}
	for i := range int(rec.NumRows()) {
		k := instKey{ven.Value(i), ins.Value(i)}
		st := b.per[k]
		if st == nil {
			st = &seqInst{last: math.MinInt64}
			b.per[instKey{strings.Clone(k.venue), strings.Clone(k.instrument)}] = st
			b.order = append(b.order, st)
		}
		t := int64(tm.Value(i))
		if t <= st.last {
			continue
		}
		st.last = t
		r, m, s := value(ret, i), value(mean, i), value(std, i)
		if !finite(r) || !finite(m) || !finite(s) || s < 0 {
			st.cut()
			continue
		}
		x, _, _ := deriveInputs(&st.volBase, &st.volN, b.volA, b.in.Window, r, m, s)
		if st.volN > b.warmUp {
			st.cur = append(st.cur, x)
		}
	}
	return nil
}

func (s *seqInst) cut() {
	if len(s.cur) > 0 {
		s.done = append(s.done, s.cur)
		s.cur = nil
	}
}

// Sequences returns the collected sequences, in order of the instruments'
// first appearance.
func (b *SeqBuilder) Sequences() [][][2]float64 {
	var out [][][2]float64
	for _, st := range b.order {
		out = append(out, st.done...)
		if len(st.cur) > 0 {
			out = append(out, st.cur)
		}
	}
	return out
}

// Inputs returns the input parameters the sequences were derived with.
func (b *SeqBuilder) Inputs() Inputs { return b.in }

// FitSynthetic fits a model on a synthetic stream (see SynthConfig): how the
// built-in model is made.
func FitSynthetic(sc SynthConfig, fc FitConfig) (*Model, error) {
	fc.Inputs = fc.Inputs.withDefaults()
	sc.Window = fc.Inputs.Window
	s := Synthesize(sc)
	b := NewSeqBuilder(fc.Inputs, Columns{}, 0)
	schema := s.Schema()
	for k := range s.Cfg.Steps {
		rec := s.Record(schema, k)
		err := b.Add(rec)
		rec.Release()
		if err != nil {
			return nil, err
		}
	}
	if fc.Source == "" {
		c := s.Cfg
		fc.Source = fmt.Sprintf("synthetic: signald regime fit --synthetic --seed %d --instruments %d --steps %d (vol %g, vol ratio %g, trend drift %g, mean segment %d)",
			c.Seed, c.Instruments, c.Steps, c.Vol, c.VolRatio, c.TrendDrift, c.MeanSegment)
	}
	return Fit(b.Sequences(), fc)
}
