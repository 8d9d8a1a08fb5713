package features

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/market"
)

// stepFeeder drives an engine with n instruments (three venues, so the
// basis groups are real) that each quote and trade every step.
type stepFeeder struct {
	e      *Engine
	n      int
	quotes []market.Tick
	trades []market.Tick
	k      int64
	rows   int
}

func newStepFeeder(b *testing.B, n int) *stepFeeder {
	e, err := NewEngine(Config{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	f := &stepFeeder{e: e, n: n, quotes: make([]market.Tick, n), trades: make([]market.Tick, n)}
	venues := []string{"binance", "okx", "bybit"}
	for i := range n {
		inst := fmt.Sprintf("I%04d-USDT", i/len(venues))
		v := venues[i%len(venues)]
		f.quotes[i] = *quote(v, inst, 0, 100, 100.01)
		f.trades[i] = *trade(v, inst, 0, market.Side(1-2*(i%2)), 100, 1)
	}
	return f
}

func (f *stepFeeder) emit(rec arrow.Record) error { f.rows += int(rec.NumRows()); return nil }

// step feeds one step of ticks; the first tick of the next step closes it.
func (f *stepFeeder) step(b *testing.B) {
	ts := (base + f.k) * sec
	for i := range f.n {
		q, t := &f.quotes[i], &f.trades[i]
		q.RecvTS, t.RecvTS = ts+int64(i), ts+int64(f.n+i)
		x := float64(f.k + int64(i))
		q.BidPx = 100 + math.Sin(x)
		q.AskPx = q.BidPx + 0.01*(1.5+math.Sin(3*x))
		q.BidSz, q.AskSz = 1+math.Cos(x), 1+math.Sin(2*x)
		t.Price = q.BidPx + 0.005
		t.Size = 1 + 0.5*math.Cos(5*x)
		if err := f.e.Apply(q, f.emit); err != nil {
			b.Fatal(err)
		}
		if err := f.e.Apply(t, f.emit); err != nil {
			b.Fatal(err)
		}
	}
	f.k++
}

// BenchmarkStep1000 measures one full step of 1000 instruments with every
// feature of the default catalogue (steady state, every window warm): 2000
// ticks applied, the step closed, its 1000-row record built and emitted.
// path=avx2 and path=generic switch the features/asm kernels within one run
// (asm.SetGeneric), so their ratio is measured on the same machine state.
// Metrics: ms/step, allocs/op (= per step), state-B/inst (the rolling state
// per instrument) and features (columns).
func BenchmarkStep1000(b *testing.B) {
	const n = 1000
	f := newStepFeeder(b, n)
	for range 905 { // warm every window (900) and the ring
		f.step(b)
	}
	for _, path := range []string{"avx2", "generic"} {
		b.Run("path="+path, func(b *testing.B) {
			prev := asm.SetGeneric(path == "generic")
			defer asm.SetGeneric(prev)
			if got := asm.Path(); got != path {
				b.Skipf("kernel path %s: no %s kernels in this build or on this CPU", got, path)
			}
			f.rows = 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f.step(b)
			}
			b.StopTimer()
			if f.rows != n*b.N {
				b.Fatalf("%d rows for %d steps", f.rows, b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/step")
			b.ReportMetric(float64(f.e.StateBytesPerInstrument()), "state-B/inst")
			b.ReportMetric(float64(len(f.e.Features())), "features")
		})
	}
}

// BenchmarkStep1000Speedup alternates the two kernel paths step by step on
// the same engine and reports each path's fastest step and median step and
// their ratios: on a shared, loaded machine the fastest step is what load
// does not inflate, and alternating exposes both paths to the same load.
func BenchmarkStep1000Speedup(b *testing.B) {
	const n = 1000
	f := newStepFeeder(b, n)
	for range 905 {
		f.step(b)
	}
	prev := asm.SetGeneric(false)
	defer asm.SetGeneric(prev)
	if asm.Path() != "avx2" {
		b.Skip("no AVX2 kernels in this build or on this CPU")
	}
	var tAsm, tGen []float64
	b.ResetTimer()
	for i := range b.N {
		for _, generic := range []bool{i%2 == 1, i%2 == 0} {
			asm.SetGeneric(generic)
			start := time.Now()
			f.step(b)
			d := float64(time.Since(start).Nanoseconds()) / 1e6
			if generic {
				tGen = append(tGen, d)
			} else {
				tAsm = append(tAsm, d)
			}
		}
	}
	b.StopTimer()
	slices.Sort(tAsm)
	slices.Sort(tGen)
	b.ReportMetric(tAsm[0], "min-ms/step-avx2")
	b.ReportMetric(tGen[0], "min-ms/step-generic")
	b.ReportMetric(tGen[0]/tAsm[0], "speedup-min")
	b.ReportMetric(tGen[len(tGen)/2]/tAsm[len(tAsm)/2], "speedup-median")
}

// BenchmarkCloseStep isolates closing a step of 1000 instruments and
// building its record (no ticks: every row is carried forward).
func BenchmarkCloseStep(b *testing.B) {
	const n = 1000
	f := newStepFeeder(b, n)
	for range 905 {
		f.step(b)
	}
	e := f.e
	emit := func(arrow.Record) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := e.closeStep(e.next+int64(i), emit); err != nil {
			b.Fatal(err)
		}
	}
}
