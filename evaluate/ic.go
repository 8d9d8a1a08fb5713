package evaluate

import (
	"fmt"
	"math"
	"slices"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// icStep is one step's feature values waiting for their forward returns.
type icStep struct {
	seq   int64 // AddFeatures call number
	left  int
	insts []*inst
	feat  [][]float64 // [col][row]
	fwd   [][]float64 // [h][row]
}

// icAcc is a running mean of IC values.
type icAcc = welford

// icBlock collects (feature, forward return) pairs of one instrument.
type icBlock struct{ x, y []float64 }

// AddFeatures adds one step's feature values for IC: time is the step's
// time (the record's time column, ns), keys the rows' instruments, and
// columns the values by column name, one per row. Only Options.Features (or
// DefaultFeatures) are used; the first call fixes the columns.
func (e *Evaluator) AddFeatures(time int64, keys []Key, columns map[string][]float64) error {
	if e.icCols == nil {
		want := e.o.Features
		if len(want) == 0 {
			want = DefaultFeatures
		}
		e.icCols = []string{}
		for _, c := range want {
			if _, ok := columns[c]; ok {
				e.icCols = append(e.icCols, c)
			} else if len(e.o.Features) > 0 {
				return fmt.Errorf("evaluate: feature %q is not a column of the features (see features/CATALOG.md)", c)
			}
		}
		e.ic = make([][]icAcc, len(e.icCols))
		for i := range e.ic {
			e.ic[i] = make([]icAcc, len(e.o.Horizons))
		}
	}
	if len(e.icCols) == 0 || len(keys) == 0 {
		return nil
	}
	e.icSeq++
	st := &icStep{seq: e.icSeq, insts: make([]*inst, len(keys)), feat: make([][]float64, len(e.icCols)), fwd: make([][]float64, len(e.o.Horizons))}
	for ci, c := range e.icCols {
		col := columns[c]
		if len(col) != len(keys) {
			return fmt.Errorf("evaluate: feature %q has %d values for %d instruments", c, len(col), len(keys))
		}
		st.feat[ci] = col
	}
	for hi := range st.fwd {
		st.fwd[hi] = nanSlice(len(keys))
	}
	execAt := time + int64(e.o.Delay)
	for i, k := range keys {
		in := e.instOf(k)
		st.insts[i] = in
		st.left++
		in.waiting = append(in.waiting, &pend{execAt: execAt, ic: st, icRow: i})
	}
	return nil
}

// AddRecord adds a feature engine record (columns time, venue, instrument
// and the feature columns) for IC. The record is not retained.
func (e *Evaluator) AddRecord(rec arrow.Record) error {
	n := int(rec.NumRows())
	if n == 0 {
		return nil
	}
	sc := rec.Schema()
	idx := func(name string) int {
		if is := sc.FieldIndices(name); len(is) > 0 {
			return is[0]
		}
		return -1
	}
	ti, vi, ii := idx("time"), idx("venue"), idx("instrument")
	if ti < 0 || vi < 0 || ii < 0 {
		return fmt.Errorf("evaluate: features record lacks a time, venue or instrument column")
	}
	ts, ok1 := rec.Column(ti).(*array.Timestamp)
	vs, ok2 := rec.Column(vi).(*array.String)
	is, ok3 := rec.Column(ii).(*array.String)
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("evaluate: features record: time must be a timestamp, venue and instrument strings")
	}
	keys := make([]Key, n)
	for r := range keys {
		keys[r] = Key{vs.Value(r), is.Value(r)}
	}
	cols := map[string][]float64{}
	want := e.icCols
	if want == nil {
		want = e.o.Features
		if len(want) == 0 {
			want = DefaultFeatures
		}
	}
	for _, c := range want {
		j := idx(c)
		if j < 0 {
			continue
		}
		f, ok := rec.Column(j).(*array.Float64)
		if !ok {
			return fmt.Errorf("evaluate: feature %q is not a float64 column", c)
		}
		cols[c] = slices.Clone(f.Float64Values())
	}
	return e.AddFeatures(int64(ts.Value(0)), keys, cols)
}

// finishIC computes the step's cross-sectional IC and feeds the instruments'
// blocks.
func (e *Evaluator) finishIC(st *icStep) {
	n := len(st.insts)
	// ranks of complete columns are shared by every pair that uses them
	full := func(v []float64) []float64 {
		for _, x := range v {
			if !finite(x) {
				return nil
			}
		}
		if n < 3 {
			return nil
		}
		return ranks(v) // kept across the columns: not scratch
	}
	fr := make([][]float64, len(st.fwd))
	for hi := range st.fwd {
		fr[hi] = full(st.fwd[hi])
	}
	x := make([]float64, 0, n)
	y := make([]float64, 0, n)
	for ci := range e.icCols {
		xr := full(st.feat[ci])
		for hi, h := range e.o.Horizons {
			// per instrument, every h-th step: forward windows that do not
			// overlap (independent pairs, and a fraction of the work)
			ts := st.seq%int64(h) == 0
			x, y = x[:0], y[:0]
			for r, in := range st.insts {
				fx, fy := st.feat[ci][r], st.fwd[hi][r]
				if !finite(fx) || !finite(fy) {
					continue
				}
				x, y = append(x, fx), append(y, fy)
				if ts {
					e.blockAdd(in, ci, hi, fx, fy)
				}
			}
			if len(x) < 3 {
				continue
			}
			var r float64
			if xr != nil && fr[hi] != nil {
				r = pearson(xr, fr[hi])
			} else {
				r = e.rs.spearman(x, y)
			}
			if !math.IsNaN(r) {
				e.ic[ci][hi].add(r)
			}
		}
	}
}

