package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/pipeline"
)

// cmdDecode prints the normalized ticks of capture files as NDJSON.
func cmdDecode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	venue := fs.String("venue", "", "venue of the files (binance, binance-usdm, kraken, ...); default: detected from cryptofeed file names (BINANCE.ws.1.0, ...) or, for Binance, from the file's name or connection line")
	bookSync := fs.Bool("book-sync", true, "keep books in sync as live ingest does (deltas withheld until a snapshot, gap ticks on sequence breaks); false prints each Binance frame's ticks as parsed")
	fallback := fs.Bool("fallback", false, "parse with the portable JSON path even where simdjson-go is supported")
	limit := fs.Int("limit", 0, "stop after this many ticks (0 = all)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: signald decode [--venue V] [flags] FILE...\n\nFILEs are captures in cryptofeed (<epoch s>: <frame>, URL -> <ts>: <body>) or hftbacktest (<ns> <frame>) format, plain or gzip.\nOne JSON object per tick; kind and side as strings, times as ns since the epoch.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no capture files given (signald decode -h)")
	}
	if *limit < 0 {
		return fmt.Errorf("--limit %d: must be >= 0", *limit)
	}
	for _, p := range fs.Args() {
		if err := checkCapture("", p); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	r, err := ingest.NewReplayer(ingest.ReplayConfig{
		Paths: fs.Args(), Venue: *venue, BookSync: *bookSync, ForceFallback: *fallback, Limit: *limit,
	}, log, ingest.NewMetrics(reg))
	if err != nil {
		return replayHint(err, "--venue", "")
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	var line []byte
	n := 0
	err = r.Run(ctx, func(ticks []market.Tick) error {
		n += len(ticks)
		for i := range ticks {
			t := ticks[i]
			// Live, IngestTS is the receive time; replay stamps the
			// wall clock, which would make the output differ per run.
			t.IngestTS = t.RecvTS
			line = pipeline.AppendTickJSON(line[:0], &t)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	frames, malformed := counterSum(reg, "signald_ingest_frames_total"), counterSum(reg, "signald_ingest_malformed_frames_total")
	venueOf := "the venue detected from the file names"
	if *venue != "" {
		venueOf = "--venue " + *venue
	}
	if err == nil && n == 0 {
		return fmt.Errorf("no ticks decoded: %.0f of %.0f frames did not parse as %s (the first are shown above): give the files' venue with --venue (`signald venues` lists them)", malformed, frames, venueOf)
	}
	if malformed > 0 {
		fmt.Fprintf(stderr, "decode: %d ticks; %.0f of %.0f frames skipped as malformed for %s\n", n, malformed, frames, venueOf)
	}
	return err
}

// counterSum is the total of a counter family in reg, over its labels.
func counterSum(reg prometheus.Gatherer, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// replayHint completes a replay error that asks for the files' market or
// venue with the flags of the command at hand.
func replayHint(err error, venueFlag, marketFlag string) error {
	if !errors.Is(err, ingest.ErrMarketUnknown) {
		return err
	}
	if marketFlag == "" {
		return fmt.Errorf("%w: give %s binance or %s binance-usdm", err, venueFlag, venueFlag)
	}
	return fmt.Errorf("%w: give %s spot or usdm, or name the venue with %s", err, marketFlag, venueFlag)
}
