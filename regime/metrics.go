package regime

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	signals       *prometheus.CounterVec // by type
	regimeChanges prometheus.Counter     // signals{type="regime_change"}, pre-resolved
	volatile      prometheus.Gauge
	skippedRows   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	signals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_regime_signals_total",
		Help: "Signals emitted by the regime detectors, by type.",
	}, []string{"type"})
	volatile := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "signald_regime_instruments_volatile",
		Help: "Instruments currently in the volatile state.",
	})
	skipped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_regime_skipped_rows_total",
		Help: "Feature rows not used by the volatility detector: NaN/Inf feature value, or a time not after the instrument's last processed step.",
	})
	var err error
	m := &metrics{}
	if m.signals, err = register(reg, signals); err != nil {
		return nil, err
	}
	if m.volatile, err = register(reg, volatile); err != nil {
		return nil, err
	}
	if m.skippedRows, err = register(reg, skipped); err != nil {
		return nil, err
	}
	m.regimeChanges = m.signals.WithLabelValues(TypeRegimeChange)
	return m, nil
}

// register registers c with reg (if any), reusing an identical collector that
// is already registered, so that several detectors add up in one series.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("regime: register metrics: %w", err)
	}
	return c, nil
}
