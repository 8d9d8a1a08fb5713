package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// Metrics are the ingest layer's Prometheus collectors. One Metrics serves
// any number of parsers and replayers; series are labelled by venue.
type Metrics struct {
	frames       *prometheus.CounterVec
	malformed    *prometheus.CounterVec
	ignored      *prometheus.CounterVec
	ticks        *prometheus.CounterVec
	unnormalized *prometheus.CounterVec
	parserPath   *prometheus.GaugeVec
	resyncs      *prometheus.CounterVec

	replayLines     *prometheus.CounterVec
	replayMalformed *prometheus.CounterVec
	replayPasses    prometheus.Counter
	replayFailed    prometheus.Counter

	dropped *prometheus.CounterVec
	conn    *connMetrics
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_frames_total", Help: "Frames handed to a venue parser (including malformed and ignored ones).",
		}, []string{"venue"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_malformed_frames_total", Help: "Frames rejected by a venue parser, by reason.",
		}, []string{"venue", "reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_ignored_frames_total", Help: "Well-formed frames of event types the parser does not turn into ticks.",
		}, []string{"venue", "type"}),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_ticks_total", Help: "Normalized ticks produced, by kind.",
		}, []string{"venue", "kind"}),
		unnormalized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_unnormalized_symbol_frames_total", Help: "Frames whose symbol could not be split into base and quote (instrument left as the venue symbol).",
		}, []string{"venue"}),
		parserPath: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_ingest_parser_info", Help: "1 for the JSON path each venue parser uses (simdjson or fallback).",
		}, []string{"venue", "path"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_book_resyncs_total", Help: "Books found out of sync and resnapshotted, by reason (gap, checksum, crossed, disconnect).",
		}, []string{"venue", "reason"}),
		replayLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_replay_lines_total", Help: "Capture lines read by the replayer, by what they were (frame, snapshot, connection, client_send, malformed).",
		}, []string{"kind"}),
		replayMalformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_replay_malformed_lines_total", Help: "Capture lines skipped because they could not be read, by reason (frames the parser rejects are counted in signald_ingest_malformed_frames_total).",
		}, []string{"reason"}),
		replayPasses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_ingest_replay_passes_total", Help: "Completed passes over the replay files.",
		}),
		replayFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_ingest_replay_failed_files_total", Help: "Replay files that could not be opened or read to the end (truncated, not a capture); the other files go on, and the replay ends with an error naming them.",
		}),
	}
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_ingest_feed_dropped_total", Help: "Items a feed discarded, by what (Binance: depth_in_snapshot, diffs the snapshot already contains; depth_resync, buffered diffs given up by a resync; depth_buffer, diffs beyond the buffer's bound while waiting for a snapshot).",
	}, []string{"venue", "what"})
	m.conn = newConnMetrics(reg)
	if reg != nil {
		reg.MustRegister(m.dropped)
		reg.MustRegister(m.frames, m.malformed, m.ignored, m.ticks, m.unnormalized, m.parserPath, m.resyncs,
			m.replayLines, m.replayMalformed, m.replayPasses, m.replayFailed)
	}
	return m
}

// venueMetrics are one venue's pre-resolved series, so the hot path does no
// label lookups (and no allocations).
type venueMetrics struct {
	frames       prometheus.Counter
	ticks        [kindCount]prometheus.Counter
	malformed    [reasonCount]prometheus.Counter
	ignored      [ignoredCount]prometheus.Counter
	unnormalized prometheus.Counter
}

const kindCount = int(market.KindGap) + 1

func (m *Metrics) forVenue(venue string) *venueMetrics {
	v := &venueMetrics{
		frames:       m.frames.WithLabelValues(venue),
		unnormalized: m.unnormalized.WithLabelValues(venue),
	}
	for k := range v.ticks {
		v.ticks[k] = m.ticks.WithLabelValues(venue, market.Kind(k).String())
	}
	for r := range v.malformed {
		v.malformed[r] = m.malformed.WithLabelValues(venue, Reason(r).String())
	}
	for t := range v.ignored {
		v.ignored[t] = m.ignored.WithLabelValues(venue, ignoredNames[t])
	}
	return v
}

// FeedMetrics are one venue's counters, for Feed implementations. A nil
// *Metrics gives FeedMetrics that count nothing.
type FeedMetrics struct {
	m     *Metrics
	venue string
	v     *venueMetrics
}

