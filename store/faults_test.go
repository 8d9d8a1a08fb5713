package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/internal/faultnet"
	"github.com/signald-dev/signald/market"
)

// openFaultCH opens a fresh database on the integration ClickHouse, through
// addr when given (a fault proxy), with its own registry.
func openFaultCH(t *testing.T, addr string, opts ClickHouseOptions) (*ClickHouse, *prometheus.Registry) {
	t.Helper()
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	real := os.Getenv("SIGNALD_CLICKHOUSE_ADDR")
	if real == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_CLICKHOUSE_ADDR is empty")
	}
	if addr == "" {
		addr = real
	}
	opts.Addr = addr
	opts.Database = fmt.Sprintf("sdfault_%d", rand.Uint32())
	reg := prometheus.NewRegistry()
	c, err := OpenClickHouse(context.Background(), opts, nil, reg)
	if err != nil {
		t.Fatalf("integration ClickHouse: %v", err)
	}
	t.Cleanup(func() {
		// Through the real address: the proxy may be frozen or gone.
		if d, err := OpenClickHouse(context.Background(), ClickHouseOptions{Addr: real, Database: opts.Database}, nil, nil); err == nil {
			d.Exec(context.Background(), "DROP DATABASE IF EXISTS "+opts.Database)
			d.Close()
		}
		c.Close()
	})
	return c, reg
}

func faultTicks(n int, day0 time.Time, days int) []market.Tick {
	out := make([]market.Tick, n)
	for i := range out {
		d := i % days
		out[i] = market.Tick{Venue: "v", Instrument: "BTC-USD", Kind: market.KindTrade, Side: market.SideBuy,
			RecvTS: day0.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Millisecond).UnixNano(),
			Price:  100 + float64(i), Size: 1, TradeID: uint64(i)}
		out[i].ComputeID()
	}
	return out
}

// A batch spanning 120 days used to fail with TOO_MANY_PARTS on every retry
// and stall tick storage: it is stored whole, in parts.
func TestClickHouseBatchOverManyPartitions(t *testing.T) {
	c, _ := openFaultCH(t, "", ClickHouseOptions{})
	ticks := faultTicks(600, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 120)
	if err := c.InsertTicks(context.Background(), ticks); err != nil {
		t.Fatalf("insert over 120 days: %v", err)
	}
	if n, err := c.CountTicks(context.Background(), Query{}); err != nil || n != 600 {
		t.Fatalf("stored %d ticks (%v), want 600", n, err)
	}
	// The retry of the same batch adds no row (each part's token is stable).
	if err := c.InsertTicks(context.Background(), ticks); err != nil {
		t.Fatal(err)
	}
	if n, err := c.CountTickRows(context.Background(), Query{}); err != nil || n != 600 {
		t.Fatalf("%d rows after a retry (%v), want 600", n, err)
	}
	if v := testutil.ToFloat64(c.m.insertErrors.WithLabelValues("ticks")); v != 0 {
		t.Fatalf("insert errors %v", v)
	}
}

// Rows the server refuses for good are isolated and named; every other row
// of the batch is stored; the rejection is counted.
func TestClickHouseIsolatesRejectedRows(t *testing.T) {
	c, _ := openFaultCH(t, "", ClickHouseOptions{})
	ctx := context.Background()
	// A real server-side rejection: a constraint the test adds.
	if err := c.Exec(ctx, "ALTER TABLE "+c.Database()+".ticks ADD CONSTRAINT no_poison CHECK price != 666"); err != nil {
		t.Fatal(err)
	}
	ticks := faultTicks(50, time.Date(2024, 8, 8, 0, 0, 0, 0, time.UTC), 1)
	for _, i := range []int{7, 31} {
		ticks[i].Price = 666
		ticks[i].ComputeID()
	}
	for round := 0; round < 2; round++ { // a redelivery gives the same answer and no duplicates
		err := c.InsertTicks(ctx, ticks)
		rej, ok := AsRejected(err)
		if !ok {
			t.Fatalf("round %d: %v, want a RejectedError", round, err)
		}
		var idx []int
		for _, r := range rej.Rows {
			idx = append(idx, r.Index)
			if !strings.Contains(r.Reason, "VIOLATED_CONSTRAINT") {
				t.Fatalf("reason %q does not name the server's error", r.Reason)
			}
		}
		if !slices.Equal(idx, []int{7, 31}) {
			t.Fatalf("rejected rows %v, want [7 31]", idx)
		}
		if n, err := c.CountTickRows(ctx, Query{}); err != nil || n != 48 {
			t.Fatalf("round %d: %d rows stored (%v), want 48", round, n, err)
		}
	}
	if v := testutil.ToFloat64(c.m.rejected.WithLabelValues("ticks")); v != 4 {
		t.Fatalf("rejected rows counted %v, want 4 (2 per round)", v)
	}
	// A batch whose every row is refused is the table's fault: retried, not
	// dead-lettered.
	all := faultTicks(3, time.Date(2024, 8, 9, 0, 0, 0, 0, time.UTC), 1)
	for i := range all {
		all[i].Price = 666
		all[i].ComputeID()
	}
	err := c.InsertTicks(ctx, all)
	if _, ok := AsRejected(err); ok || err == nil {
		t.Fatalf("all rows refused: %v, want a plain error to retry", err)
	}
	if h := c.WriteHealth(); h.FailingSince.IsZero() {
		t.Fatalf("health %+v after a failed insert", h)
	}
}

