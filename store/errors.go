package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
)

// RejectedError reports rows that the store refuses for good: retrying them
// cannot succeed (the server called their data invalid). The store isolates
// them by splitting the batch, stores every other row of the batch, and
// returns this error so that the caller can dead-letter exactly these rows.
type RejectedError struct {
	Table string
	Rows  []Rejection // in the order of the batch
}

// Rejection is one refused row: its index in the batch given to the insert
// and the server's reason.
type Rejection struct {
	Index  int
	Reason string
}

func (e *RejectedError) Error() string {
	if len(e.Rows) == 0 {
		return "store: no rows rejected"
	}
	return fmt.Sprintf("store: %d %s rows rejected (first: row %d: %s)", len(e.Rows), e.Table, e.Rows[0].Index, e.Rows[0].Reason)
}

// AsRejected returns the RejectedError in err's chain.
func AsRejected(err error) (*RejectedError, bool) {
	var r *RejectedError
	ok := errors.As(err, &r)
	return r, ok
}

// ErrInsertTimeout marks an insert that did not finish within the store's
// insert deadline (a hung or overloaded server). It is an outage: retried.
var ErrInsertTimeout = errors.New("insert deadline exceeded")

// permanentCodes are ClickHouse errors about the data of an insert, which
// the same rows will meet again on every retry. Schema errors (a missing
// column, a changed table) are not among them: they reject every row alike,
// an operator's matter, so they are retried as outages.
var permanentCodes = map[proto.Error]bool{
	proto.ErrCannotParseText:                 true,
	proto.ErrCannotParseInputAssertionFailed: true,
	proto.ErrCannotParseDate:                 true,
	proto.ErrCannotParseDatetime:             true,
	proto.ErrTypeMismatch:                    true,
	proto.ErrArgumentOutOfBound:              true,
	proto.ErrCannotConvertType:               true,
	proto.ErrIllegalTypeOfArgument:           true,
	proto.ErrIllegalColumn:                   true,
	proto.ErrIncorrectData:                   true,
	proto.ErrValueIsOutOfRangeOfDataType:     true,
	proto.ErrTooLargeStringSize:              true,
	proto.ErrViolatedConstraint:              true,
}

// isPermanent reports whether err rejects the rows themselves rather than
// showing that the server is unavailable, overloaded or slow.
func isPermanent(err error) bool {
	e, ok := ch.AsException(err)
	if !ok {
		return false
	}
	if permanentCodes[e.Code] {
		return true
	}
	// TOO_MANY_PARTS is both "this block spans too many partitions" (the
	// rows' fault; the store splits by partition first, so only a lower
	// server limit gets here) and "merges are behind" (back-pressure: wait).
	return e.Code == proto.ErrTooManyParts && strings.Contains(e.Message, "for single INSERT block")
}

// isolate inserts the rows idx through insert and, when the server rejects
// a part for good, splits that part in halves until the rejected rows are
// single: it stores every row it can, and returns the rejected ones. A
// non-permanent error (outage, deadline) ends it at once: the caller retries
// the whole batch, and the parts already stored are dropped then by their
// deduplication tokens (the split is deterministic).
func isolate(idx []int, insert func([]int) error) ([]Rejection, error) {
	err := insert(idx)
	if err == nil {
		return nil, nil
	}
	if !isPermanent(err) {
		return nil, err
	}
	if len(idx) == 1 {
		return []Rejection{{Index: idx[0], Reason: reasonOf(err)}}, nil
	}
	h := len(idx) / 2
	a, err := isolate(idx[:h], insert)
	if err != nil {
		return nil, err
	}
	b, err := isolate(idx[h:], insert)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

func reasonOf(err error) string {
	if e, ok := ch.AsException(err); ok {
		msg := strings.TrimPrefix(e.Message, "DB::Exception: ")
		if i := strings.IndexAny(msg, ".\n"); i > 0 && i < 200 {
			msg = msg[:i]
		} else if len(msg) > 200 {
			msg = msg[:200]
		}
		return e.Code.String() + ": " + msg
	}
	return err.Error()
}

// byPartition splits the row indices 0..n-1 into groups that each span at
// most max distinct partitions (day of time(i)), keeping the rows' order
// within a group. A batch within the limit is one group, in order, so that
// its deduplication token is the same as the whole batch's.
func byPartition(n, max int, day func(i int) int64) [][]int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	days := make(map[int64]int) // day -> group
	for i := 0; i < n; i++ {
		if _, ok := days[day(i)]; !ok {
			days[day(i)] = len(days) / max
		}
	}
	groups := (len(days) + max - 1) / max
	if groups <= 1 {
		return [][]int{all}
	}
	out := make([][]int, groups)
	for i := 0; i < n; i++ {
		g := days[day(i)]
		out[g] = append(out[g], i)
	}
	return out
}

func dayOf(ns int64) int64 {
	d := ns / (24 * int64(time.Hour))
	if ns < 0 && ns%(24*int64(time.Hour)) != 0 {
		d--
	}
	return d
}

// withDeadline runs one insert under the store's deadline, turning the
// deadline's expiry (not the caller's cancellation) into ErrInsertTimeout.
func withDeadline(ctx context.Context, d time.Duration, do func(context.Context) error) error {
	if d <= 0 {
		return do(ctx)
	}
	ictx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := do(ictx)
	if err != nil && ctx.Err() == nil && ictx.Err() != nil {
		return fmt.Errorf("%w (%s): %v", ErrInsertTimeout, d, err)
	}
	return err
}

// Health says whether a store can write: when its last insert succeeded and,
// while inserts fail, since when and why.
type Health struct {
	LastOK       time.Time // zero: no insert succeeded yet
	FailingSince time.Time // zero: the last insert succeeded (or none was tried)
	LastError    string    // the last failure's message, without credentials
}

// HealthReporter is implemented by the stores; the daemon's /readyz reads it.
type HealthReporter interface {
	WriteHealth() Health
}

// writeHealth tracks Health for a store.
type writeHealth struct {
	mu sync.Mutex
	h  Health
}

func (w *writeHealth) ok(now time.Time) {
	w.mu.Lock()
	w.h.LastOK, w.h.FailingSince, w.h.LastError = now, time.Time{}, ""
	w.mu.Unlock()
}

func (w *writeHealth) failed(now time.Time, err error) {
	w.mu.Lock()
	if w.h.FailingSince.IsZero() {
		w.h.FailingSince = now
	}
	w.h.LastError = err.Error()
	w.mu.Unlock()
}

func (w *writeHealth) WriteHealth() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.h
}
