package transport

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
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
	// Skipped is true once entries the group never read were trimmed or
	// deleted (GroupInfo.SkippedUnread). Redis 7.0 skips them silently and
	// its lag stays wrong after. The condition itself ends as soon as the
	// group reads past the new first entry, so the monitor latches it: the
	// flag stays true until AckTrimmed.
	Skipped bool
	// Lost is how many entries the group never read were trimmed, as far
	// as the monitor has seen (see LagMonitor.Sample); -1 when a loss was
	// seen that the backend's counters cannot size (deletions).
	Lost int64
}

// LagMonitor samples every group's position on every stream and exports it
// as gauges, labelled by stream and group.
type LagMonitor struct {
	b   Backend
	cfg LagConfig
	log *slog.Logger
	now func() time.Time

	lag, pending, oldestAge, unknown, skipped *prometheus.GaugeVec
	lostEntries                               *prometheus.CounterVec

	mu   sync.Mutex
	loss map[groupKey]*lossState
}

type groupKey struct{ stream, group string }

// lossState is what the monitor remembers of a group's losses to trimming.
type lossState struct {
	latched    bool   // flag up, not acknowledged yet
	counted    int64  // entries already added to the loss counter
	maxDeleted string // the stream's max deleted id when last flagged
	unsized    bool   // a loss was seen that could not be sized
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
	m := &LagMonitor{b: b, cfg: cfg, log: logger, now: time.Now, loss: map[groupKey]*lossState{},
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
			Name: "signald_transport_trimmed_unread", Help: "1 once entries the group never read were trimmed or deleted from the stream (data lost for it); stays 1 until acknowledged (LagMonitor.AckTrimmed).",
		}, labels),
		lostEntries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_trimmed_unread_entries_total", Help: "Entries the group never read that were trimmed from the stream, estimated from the stream's entries-added and the group's entries-read counters.",
		}, labels),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lag, m.pending, m.oldestAge, m.unknown, m.skipped, m.lostEntries} {
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
//
// Trimmed unread entries are found from the counters Redis keeps (7.0):
// entries-read counts up one per entry the group reads, across a trimmed
// gap too, so EntriesAdded - EntriesRead exceeds the entries actually left
// after the group's position by the number it lost, for good. The entries
// left are Length when the group is behind the first entry, and are
// counted with one Range otherwise (when at most maxCountUnread), so a
// loss is seen also after the group has read past the gap.
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
			n, known := m.lostUnread(ctx, s, gi)
			l.Skipped, l.Lost = m.latch(s, g, gi, n, known)
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
	m.skipped.WithLabelValues(l.Stream, l.Group).Set(b(l.Skipped))
}

// maxCountUnread bounds the entries Sample reads to count a group's unread
// entries exactly; a group further behind, past the first entry, is checked
// once it caught up or fell behind the first entry.
const maxCountUnread = 1000

// lostUnread is how many entries the group never read are gone from the
// stream; known is false when the counters cannot tell (deletions, unknown
// entries-read, or too many unread to count).
func (m *LagMonitor) lostUnread(ctx context.Context, stream string, gi GroupInfo) (n int64, known bool) {
	if gi.EntriesRead < 0 {
		return 0, false
	}
	last, err := parseID(gi.LastDelivered)
	if err != nil {
		return 0, false
	}
	if md, err := parseID(gi.MaxDeleted); err == nil && last.less(md) {
		return 0, false // deleted (XDEL) above the group's position
	}
	unread := gi.EntriesAdded - gi.EntriesRead
	if unread <= 0 {
		return 0, true
	}
	if first, err := parseID(gi.FirstID); err != nil || last.less(first) {
		return max(0, unread-gi.Length), true // every entry left is unread (or none is left)
	}
	if unread > maxCountUnread {
		return 0, false
	}
	next := last
	if next.seq == ^uint64(0) {
		next.ms, next.seq = next.ms+1, 0
	} else {
		next.seq++
	}
	left, err := m.b.Range(ctx, stream, next.String(), "+", int(unread)+1)
	if err != nil {
		return 0, false
	}
	return max(0, unread-int64(len(left))), true
}

// latch folds one sample into the group's loss state: a new loss raises the
// flag, adds the entries it cost to the counter and logs once; the flag then
// stays up until AckTrimmed, also after the group has read past the gap.
func (m *LagMonitor) latch(stream, group string, gi GroupInfo, n int64, known bool) (skipped bool, lost int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := groupKey{stream, group}
	st := m.loss[k]
	if st == nil {
		st = &lossState{}
		m.loss[k] = st
	}
	fresh := false
	switch {
	case known && n > st.counted:
		m.lostEntries.WithLabelValues(stream, group).Add(float64(n - st.counted))
		m.log.Error("transport: entries the group never read were trimmed from the stream; they are lost for it",
			"stream", stream, "group", group, "entries", n-st.counted, "last_delivered", gi.LastDelivered, "first_entry", gi.FirstID,
			"hint", "acknowledge with LagMonitor.AckTrimmed once handled")
		st.counted = n
		fresh = true
	case !known && gi.SkippedUnread() && (gi.MaxDeleted != st.maxDeleted || !st.unsized):
		// Deleted (XDEL) above the group's position: the counters cannot
		// say how many were unread.
		m.log.Error("transport: entries the group never read were deleted from the stream; how many is unknown",
			"stream", stream, "group", group, "last_delivered", gi.LastDelivered, "max_deleted", gi.MaxDeleted,
			"hint", "acknowledge with LagMonitor.AckTrimmed once handled")
		st.unsized = true
		st.maxDeleted = gi.MaxDeleted
		fresh = true
	}
	if fresh {
		st.latched = true
	}
	lost = st.counted
	if st.unsized {
		lost = -1
	}
	return st.latched, lost
}

// AckTrimmed acknowledges that group lost unread entries of stream: the
// trimmed_unread flag goes back to 0 until a new loss is detected (the
// entries already counted stay counted). It reports whether the flag was up.
// The daemon exposes it to operators (a command or an HTTP POST).
func (m *LagMonitor) AckTrimmed(stream, group string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.loss[groupKey{stream, group}]
	if st == nil || !st.latched {
		return false
	}
	st.latched = false
	m.skipped.WithLabelValues(stream, group).Set(0)
	return true
}

// Trimmed lists the stream and group pairs whose trimmed_unread flag is up.
func (m *LagMonitor) Trimmed() []GroupLag {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []GroupLag
	for k, st := range m.loss {
		if st.latched {
			l := GroupLag{Stream: k.stream, Group: k.group, Skipped: true, Lost: st.counted}
			if st.unsized {
				l.Lost = -1
			}
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stream != out[j].Stream {
			return out[i].Stream < out[j].Stream
		}
		return out[i].Group < out[j].Group
	})
	return out
}
