package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/regime"
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
	from := fs.String("from", "", "start of the range (RFC 3339 or ns since the epoch), inclusive; default: the beginning")
	to := fs.String("to", "", "end of the range, exclusive; default: the end")
	instruments := fs.String("instruments", "", "comma-separated normalized instruments (default: all)")
	chAddr := fs.String("clickhouse", envOr("CLICKHOUSE_ADDR", ""), "ClickHouse `host:port` to read from (env SIGNALD_CLICKHOUSE_ADDR); empty reads the Parquet store under --data")
	chDB := fs.String("clickhouse-db", envOr("CLICKHOUSE_DB", "signald"), "ClickHouse database")
	dataDir := fs.String("data", envOr("DATA_DIR", "./data"), "directory of the embedded Parquet store")
	step := fs.Duration("step", time.Second, "feature step (use the run's)")
	flush := fs.Bool("flush", false, "close the steps still open at the end of the range")
	model := fs.String("regime-model", "", "regime model file (use the run's; default: the built-in model)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var q store.Query
	var err error
	if q.From, err = parseTime(*from); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if q.To, err = parseTime(*to); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		return fmt.Errorf("--from %s is not before --to %s", q.From, q.To)
	}
	q.Instruments = splitList(*instruments)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var st store.Store
	if *chAddr != "" {
		st, err = store.OpenClickHouse(ctx, store.ClickHouseOptions{Addr: *chAddr, Database: *chDB}, log, nil)
	} else {
		st, err = store.OpenParquet(store.ParquetOptions{Dir: *dataDir}, log, nil)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	sigs, n, err := backtest(ctx, st, q, *step, *flush, *model, log)
	if err != nil {
		return err
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

// backtest runs stored ticks through a fresh engine and detector.
func backtest(ctx context.Context, st store.Store, q store.Query, step time.Duration, flush bool, model string, log *slog.Logger) ([]regime.Signal, int, error) {
	eng, err := features.NewEngine(features.Config{Step: step}, log, nil)
	if err != nil {
		return nil, 0, err
	}
	det, err := newDetectors(eng, model, log, nil)
	if err != nil {
		return nil, 0, err
	}
	var sigs []regime.Signal
	onStep := func(rec arrow.Record) error {
		return det.Step(rec, func(s regime.Signal) error {
			sigs = append(sigs, s)
			return nil
		})
	}
	n := 0
	err = st.ReadTicks(ctx, q, func(ticks []ingest.Tick) error {
		for i := range ticks {
			if err := eng.Apply(&ticks[i], onStep); err != nil {
				return err
			}
		}
		n += len(ticks)
		return ctx.Err()
	})
	if err != nil {
		return nil, n, err
	}
	if flush {
		if err := eng.Flush(onStep); err != nil {
			return nil, n, err
		}
	}
	return sigs, n, nil
}
