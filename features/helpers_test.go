package features

import (
	"math"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/internal/stats"
	"github.com/signald-dev/signald/market"
)

const sec = int64(1e9)

// base is an arbitrary realistic epoch second for the tests' step 0.
const base = int64(1_700_000_000)

func quote(venue, inst string, recv int64, bid, ask float64) *market.Tick {
	return &market.Tick{Venue: venue, Instrument: inst, Kind: market.KindQuote, RecvTS: recv, BidPx: bid, AskPx: ask, BidSz: 1, AskSz: 1}
}

func trade(venue, inst string, recv int64, side market.Side, px, sz float64) *market.Tick {
	return &market.Tick{Venue: venue, Instrument: inst, Kind: market.KindTrade, RecvTS: recv, Side: side, Price: px, Size: sz}
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

// Naive references computed directly from a slice of values: two passes
// (mean first, then deviations), no running sums.

func refMean(xs []float64) float64 {
	var k stats.Neumaier
	for _, x := range xs {
		k.Add(x)
	}
	return k.Value() / float64(len(xs))
}

// refCentral returns the window mean and the central sums sum (x-mean)^k for
// k = 2, 3, 4, corrected for the rounding of the mean.
func refCentral(xs []float64) (mean, m2, m3, m4 float64) {
	mean = refMean(xs)
	var c float64
	for _, x := range xs {
		c += x - mean
	}
	mean += c / float64(len(xs))
	for _, x := range xs {
		d := x - mean
		m2 += d * d
		m3 += d * d * d
		m4 += d * d * d * d
	}
	return
}

// refStd is the two-pass sample standard deviation.
func refStd(xs []float64) float64 {
	_, m2, _, _ := refCentral(xs)
	return math.Sqrt(m2 / float64(len(xs)-1))
}

func refRV(xs []float64) float64 {
	var k stats.Neumaier
	for _, x := range xs {
		k.Add(x * x)
	}
	return math.Sqrt(k.Value())
}

func allEqual(xs []float64) bool {
	for _, x := range xs {
		if x != xs[0] {
			return false
		}
	}
	return true
}

// refStat is the naive value of statistic stat over the window xs (oldest
// first); hist is the whole series since its start (xs is its tail), for the
// exponentially weighted statistics, computed by their recursion from the
// first value.
func refStat(stat string, xs, hist []float64) float64 {
	nan := math.NaN()
	w := len(xs)
	fw := float64(w)
	last := xs[w-1]
	flat := allEqual(xs)
	switch stat {
	case "mean":
		if flat {
			return last
		}
		mean, _, _, _ := refCentral(xs)
		return mean
	case "std":
		return refStd(xs)
	case "z", "skew", "kurt":
		if flat {
			return nan
		}
		mean, m2, m3, m4 := refCentral(xs)
		switch stat {
		case "z":
			return (last - mean) / math.Sqrt(m2/(fw-1))
		case "skew":
			return (m3 / fw) / math.Pow(m2/fw, 1.5)
		}
		return (m4/fw)/((m2/fw)*(m2/fw)) - 3
	case "min", "max", "argmin_age", "argmax_age", "range_pos":
		lo, hi, ilo, ihi := xs[0], xs[0], 0, 0
		for i, x := range xs {
			if x <= lo {
				lo, ilo = x, i
			}
			if x >= hi {
				hi, ihi = x, i
			}
		}
		switch stat {
		case "min":
			return lo
		case "max":
			return hi
		case "argmin_age":
			return float64(w - 1 - ilo)
		case "argmax_age":
			return float64(w - 1 - ihi)
		}
		if hi == lo {
			return nan
		}
		return (last - lo) / (hi - lo)
	case "ewm", "ewstd":
		alpha := 2 / (fw + 1)
		m, v := hist[0], 0.0
		for _, x := range hist[1:] {
			d := x - m
			m += alpha * d
			v = (1 - alpha) * (v + alpha*d*d)
		}
		if stat == "ewm" {
			return m
		}
		return math.Sqrt(v)
	case "slope", "r2":
		if flat {
			if stat == "slope" {
				return 0
			}
			return nan
		}
		mean, m2, _, _ := refCentral(xs)
		tbar := (fw - 1) / 2
		var cov, stt float64
		for j, x := range xs {
			cov += (float64(j) - tbar) * (x - mean)
			stt += (float64(j) - tbar) * (float64(j) - tbar)
		}
		if stat == "slope" {
			return cov / stt
		}
		return cov * cov / (stt * m2)
	case "ac1":
		if flat {
			return nan
		}
		mean, m2, _, _ := refCentral(xs)
		var num float64
		for j := 1; j < w; j++ {
			num += (xs[j] - mean) * (xs[j-1] - mean)
		}
		return num / m2
	case "sum":
		var k stats.Neumaier
		for _, x := range xs {
			k.Add(x)
		}
		return k.Value()
	case "pos_share":
		n := 0
		for _, x := range xs {
			if x > 0 {
				n++
			}
		}
		return float64(n) / fw
	case "updown":
		n := 0
		for j := 1; j < w; j++ {
			if xs[j] > xs[j-1] {
				n++
			} else if xs[j] < xs[j-1] {
				n--
			}
		}
		return float64(n)
	case "rv":
		return refRV(xs)
	}
	panic("no reference for " + stat)
}
