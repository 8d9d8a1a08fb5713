package api

import "github.com/prometheus/client_golang/prometheus"

// metrics are the API's.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	evicted  prometheus.Counter

	connsOpen     prometheus.Gauge
	connsShed     prometheus.Counter
	connsRejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_http_requests_total", Help: "HTTP requests answered, by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_http_request_duration_seconds", Help: "Time to answer an HTTP request (handler only, from routing to the last write), by handler.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"handler"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_http_signal_ring_evicted_total", Help: "Signals evicted from the ring behind /v1/signals (still in the store); responses say when a query reaches past them.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signald_http_open_connections", Help: "Open HTTP connections (bounded by the connection limit).",
		}),
		connsShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_http_idle_connections_shed_total", Help: "Idle keep-alive connections closed to make room for a new one at the connection limit.",
		}),
		connsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_http_rejected_connections_total", Help: "Connections closed on arrival because the connection limit was reached and none was idle.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.evicted, m.connsOpen, m.connsShed, m.connsRejected)
	}
	return m
}
