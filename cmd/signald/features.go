package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/pipeline"
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
		return usageError{}
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
	return usageErrorf("unknown subcommand %q: want list or compute", args[0])
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
	venue, market   string // of a capture file, when its name does not tell
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
	fs.StringVar(&o.venue, "venue", "", "venue of a capture --in (binance, kraken, ...; `signald venues` lists them); default: from a cryptofeed file name, else Binance")
	fs.StringVar(&o.market, "market", "", "Binance market of a capture --in: spot or usdm; default: from the file's name or connection line")
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
	switch o.format {
	case "arrow", "parquet", "csv":
	default:
		return fmt.Errorf("--format %q: want arrow, parquet or csv", o.format)
	}
	switch o.market {
	case "", ingest.MarketSpot, ingest.MarketUSDM:
	default:
		return fmt.Errorf("--market %q: want spot or usdm", o.market)
	}
	if _, ok := ingest.LookupVenue(o.venue); o.venue != "" && !ok {
		return fmt.Errorf("--venue %q: not a venue signald knows; `signald venues` lists them", o.venue)
	}
	st, err := os.Stat(o.in)
	if err != nil {
		return fmt.Errorf("--in: %w", err)
	}
	if (o.venue != "" || o.market != "") && !st.Mode().IsRegular() {
		return fmt.Errorf("--in %s: --venue and --market apply to a capture file, not a directory", o.in)
	}
	if st.Mode().IsRegular() && !isParquetFile(o.in) {
		if err := checkCapture("--in", o.in); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ticks, rows, err := computeFeatures(ctx, o, log)
	if err != nil {
		return replayHint(err, "--venue", "--market")
	}
	fmt.Fprintf(stderr, "features: %d ticks, %d rows written to %s (%s)\n", ticks, rows, o.out, o.format)
	return nil
}

// computeFeatures runs the ticks of o.in through a fresh engine and writes
// every record to o.out. It returns the ticks read and the rows written.
// On any failure, or when no tick was read, it removes the file it created:
// an empty or partial file would look like a valid result.
func computeFeatures(ctx context.Context, o computeOpts, log *slog.Logger) (n, rows int, err error) {
	sp, err := pipeline.NewStepper(pipeline.StepperConfig{Features: features.Config{Step: o.step, AllowedLateness: o.lateness, Windows: o.windows}}, log, nil)
	if err != nil {
		return 0, 0, err
	}
	if o.venue != "" || o.market != "" {
		// Validate the capture's venue before creating the output.
		if _, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: []string{o.in}, Venue: o.venue, Market: o.market}, log, nil); err != nil {
			return 0, 0, err
		}
	}
	f, err := os.Create(o.out)
	if err != nil {
		return 0, 0, fmt.Errorf("--out: %w", err)
	}
	defer f.Close()
	defer func() {
		if err == nil && n == 0 {
			err = fmt.Errorf("--in %s: no ticks read: check that it is a capture file, a Parquet tick file or a store directory with data (and --venue for a capture of another venue)", o.in)
		}
		if err != nil {
			f.Close()
			if rerr := os.Remove(o.out); rerr != nil {
				err = errors.Join(err, fmt.Errorf("--out: removing the partial file: %w", rerr))
			}
		}
	}()
	sink, err := pipeline.NewRecordWriter(o.format, f, sp.Engine().Schema())
	if err != nil {
		return 0, 0, err
	}
	emit := func(rec arrow.Record) error {
		rows += int(rec.NumRows())
		return sink.Write(rec)
	}
	n, err = sp.FeedAll(ctx, func(fn func([]market.Tick) error) error { return readComputeTicks(ctx, o, log, fn) }, o.flush, emit, nil)
	if cerr := sink.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil && cerr != nil && !errors.Is(cerr, os.ErrClosed) { // the Parquet writer closes it
		err = fmt.Errorf("--out: %w", cerr)
	}
	return n, rows, err
}

// readComputeTicks reads o.in; a capture with --venue or --market goes
// through a replayer of that venue.
func readComputeTicks(ctx context.Context, o computeOpts, log *slog.Logger, fn func([]market.Tick) error) error {
	if o.venue == "" && o.market == "" {
		return pipeline.ReadTicks(ctx, o.in, log, fn)
	}
	r, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: []string{o.in}, Venue: o.venue, Market: o.market}, log, nil)
	if err != nil {
		return err
	}
	return r.Run(ctx, fn)
}

// isParquetFile reports whether path starts with Parquet's magic.
func isParquetFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	return err == nil && string(magic) == "PAR1"
}
