// Package store persists ticks and signals and reads them back for
// backtests. ClickHouse (through ch-go) is the production store; a Parquet
// directory is the embedded default that needs no server.
//
// Both deduplicate by the tick's and the signal's deterministic id, so a
// redelivered batch or a replay after a crash never yields duplicate rows on
// read.
package store

import (
	"cmp"
	"context"
	"time"

	"github.com/signald-dev/signald/market"
)

// Store is what the pipeline and the backtest need from storage.
type Store interface {
	// InsertTicks durably stores ticks; it returns only once they are stored.
	InsertTicks(ctx context.Context, ticks []market.Tick) error
	// InsertSignals durably stores signals.
	InsertSignals(ctx context.Context, sigs []market.Signal) error
	// ReadTicks calls fn with the stored ticks of q, deduplicated, in
	// (RecvTS, Venue, Instrument, Kind, ID) order, in batches.
	ReadTicks(ctx context.Context, q Query, fn func([]market.Tick) error) error
	// ReadSignals returns the stored signals of q, deduplicated, in (Time,
	// Venue, Instrument, Type) order.
	ReadSignals(ctx context.Context, q Query) ([]market.Signal, error)
	// CountTicks returns the number of distinct stored ticks in q.
	CountTicks(ctx context.Context, q Query) (int64, error)
	// CountTicksByMinute returns the distinct stored ticks of q per venue,
	// instrument and minute of receive time (what reconcile compares with
	// ingest's ledger).
	CountTicksByMinute(ctx context.Context, q Query) ([]MinuteCount, error)
	Close() error
}

// MinuteCount is the number of ticks of one venue and instrument received
// in one minute (Unix seconds, a multiple of 60).
type MinuteCount struct {
	Venue, Instrument string
	Minute            int64
	N                 int64
}

func minuteOf(ns int64) int64 {
	const minute = 60 * int64(time.Second)
	q := ns / minute
	if ns%minute < 0 {
		q-- // floor, also before 1970
	}
	return q * 60
}

// Query selects a time range (on receive time for ticks, event time for
// signals) and optionally instruments. Zero From/To mean unbounded.
type Query struct {
	From, To    time.Time // From inclusive, To exclusive
	Instruments []string  // normalized instruments; empty means all
}

func (q Query) bounds() (lo, hi int64) {
	lo, hi = -1<<63, 1<<63-1
	if !q.From.IsZero() {
		lo = q.From.UnixNano()
	}
	if !q.To.IsZero() {
		hi = q.To.UnixNano()
	}
	return lo, hi
}

func (q Query) wants(instrument string) bool {
	if len(q.Instruments) == 0 {
		return true
	}
	for _, i := range q.Instruments {
		if i == instrument {
			return true
		}
	}
	return false
}

// tickCmp orders ticks as reads return them: (RecvTS, Venue, Instrument,
// Kind, ID).
func tickCmp(a, b market.Tick) int {
	return cmp.Or(cmp.Compare(a.RecvTS, b.RecvTS), cmp.Compare(a.Venue, b.Venue),
		cmp.Compare(a.Instrument, b.Instrument), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
}

// signalCmp orders signals as reads return them: (Time, Venue, Instrument, Type).
func signalCmp(a, b market.Signal) int {
	return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Venue, b.Venue),
		cmp.Compare(a.Instrument, b.Instrument), cmp.Compare(a.Type, b.Type))
}
