package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/store/storetest"
)

// newParquet opens a Parquet store in a directory of the test's own.
func newParquet(t *testing.T) store.Store {
	s, err := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir(), CompactAt: 5}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newClickHouse opens a fresh database on the integration server. With
// SIGNALD_INTEGRATION unset it skips; with it set, a server that is down fails.
func newClickHouse(t *testing.T) *store.ClickHouse {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	addr := os.Getenv("SIGNALD_CLICKHOUSE_ADDR")
	if addr == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_CLICKHOUSE_ADDR is empty")
	}
	db := fmt.Sprintf("sdtest_%d", rand.Uint32())
	c, err := store.OpenClickHouse(context.Background(), store.ClickHouseOptions{Addr: addr, Database: db}, nil, nil)
	if err != nil {
		t.Fatalf("integration ClickHouse: %v", err)
	}
	t.Cleanup(func() {
		c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		c.Close()
	})
	return c
}

// TestStoreConformance runs the one suite every store must pass. ClickHouse
// skips unless SIGNALD_INTEGRATION is set.
func TestStoreConformance(t *testing.T) {
	t.Run("parquet", func(t *testing.T) { storetest.Run(t, newParquet) })
	t.Run("clickhouse", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return newClickHouse(t) })
	})
}

// A batch retried as a whole (a redelivery after the insert succeeded but the
// acknowledgement was lost) is dropped by the server on insert, not merely
// hidden by FINAL on read.
func TestClickHouseDropsRetriedBatchOnInsert(t *testing.T) {
	s := newClickHouse(t)
	ctx := context.Background()
	ticks := storetest.Ticks(500, 11)
	for i := 0; i < 3; i++ {
		if err := s.InsertTicks(ctx, ticks); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.CountTickRows(ctx, store.Query{})
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
	if rows, _ := s.CountTickRows(ctx, store.Query{}); rows != int64(len(ticks))+100 {
		t.Fatalf("%d physical rows, want %d", rows, len(ticks)+100)
	}
	if n, _ := s.CountTicks(ctx, store.Query{}); n != int64(len(ticks)) {
		t.Fatalf("%d distinct ticks, want %d", n, len(ticks))
	}
}
