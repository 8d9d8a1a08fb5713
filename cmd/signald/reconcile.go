package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/signald-dev/signald/internal/ledger"
)

// cmdReconcile compares what ingest published (its ledger) with what the
// store holds, per venue, instrument and minute of receive time, and fails
// when more than --threshold of what was published is missing.
func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := addStoreSourceFlags(fs, "range to reconcile")
	ledgerDir := fs.String("ledger", "", "directory of ingest's ledger (default: <--data>/ledger, where `signald run` writes it)")
	threshold := fs.Float64("threshold", 0.001, "largest missing share of what was published, per venue and instrument, that still passes (0.001 = 0.1%)")
	all := fs.Bool("all", false, "list every minute, not only those that differ")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see signald reconcile -h)", fs.Arg(0))
	}
	if *threshold < 0 || *threshold >= 1 {
		return fmt.Errorf("--threshold %v: want a share in [0, 1), e.g. 0.001", *threshold)
	}
	q, err := src.query()
	if err != nil {
		return err
	}
	dir := *ledgerDir
	if dir == "" {
		dir = filepath.Join(*src.dataDir, "ledger")
	}
	var from, to int64
	if !q.From.IsZero() {
		from = q.From.Unix() - q.From.Unix()%60
	}
	if !q.To.IsZero() {
		to = q.To.Unix()
	}
	published, bad, err := ledger.Read(dir, from, to)
	if err != nil {
		return fmt.Errorf("--ledger: %w", err)
	}
	for _, b := range bad {
		fmt.Fprintf(stderr, "reconcile: %s line %d skipped: %s\n", b.File, b.Line, b.Err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := src.open(ctx, log)
	if err != nil {
		return err
	}
	defer st.Close()
	counts, err := st.CountTicksByMinute(ctx, q)
	src.reportSkipped(stderr, "reconcile")
	if err != nil {
		return err
	}
	stored := make(map[ledger.Key]int64, len(counts))
	for _, c := range counts {
		stored[ledger.Key{Venue: c.Venue, Instrument: c.Instrument, Minute: c.Minute}] = c.N
	}
	wanted := func(k ledger.Key) bool {
		return len(q.Instruments) == 0 || slices.Contains(q.Instruments, k.Instrument)
	}
	keys := make([]ledger.Key, 0, len(published)+len(stored))
	for k := range published {
		if wanted(k) {
			keys = append(keys, k)
		}
	}
	for k := range stored {
		if _, ok := published[k]; !ok && wanted(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("nothing to reconcile: no ticks published (ledger %s) or stored (%s) in the range", dir, src.describe())
	}
	slices.SortFunc(keys, func(a, b ledger.Key) int {
		if c := strings.Compare(a.Venue, b.Venue); c != 0 {
			return c
		}
		if c := strings.Compare(a.Instrument, b.Instrument); c != 0 {
			return c
		}
		return int(a.Minute - b.Minute)
	})

	type total struct{ pub, sto, missing, extra int64 }
	per := map[[2]string]*total{}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "venue\tinstrument\tminute\tpublished\tstored\tmissing")
	for _, k := range keys {
		p, s := published[k], stored[k]
		t := per[[2]string{k.Venue, k.Instrument}]
		if t == nil {
			t = &total{}
			per[[2]string{k.Venue, k.Instrument}] = t
		}
		t.pub += p
		t.sto += s
		if p > s {
			t.missing += p - s
		} else {
			t.extra += s - p
		}
		if *all || p != s {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", k.Venue, k.Instrument, time.Unix(k.Minute, 0).UTC().Format(time.RFC3339), p, s, max(p-s, 0))
		}
	}
	tw.Flush()
	var failed []string
	var pub, missing, extra int64
	for vi, t := range per {
		pub += t.pub
		missing += t.missing
		extra += t.extra
		if t.missing > 0 && float64(t.missing) > *threshold*float64(t.pub) {
			failed = append(failed, fmt.Sprintf("%s %s: %d of %d missing (%.3f%%)", vi[0], vi[1], t.missing, t.pub, 100*float64(t.missing)/float64(max(t.pub, 1))))
		}
	}
	slices.Sort(failed)
	fmt.Fprintf(stderr, "reconcile: %d published, %d missing from the store, %d stored without a ledger entry (a ledger tail lost in a crash, or ticks published before the ledger existed), %d instruments\n",
		pub, missing, extra, len(per))
	if len(failed) > 0 {
		return fmt.Errorf("%d instruments above the %.3f%% threshold:\n  %s", len(failed), 100**threshold, strings.Join(failed, "\n  "))
	}
	return nil
}
