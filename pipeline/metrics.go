package pipeline

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	published   prometheus.Counter
	storeWait   prometheus.Histogram
	lost        *prometheus.CounterVec
	lostSignals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_pipeline_ticks_published_total", Help: "Ticks handed to the transport by ingest.",
		}),
		storeWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signald_pipeline_store_wait_seconds",
			Help: "Per tick: from ingest to the start of its store insert (publish, stream, read, batching); the rest of signald_store_tick_to_storage_seconds is the insert.",
			Buckets: []float64{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
				0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_pipeline_lost_ticks_total",
			Help: "Ticks ingest published that never reached the store (holes in their sequence numbers that stayed open for the loss delay), by venue and instrument: a lost Redis tail, an external trim, any loss in between.",
		}, []string{"venue", "instrument"}),
		lostSignals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_pipeline_lost_signals_total",
			Help: "Signals the feature stage published that never reached the store (holes in their sequence numbers), by venue and instrument.",
		}, []string{"venue", "instrument"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.storeWait, m.lost, m.lostSignals)
	}
	return m
}

// newDuplicatesCounter counts the redelivered ticks a Stepper dropped.
func newDuplicatesCounter(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_pipeline_duplicate_ticks_total", Help: "Redelivered ticks the feature stage dropped (already applied).",
	})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}
