package features

import (
	"fmt"
	"math"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/ingest"
)

// BenchmarkEngineStep measures one step of 1000 instruments: one quote and
// one trade per instrument (2000 Apply calls) plus closing the step and
// building its 1000-row record.
func BenchmarkEngineStep(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("instruments=%d", n), func(b *testing.B) {
			e, err := NewEngine(Config{}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			quotes := make([]ingest.Tick, n)
			trades := make([]ingest.Tick, n)
			for i := range n {
				inst := fmt.Sprintf("I%04d-USDT", i)
				quotes[i] = *quote("binance", inst, 0, 100, 100.01)
				trades[i] = *trade("binance", inst, 0, ingest.Side(1-2*(i%2)), 100, 1)
			}
			rows := 0
			emit := func(rec arrow.Record) error { rows += int(rec.NumRows()); return nil }
			k := int64(0)
			step := func() {
				ts := (base + k) * sec
				for i := range n {
					q, t := &quotes[i], &trades[i]
					q.RecvTS, t.RecvTS = ts+int64(i), ts+int64(n+i)
					q.BidPx = 100 + math.Sin(float64(k+int64(i)))
					q.AskPx = q.BidPx + 0.01
					if err := e.Apply(q, emit); err != nil {
						b.Fatal(err)
					}
					if err := e.Apply(t, emit); err != nil {
						b.Fatal(err)
					}
				}
				k++
			}
			for range 100 { // warm every window
				step()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				step()
			}
			b.StopTimer()
			if rows == 0 {
				b.Fatal("no records")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*n), "ns/tick")
		})
	}
}

// BenchmarkCloseStep isolates closing a step of 1000 instruments and
// building its record (no ticks: every row is carried forward).
func BenchmarkCloseStep(b *testing.B) {
	const n = 1000
	e, err := NewEngine(Config{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := e.Apply(quote("binance", fmt.Sprintf("I%04d-USDT", i), base*sec+int64(i), 100, 100.01), nil); err != nil {
			b.Fatal(err)
		}
	}
	emit := func(arrow.Record) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := e.closeStep(base+int64(i), emit); err != nil {
			b.Fatal(err)
		}
	}
}