// Feed returns the counters of venue; call once per Feed, not per frame.
func (m *Metrics) Feed(venue string) *FeedMetrics {
	if m == nil {
		return &FeedMetrics{venue: venue}
	}
	return &FeedMetrics{m: m, venue: venue, v: m.forVenue(venue)}
}

// Frame counts one frame handed to the feed.
func (f *FeedMetrics) Frame() {
	if f.v != nil {
		f.v.frames.Inc()
	}
}

// Ticks counts n ticks of kind k produced.
func (f *FeedMetrics) Ticks(k market.Kind, n int) {
	if f.v != nil && int(k) < kindCount {
		f.v.ticks[k].Add(float64(n))
	}
}

// Malformed counts one rejected frame (reason: a short snake_case word).
func (f *FeedMetrics) Malformed(reason string) {
	if f.m != nil {
		f.m.malformed.WithLabelValues(f.venue, reason).Inc()
	}
}

// Ignored counts one well-formed frame without market data, by type.
func (f *FeedMetrics) Ignored(typ string) {
	if f.m != nil {
		f.m.ignored.WithLabelValues(f.venue, typ).Inc()
	}
}

// Dropped counts n items of what the feed discarded.
func (f *FeedMetrics) Dropped(what string, n int) {
	if f.m != nil {
		f.m.dropped.WithLabelValues(f.venue, what).Add(float64(n))
	}
}

// Resync counts one book resynchronization (gap, checksum, crossed,
// disconnect).
func (f *FeedMetrics) Resync(reason string) {
	if f.m != nil {
		f.m.resyncs.WithLabelValues(f.venue, reason).Inc()
	}
}

// connMetrics are the connection manager's (Ingestor's) collectors.
type connMetrics struct {
	open           *prometheus.GaugeVec
	lastTick       *prometheus.GaugeVec
	reconnects     *prometheus.CounterVec
	received       *prometheus.CounterVec
	receivedBytes  *prometheus.CounterVec
	sent           *prometheus.CounterVec
	queueDepth     *prometheus.GaugeVec
	queueDropped   *prometheus.CounterVec
	snapshots      *prometheus.CounterVec
	snapshotSecs   *prometheus.HistogramVec
	enqueueLatency *prometheus.HistogramVec
	gaps           *prometheus.CounterVec
	probes         *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_ingest_connections_open", Help: "Websocket connections currently open, by venue.",
		}, []string{"venue"}),
		lastTick: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_ingest_venue_last_tick_seconds", Help: "When a live venue last produced ticks (Unix time, seconds); time() minus it is the venue's silence.",
		}, []string{"venue"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_reconnects_total", Help: "Websocket connections ended and redialled, by reason (dial, read, write, silence, closed).",
		}, []string{"venue", "reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_received_frames_total", Help: "Websocket data frames received.",
		}, []string{"venue"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_received_bytes_total", Help: "Bytes of websocket data frames received.",
		}, []string{"venue"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_sent_frames_total", Help: "Frames sent to venues, by kind (subscribe, ping, outbox).",
		}, []string{"venue", "kind"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signald_ingest_queue_depth_batches", Help: "Tick batches waiting in the queue toward the publisher.",
		}, []string{"venue"}),
		queueDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_queue_dropped_ticks_total", Help: "Ticks dropped because the queue toward the publisher was full, by policy (drop-oldest, drop-newest).",
		}, []string{"venue", "policy"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_snapshot_fetches_total", Help: "REST book snapshot fetches, by result (ok, error, stale: fetched for a connection that has gone since).",
		}, []string{"venue", "result"}),
		snapshotSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_ingest_snapshot_fetch_seconds", Help: "Duration of REST book snapshot fetches.",
			Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"venue"}),
		enqueueLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_ingest_receive_to_enqueue_seconds", Help: "Per frame with ticks: from receiving the frame to its ticks entering the queue (decode, book sync, waiting for queue space).",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1},
		}, []string{"venue"}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_ingest_gap_ticks_total", Help: "KindGap ticks published by the connection manager (one per subscribed instrument after a disconnect, one per dropped book batch).",
		}, []string{"venue", "reason"}),
	}
	m.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_ingest_silence_probes_total", Help: "Websocket pings sent to silent connections of venues without an application ping, by result (pong: kept, timeout: redialled).",
	}, []string{"venue", "result"})
	if reg != nil {
		reg.MustRegister(m.probes)
		reg.MustRegister(m.open, m.lastTick, m.reconnects, m.received, m.receivedBytes, m.sent, m.queueDepth, m.queueDropped,
			m.snapshots, m.snapshotSecs, m.enqueueLatency, m.gaps)
	}
	return m
}
