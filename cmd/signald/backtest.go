package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/signald-dev/signald/api"
	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/internal/dsn"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
)

// cmdBacktest reads stored ticks back in receive-time order through the same
// feature engine and detector as `run` and prints the signals as NDJSON.
//
// Like the live run, it closes a step only once a later tick shows that the
// step's allowed lateness has passed; steps still open at the end of the
// range are not forced closed (pass --flush to close them), so a backtest over
// what a run stored reproduces exactly the signals that run emitted.
func cmdBacktest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addStoreSourceFlags(fs, "range")
	step := fs.Duration("step", time.Second, "feature step (use the run's)")
	flush := fs.Bool("flush", false, "close the steps still open at the end of the range")
	model := fs.String("regime-model", "", "regime model file (use the run's; default: the built-in model)")
	fs.BoolVar(&src.strict, "strict", false, "fail at an unreadable Parquet file instead of skipping and reporting it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	q, err := src.query()
	if err != nil {
		return err
	}
	if *step < time.Millisecond {
		return fmt.Errorf("--step %v: must be at least 1ms (use the run's step)", *step)
	}
	if err := src.checkDataDir(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := src.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()

	m, err := loadModel(*model)
	if err != nil {
		return err
	}
	sigs, n, err := pipeline.Backtest(ctx, st, q, pipeline.StepperConfig{Features: features.Config{Step: *step}, Detect: true, Model: m}, *flush, log)
	src.reportSkipped(stderr, "backtest")
	if err != nil {
		return err
	}
	if n == 0 && (src.parquet == nil || len(src.parquet.Quarantined()) == 0) {
		// (Skipped files already say why ticks are missing.)
		return src.noTicks()
	}
	enc := json.NewEncoder(stdout)
	for _, s := range sigs {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "backtest: %d ticks, %d signals\n", n, len(sigs))
	return nil
}

// storeSource is the stored-ticks source of the offline commands (backtest,
// regime fit): a range, instruments, and the store to read.
type storeSource struct {
	from, to, instruments *string
	chAddr, chDB, dataDir *string
	chSec                 secretFlags
	strict                bool
	parquet               *store.Parquet // once opened, for the files it skipped
}

// addStoreSourceFlags registers --from, --to, --instruments, --clickhouse,
// --clickhouse-db and --data; what is the range's purpose goes in the help.
func addStoreSourceFlags(fs *flag.FlagSet, what string) *storeSource {
	s := &storeSource{
		from:        fs.String("from", "", "start of the "+what+" (RFC 3339 or ns since the epoch), inclusive; default: the beginning"),
		to:          fs.String("to", "", "end of the "+what+", exclusive; default: the end"),
		instruments: fs.String("instruments", "", "comma-separated normalized instruments (default: all)"),
		chAddr:      new(string),
		chDB:        new(string),
		dataDir:     fs.String("data", envOr("DATA_DIR", "./data"), "directory of the embedded Parquet store"),
	}
	addClickHouseFlags(fs, s.chAddr, s.chDB, &s.chSec, "to read from (env SIGNALD_CLICKHOUSE_ADDR); empty reads the Parquet store under --data")
	return s
}

func (s *storeSource) query() (store.Query, error) {
	var q store.Query
	var err error
	if q.From, err = api.ParseTime(*s.from); err != nil {
		return q, fmt.Errorf("--from: %w", err)
	}
	if q.To, err = api.ParseTime(*s.to); err != nil {
		return q, fmt.Errorf("--to: %w", err)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return q, fmt.Errorf("--from %s is not before --to %s", q.From, q.To)
	}
	q.Instruments = splitList(*s.instruments)
	return q, nil
}

// checkDataDir fails when the Parquet store to read does not exist: an
// absent directory would read as an empty store.
func (s *storeSource) checkDataDir() error {
	if *s.chAddr != "" {
		return nil
	}
	st, err := os.Stat(*s.dataDir)
	if err != nil {
		return fmt.Errorf("--data %s: no such directory: give the --data directory of the run that stored the ticks (or --clickhouse)", *s.dataDir)
	}
	if !st.IsDir() {
		return fmt.Errorf("--data %s: not a directory: give the --data directory of the run that stored the ticks", *s.dataDir)
	}
	return nil
}

// noTicks is the error of a read that found no ticks, naming what
// selected them.
func (s *storeSource) noTicks() error {
	what := "the store"
	if *s.from != "" || *s.to != "" {
		what = "the range --from/--to"
	}
	if *s.instruments != "" {
		return fmt.Errorf("no ticks of --instruments %s in %s (%s): check the names (GET /v1/instruments lists what a run stored) and --from/--to", *s.instruments, what, s.describe())
	}
	return fmt.Errorf("no ticks in %s (%s): check --data or --clickhouse, and --from/--to", what, s.describe())
}

// describe names the store, for messages and model metadata.
func (s *storeSource) describe() string {
	if *s.chAddr != "" {
		// The address and database alone: a DSN may hold a password.
		if o, err := clickHouseOptions(*s.chAddr, *s.chDB, secretFlags{}); err == nil {
			return "ClickHouse " + o.Addr + "/" + o.Database
		}
		return "ClickHouse " + dsn.Redact(*s.chAddr) + "/" + *s.chDB
	}
	return "Parquet " + *s.dataDir
}

// open opens the store to read. A Parquet store is opened read-only: an
// unreadable file is skipped and reported (see skipped), not moved, unless
// strict makes it fail the read.
func (s *storeSource) open(ctx context.Context, log *slog.Logger) (store.Store, error) {
	if *s.chAddr != "" {
		o, err := clickHouseOptions(*s.chAddr, *s.chDB, s.chSec)
		if err != nil {
			return nil, err
		}
		warnInsecure(log, "clickhouse", s.chSec.TLS)
		c, err := store.OpenClickHouse(ctx, o, log, nil)
		if err != nil {
			return nil, explainConnectError("ClickHouse", err)
		}
		return c, nil
	}
	p, err := store.OpenParquet(store.ParquetOptions{Dir: *s.dataDir, ReadOnly: true, Strict: s.strict}, log, nil)
	s.parquet = p
	return p, err
}

// reportSkipped tells of the data files the read skipped as unreadable.
func (s *storeSource) reportSkipped(stderr io.Writer, cmd string) {
	if s.parquet == nil {
		return
	}
	q := s.parquet.Quarantined()
	for _, f := range q {
		fmt.Fprintf(stderr, "%s: skipped unreadable file %s: %s\n", cmd, f.Path, f.Reason)
	}
	if len(q) > 0 {
		fmt.Fprintf(stderr, "%s: %d unreadable files skipped; their ticks are not in the result (--strict fails instead)\n", cmd, len(q))
	}
}
