package evaluate

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
)

// benchTicks: 50 instruments over 10 minutes, 4 quotes and 4 trades per
// instrument and second, a trend call or novelty signal about every 100
// steps per instrument.
func benchTicks() ([]market.Tick, []market.Signal) {
	const n, steps = 50, 600
	q := walk(n, steps, 2e-4, nil, 0, 1)
	ticks := make([]market.Tick, 0, 2*len(q))
	for _, t := range q {
		ticks = append(ticks, t)
		tr := t
		tr.Kind, tr.RecvTS, tr.Price, tr.Size, tr.Side = market.KindTrade, t.RecvTS+1, t.AskPx, 1, market.SideBuy
		tr.BidPx, tr.AskPx, tr.BidSz, tr.AskSz = 0, 0, 0, 0
		ticks = append(ticks, tr)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	var sigs []market.Signal
	t0 := ticks[0].RecvTS / sec * sec
	states := []string{"long", "flat", "short"}
	for k := 1; k <= steps; k++ {
		for i := 0; i < n; i++ {
			switch rng.IntN(100) {
			case 0:
				sigs = append(sigs, call(instName(i), t0+int64(k)*sec, states[rng.IntN(3)], 0))
			case 1:
				sigs = append(sigs, market.Signal{Venue: "v", Instrument: instName(i), Type: market.TypeNovelty, Time: t0 + int64(k)*sec})
			}
		}
	}
	for i := range sigs {
		sigs[i].Venue = "v"
	}
	return ticks, sigs
}

// BenchmarkEvaluate is the evaluation's own cost per tick (ns/tick): core
// (strategy, baselines, studies) and with the IC of 5 columns fed every
// step; BenchmarkReplayFeatures is the
// feature engine's cost on the same ticks, for the ratio (goal: at most 10%).
func BenchmarkEvaluate(b *testing.B) {
	b.Run("core", func(b *testing.B) { benchEvaluate(b, false) })
	b.Run("with_ic", func(b *testing.B) { benchEvaluate(b, true) })
}

func benchEvaluate(b *testing.B, ic bool) {
	ticks, sigs := benchTicks()
	n := 50
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{"v", instName(i)}
	}
	cols := map[string][]float64{}
	rng := rand.New(rand.NewPCG(4, 4))
	for _, c := range DefaultFeatures {
		cols[c] = make([]float64, n)
		for i := range cols[c] {
			cols[c][i] = rng.NormFloat64()
		}
	}
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		ev, _ := New(Options{FeeBps: 1, SpreadFraction: 0.5, Draws: 50})
		j := 0
		next := ticks[0].RecvTS/sec*sec + sec
		for i := range ticks {
			if ticks[i].RecvTS >= next {
				for ; j < len(sigs) && sigs[j].Time <= next; j++ {
					ev.AddSignal(sigs[j])
				}
				if ic {
					ev.AddFeatures(next, keys, cols)
				}
				next += sec
			}
			ev.AddTicks(ticks[i : i+1])
		}
		if _, err := ev.Finish(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ticks)), "ns/tick")
}

func BenchmarkReplayFeatures(b *testing.B) {
	ticks, _ := benchTicks()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		eng, err := features.NewEngine(features.Config{Step: time.Second}, log, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range ticks {
			if err := eng.Apply(&ticks[i], func(arrow.Record) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ticks)), "ns/tick")
}