func (e *Evaluator) blockAdd(in *inst, ci, hi int, x, y float64) {
	if in.icBlk == nil {
		in.icBlk = make([][]icBlock, len(e.icCols))
		in.icI = make([][]icAcc, len(e.icCols))
		for i := range in.icBlk {
			in.icBlk[i] = make([]icBlock, len(e.o.Horizons))
			in.icI[i] = make([]icAcc, len(e.o.Horizons))
		}
	}
	b := &in.icBlk[ci][hi]
	b.x, b.y = append(b.x, x), append(b.y, y)
	if len(b.x) >= e.o.ICBlock {
		e.flushBlock(in, ci, hi, 2)
	}
}

// flushBlock turns a block of at least min pairs into one IC value.
func (e *Evaluator) flushBlock(in *inst, ci, hi, min int) {
	b := &in.icBlk[ci][hi]
	if len(b.x) >= max(min, 3) {
		if r := e.rs.spearman(b.x, b.y); !math.IsNaN(r) {
			in.icI[ci][hi].add(r)
		}
	}
	b.x, b.y = b.x[:0], b.y[:0]
}

// rankScratch holds the buffers of repeated rank computations.
type rankScratch struct{ sorted, avg, rx, ry []float64 }

// spearman is the rank correlation of x and y (ties get average ranks);
// NaN when either is constant.
func (sc *rankScratch) spearman(x, y []float64) float64 {
	sc.rx = sc.ranks(sc.rx, x)
	sc.ry = sc.ranks(sc.ry, y)
	return pearson(sc.rx, sc.ry)
}

// ranks returns 1-based ranks of x in dst, ties averaged: from a sorted
// copy, the rank of a value is the middle of its run of equal values
// (O(n log n) also with many ties).
func (sc *rankScratch) ranks(dst, x []float64) []float64 {
	s := append(sc.sorted[:0], x...)
	slices.Sort(s)
	avg := slices.Grow(sc.avg[:0], len(s))[:len(s)] // at the start of each run
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[i] {
			j++
		}
		avg[i] = float64(i+j)/2 + 1
		i = j + 1
	}
	dst = dst[:0]
	for _, v := range x {
		lo, _ := slices.BinarySearch(s, v)
		dst = append(dst, avg[lo])
	}
	sc.sorted, sc.avg = s, avg
	return dst
}

func ranks(x []float64) []float64 {
	var sc rankScratch
	return sc.ranks(nil, x)
}

func pearson(x, y []float64) float64 {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

// ICRow is the IC of one feature at one horizon.
type ICRow struct {
	Feature string `json:"feature"`
	Horizon int    `json:"horizon"`
	// Cross-sectional: per step across instruments.
	Steps int64 `json:"steps"`
	Mean  F     `json:"mean"`
	SD    F     `json:"sd"`
	T     F     `json:"t"`
	// Time series: per instrument over blocks of steps, averaged over
	// instruments; TST is the mean over its standard error across instruments.
	Instruments int `json:"instruments"`
	TSMean      F   `json:"ts_mean"`
	TST         F   `json:"ts_t"`
}

// ICInstrument is one instrument's time-series IC of a feature at a horizon.
type ICInstrument struct {
	Feature    string `json:"feature"`
	Horizon    int    `json:"horizon"`
	Venue      string `json:"venue"`
	Instrument string `json:"instrument"`
	Blocks     int64  `json:"blocks"`
	Mean       F      `json:"mean"`
	T          F      `json:"t"`
}

func (e *Evaluator) icRows() ([]ICRow, []ICInstrument) {
	var rows []ICRow
	var per []ICInstrument
	for ci, c := range e.icCols {
		for hi, h := range e.o.Horizons {
			a := e.ic[ci][hi]
			row := ICRow{Feature: c, Horizon: h, Steps: a.count(), Mean: F(a.meanOrNaN()), SD: F(a.sd()), T: F(a.mean() / a.se())}
			var across welford
			for _, in := range e.order {
				if in.icBlk == nil {
					continue
				}
				e.flushBlock(in, ci, hi, 30)
				b := in.icI[ci][hi]
				if b.count() == 0 {
					continue
				}
				across.add(b.mean())
				per = append(per, ICInstrument{Feature: c, Horizon: h, Venue: in.key.Venue, Instrument: in.key.Instrument,
					Blocks: b.count(), Mean: F(b.mean()), T: F(b.mean() / b.se())})
			}
			row.Instruments = int(across.count())
			row.TSMean, row.TST = F(across.meanOrNaN()), F(across.mean()/across.se())
			rows = append(rows, row)
		}
	}
	return rows, per
}
