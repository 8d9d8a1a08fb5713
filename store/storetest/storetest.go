// Package storetest is the conformance suite of tick and signal stores:
// what the pipeline and the backtest rely on from a store.Store (ticks read
// back unchanged, in order and deduplicated by id however batches were
// redelivered or replayed; time and instrument filters; signals with their
// values). Parquet and ClickHouse pass it (store/store_test.go).
//
// A new store passes it with one test:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mystore.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Every case is a subtest that calls the factory once and needs the store it
// returns to be empty; the factory may t.Skip when its server is not
// configured, and drops what the case wrote in t.Cleanup (a temporary
// directory, a database of its own).
package storetest

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/store"
)

// Factory returns a fresh, empty store for one case of the suite.
type Factory func(t *testing.T) store.Store

// Run runs every case of the suite on the stores f makes, each as a subtest
// of t.
func Run(t *testing.T, f Factory) {
	t.Run("RoundTripOrderedAndDeduplicated", func(t *testing.T) { testRoundTrip(t, f) })
	t.Run("QueryFilters", func(t *testing.T) { testFilters(t, f) })
	t.Run("Signals", func(t *testing.T) { testSignals(t, f) })
}

var base = time.Date(2024, 8, 8, 23, 59, 0, 0, time.UTC).UnixNano() // spans a day boundary

// Ticks returns n ticks of three instruments, 10ms apart from 23:59 UTC
// (more than 6,000 span midnight), with their ids computed; all but
// IngestTS follow from seed.
func Ticks(n int, seed uint64) []market.Tick {
	r := rand.New(rand.NewPCG(seed, 1))
	insts := []string{"BTC-USDT", "ETH-USDT", "BTC-USDT-PERP"}
	out := make([]market.Tick, n)
	for i := range out {
		t := market.Tick{
			Venue: "binance", Instrument: insts[i%3], Symbol: "SYM", Kind: market.Kind(1 + i%3),
			Side: market.Side(1 - 2*(i%2)), ExchTS: base + int64(i)*1e7 + 5, RecvTS: base + int64(i)*1e7 + int64(r.IntN(1000)),
			IngestTS: time.Now().UnixNano(), Price: 60000 + r.Float64(), Size: r.Float64(), TradeID: uint64(i),
			BidPx: 59999.5, BidSz: 1.25, AskPx: 60000.5, AskSz: 2.5, Seq: uint64(1e9 + i),
		}
		t.ComputeID()
		out[i] = t
	}
	return out
}

func readAll(t *testing.T, s store.Store, q store.Query) []market.Tick {
	t.Helper()
	var got []market.Tick
	if err := s.ReadTicks(context.Background(), q, func(b []market.Tick) error {
		got = append(got, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func testRoundTrip(t *testing.T, f Factory) {
	s := f(t)
	ctx := context.Background()
	ticks := Ticks(12000, 7)
	// Inserted in batches out of order, then the middle batch again (a
	// redelivery) and an overlapping batch (a replay after a crash).
	for _, r := range [][2]int{{4000, 8000}, {0, 4000}, {8000, 12000}, {4000, 8000}, {3000, 5000}} {
		if err := s.InsertTicks(ctx, ticks[r[0]:r[1]]); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, s, store.Query{})
	if len(got) != len(ticks) {
		t.Fatalf("read %d ticks, want %d (duplicates or losses)", len(got), len(ticks))
	}
	byID := map[uint64]market.Tick{}
	for _, k := range ticks {
		byID[k.ID] = k
	}
	for i := range got {
		want, ok := byID[got[i].ID]
		if !ok {
			t.Fatalf("unknown tick %+v", got[i])
		}
		if got[i] != want {
			t.Fatalf("round trip changed the tick:\n got %+v\nwant %+v", got[i], want)
		}
		delete(byID, got[i].ID)
		if i > 0 && readOrder(got[i], got[i-1]) < 0 {
			t.Fatalf("ticks %d and %d out of order", i-1, i)
		}
	}
	n, err := s.CountTicks(ctx, store.Query{})
	if err != nil || n != int64(len(ticks)) {
		t.Fatalf("count %d, %v; want %d", n, err, len(ticks))
	}
}

func testFilters(t *testing.T, f Factory) {
	s := f(t)
	ctx := context.Background()
	ticks := Ticks(3000, 9)
	if err := s.InsertTicks(ctx, ticks); err != nil {
		t.Fatal(err)
	}
	from, to := time.Unix(0, ticks[1000].RecvTS), time.Unix(0, ticks[2000].RecvTS)
	q := store.Query{From: from, To: to, Instruments: []string{"ETH-USDT", "BTC-USDT-PERP"}}
	want := 0
	for _, k := range ticks {
		if k.RecvTS >= from.UnixNano() && k.RecvTS < to.UnixNano() && k.Instrument != "BTC-USDT" {
			want++
		}
	}
	got := readAll(t, s, q)
	if len(got) != want {
		t.Fatalf("filtered read %d, want %d", len(got), want)
	}
	for _, k := range got {
		if k.Instrument == "BTC-USDT" || k.RecvTS < from.UnixNano() || k.RecvTS >= to.UnixNano() {
			t.Fatalf("tick outside the query: %+v", k)
		}
	}
	if n, _ := s.CountTicks(ctx, q); n != int64(want) {
		t.Fatalf("count %d, want %d", n, want)
	}
}

func testSignals(t *testing.T, f Factory) {
	s := f(t)
	ctx := context.Background()
	var sigs []market.Signal
	for i := 0; i < 50; i++ {
		sg := market.Signal{Time: base + int64(i)*1e9, Venue: "binance", Instrument: []string{"BTC-USDT", "ETH-USDT"}[i%2],
			Type: market.TypeRegimeChange, State: "volatile", Score: float64(i) / 7, ModelVersion: "test/1", Explanation: "it's \"quoted\""}
		switch i % 3 {
		case 0:
			sg.Values = map[string]float64{"calm": 0.25, "volatile": 0.75}
		case 1: // no values
		case 2:
			sg.Values = map[string]float64{"stop": math.Inf(1), "strength": -0.5}
		}
		sg.ComputeID()
		sigs = append(sigs, sg)
	}
	if err := s.InsertSignals(ctx, sigs[:30]); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertSignals(ctx, sigs[20:]); err != nil { // overlap: a replay
		t.Fatal(err)
	}
	got, err := s.ReadSignals(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sigs) {
		t.Fatalf("read %d signals, want %d", len(got), len(sigs))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], sigs[i]) {
			t.Fatalf("signal %d: got %+v want %+v", i, got[i], sigs[i])
		}
	}
	got, _ = s.ReadSignals(ctx, store.Query{Instruments: []string{"ETH-USDT"}, From: time.Unix(0, base+10e9)})
	if len(got) != 20 {
		t.Fatalf("filtered signals %d, want 20", len(got))
	}
}

// readOrder orders ticks as store.Store's ReadTicks returns them: (RecvTS,
// Venue, Instrument, Kind, ID).
func readOrder(a, b market.Tick) int {
	return cmp.Or(cmp.Compare(a.RecvTS, b.RecvTS), cmp.Compare(a.Venue, b.Venue),
		cmp.Compare(a.Instrument, b.Instrument), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
}
