package transport

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the transport's Prometheus collectors. One Metrics serves any
// number of producers and consumers; consumers label by group.
type Metrics struct {
	published       *prometheus.CounterVec
	publishErrors   prometheus.Counter
	publishBatch    prometheus.Histogram
	dropped         prometheus.Counter
	publishWaits    prometheus.Counter
	delivered       *prometheus.CounterVec
	redelivered     *prometheus.CounterVec
	reclaimed       *prometheus.CounterVec
	claimDeleted    *prometheus.CounterVec
	poison          *prometheus.CounterVec
	skippedInFlight *prometheus.CounterVec
	acked           *prometheus.CounterVec
	ackErrors       *prometheus.CounterVec
	readErrors      *prometheus.CounterVec
	handlerErrors   *prometheus.CounterVec
	handlerSeconds  *prometheus.HistogramVec
	trimmed         *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	spooled         prometheus.Gauge
	spooledTotal    prometheus.Counter
	unspooledTotal  prometheus.Counter
	spoolCorrupt    prometheus.Counter
	spoolOverflow   *prometheus.CounterVec

	deadLetterDeduped *prometheus.CounterVec
	replaySkipped     *prometheus.CounterVec
	deadLetterTrimmed *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_published_entries_total", Help: "Entries appended to streams.",
		}, []string{"stream"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_publish_errors_total", Help: "Failed batch appends (entries stay buffered and are retried).",
		}),
		publishBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signald_transport_publish_batch_seconds", Help: "Time to append one pipelined batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		publishWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_publish_waits_total", Help: "Publish calls that waited because MaxBuffered entries were held (backend slower than publishers, or failing).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_dropped_entries_total", Help: "Entries a producer gave up: not appended before it closed and no spool (or the spool failed), or not fitting a full spool with SpoolDropNewest.",
		}),
		spooled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signald_transport_spooled_entries", Help: "Entries in producers' spool files, waiting to be appended.",
		}),
		spooledTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_spooled_entries_total", Help: "Entries written to a producer's spool file (backend failing with the buffer full, or not appended by Close).",
		}),
		unspooledTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_unspooled_entries_total", Help: "Entries read back from a spool file to be appended.",
		}),
		spoolCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_transport_spool_corrupt_records_total", Help: "Spool records skipped at open because their checksum failed or they were cut short (their entries are lost).",
		}),
		spoolOverflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_spool_overflow_entries_total", Help: "Entries published while the spool was full, by policy (block: the publisher waited; drop-newest: dropped).",
		}, []string{"policy"}),
		deadLetterDeduped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_dead_letters_deduplicated_total", Help: "Entries a group gave up on that another group had already dead-lettered (recorded with the dead letter, not appended again).",
		}, []string{"group"}),
		replaySkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_replay_skipped_entries_total", Help: "Replayed dead letters acknowledged unseen because they were replayed for other groups only.",
		}, []string{"group"}),
		deadLetterTrimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_dead_letter_trimmed_entries_total", Help: "Dead letters removed by the dead-letter stream's retention (MaxLen, MaxAge).",
		}, []string{"stream"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_delivered_entries_total", Help: "Entries read by consumers (including redeliveries).",
		}, []string{"group"}),
		redelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_redelivered_entries_total", Help: "Own pending entries taken back at consumer start.",
		}, []string{"group"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_reclaimed_entries_total", Help: "Entries claimed after sitting idle in the pending list.",
		}, []string{"group"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_poison_entries_total", Help: "Entries dead-lettered because they were delivered PoisonDeliveries times without ever being acknowledged (their handling crashed or stalled the consumer).",
		}, []string{"group"}),
		skippedInFlight: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_inflight_redeliveries_skipped_total", Help: "Pending entries re-read or reclaimed while this consumer was still handling them, and not handed over a second time.",
		}, []string{"group"}),
		claimDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_pending_deleted_entries_total", Help: "Pending entries found trimmed or deleted from the stream before being acknowledged (data lost for the group).",
		}, []string{"group"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_acked_entries_total", Help: "Entries acknowledged after their handler succeeded.",
		}, []string{"group"}),
		ackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_ack_errors_total", Help: "Failed acknowledgements (retried).",
		}, []string{"group"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_read_errors_total", Help: "Failed reads (retried with backoff).",
		}, []string{"group"}),
		handlerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_handler_errors_total", Help: "Handler calls that failed (the batch is retried).",
		}, []string{"group"}),
		handlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_transport_handler_seconds", Help: "Handler call duration per batch.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"group"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_dead_lettered_entries_total", Help: "Entries moved to the dead-letter stream (failed for good, or too often).",
		}, []string{"group"}),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_transport_trimmed_entries_total", Help: "Entries removed by retention (older than the retention window and acknowledged by every group).",
		}, []string{"stream"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.publishErrors, m.publishBatch, m.dropped, m.publishWaits, m.delivered, m.redelivered,
			m.reclaimed, m.claimDeleted, m.acked, m.ackErrors, m.readErrors, m.handlerErrors, m.handlerSeconds, m.trimmed, m.deadLettered, m.poison, m.skippedInFlight,
			m.spooled, m.spooledTotal, m.unspooledTotal, m.spoolCorrupt, m.spoolOverflow,
			m.deadLetterDeduped, m.replaySkipped, m.deadLetterTrimmed)
	}
	return m
}
