package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
)

func TestFeaturesList(t *testing.T) {
	var out, errb bytes.Buffer
	if code := realMain([]string{"features", "list", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var doc struct {
		SchemaVersion string                `json:"schema_version"`
		Features      []features.FeatureDoc `json:"features"`
		Market        []features.FeatureDoc `json:"market"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion != features.SchemaVersion || len(doc.Features) < 1400 || len(doc.Market) == 0 {
		t.Fatalf("version %q, %d features, %d market aggregates", doc.SchemaVersion, len(doc.Features), len(doc.Market))
	}
	out.Reset()
	if code := realMain([]string{"features", "list"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != len(doc.Features)+2 {
		t.Errorf("text list: %d lines for %d features", lines, len(doc.Features))
	}
	if !strings.Contains(out.String(), "mid_ret_std_60 ") {
		t.Error("text list lacks mid_ret_std_60")
	}
	if code := realMain([]string{"features", "nope"}, &out, &errb); code == 0 {
		t.Error("unknown subcommand accepted")
	}
}

// TestFeaturesCompute computes the features of a bundled capture into each
// format and checks the files against the records of an engine run in
// process over the same ticks.
func TestFeaturesCompute(t *testing.T) {
	in := filepath.Join("..", "..", "testdata", "binance", "binance_usdm_btcusdt_20240808_head1500.gz")
	var want []map[string]float64
	eng, err := features.NewEngine(features.Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	collect := func(rec arrow.Record) error {
		for i := range int(rec.NumRows()) {
			row := map[string]float64{}
			for j := 3; j < int(rec.NumCols()); j++ {
				row[rec.ColumnName(j)] = rec.Column(j).(*array.Float64).Value(i)
			}
			want = append(want, row)
		}
		return nil
	}
	err = pipeline.ReadTicks(context.Background(), in, nil, func(ticks []market.Tick) error {
		for i := range ticks {
			if err := eng.Apply(&ticks[i], collect); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = eng.Flush(collect)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 5 {
		t.Fatalf("only %d rows from the capture", len(want))
	}
	dir := t.TempDir()
	for _, ext := range []string{"arrow", "parquet", "csv"} {
		out := filepath.Join(dir, "f."+ext)
		var stderr bytes.Buffer
		if code := realMain([]string{"features", "compute", "--in", in, "--out", out}, &stderr, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", ext, code, stderr.String())
		}
		var got []map[string]float64
		read := func(rec arrow.Record) {
			for i := range int(rec.NumRows()) {
				row := map[string]float64{}
				for j := 3; j < int(rec.NumCols()); j++ {
					row[rec.ColumnName(j)] = rec.Column(j).(*array.Float64).Value(i)
				}
				got = append(got, row)
			}
		}
		switch ext {
		case "arrow":
			// The engine's feature columns are one buffer at per-column
			// offsets: the writer must write each column's own values, not
			// the whole buffer per column (8 rows: ~1.7 MB, nearly all the
			// 1,480 fields' metadata; the whole buffer per column would be
			// over 100 MB).
			st, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > 8<<20 {
				t.Fatalf("arrow file of %d bytes for %d rows", st.Size(), len(want))
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ipc.NewFileReader(f)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := r.Schema().Metadata().GetValue(features.SchemaVersionKey); v != features.SchemaVersion {
				t.Errorf("arrow file schema version %q", v)
			}
			for i := range r.NumRecords() {
				rec, err := r.Record(i)
				if err != nil {
					t.Fatal(err)
				}
				read(rec)
			}
			r.Close()
			f.Close()
		case "parquet":
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := pqarrow.ReadTable(context.Background(), f, parquet.NewReaderProperties(memory.DefaultAllocator), pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			tr := array.NewTableReader(tbl, 1<<20)
			for tr.Next() {
				read(tr.Record())
			}
			tr.Release()
			tbl.Release()
			f.Close()
		case "csv":
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			header := strings.Split(lines[0], ",")
			if len(header) != 3+len(want[0]) || header[3] != "mid" {
				t.Fatalf("csv header: %d columns, first %q", len(header), header[:4])
			}
			if len(lines)-1 != len(want) {
				t.Fatalf("csv: %d rows, want %d", len(lines)-1, len(want))
			}
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows, want %d", ext, len(got), len(want))
		}
		for i := range want {
			for name, w := range want[i] {
				g := got[i][name]
				if math.Float64bits(g) != math.Float64bits(w) && !(math.IsNaN(g) && math.IsNaN(w)) {
					t.Fatalf("%s row %d %s: %v, want %v", ext, i, name, g, w)
				}
			}
		}
	}
	// The same ticks from a Parquet store directory and from one of its
	// tick files.
	st, err := store.OpenParquet(store.ParquetOptions{Dir: filepath.Join(dir, "store")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var all []market.Tick
	if err := pipeline.ReadTicks(context.Background(), in, nil, func(ticks []market.Tick) error {
		all = append(all, ticks...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertTicks(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "store", "ticks", "*", "*.parquet"))
	if len(files) != 1 {
		t.Fatalf("store files %v", files)
	}
	for _, src := range []string{filepath.Join(dir, "store"), files[0]} {
		out := filepath.Join(dir, "g.csv")
		var stderr bytes.Buffer
		if code := realMain([]string{"features", "compute", "--in", src, "--out", out}, &stderr, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", src, code, stderr.String())
		}
		b, _ := os.ReadFile(out)
		if rows := strings.Count(string(b), "\n") - 1; rows != len(want) {
			t.Errorf("%s: %d rows, want %d", src, rows, len(want))
		}
	}

	var stderr bytes.Buffer
	if code := realMain([]string{"features", "compute", "--in", in, "--out", filepath.Join(dir, "f.xyz")}, &stderr, &stderr); code == 0 ||
		!strings.Contains(stderr.String(), "--format") {
		t.Errorf("unknown extension: exit %d, %s", code, stderr.String())
	}
}
