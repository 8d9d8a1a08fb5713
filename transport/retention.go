package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// RetentionConfig configures a Retention. Streams and Groups are required.
type RetentionConfig struct {
	Streams []string
	// Groups are every group that reads the streams. An entry is trimmed only
	// once all of them have acknowledged it.
	Groups []string
	// Keep is how long entries stay after every group acknowledged them,
	// for replay and for groups added later. Default 1h.
	Keep time.Duration
	// Interval between trims. Default 10s.
	Interval time.Duration
}

// Retention trims streams by time (XTRIM MINID), never past an entry that
// some group has not acknowledged: Redis would otherwise drop undelivered
// entries silently.
type Retention struct {
	b   Backend
	cfg RetentionConfig
	log *slog.Logger
	m   *Metrics
	now func() time.Time
}

// NewRetention validates cfg. logger and m may be nil.
func NewRetention(b Backend, cfg RetentionConfig, logger *slog.Logger, m *Metrics) (*Retention, error) {
	if len(cfg.Streams) == 0 || len(cfg.Groups) == 0 {
		return nil, errors.New("retention: Streams and Groups are required")
	}
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("retention: Keep %v: must be >= 0", cfg.Keep)
	}
	if cfg.Keep == 0 {
		cfg.Keep = time.Hour
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Retention{b: b, cfg: cfg, log: logger, m: m, now: time.Now}, nil
}

// Run trims every Interval until ctx ends.
func (r *Retention) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, s := range r.cfg.Streams {
			if _, err := r.Trim(ctx, s); err != nil && ctx.Err() == nil {
				r.log.Warn("transport: retention trim failed", "stream", s, "err", err)
			}
		}
	}
}

// Trim trims stream once and returns how many entries it removed.
func (r *Retention) Trim(ctx context.Context, stream string) (int64, error) {
	minID, ok, err := r.SafeMinID(ctx, stream)
	if err != nil || !ok {
		return 0, err
	}
	n, err := r.b.Trim(ctx, stream, minID.String())
	if err != nil {
		return 0, err
	}
	r.m.trimmed.WithLabelValues(stream).Add(float64(n))
	return n, nil
}

// SafeMinID is the lowest id to keep: entries below it are older than Keep
// and acknowledged by every group. ok is false when nothing may be trimmed
// (a group does not exist yet, so its position is unknown).
func (r *Retention) SafeMinID(ctx context.Context, stream string) (entryID, bool, error) {
	limit := entryID{ms: uint64(r.now().Add(-r.cfg.Keep).UnixMilli())}
	for _, g := range r.cfg.Groups {
		gi, err := r.b.Group(ctx, stream, g)
		if err != nil {
			return entryID{}, false, nil // no group yet: keep everything
		}
		// Everything up to LastDelivered was delivered; what is not pending
		// of it was acknowledged. Keep from the oldest pending entry, or
		// from just after the last delivered one.
		keep, err := parseID(gi.LastDelivered)
		if err != nil {
			return entryID{}, false, fmt.Errorf("retention %s: %w", stream, err)
		}
		keep.seq++
		if gi.OldestPending != "" {
			if keep, err = parseID(gi.OldestPending); err != nil {
				return entryID{}, false, fmt.Errorf("retention %s: %w", stream, err)
			}
		}
		if keep.less(limit) {
			limit = keep
		}
	}
	return limit, true, nil
}
