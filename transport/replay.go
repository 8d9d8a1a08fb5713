package transport

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// ReplayRange selects entries by id or by time. Ids win over times when both
// are set; empty means the start or the end of the stream.
type ReplayRange struct {
	FromID, ToID string    // inclusive, "-" and "+" allowed
	From, To     time.Time // From inclusive, To exclusive (entry ids carry their append time)
	// PageSize is how many entries one read fetches. Default 1000.
	PageSize int
}

func (r ReplayRange) bounds() (lo, hi string) {
	lo, hi = "-", "+"
	if !r.From.IsZero() {
		lo = strconv.FormatInt(r.From.UnixMilli(), 10) + "-0"
	}
	if !r.To.IsZero() {
		// To is exclusive: the last millisecond before it, every sequence.
		hi = strconv.FormatInt(r.To.UnixMilli()-1, 10) + "-" + strconv.FormatUint(^uint64(0), 10)
	}
	if r.FromID != "" {
		lo = r.FromID
	}
	if r.ToID != "" {
		hi = r.ToID
	}
	return lo, hi
}

// Replay reads the entries of stream in r, in order, and hands them to h a
// page at a time, outside any consumer group: nothing is acknowledged or
// changed, so it serves recovery and short backtests while the groups go on.
// It returns how many entries it handed over.
func Replay(ctx context.Context, b Backend, stream string, r ReplayRange, h Handler) (int, error) {
	lo, hi := r.bounds()
	page := r.PageSize
	if page <= 0 {
		page = 1000
	}
	n := 0
	for {
		msgs, err := b.Range(ctx, stream, lo, hi, page)
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		if len(msgs) == 0 {
			return n, nil
		}
		if err := h(ctx, msgs); err != nil {
			return n, fmt.Errorf("replay %s: handler: %w", stream, err)
		}
		n += len(msgs)
		if len(msgs) < page {
			return n, nil
		}
		last, err := parseID(msgs[len(msgs)-1].ID)
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		if last.seq == ^uint64(0) {
			last.ms++
			last.seq = 0
		} else {
			last.seq++
		}
		lo = last.String()
	}
}
