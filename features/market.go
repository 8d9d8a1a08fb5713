package features

import (
	"math"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/internal/stats"
)

// SummaryColumns are the per-instrument columns a compact summary shows
// (the macro endpoint); records carry every column.
var SummaryColumns = []string{
	"mid", "spread_bps", "mid_ret", "mid_ret_rv_15", "mid_ret_std_60", "mid_ret_sum_60", "mid_ret_sum_300",
	"mid_ret_sum_300_xrank", "volume_sum_60", "notional_sum_60", "trade_imb_mean_60", "basis_bps",
}

// Market is the market-wide aggregate of one closed step: one value per
// MarketCatalog entry, computed across the step's rows (all venues and
// instruments). It is what the macro endpoint serves beside the
// per-instrument rows.
type Market struct {
	Time   time.Time // the step's end; zero before the first step
	Rows   int       // instruments in the step
	Values []float64 // aligned with MarketCatalog(); NaN when undefined
}

// Get returns the aggregate called name, NaN if there is none.
func (m Market) Get(name string) float64 {
	for i, d := range marketDefs {
		if d.name == name && i < len(m.Values) {
			return m.Values[i]
		}
	}
	return math.NaN()
}

type marketAgg int

const (
	aggMean     marketAgg = iota // mean of the non-NaN values
	aggSum                       // sum of the non-NaN values (0 when none)
	aggXStd                      // population standard deviation across rows
	aggAbsMean                   // mean of |x|
	aggPosShare                  // share of values > 0
	aggAdvDec                    // (count > 0 - count < 0) / count
)

type marketDef struct {
	name, col string
	agg       marketAgg
	desc      string
}

var marketDefs = []marketDef{
	{"mid_ret_mean", "mid_ret", aggMean, "mean mid_ret across instruments"},
	{"mid_ret_xstd", "mid_ret", aggXStd, "cross-sectional (population) standard deviation of mid_ret: dispersion"},
	{"mid_ret_adv_dec", "mid_ret", aggAdvDec, "(instruments whose mid rose - instruments whose mid fell) / instruments with a mid_ret"},
	{"breadth_60", "mid_ret_sum_60", aggPosShare, "share of instruments whose 60-step return (mid_ret_sum_60) is > 0"},
	{"breadth_300", "mid_ret_sum_300", aggPosShare, "share of instruments whose 300-step return (mid_ret_sum_300) is > 0"},
	{"vol_60_mean", "mid_ret_std_60", aggMean, "mean of mid_ret_std_60 across instruments"},
	{"vol_300_mean", "mid_ret_std_300", aggMean, "mean of mid_ret_std_300 across instruments"},
	{"spread_bps_mean", "spread_bps", aggMean, "mean spread_bps across instruments"},
	{"basis_bps_abs_mean", "basis_bps", aggAbsMean, "mean |basis_bps| across instruments"},
	{"notional_total", "notional", aggSum, "sum of notional across instruments (quote units of mixed quote currencies)"},
	{"trade_count_total", "trade_count", aggSum, "trades across instruments in the step"},
	{"trade_imb_mean_60", "trade_imb_mean_60", aggMean, "mean of trade_imb_mean_60 across instruments"},
}

// MarketCatalog documents the market aggregates, in Market.Values order.
// Name is the aggregate, Base the column it aggregates; an aggregate whose
// column is not configured (its window missing) is always NaN.
func MarketCatalog() []FeatureDoc {
	out := make([]FeatureDoc, len(marketDefs))
	for i, d := range marketDefs {
		out[i] = FeatureDoc{Name: d.name, Kind: "market", Base: d.col, Description: d.desc}
	}
	return out
}

// Market returns the aggregates of the last closed step (a copy).
func (e *Engine) Market() Market {
	m := e.market
	m.Values = append([]float64(nil), m.Values...)
	return m
}

func (e *Engine) computeMarket(k int64, cols [][]float64) {
	m := &e.market
	m.Time = time.Unix(0, (k+1)*e.step).UTC()
	m.Rows = len(e.insts)
	if e.lay.market == nil {
		e.lay.market = make([]int, len(marketDefs))
		for i, d := range marketDefs {
			e.lay.market[i] = -1
			for j, doc := range e.lay.docs {
				if doc.Name == d.col {
					e.lay.market[i] = j
				}
			}
		}
	}
	for i, d := range marketDefs {
		c := e.lay.market[i]
		if c < 0 {
			m.Values[i] = math.NaN()
			continue
		}
		m.Values[i] = aggregate(d.agg, cols[c])
	}
}

func aggregate(agg marketAgg, x []float64) float64 {
	switch agg {
	case aggSum:
		s, _ := asm.SumNaN(x)
		return s
	case aggMean:
		s, n := asm.SumNaN(x)
		if n == 0 {
			return math.NaN()
		}
		return s / float64(n)
	case aggXStd:
		s, n := asm.SumNaN(x)
		if n == 0 {
			return math.NaN()
		}
		mean := s / float64(n)
		var ss stats.Neumaier
		for _, v := range x {
			if !math.IsNaN(v) {
				d := v - mean
				ss.Add(d * d)
			}
		}
		return math.Sqrt(ss.Value() / float64(n))
	}
	var pos, neg, n int
	var abs stats.Neumaier
	for _, v := range x {
		if math.IsNaN(v) {
			continue
		}
		n++
		abs.Add(math.Abs(v))
		if v > 0 {
			pos++
		} else if v < 0 {
			neg++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	switch agg {
	case aggAbsMean:
		return abs.Value() / float64(n)
	case aggPosShare:
		return float64(pos) / float64(n)
	default: // aggAdvDec
		return float64(pos-neg) / float64(n)
	}
}

// recycler is the default allocator of the records: it hands the large
// feature buffer of a released record to the next step instead of
// allocating (and zeroing, and collecting) megabytes per step. Only the
// current size class is kept, at most recycleKeep buffers; everything else
// goes to the underlying allocator. Safe for concurrent use: consumers may
// release records on other goroutines.
type recycler struct {
	mem  memory.Allocator
	mu   sync.Mutex
	size int
	free [][]byte
}

const (
	recycleMin  = 1 << 16
	recycleKeep = 4
)

func newRecycler(mem memory.Allocator) *recycler { return &recycler{mem: mem} }

func (r *recycler) Allocate(size int) []byte {
	if size >= recycleMin {
		r.mu.Lock()
		if size == r.size && len(r.free) > 0 {
			b := r.free[len(r.free)-1]
			r.free = r.free[:len(r.free)-1]
			r.mu.Unlock()
			return b
		}
		if size != r.size {
			for _, b := range r.free {
				r.mem.Free(b)
			}
			r.size, r.free = size, r.free[:0]
		}
		r.mu.Unlock()
	}
	return r.mem.Allocate(size)
}

func (r *recycler) Reallocate(size int, b []byte) []byte { return r.mem.Reallocate(size, b) }

func (r *recycler) Free(b []byte) {
	if len(b) >= recycleMin {
		r.mu.Lock()
		if len(b) == r.size && len(r.free) < recycleKeep {
			r.free = append(r.free, b)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
	r.mem.Free(b)
}
