package transport

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LagConfig configures a LagMonitor. Streams and Groups are required.
type LagConfig struct {
	Streams []string
	Groups  []string
	// Interval between samples. Default 5s.
	Interval time.Duration
}

// GroupLag is one sample of a group's position on a stream.
type GroupLag struct {
	Stream, Group string
	// Lag is the number of entries not yet delivered; -1 when the backend
	// cannot tell (Redis reports NULL lag after deletions in the unread
	// range), never a made-up 0.
	Lag     int64
	Pending int64
	// OldestPendingAge is the age of the oldest pending entry, from the
	// time in its id; 0 when nothing is pending.
	OldestPendingAge time.Duration
	// Skipped is true when entries the group never read were trimmed or
	// deleted (GroupInfo.SkippedUnread). Redis 7.0 skips them silently and
	// its lag stays wrong after. The loss is permanent, and so is the flag,
	// until the group is recreated.
	Skipped bool
}

// LagMonitor samples every group's position on every stream and exports it
// as gauges, labelled by stream and group.
type LagMonitor struct {
	b   Backend
	cfg LagConfig
	log *slog.Logger
	now func() time.Time

	lag, pending, oldestAge, unknown, skipped *prometheus.GaugeVec
}

// NewLagMonitor registers its gauges with reg (nil: not registered).
func NewLagMonitor(b Backend, cfg LagConfig, logger *slog.Logger, reg prometheus.Registerer) (*LagMonitor, error) {
	if len(cfg.Streams) == 0 || len(cfg.Groups) == 0 {
		return nil, errors.New("lag monitor: Streams and Groups are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	labels := []string{"stream", "group"}
	m := &LagMonitor{b: b, cfg: cfg, log: logger, now: time.Now,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_transport_lag_entries", Help: "Entries not yet delivered to the group (absent while unknown; see signald_transport_lag_unknown).",
		}, labels),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_transport_pending_entries", Help: "Entries delivered to the group and not yet acknowledged.",
		}, labels),
		oldestAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_transport_oldest_pending_age_seconds", Help: "Age of the group's oldest pending entry (0 when none).",
		}, labels),
		unknown: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_transport_lag_unknown", Help: "1 when the backend cannot tell the group's lag (Redis NULL lag).",
		}, labels),
		skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_transport_trimmed_unread", Help: "1 when entries the group never read were trimmed from the stream (data lost for it).",
		}, labels),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lag, m.pending, m.oldestAge, m.unknown, m.skipped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Run samples every Interval until ctx ends.
func (m *LagMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads every group's position once, updates the gauges and returns
// the samples (groups that do not exist yet are left out).
func (m *LagMonitor) Sample(ctx context.Context) []GroupLag {
	var out []GroupLag
	for _, s := range m.cfg.Streams {
		for _, g := range m.cfg.Groups {
			gi, err := m.b.Group(ctx, s, g)
			if err != nil {
				continue
			}
			l := GroupLag{Stream: s, Group: g, Lag: gi.Lag, Pending: gi.Pending}
			if gi.OldestPending != "" {
				if id, err := parseID(gi.OldestPending); err == nil {
					l.OldestPendingAge = max(0, m.now().Sub(time.UnixMilli(int64(id.ms))))
				}
			}
			l.Skipped = gi.SkippedUnread()
			m.export(l)
			out = append(out, l)
		}
	}
	return out
}

func (m *LagMonitor) export(l GroupLag) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if l.Lag < 0 {
		m.lag.DeleteLabelValues(l.Stream, l.Group)
	} else {
		m.lag.WithLabelValues(l.Stream, l.Group).Set(float64(l.Lag))
	}
	m.unknown.WithLabelValues(l.Stream, l.Group).Set(b(l.Lag < 0))
	m.pending.WithLabelValues(l.Stream, l.Group).Set(float64(l.Pending))
	m.oldestAge.WithLabelValues(l.Stream, l.Group).Set(l.OldestPendingAge.Seconds())
	if l.Skipped {
		m.log.Error("transport: entries the group never read were trimmed from the stream", "stream", l.Stream, "group", l.Group)
	}
	m.skipped.WithLabelValues(l.Stream, l.Group).Set(b(l.Skipped))
}
