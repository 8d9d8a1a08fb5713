package evaluate

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
)

// table builds one Parquet table column by column.
type table struct {
	fields []arrow.Field
	b      []array.Builder
}

func newTable(cols ...arrow.Field) *table {
	t := &table{fields: cols}
	for _, f := range cols {
		t.b = append(t.b, array.NewBuilder(memory.DefaultAllocator, f.Type))
	}
	return t
}

func (t *table) str(i int, v string)   { t.b[i].(*array.StringBuilder).Append(v) }
func (t *table) i64(i int, v int64)    { t.b[i].(*array.Int64Builder).Append(v) }
func (t *table) f64(i int, v float64)  { t.b[i].(*array.Float64Builder).Append(v) }
func (t *table) ts(i int, v int64)     { t.b[i].(*array.TimestampBuilder).Append(arrow.Timestamp(v)) }
func (t *table) boolean(i int, v bool) { t.b[i].(*array.BooleanBuilder).Append(v) }

func (t *table) write(path string) error {
	cols := make([]arrow.Array, len(t.b))
	for i, b := range t.b {
		cols[i] = b.NewArray()
		b.Release()
		defer cols[i].Release()
	}
	n := int64(0)
	if len(cols) > 0 {
		n = int64(cols[0].Len())
	}
	rec := array.NewRecord(arrow.NewSchema(t.fields, nil), cols, n)
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd)), pqarrow.DefaultWriterProps())
	if err != nil {
		f.Close()
		return err
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

var (
	fStr  = arrow.BinaryTypes.String
	fI64  = arrow.PrimitiveTypes.Int64
	fF64  = arrow.PrimitiveTypes.Float64
	fTS   = &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}
	fBool = arrow.FixedWidthTypes.Boolean
)

// WriteParquet writes trades.parquet, equity.parquet (the sampled equity
// curves per instrument and of the total, instrument "total"),
// events.parquet (regime_change and novelty signals and the novelty
// controls, one row per horizon) and ic.parquet into dir.
func (r *Report) WriteParquet(dir string) error {
	tr := newTable(arrow.Field{Name: "venue", Type: fStr}, arrow.Field{Name: "instrument", Type: fStr}, arrow.Field{Name: "side", Type: fStr},
		arrow.Field{Name: "entry_time", Type: fTS}, arrow.Field{Name: "entry_price", Type: fF64},
		arrow.Field{Name: "exit_time", Type: fTS}, arrow.Field{Name: "exit_price", Type: fF64},
		arrow.Field{Name: "exit", Type: fStr}, arrow.Field{Name: "return", Type: fF64})
	for _, t := range r.Trades {
		tr.str(0, t.Venue)
		tr.str(1, t.Instrument)
		tr.str(2, t.Side)
		tr.ts(3, t.EntryTime)
		tr.f64(4, t.EntryPrice)
		tr.ts(5, t.ExitTime)
		tr.f64(6, t.ExitPrice)
		tr.str(7, t.Exit)
		tr.f64(8, t.Return)
	}
	eq := newTable(arrow.Field{Name: "venue", Type: fStr}, arrow.Field{Name: "instrument", Type: fStr}, arrow.Field{Name: "time", Type: fTS},
		arrow.Field{Name: "log_price", Type: fF64}, arrow.Field{Name: "equity", Type: fF64}, arrow.Field{Name: "buy_hold", Type: fF64},
		arrow.Field{Name: "drawdown", Type: fF64})
	addPath := func(venue, instrument string, s *series, withPrice bool) {
		peak := 0.0
		for i := range s.t {
			peak = max(peak, s.eq[i])
			eq.str(0, venue)
			eq.str(1, instrument)
			eq.ts(2, s.t[i])
			lp := float64(s.lp[i])
			if !withPrice {
				lp = math.NaN()
			}
			eq.f64(3, lp)
			eq.f64(4, s.eq[i])
			eq.f64(5, s.bh[i])
			eq.f64(6, 1-s.eq[i]/peak)
		}
	}
	if r.total != nil {
		addPath("", "total", r.total, false)
	}
	for _, in := range r.Instruments {
		addPath(in.Venue, in.Instrument, in.path, true)
	}
	ev := newTable(arrow.Field{Name: "type", Type: fStr}, arrow.Field{Name: "venue", Type: fStr}, arrow.Field{Name: "instrument", Type: fStr},
		arrow.Field{Name: "time", Type: fTS}, arrow.Field{Name: "state", Type: fStr}, arrow.Field{Name: "score", Type: fF64},
		arrow.Field{Name: "changepoint", Type: fBool}, arrow.Field{Name: "control", Type: fBool}, arrow.Field{Name: "horizon", Type: fI64},
		arrow.Field{Name: "ret", Type: fF64}, arrow.Field{Name: "abs_ret", Type: fF64}, arrow.Field{Name: "rv", Type: fF64},
		arrow.Field{Name: "spread_bps", Type: fF64})
	for _, list := range [][]*Event{r.events, r.controls} {
		for _, e := range list {
			for hi, h := range r.Horizons {
				ev.str(0, e.Type)
				ev.str(1, e.Venue)
				ev.str(2, e.Instrument)
				ev.ts(3, e.Time)
				ev.str(4, e.State)
				ev.f64(5, e.Score)
				ev.boolean(6, e.Changepoint)
				ev.boolean(7, e.Control)
				ev.i64(8, int64(h))
				ev.f64(9, e.Ret[hi])
				ev.f64(10, math.Abs(e.Ret[hi]))
				ev.f64(11, e.RV[hi])
				ev.f64(12, e.Spread[hi])
			}
		}
	}
	ic := newTable(arrow.Field{Name: "feature", Type: fStr}, arrow.Field{Name: "horizon", Type: fI64}, arrow.Field{Name: "steps", Type: fI64},
		arrow.Field{Name: "mean", Type: fF64}, arrow.Field{Name: "sd", Type: fF64}, arrow.Field{Name: "t", Type: fF64},
		arrow.Field{Name: "instruments", Type: fI64}, arrow.Field{Name: "ts_mean", Type: fF64}, arrow.Field{Name: "ts_t", Type: fF64})
	for _, row := range r.IC {
		ic.str(0, row.Feature)
		ic.i64(1, int64(row.Horizon))
		ic.i64(2, row.Steps)
		ic.f64(3, float64(row.Mean))
		ic.f64(4, float64(row.SD))
		ic.f64(5, float64(row.T))
		ic.i64(6, int64(row.Instruments))
		ic.f64(7, float64(row.TSMean))
		ic.f64(8, float64(row.TST))
	}
	for name, t := range map[string]*table{"trades": tr, "equity": eq, "events": ev, "ic": ic} {
		if err := t.write(filepath.Join(dir, name+".parquet")); err != nil {
			return fmt.Errorf("evaluate: %s.parquet: %w", name, err)
		}
	}
	return nil
}
