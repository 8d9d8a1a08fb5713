package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signald-dev/signald/ingest"
)

// cmdCapture records a venue's raw frames, with their receive time, to
// gzip files that replay and decode read back.
//
// Line format: hftbacktest's "<receive ns> <frame>"; binary frames, and
// text frames holding a line break, are written as Python bytes literals
// (b'...', as cryptofeed does); REST snapshots as cryptofeed's
// "<url> -> <epoch s.ns>: <body>", so the snapshot keeps its symbol.
func cmdCapture(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald capture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	venue := fs.String("venue", "", "venue to record (required): "+strings.Join(ingest.FeedVenues(), ", "))
	symbols := fs.String("symbols", "", "comma-separated venue symbols (required), e.g. BTCUSDT,ETHUSDT")
	channels := fs.String("channels", "trades,quotes,book", "comma-separated channels: trades, quotes, book, funding, liquidations")
	out := fs.String("out", "", "output `file` (required); with --rotate, files are named <out without .gz>-<UTC start>.gz")
	rotate := fs.Duration("rotate", 0, "start a new file this often (0: one file)")
	endpoint := fs.String("endpoint", "", "websocket endpoint override (tests, proxies)")
	restEndpoint := fs.String("rest-endpoint", "", "REST endpoint override for snapshots")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var errs []error
	if *venue == "" {
		errs = append(errs, errors.New("--venue is required"))
	}
	if *out == "" {
		errs = append(errs, errors.New("--out is required"))
	}
	if *rotate < 0 || (*rotate > 0 && *rotate < time.Second) {
		errs = append(errs, fmt.Errorf("--rotate %v: 0 or at least 1s", *rotate))
	}
	subs, err := subscriptions(splitList(*symbols), splitList(*channels))
	if err != nil {
		errs = append(errs, err)
	}
	level, lerr := parseLevel(*logLevel)
	errs = append(errs, lerr)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	w := &captureWriter{base: *out, rotate: *rotate}
	in, err := ingest.NewIngestor(ingest.IngestorConfig{
		Venue: *venue, Subscriptions: subs,
		Feed:       ingest.FeedConfig{Endpoint: *endpoint, RESTEndpoint: *restEndpoint},
		OnFrame:    w.frame,
		OnSnapshot: w.snapshot,
	}, log, nil)
	if err != nil {
		return err
	}
	if err := w.open(time.Now()); err != nil {
		return err
	}
	// The ticks are not needed; they are decoded only to drive the feed's
	// book sync (snapshot requests).
	go func() {
		for range in.C() {
		}
	}()
	flushCtx, stopFlush := context.WithCancel(ctx)
	defer stopFlush()
	go w.flushLoop(flushCtx, log)
	log.Info("capturing", "venue", *venue, "subscriptions", len(subs), "out", w.name)
	err = in.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil // Ctrl-C: the normal end
	}
	stopFlush()
	if cerr := w.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	log.Info("capture done", "frames", w.frames, "snapshots", w.snapshots, "files", w.files)
	return err
}

// subscriptions is every channel of every symbol.
func subscriptions(symbols, channels []string) ([]ingest.Subscription, error) {
	if len(symbols) == 0 {
		return nil, errors.New("--symbols: give at least one venue symbol")
	}
	if len(channels) == 0 {
		return nil, errors.New("--channels: give at least one channel")
	}
	var out []ingest.Subscription
	for _, c := range channels {
		switch ch := ingest.Channel(c); ch {
		case ingest.ChanTrades, ingest.ChanQuotes, ingest.ChanBook, ingest.ChanFunding, ingest.ChanLiquidations:
			for _, s := range symbols {
				out = append(out, ingest.Subscription{Channel: ch, Symbol: s})
			}
		default:
			return nil, fmt.Errorf("channel %q: want trades, quotes, book, funding or liquidations", c)
		}
	}
	return out, nil
}

// captureWriter writes capture lines to a gzip file, rotating it. The
// Ingestor calls frame and snapshot under a connection's lock; mu orders
// lines of several connections.
type captureWriter struct {
	base   string
	rotate time.Duration

	mu                       sync.Mutex
	name                     string
	f                        *os.File
	zw                       *gzip.Writer
	bw                       *bufio.Writer
	opened                   time.Time
	frames, snapshots, files int
	line                     []byte
	err                      error
}