// A hung server (the connection frozen mid-insert) is an error within the
// insert deadline, counted, shown by WriteHealth, and the store recovers
// once the server answers again. Bound: the deadline (1 s) plus the test's
// own 60 s guard.
func TestClickHouseInsertDeadline(t *testing.T) {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	px, err := faultnet.Listen(os.Getenv("SIGNALD_CLICKHOUSE_ADDR"))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	c, _ := openFaultCH(t, px.Addr(), ClickHouseOptions{InsertTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ticks := faultTicks(10, time.Date(2024, 8, 8, 0, 0, 0, 0, time.UTC), 1)
	px.Freeze()
	err = c.InsertTicks(ctx, ticks)
	if !errors.Is(err, ErrInsertTimeout) {
		t.Fatalf("insert into a hung server: %v, want ErrInsertTimeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the insert outlived the test's guard instead of its deadline")
	}
	if v := testutil.ToFloat64(c.m.insertTimeouts.WithLabelValues("ticks")); v != 1 {
		t.Fatalf("timeouts counted %v, want 1", v)
	}
	h := c.WriteHealth()
	if h.FailingSince.IsZero() || !strings.Contains(h.LastError, "deadline") {
		t.Fatalf("health %+v while hung", h)
	}
	px.Thaw()
	px.Cut() // the pool's frozen connections are dead to it anyway
	var last error
	for i := 0; i < 20; i++ { // the pool re-dials; a few tries at most
		if last = c.InsertTicks(ctx, ticks); last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("no recovery after thaw: %v", last)
	}
	if h := c.WriteHealth(); !h.FailingSince.IsZero() || h.LastOK.IsZero() {
		t.Fatalf("health %+v after recovery", h)
	}
	if n, err := c.CountTicks(ctx, Query{}); err != nil || n != 10 {
		t.Fatalf("stored %d (%v), want 10", n, err)
	}
}

func TestByPartition(t *testing.T) {
	day := func(d []int64) func(int) int64 { return func(i int) int64 { return d[i] } }
	if g := byPartition(4, 2, day([]int64{5, 5, 6, 5})); len(g) != 1 || !slices.Equal(g[0], []int{0, 1, 2, 3}) {
		t.Fatalf("within the limit: %v", g)
	}
	g := byPartition(6, 2, day([]int64{1, 2, 3, 1, 4, 5}))
	want := [][]int{{0, 1, 3}, {2, 4}, {5}}
	if len(g) != len(want) {
		t.Fatalf("groups %v, want %v", g, want)
	}
	for i := range want {
		if !slices.Equal(g[i], want[i]) {
			t.Fatalf("groups %v, want %v", g, want)
		}
	}
	if dayOf(-1) != -1 || dayOf(0) != 0 || dayOf(24*int64(time.Hour)) != 1 {
		t.Fatal("dayOf")
	}
}

func TestCountTicksByMinute(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2024, 8, 8, 12, 0, 59, 0, time.UTC)
	ticks := []market.Tick{}
	for i, off := range []time.Duration{0, 500 * time.Millisecond, 2 * time.Second, 61 * time.Second} {
		for _, inst := range []string{"BTC-USD", "ETH-USD"} {
			tk := market.Tick{Venue: "v", Instrument: inst, Kind: market.KindTrade, RecvTS: t0.Add(off).UnixNano(), Price: 1, Size: 1, TradeID: uint64(i)}
			tk.ComputeID()
			ticks = append(ticks, tk)
		}
	}
	m := t0.Unix() - 59
	want := []MinuteCount{
		{"v", "BTC-USD", m, 2}, {"v", "BTC-USD", m + 60, 1}, {"v", "BTC-USD", m + 120, 1},
		{"v", "ETH-USD", m, 2}, {"v", "ETH-USD", m + 60, 1}, {"v", "ETH-USD", m + 120, 1},
	}
	pq, err := OpenParquet(ParquetOptions{Dir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stores := map[string]Store{"parquet": pq}
	if os.Getenv("SIGNALD_INTEGRATION") != "" {
		c, _ := openFaultCH(t, "", ClickHouseOptions{})
		stores["clickhouse"] = c
	}
	for name, s := range stores {
		if err := s.InsertTicks(ctx, ticks); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertTicks(ctx, ticks[:3]); err != nil { // a redelivery counts once
			t.Fatal(err)
		}
		got, err := s.CountTicksByMinute(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
	if minuteOf(-1) != -60 || minuteOf(0) != 0 || minuteOf(60e9-1) != 0 {
		t.Fatal("minuteOf")
	}
}
