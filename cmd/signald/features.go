package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/csv"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
)

const featuresUsage = `Usage:
  signald features list [--json]
      print the feature catalogue (name, unit, window, warm-up, definition)
  signald features compute --in TICKS --out FILE [flags]
      compute the catalogue offline from a capture, a Parquet tick file or a
      Parquet store directory, into Arrow IPC, Parquet or CSV
`

func cmdFeatures(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, featuresUsage)
		return errors.New("missing subcommand: list or compute")
	}
	switch args[0] {
	case "list":
		return cmdFeaturesList(args[1:], stdout, stderr)
	case "compute":
		return cmdFeaturesCompute(ctx, args[1:], stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, featuresUsage)
		return nil
	}
	fmt.Fprint(stderr, featuresUsage)
	return fmt.Errorf("unknown subcommand %q: want list or compute", args[0])
}

func cmdFeaturesList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald features list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON: {schema_version, features: [...], market: [...]}")
	asMD := fs.Bool("markdown", false, "print the Markdown catalogue (features/CATALOG.md, `make catalog`)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *asMD {
		_, err := io.WriteString(stdout, features.CatalogMarkdown())
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"schema_version": features.SchemaVersion,
			"features":       features.Catalog(),
			"market":         features.MarketCatalog(),
		})
	}
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "# %d features, schema version %s\n", len(features.Catalog()), features.SchemaVersion)
	fmt.Fprintf(w, "%-32s %-7s %6s %7s  %-22s %s\n", "name", "kind", "window", "warm_up", "unit", "description")
	for _, f := range features.Catalog() {
		fmt.Fprintf(w, "%-32s %-7s %6d %7d  %-22s %s\n", f.Name, f.Kind, f.Window, f.WarmUp, f.Unit, f.Description)
	}
	return w.Flush()
}

type computeOpts struct {
	in, out, format string
	step, lateness  time.Duration
	windows         []int
	flush           bool
}

func cmdFeaturesCompute(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald features compute", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o computeOpts
	fs.StringVar(&o.in, "in", "", "ticks: a capture file (cryptofeed or hftbacktest, plain or gzip), a Parquet tick `file` of the store's schema, or a Parquet store directory")
	fs.StringVar(&o.out, "out", "", "output `file`")
	fs.StringVar(&o.format, "format", "", "arrow (IPC file), parquet or csv; default from --out's extension (.arrow/.ipc/.feather, .parquet, .csv)")
	fs.DurationVar(&o.step, "step", features.DefaultStep, "feature step")
	fs.DurationVar(&o.lateness, "lateness", features.DefaultAllowedLateness, "allowed lateness")
	windows := fs.String("windows", "", "comma-separated windows in steps (default 5,15,60,300,900)")
	fs.BoolVar(&o.flush, "flush", true, "close the steps still open at the end of the input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.in == "" || o.out == "" {
		return errors.New("--in and --out are required")
	}
	for _, s := range splitList(*windows) {
		w, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("--windows: %q is not a number of steps", s)
		}
		o.windows = append(o.windows, w)
	}
	if o.format == "" {
		switch strings.ToLower(filepath.Ext(o.out)) {
		case ".arrow", ".ipc", ".feather":
			o.format = "arrow"
		case ".parquet":
			o.format = "parquet"
		case ".csv":
			o.format = "csv"
		default:
			return fmt.Errorf("--out %s: cannot tell the format from the extension: pass --format arrow, parquet or csv", o.out)
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ticks, rows, err := computeFeatures(ctx, o, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "features: %d ticks, %d rows written to %s (%s)\n", ticks, rows, o.out, o.format)
	return nil
}

// computeFeatures runs the ticks of o.in through a fresh engine and writes
// every record to o.out. It returns the ticks read and the rows written.
func computeFeatures(ctx context.Context, o computeOpts, log *slog.Logger) (int, int, error) {
	sp, err := pipeline.NewStepper(pipeline.StepperConfig{Features: features.Config{Step: o.step, AllowedLateness: o.lateness, Windows: o.windows}}, log, nil)
	if err != nil {
		return 0, 0, err
	}
	f, err := os.Create(o.out)
	if err != nil {
		return 0, 0, fmt.Errorf("--out: %w", err)
	}
	defer f.Close()
	sink, err := newRecordSink(o.format, f, sp.Engine().Schema())
	if err != nil {
		return 0, 0, err
	}
	rows := 0
	emit := func(rec arrow.Record) error {
		rows += int(rec.NumRows())
		return sink.write(rec)
	}
	n, err := feed(ctx, func(fn func([]market.Tick) error) error { return readTicks(ctx, o.in, log, fn) }, sp, o.flush, emit, nil)
	if cerr := sink.close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil && cerr != nil && !errors.Is(cerr, os.ErrClosed) { // the Parquet writer closes it
		err = fmt.Errorf("--out: %w", cerr)
	}
	return n, rows, err
}

// readTicks reads a Parquet store directory, a Parquet tick file or a
// capture, in receive-time order.
func readTicks(ctx context.Context, in string, log *slog.Logger, fn func([]market.Tick) error) error {
	st, err := os.Stat(in)
	if err != nil {
		return fmt.Errorf("--in: %w", err)
	}
	if st.IsDir() {
		p, err := store.OpenParquet(store.ParquetOptions{Dir: in}, log, nil)
		if err != nil {
			return err
		}
		defer p.Close()
		return p.ReadTicks(ctx, store.Query{}, fn)
	}
	magic := make([]byte, 4)
	if fh, err := os.Open(in); err == nil {
		_, _ = io.ReadFull(fh, magic)
		fh.Close()
	}
	if bytes.Equal(magic, []byte("PAR1")) {
		ticks, err := readParquetTicks(ctx, in)
		if err != nil {
			return err
		}
		return fn(ticks)
	}
	r, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: []string{in}}, log, nil)
	if err != nil {
		return err
	}
	return r.Run(ctx, fn)
}

