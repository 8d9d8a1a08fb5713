package macro

import "github.com/prometheus/client_golang/prometheus"

// metrics are the builder's. Their names stay under signald_http_: they
// describe what the HTTP API serves.
type metrics struct {
	builds       *prometheus.CounterVec
	buildSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_http_macro_builds_total", Help: "Macro snapshots built: once per feature step (step), or to keep venue freshness moving when no step closes (refresh).",
		}, []string{"reason"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signald_http_macro_build_seconds", Help: "Time to build the macro snapshot of a step (aggregation, JSON, gzip, Arrow), on the feature stage.",
			Buckets: []float64{100e-6, 250e-6, 500e-6, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.builds, m.buildSeconds)
	}
	return m
}
