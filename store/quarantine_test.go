package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dataFiles lists the tick files of the store's only day.
func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "ticks", "*", "*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Corrupt files (random bytes inside, truncated, another schema) never
// panic a read or a compaction: each is moved to _quarantine, counted and
// reported, and every other tick is read; strict reads fail instead.
func TestParquetQuarantinesCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	p, err := OpenParquet(ParquetOptions{Dir: dir, CompactAt: 1000}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	day0 := time.Date(2024, 8, 8, 0, 0, 0, 0, time.UTC)
	all := faultTicks(60, day0, 1)
	for i := 0; i < 6; i++ { // six files of ten ticks
		if err := p.InsertTicks(ctx, all[i*10:(i+1)*10]); err != nil {
			t.Fatal(err)
		}
	}
	files := dataFiles(t, dir)
	if len(files) != 6 {
		t.Fatalf("%d files", len(files))
	}
	// 64 random bytes in the middle of one file.
	b, _ := os.ReadFile(files[0])
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 64; i++ {
		b[len(b)/2-32+i] = byte(rng.Uint32())
	}
	os.WriteFile(files[0], b, 0o644)
	// Another truncated to half.
	b, _ = os.ReadFile(files[1])
	os.WriteFile(files[1], b[:len(b)/2], 0o644)
	// A file of another schema, named like a data file.
	foreign := filepath.Join(filepath.Dir(files[0]), fileName(day0.UnixNano(), day0.UnixNano()+1, "foreign"))
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Float32}}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	bld.Field(0).(*array.Float32Builder).Append(1)
	rec := bld.NewRecord()
	if err := writeFile(foreign, rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()

	// A strict read fails and moves nothing.
	strict, _ := OpenParquet(ParquetOptions{Dir: dir, Strict: true}, nil, nil)
	if _, err := strict.CountTicks(ctx, Query{}); !errors.Is(err, errCorruptFile) {
		t.Fatalf("strict read: %v, want a corrupt-file error", err)
	}
	// A read-only store skips and reports, leaving the files.
	ro, _ := OpenParquet(ParquetOptions{Dir: dir, ReadOnly: true}, nil, nil)
	n, err := ro.CountTicks(ctx, Query{})
	if err != nil {
		t.Fatal(err)
	}
	// The random bytes may hit only a page the reader does not need, so the
	// first file may still read whole; the other two never do.
	q := ro.Quarantined()
	if len(q) < 2 || len(q) > 3 || n != 60-int64(10*(len(q)-1)) {
		t.Fatalf("read-only: %d ticks, quarantined %+v", n, q)
	}
	for _, f := range q {
		if f.Moved != "" {
			t.Fatalf("read-only store moved %s", f.Path)
		}
		if _, err := os.Stat(f.Path); err != nil {
			t.Fatalf("read-only store lost %s", f.Path)
		}
	}
	// The daemon's store moves them aside and goes on, also compacting.
	if got, err := p.CountTicks(ctx, Query{}); err != nil || got != n {
		t.Fatalf("read: %d (%v), want %d", got, err, n)
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "_quarantine", "ticks", "*.parquet"))
	reasons, _ := filepath.Glob(filepath.Join(dir, "_quarantine", "ticks", "*.reason"))
	if len(moved) != len(q) || len(reasons) != len(q) {
		t.Fatalf("quarantine holds %v and %v, want %d each", moved, reasons, len(q))
	}
	if v := testutil.ToFloat64(p.m.quarantined.WithLabelValues("ticks")); int(v) != len(q) {
		t.Fatalf("quarantined counted %v, want %d", v, len(q))
	}
	r, _ := os.ReadFile(reasons[0])
	if !strings.Contains(string(r), "corrupt data file") {
		t.Fatalf("reason file says %q", r)
	}
	// Compaction of the day merges what is readable.
	p.compactAt = 2
	if err := p.InsertTicks(ctx, faultTicks(1, day0.Add(time.Hour), 1)); err != nil {
		t.Fatal(err)
	}
	if left := dataFiles(t, dir); len(left) != 1 {
		t.Fatalf("after compaction %d files: %v", len(left), left)
	}
	if got, err := p.CountTicks(ctx, Query{}); err != nil || got != n+1 {
		t.Fatalf("after compaction: %d (%v), want %d", got, err, n+1)
	}
}
