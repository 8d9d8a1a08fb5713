// Package store persists ticks and signals and reads them back for
// backtests. ClickHouse (through ch-go) is the production store; a Parquet
// directory is the embedded default that needs no server.
//
// Both deduplicate by the tick's and the signal's deterministic id, so a
// redelivered batch or a replay after a crash never yields duplicate rows on
// read.
package store

import (
	"context"
	"time"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/regime"
)

// Store is what the pipeline and the backtest need from storage.
type Store interface {
	// InsertTicks durably stores ticks; it returns only once they are stored.
	InsertTicks(ctx context.Context, ticks []ingest.Tick) error
	// InsertSignals durably stores signals.
	InsertSignals(ctx context.Context, sigs []regime.Signal) error
	// ReadTicks calls fn with the stored ticks of q, deduplicated, in
	// (RecvTS, Venue, Instrument, Kind, ID) order, in batches.
	ReadTicks(ctx context.Context, q Query, fn func([]ingest.Tick) error) error
	// ReadSignals returns the stored signals of q, deduplicated, in (Time,
	// Venue, Instrument, Type) order.
	ReadSignals(ctx context.Context, q Query) ([]regime.Signal, error)
	// CountTicks returns the number of distinct stored ticks in q.
	CountTicks(ctx context.Context, q Query) (int64, error)
	Close() error
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

func tickLess(a, b *ingest.Tick) bool {
	switch {
	case a.RecvTS != b.RecvTS:
		return a.RecvTS < b.RecvTS
	case a.Venue != b.Venue:
		return a.Venue < b.Venue
	case a.Instrument != b.Instrument:
		return a.Instrument < b.Instrument
	case a.Kind != b.Kind:
		return a.Kind < b.Kind
	}
	return a.ID < b.ID
}

func signalLess(a, b *regime.Signal) bool {
	switch {
	case a.Time != b.Time:
		return a.Time < b.Time
	case a.Venue != b.Venue:
		return a.Venue < b.Venue
	case a.Instrument != b.Instrument:
		return a.Instrument < b.Instrument
	}
	return a.Type < b.Type
}
