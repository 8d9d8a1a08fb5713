package regime

import (
	"math"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/signald-dev/signald/market"
)

const sec = int64(1e9)

// defaultCols are the feature columns the detectors read by default with
// the built-in model, in the new catalogue's names.
var defaultCols = []string{"mid", "mid_ret", "mid_ret_mean_60", "mid_ret_std_60", "spread_bps"}

// featSchema builds a feature-record schema with the given float64 columns.
func featSchema(cols ...string) *arrow.Schema {
	fields := []arrow.Field{
		{Name: "time", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: "venue", Type: arrow.BinaryTypes.String},
		{Name: "instrument", Type: arrow.BinaryTypes.String},
	}
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64})
	}
	return arrow.NewSchema(fields, nil)
}

// row is one instrument's values, by column name; a missing column is NaN.
type row struct {
	venue, inst string
	v           map[string]float64
}

// featRecord builds one step's record at time t (ns).
func featRecord(sc *arrow.Schema, t int64, rows ...row) arrow.Record {
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(t))
		b.Field(1).(*array.StringBuilder).Append(r.venue)
		b.Field(2).(*array.StringBuilder).Append(r.inst)
		for j := 3; j < sc.NumFields(); j++ {
			v, ok := r.v[sc.Field(j).Name]
			if !ok {
				v = math.NaN()
			}
			b.Field(j).(*array.Float64Builder).Append(v)
		}
	}
	return b.NewRecord()
}

// collect runs d over records and returns the signals.
func collect(t testing.TB, d *Detectors, recs func(yield func(arrow.Record) bool)) []market.Signal {
	t.Helper()
	var out []market.Signal
	for rec := range recs {
		err := d.Step(rec, func(s market.Signal) error { out = append(out, s); return nil })
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// synthRecords yields the records of s for steps [from, to).
func synthRecords(s *Synth, from, to int) func(yield func(arrow.Record) bool) {
	sc := s.Schema()
	return func(yield func(arrow.Record) bool) {
		for k := from; k < to; k++ {
			if !yield(s.Record(sc, k)) {
				return
			}
		}
	}
}

func newDet(t testing.TB, cfg Config) *Detectors {
	t.Helper()
	d, err := NewDetectors(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