func (w *captureWriter) fileName(t time.Time) string {
	if w.rotate == 0 {
		return w.base
	}
	b := strings.TrimSuffix(w.base, ".gz")
	return b + "-" + t.UTC().Format("20060102T150405Z") + ".gz"
}

func (w *captureWriter) open(t time.Time) error {
	name := w.fileName(t)
	if dir := filepath.Dir(name); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("capture: %w", err)
		}
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	for n := 1; err != nil && errors.Is(err, os.ErrExist) && w.rotate > 0 && n < 100; n++ {
		// Rotated twice within a second: number the next file.
		name = strings.TrimSuffix(w.fileName(t), ".gz") + "-" + strconv.Itoa(n) + ".gz"
		f, err = os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	}
	if err != nil {
		return fmt.Errorf("capture: %w (choose another --out; an existing capture is never overwritten)", err)
	}
	w.f, w.name, w.opened = f, name, t
	w.zw = gzip.NewWriter(f)
	w.bw = bufio.NewWriterSize(w.zw, 1<<16)
	w.files++
	return nil
}

// closeFile flushes and syncs the current file: a complete gzip stream.
func (w *captureWriter) closeFile() error {
	if w.f == nil {
		return nil
	}
	err := w.bw.Flush()
	if cerr := w.zw.Close(); err == nil {
		err = cerr
	}
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

func (w *captureWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.closeFile(); err != nil {
		return fmt.Errorf("capture %s: %w", w.name, err)
	}
	return w.err
}

// write appends one line, rotating first when due. Errors are kept and
// returned at the end (the Ingestor's callbacks cannot fail).
func (w *captureWriter) write(line []byte) {
	if w.err != nil || w.f == nil {
		return
	}
	if now := time.Now(); w.rotate > 0 && now.Sub(w.opened) >= w.rotate {
		if err := w.closeFile(); err != nil {
			w.err = err
			return
		}
		if err := w.open(now); err != nil {
			w.err = err
			return
		}
	}
	if _, err := w.bw.Write(line); err != nil {
		w.err = err
	}
}

func (w *captureWriter) frame(recvNS int64, frame []byte, binary bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = strconv.AppendInt(w.line[:0], recvNS, 10)
	w.line = append(w.line, ' ')
	if binary || bytes.ContainsAny(frame, "\r\n") {
		w.line = appendPyBytes(w.line, frame)
	} else {
		w.line = append(w.line, frame...)
	}
	w.line = append(w.line, '\n')
	w.frames++
	w.write(w.line)
}

func (w *captureWriter) snapshot(recvNS int64, req ingest.SnapshotRequest, body []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.line = append(w.line[:0], req.URL...)
	w.line = append(w.line, " -> "...)
	w.line = strconv.AppendInt(w.line, recvNS/1e9, 10)
	w.line = append(w.line, '.')
	w.line = append(w.line, fmt.Sprintf("%09d", recvNS%1e9)...)
	w.line = append(w.line, ": "...)
	w.line = append(w.line, body...)
	w.line = append(w.line, '\n')
	w.snapshots++
	w.write(w.line)
}

// flushLoop flushes the gzip stream every second, so a crash loses at
// most a second of frames (a SIGKILLed capture still decompresses up to
// the last flush).
func (w *captureWriter) flushLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.mu.Lock()
			if w.f != nil && w.err == nil {
				if err := w.bw.Flush(); err != nil {
					w.err = err
				} else if err := w.zw.Flush(); err != nil {
					w.err = err
				}
				if w.err != nil {
					log.Error("capture: write failed", "file", w.name, "err", w.err)
				}
			}
			w.mu.Unlock()
		}
	}
}

// appendPyBytes writes b as a Python bytes literal b'...'.
func appendPyBytes(dst, b []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, 'b', '\'')
	for _, c := range b {
		switch {
		case c == '\\' || c == '\'':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		default:
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
		}
	}
	return append(dst, '\'')
}
