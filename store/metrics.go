package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// Metrics are the store's Prometheus collectors.
type Metrics struct {
	inserted       *prometheus.CounterVec
	insertErrors   *prometheus.CounterVec
	insertSeconds  *prometheus.HistogramVec
	tickLatency    prometheus.Histogram
	duplicates     *prometheus.CounterVec
	rejected       *prometheus.CounterVec
	insertTimeouts *prometheus.CounterVec
	quarantined    *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inserted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_inserted_rows_total", Help: "Rows acknowledged by the store, per table (retried batches count again).",
		}, []string{"table"}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_insert_errors_total", Help: "Failed inserts per table (the batch stays pending and is retried).",
		}, []string{"table"}),
		insertSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_store_insert_seconds", Help: "Duration of one insert, per table.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"table"}),
		// Fine buckets around the 50 ms objective.
		tickLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signald_store_tick_to_storage_seconds",
			Help: "Per tick: from its ingest (receipt, or replay emission) to the store's acknowledgement of its insert.",
			Buckets: []float64{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
				0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_duplicates_dropped_total", Help: "Rows dropped on read or compaction because their id was already stored.",
		}, []string{"table"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_rejected_rows_total", Help: "Rows the server refused for good (invalid data), isolated from their batch and handed back for dead-lettering; the rest of the batch was stored.",
		}, []string{"table"}),
		insertTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_insert_timeouts_total", Help: "Inserts that did not finish within the insert deadline (hung or overloaded server); also counted in insert_errors_total.",
		}, []string{"table"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_store_quarantined_files_total", Help: "Parquet data files skipped as unreadable (corrupt, truncated, another schema) and moved under the data directory's _quarantine/ (left in place when read-only).",
		}, []string{"table"}),
	}
	if reg != nil {
		reg.MustRegister(m.inserted, m.insertErrors, m.insertSeconds, m.tickLatency, m.duplicates, m.rejected, m.insertTimeouts, m.quarantined)
	}
	return m
}

func (m *Metrics) observeInsert(table string, rows int, d time.Duration) {
	m.inserted.WithLabelValues(table).Add(float64(rows))
	m.insertSeconds.WithLabelValues(table).Observe(d.Seconds())
}

func (m *Metrics) observeTickLatency(ticks []market.Tick, now time.Time) {
	n := now.UnixNano()
	for i := range ticks {
		if t := ticks[i].IngestTS; t > 0 {
			m.tickLatency.Observe(float64(n-t) / 1e9)
		}
	}
}
