package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/signald-dev/signald/market"
)

type storeFactory func(t *testing.T) Store

func newParquet(t *testing.T) Store {
	s, err := OpenParquet(ParquetOptions{Dir: t.TempDir(), CompactAt: 5}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newClickHouse opens a fresh database on the integration server. With
// SIGNALD_INTEGRATION unset it skips; with it set, a server that is down fails.
func newClickHouse(t *testing.T) Store {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	addr := os.Getenv("SIGNALD_CLICKHOUSE_ADDR")
	if addr == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_CLICKHOUSE_ADDR is empty")
	}
	db := fmt.Sprintf("sdtest_%d", rand.Uint32())
	c, err := OpenClickHouse(context.Background(), ClickHouseOptions{Addr: addr, Database: db}, nil, nil)
	if err != nil {
		t.Fatalf("integration ClickHouse: %v", err)
	}
	t.Cleanup(func() {
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		c.Close()
	})
	return c
}

func TestStoreConformance(t *testing.T) {
	for name, f := range map[string]storeFactory{"parquet": newParquet, "clickhouse": newClickHouse} {
		t.Run(name, func(t *testing.T) {
			t.Run("RoundTripOrderedAndDeduplicated", func(t *testing.T) { testRoundTrip(t, f) })
			t.Run("QueryFilters", func(t *testing.T) { testFilters(t, f) })
			t.Run("Signals", func(t *testing.T) { testSignals(t, f) })
		})
	}
}

var base = time.Date(2024, 8, 8, 23, 59, 0, 0, time.UTC).UnixNano() // spans a day boundary

func genTicks(n int, seed uint64) []market.Tick {
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

func readAll(t *testing.T, s Store, q Query) []market.Tick {
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

func testRoundTrip(t *testing.T, f storeFactory) {
	s := f(t)
	ctx := context.Background()
	ticks := genTicks(12000, 7)
	// Inserted in batches out of order, then the middle batch again (a
	// redelivery) and an overlapping batch (a replay after a crash).
	for _, r := range [][2]int{{4000, 8000}, {0, 4000}, {8000, 12000}, {4000, 8000}, {3000, 5000}} {
		if err := s.InsertTicks(ctx, ticks[r[0]:r[1]]); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, s, Query{})
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
		if i > 0 && tickCmp(got[i], got[i-1]) < 0 {
			t.Fatalf("ticks %d and %d out of order", i-1, i)
		}
	}
	n, err := s.CountTicks(ctx, Query{})
	if err != nil || n != int64(len(ticks)) {
		t.Fatalf("count %d, %v; want %d", n, err, len(ticks))
	}
}

func testFilters(t *testing.T, f storeFactory) {
	s := f(t)
	ctx := context.Background()
	ticks := genTicks(3000, 9)
	if err := s.InsertTicks(ctx, ticks); err != nil {
		t.Fatal(err)
	}
	from, to := time.Unix(0, ticks[1000].RecvTS), time.Unix(0, ticks[2000].RecvTS)
	q := Query{From: from, To: to, Instruments: []string{"ETH-USDT", "BTC-USDT-PERP"}}
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

func testSignals(t *testing.T, f storeFactory) {
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
	got, err := s.ReadSignals(ctx, Query{})
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
	got, _ = s.ReadSignals(ctx, Query{Instruments: []string{"ETH-USDT"}, From: time.Unix(0, base+10e9)})
	if len(got) != 20 {
		t.Fatalf("filtered signals %d, want 20", len(got))
	}
}

// A batch retried as a whole (a redelivery after the insert succeeded but the
// acknowledgement was lost) is dropped by the server on insert, not merely
// hidden by FINAL on read.
func TestClickHouseDropsRetriedBatchOnInsert(t *testing.T) {
	s := newClickHouse(t).(*ClickHouse)
	ctx := context.Background()
	ticks := genTicks(500, 11)
	for i := 0; i < 3; i++ {
		if err := s.InsertTicks(ctx, ticks); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.CountTickRows(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if rows != int64(len(ticks)) {
		t.Fatalf("%d physical rows after inserting the same batch 3 times, want %d", rows, len(ticks))
	}
	// A different batch with overlapping ticks is inserted (another token) and
	// deduplicated on read.
	if err := s.InsertTicks(ctx, ticks[:100]); err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.CountTickRows(ctx, Query{}); rows != int64(len(ticks))+100 {
		t.Fatalf("%d physical rows, want %d", rows, len(ticks)+100)
	}
	if n, _ := s.CountTicks(ctx, Query{}); n != int64(len(ticks)) {
		t.Fatalf("%d distinct ticks, want %d", n, len(ticks))
	}
}