// readParquetTicks reads a Parquet file in the store's tick schema (columns
// found by name) and sorts the ticks by receive time.
func readParquetTicks(ctx context.Context, path string) ([]market.Tick, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mem := memory.DefaultAllocator
	tbl, err := pqarrow.ReadTable(ctx, f, parquet.NewReaderProperties(mem), pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, mem)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 64<<10)
	defer tr.Release()
	var out []market.Tick
	for tr.Next() {
		rec := tr.Record()
		col := func(name string) (arrow.Array, error) {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) == 0 {
				return nil, fmt.Errorf("%s: no column %q: not a tick file of the store's schema", path, name)
			}
			return rec.Column(idx[0]), nil
		}
		var cs [10]arrow.Array
		for i, name := range []string{"venue", "instrument", "kind", "side", "recv_ts", "price", "size", "bid_px", "bid_sz", "ask_px"} {
			if cs[i], err = col(name); err != nil {
				return nil, err
			}
		}
		askSz, err := col("ask_sz")
		if err != nil {
			return nil, err
		}
		id, _ := col("id")
		exch, _ := col("exch_ts")
		for i := range int(rec.NumRows()) {
			t := market.Tick{
				Venue:      cs[0].(*array.String).Value(i),
				Instrument: cs[1].(*array.String).Value(i),
				Kind:       market.Kind(cs[2].(*array.Uint8).Value(i)),
				Side:       market.Side(cs[3].(*array.Int8).Value(i)),
				RecvTS:     cs[4].(*array.Int64).Value(i),
				Price:      cs[5].(*array.Float64).Value(i),
				Size:       cs[6].(*array.Float64).Value(i),
				BidPx:      cs[7].(*array.Float64).Value(i),
				BidSz:      cs[8].(*array.Float64).Value(i),
				AskPx:      cs[9].(*array.Float64).Value(i),
				AskSz:      askSz.(*array.Float64).Value(i),
			}
			if a, ok := id.(*array.Uint64); ok {
				t.ID = a.Value(i)
			}
			if a, ok := exch.(*array.Int64); ok {
				t.ExchTS = a.Value(i)
			}
			out = append(out, t)
		}
	}
	if err := tr.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	slices.SortStableFunc(out, func(a, b market.Tick) int { return cmp.Compare(a.RecvTS, b.RecvTS) })
	return out, nil
}

// recordSink writes feature records to one file.
type recordSink struct {
	write func(arrow.Record) error
	close func() error
}

func newRecordSink(format string, w io.WriteSeeker, schema *arrow.Schema) (*recordSink, error) {
	switch format {
	case "arrow":
		fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema))
		if err != nil {
			return nil, err
		}
		return &recordSink{write: fw.Write, close: fw.Close}, nil
	case "parquet":
		// ~1,500 columns: one row group per step would cost a column chunk
		// (and a codec) per column and step, so rows are buffered into row
		// groups of 64k rows; Snappy, because a zstd encoder per column chunk
		// is slow to set up.
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithMaxRowGroupLength(64<<10), parquet.WithDictionaryDefault(false))
		pw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		if err != nil {
			return nil, err
		}
		return &recordSink{write: pw.WriteBuffered, close: pw.Close}, nil
	case "csv":
		cw := csv.NewWriter(w, schema, csv.WithHeader(true))
		return &recordSink{write: cw.Write, close: cw.Flush}, nil
	}
	return nil, fmt.Errorf("--format %q: want arrow, parquet or csv", format)
}
