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
	"math"
	"strconv"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
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
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := ingest.NewReplayer(ingest.ReplayConfig{
		Paths: fs.Args(), Venue: *venue, BookSync: *bookSync, ForceFallback: *fallback, Limit: *limit,
	}, log, nil)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(stdout, 1<<16)
	var line []byte
	err = r.Run(ctx, func(ticks []market.Tick) error {
		for i := range ticks {
			t := ticks[i]
			// Live, IngestTS is the receive time; replay stamps the
			// wall clock, which would make the output differ per run.
			t.IngestTS = t.RecvTS
			line = appendTickJSON(line[:0], &t)
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
	return err
}

// appendTickJSON appends t as one JSON object with every field of the
// normalized model.
func appendTickJSON(b []byte, t *market.Tick) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, t.ID, 10)
	b = append(b, `,"venue":`...)
	b = appendJSONString(b, t.Venue)
	b = append(b, `,"instrument":`...)
	b = appendJSONString(b, t.Instrument)
	b = append(b, `,"symbol":`...)
	b = appendJSONString(b, t.Symbol)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, t.Kind.String())
	b = append(b, `,"side":`...)
	b = appendJSONString(b, t.Side.String())
	b = append(b, `,"exch_ts":`...)
	b = strconv.AppendInt(b, t.ExchTS, 10)
	b = append(b, `,"recv_ts":`...)
	b = strconv.AppendInt(b, t.RecvTS, 10)
	for _, f := range []struct {
		name string
		v    float64
	}{{"price", t.Price}, {"size", t.Size}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = appendJSONFloat(b, f.v)
	}
	b = append(b, `,"trade_id":`...)
	b = strconv.AppendUint(b, t.TradeID, 10)
	for _, f := range []struct {
		name string
		v    float64
	}{{"bid_px", t.BidPx}, {"bid_sz", t.BidSz}, {"ask_px", t.AskPx}, {"ask_sz", t.AskSz}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = appendJSONFloat(b, f.v)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, t.Seq, 10)
	b = append(b, `,"ingest_ts":`...)
	b = strconv.AppendInt(b, t.IngestTS, 10)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// appendJSONFloat writes null for the non-finite values JSON cannot hold.
func appendJSONFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
