package features

import (
	"math"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/ingest"
)

const sec = int64(1e9)

// base is an arbitrary realistic epoch second for the tests' step 0.
const base = int64(1_700_000_000)

func quote(venue, inst string, recv int64, bid, ask float64) *ingest.Tick {
	return &ingest.Tick{Venue: venue, Instrument: inst, Kind: ingest.KindQuote, RecvTS: recv, BidPx: bid, AskPx: ask, BidSz: 1, AskSz: 1}
}

func trade(venue, inst string, recv int64, side ingest.Side, px, sz float64) *ingest.Tick {
	return &ingest.Tick{Venue: venue, Instrument: inst, Kind: ingest.KindTrade, RecvTS: recv, Side: side, Price: px, Size: sz}
}

// row is one row of an emitted record, copied out of Arrow memory.
type row struct {
	time       int64
	venue      string
	instrument string
	vals       map[string]float64
}

// collector copies every emitted record into rows, checking the schema.
type collector struct {
	t      testing.TB
	schema *arrow.Schema
	steps  [][]row
}

func (c *collector) emit(rec arrow.Record) error {
	c.t.Helper()
	if !rec.Schema().Equal(c.schema) {
		c.t.Fatalf("record schema %v != engine schema %v", rec.Schema(), c.schema)
	}
	n := int(rec.NumRows())
	ts := rec.Column(0).(*array.Timestamp)
	vs := rec.Column(1).(*array.String)
	is := rec.Column(2).(*array.String)
	rows := make([]row, n)
	for i := range n {
		rows[i] = row{time: int64(ts.Value(i)), venue: vs.Value(i), instrument: is.Value(i), vals: map[string]float64{}}
		for j := 3; j < int(rec.NumCols()); j++ {
			col := rec.Column(j).(*array.Float64)
			if col.NullN() != 0 {
				c.t.Fatalf("column %s has nulls", rec.ColumnName(j))
			}
			rows[i].vals[rec.ColumnName(j)] = col.Value(i)
		}
	}
	c.steps = append(c.steps, rows)
	return nil
}

// metric returns the value of a counter or gauge in reg, 0 if absent.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// close reports whether got matches want: both NaN, or within rel*|want|+abs.
func closeTo(got, want, rel, abs float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	return math.Abs(got-want) <= rel*math.Abs(want)+abs
}

// Naive references computed directly from a slice of values.

func refMean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// refStd is the corrected two-pass sample standard deviation.
func refStd(xs []float64) float64 {
	m := refMean(xs)
	var s, c float64
	for _, x := range xs {
		d := x - m
		s += d * d
		c += d
	}
	n := float64(len(xs))
	return math.Sqrt((s - c*c/n) / (n - 1))
}

func refRV(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x * x
	}
	return math.Sqrt(s)
}
