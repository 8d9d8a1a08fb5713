package regime

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/internal/promreg"
	"github.com/signald-dev/signald/market"
)

type detMetrics struct {
	signals     *prometheus.CounterVec // by type
	skippedRows prometheus.Counter
	noInput     prometheus.Counter
	instruments []prometheus.Gauge // by regime state index
}

// newDetMetrics registers the detectors' metrics with reg (if any).
// Detectors sharing a registry share the collectors, so they add up in one
// series; an error is the registry's.
func newDetMetrics(reg prometheus.Registerer, states []string) (*detMetrics, error) {
	signals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_regime_signals_total",
		Help: "Signals emitted by the regime detectors, by type.",
	}, []string{"type"})
	skipped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_regime_skipped_rows_total",
		Help: "Feature rows the detectors did not use at all: null time or key, or a time not after the instrument's last processed step (a replayed record).",
	})
	noInput := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_regime_rows_without_inputs_total",
		Help: "Feature rows whose regime and trend inputs were not all finite (feature warm-up, no quote yet): those detectors did not update at that step.",
	})
	instruments := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "signald_regime_instruments",
		Help: "Instruments past warm-up, by current regime state.",
	}, []string{"regime"})
	var err error
	m := &detMetrics{}
	if m.signals, err = promreg.Register(reg, signals); err != nil {
		return nil, err
	}
	if m.skippedRows, err = promreg.Register(reg, skipped); err != nil {
		return nil, err
	}
	if m.noInput, err = promreg.Register(reg, noInput); err != nil {
		return nil, err
	}
	if instruments, err = promreg.Register(reg, instruments); err != nil {
		return nil, err
	}
	for _, s := range states {
		m.instruments = append(m.instruments, instruments.WithLabelValues(s))
	}
	for _, t := range []string{market.TypeRegimeChange, market.TypeRegimeProbs, market.TypeNovelty, market.TypeTrendCall} {
		m.signals.WithLabelValues(t) // present at 0 from the start
	}
	return m, nil
}
