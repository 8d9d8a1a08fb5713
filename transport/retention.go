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

// DeadLetterRetentionConfig configures a DeadLetterRetention. Stream is
// required; the zero value of the rest works.
type DeadLetterRetentionConfig struct {
	Stream string
	// MaxLen is the most dead letters kept; the oldest go first. Default
	// 10,000.
	MaxLen int64
	// MaxAge is how long a dead letter is kept. Default 7 days (keep it at
	// least ConsumerConfig.DeadLetterTTL, so that a replay still knows the
	// groups).
	MaxAge time.Duration
	// Interval between trims. Default 1m.
	Interval time.Duration
}

// DeadLetterRetention bounds the dead-letter stream by count and age. No
// group reads that stream, so unlike Retention it trims without looking at
// positions; what it removes is counted
// (signald_transport_dead_letter_trimmed_entries_total) and logged.
type DeadLetterRetention struct {
	b   Backend
	cfg DeadLetterRetentionConfig
	log *slog.Logger
	m   *Metrics
	now func() time.Time
}

// maxLenTrimmer is implemented by backends that trim by count (XTRIM
// MAXLEN); others are trimmed through Range and Trim.
type maxLenTrimmer interface {
	TrimMaxLen(ctx context.Context, stream string, maxLen int64) (int64, error)
}

// NewDeadLetterRetention validates cfg. logger and m may be nil.
func NewDeadLetterRetention(b Backend, cfg DeadLetterRetentionConfig, logger *slog.Logger, m *Metrics) (*DeadLetterRetention, error) {
	if cfg.Stream == "" {
		return nil, errors.New("dead-letter retention: Stream is required")
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 10_000
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &DeadLetterRetention{b: b, cfg: cfg, log: logger, m: m, now: time.Now}, nil
}

// Run trims every Interval until ctx ends.
func (r *DeadLetterRetention) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := r.Trim(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("transport: dead-letter retention trim failed", "stream", r.cfg.Stream, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Trim trims the dead-letter stream once and returns how many it removed.
func (r *DeadLetterRetention) Trim(ctx context.Context) (int64, error) {
	s := r.cfg.Stream
	minID := entryID{ms: uint64(max(0, r.now().Add(-r.cfg.MaxAge).UnixMilli()))}
	n, err := r.b.Trim(ctx, s, minID.String())
	if err != nil {
		return 0, err
	}
	var byLen int64
	if t, ok := r.b.(maxLenTrimmer); ok {
		byLen, err = t.TrimMaxLen(ctx, s, r.cfg.MaxLen)
	} else {
		byLen, err = r.trimLen(ctx)
	}
	n += byLen
	if n > 0 {
		r.m.deadLetterTrimmed.WithLabelValues(s).Add(float64(n))
		r.log.Warn("transport: dead letters removed by retention", "stream", s, "entries", n, "max_len", r.cfg.MaxLen, "max_age", r.cfg.MaxAge)
	}
	return n, err
}

func (r *DeadLetterRetention) trimLen(ctx context.Context) (int64, error) {
	l, err := r.b.Len(ctx, r.cfg.Stream)
	if err != nil || l <= r.cfg.MaxLen {
		return 0, err
	}
	old, err := r.b.Range(ctx, r.cfg.Stream, "-", "+", int(l-r.cfg.MaxLen))
	if err != nil || len(old) == 0 {
		return 0, err
	}
	last, err := parseID(old[len(old)-1].ID)
	if err != nil {
		return 0, err
	}
	last.seq++
	return r.b.Trim(ctx, r.cfg.Stream, last.String())
}
