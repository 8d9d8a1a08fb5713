package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

func newFaultPipeline(t *testing.T, st store.Store, cfg Config) (*Pipeline, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Backend = transport.NewMemory()
	cfg.Store = st
	cfg.DataDir = t.TempDir()
	p, err := New(context.Background(), cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, reg
}

func entry(ticks ...market.Tick) transport.Message {
	return transport.Message{Payload: market.AppendBatch(nil, ticks)}
}

func seqTick(inst string, origin, seq uint64) market.Tick {
	t := market.Tick{Venue: "v", Instrument: inst, Kind: market.KindTrade, Side: market.SideBuy,
		RecvTS: time.Date(2024, 8, 8, 0, 0, 0, 0, time.UTC).UnixNano() + int64(seq)*1e6, Price: 100, Size: 1, TradeID: seq}
	t.ComputeID()
	t.Origin, t.OriginSeq = origin, seq
	return t
}

// A tick the store refuses for good sends its entry, and only it, to the
// dead letters with the server's reason; the batch's other ticks are stored.
func TestStoreTicksDeadLettersRejected(t *testing.T) {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	ctx := context.Background()
	db := fmt.Sprintf("sdpipe_%d", rand.Uint32())
	ch, err := store.OpenClickHouse(ctx, store.ClickHouseOptions{Addr: os.Getenv("SIGNALD_CLICKHOUSE_ADDR"), Database: db}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	if err := ch.Exec(ctx, "ALTER TABLE "+db+".ticks ADD CONSTRAINT no_poison CHECK price != 666"); err != nil {
		t.Fatal(err)
	}
	p, _ := newFaultPipeline(t, ch, Config{})
	poison := seqTick("B", 0, 5)
	poison.Price = 666
	poison.ComputeID()
	msgs := []transport.Message{
		entry(seqTick("A", 0, 1), seqTick("A", 0, 2)),
		entry(seqTick("B", 0, 4), poison, seqTick("B", 0, 6)),
		entry(seqTick("C", 0, 7)),
	}
	err = p.storeTicks(ctx, msgs)
	var be transport.BatchError
	if !errors.As(err, &be) || len(be) != 1 || be[1] == nil {
		t.Fatalf("storeTicks: %v, want entry 1 alone failed", err)
	}
	if !errors.Is(be[1], transport.ErrPermanent) || !strings.Contains(be[1].Error(), "VIOLATED_CONSTRAINT") {
		t.Fatalf("entry 1: %v, want a permanent error with the server's reason", be[1])
	}
	if n, err := ch.CountTicks(ctx, store.Query{}); err != nil || n != 5 {
		t.Fatalf("stored %d (%v), want 5", n, err)
	}
}

// A signal entry written by hand (`XADD ... d '{"id":1}'`) is dead-lettered
// with the reason instead of stored as an empty signal dated 1970.
func TestStoreSignalsValidates(t *testing.T) {
	st, err := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newFaultPipeline(t, st, Config{})
	good := market.Signal{Time: 1723161255e9, Venue: "binance", Instrument: "BTC-USDT", Type: market.TypeNovelty, State: "novel", Score: 3, ModelVersion: "novelty/1"}
	good.ComputeID()
	b, _ := good.MarshalBinary()
	err = p.storeSignals(context.Background(), []transport.Message{{Payload: b}, {Payload: []byte(`{"id":1}`)}})
	var be transport.BatchError
	if !errors.As(err, &be) || len(be) != 1 || !errors.Is(be[1], transport.ErrPermanent) || !strings.Contains(be[1].Error(), "invalid signal") {
		t.Fatalf("storeSignals: %v", err)
	}
	sigs, err := st.ReadSignals(context.Background(), store.Query{})
	if err != nil || len(sigs) != 1 || sigs[0].ID != good.ID {
		t.Fatalf("stored %v (%v), want the valid signal only", sigs, err)
	}
}

// Ticks that never reach the store (a lost Redis tail, an external trim)
// show as holes in their origin's sequence: counted per instrument and
// logged once the loss delay passed; redeliveries and late arrivals are not.
func TestLostTicksCounted(t *testing.T) {
	st, err := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, reg := newFaultPipeline(t, st, Config{LossDelay: time.Nanosecond})
	ctx := context.Background()
	steps := [][]uint64{{1, 2, 3}, {2, 3}, {7, 8}, {4}, {9, 10}} // 5 and 6 never come
	for _, seqs := range steps {
		var ts []market.Tick
		for _, s := range seqs {
			ts = append(ts, seqTick("BTC-USD", 42, s))
		}
		if err := p.storeTicks(ctx, []transport.Message{entry(ts...)}); err != nil {
			t.Fatal(err)
		}
		p.lostTicks.swept = time.Time{} // sweep on every call
		time.Sleep(time.Millisecond)
	}
	lost := testutil.ToFloat64(p.pm.lost.WithLabelValues("v", "BTC-USD"))
	// 4-6 is a hole when 7 arrives; 4 comes before the hole is older than
	// the delay and fills its part; 5 and 6 are counted once.
	if lost != 2 {
		t.Fatalf("lost %v, want 2 (seq 5 and 6)", lost)
	}
	if got := testutil.ToFloat64(p.pm.lost.WithLabelValues("v", "ETH-USD")); got != 0 {
		t.Fatalf("another instrument lost %v", got)
	}
	_ = reg
}

// Ingest stamps each instrument's ticks with the run's origin and 1, 2, 3...
func TestPublishSequences(t *testing.T) {
	st, _ := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	p, _ := newFaultPipeline(t, st, Config{})
	prod := transport.NewProducer(p.backend, transport.ProducerConfig{}, nil, transport.NewMetrics(nil))
	defer prod.Close()
	ts := []market.Tick{seqTick("A", 0, 0), seqTick("A", 0, 0), seqTick("B", 0, 0), seqTick("A", 0, 0)}
	if err := p.publish(context.Background(), prod, ts); err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 2, 1, 3}
	for i, tk := range ts {
		if tk.Origin != p.origin || tk.Origin == 0 || tk.OriginSeq != want[i] {
			t.Fatalf("tick %d: origin %x seq %d, want %x %d", i, tk.Origin, tk.OriginSeq, p.origin, want[i])
		}
	}
}

// Signals are numbered per instrument as they are published, and the
// signals store stage counts the numbers that never reach it.
func TestLostSignalsCounted(t *testing.T) {
	st, _ := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	p, _ := newFaultPipeline(t, st, Config{LossDelay: time.Nanosecond})
	var msgs []transport.Message
	for i := 0; i < 6; i++ {
		s := market.Signal{Time: 1723161255e9 + int64(i)*1e9, Venue: "binance", Instrument: "BTC-USDT", Type: market.TypeNovelty,
			State: "novel", Score: 3, ModelVersion: "novelty/1"}
		s.ComputeID()
		p.sequenceSignal(&s)
		if s.Origin != p.origin || s.OriginSeq != uint64(i+1) {
			t.Fatalf("signal %d numbered %x/%d", i, s.Origin, s.OriginSeq)
		}
		b, _ := s.MarshalBinary()
		if i == 2 || i == 3 {
			continue // lost on the way
		}
		msgs = append(msgs, transport.Message{Payload: b})
	}
	if err := p.storeSignals(context.Background(), msgs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := p.storeSignals(context.Background(), msgs[2:]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	p.lostSigs.sweep(time.Now())
	if got := testutil.ToFloat64(p.pm.lostSignals.WithLabelValues("binance", "BTC-USDT")); got != 2 {
		t.Fatalf("lost signals %v, want 2", got)
	}
}
