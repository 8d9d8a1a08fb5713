package features

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/internal/promreg"
	"github.com/signald-dev/signald/market"
)

// Reasons for signald_features_invalid_ticks_total, indexes into reasons.
const (
	invRecvTS    = iota // RecvTS <= 0
	invPrice            // NaN, Inf or <= 0 price (trade price, bid or ask)
	invSize             // NaN, Inf or <= 0 trade size; NaN, Inf or < 0 quote size
	invCrossed          // quote with ask < bid
	invClockJump        // held past the clock guard and not confirmed (Config.MaxClockJump)
	invTooEarly         // RecvTS before Config.MinRecvTime
	numReasons
)

var reasons = [numReasons]string{"recv_ts", "price", "size", "crossed", "clock_jump", "before_min_time"}

const numKinds = int(market.KindGap) + 1

type metrics struct {
	steps        prometheus.Counter
	skippedSteps prometheus.Counter
	instruments  prometheus.Gauge
	stepDuration prometheus.Histogram
	lateTicks    prometheus.Counter
	nonFinite    prometheus.Counter
	reanchors    prometheus.Counter
	restarts     prometheus.Counter
	stateBytes   prometheus.Gauge
	// Pre-resolved label values: no label lookup per tick.
	ignored [numKinds + 1]prometheus.Counter // by Kind; the last one is "other"
	invalid [numReasons]prometheus.Counter
}

// newMetrics registers the engine's metrics with reg (if any). Engines
// sharing a registry share the collectors, so they add up in the same
// series; an error is the registry's.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	steps := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_steps_total",
		Help: "Steps closed and emitted by the feature engine (one record each).",
	})
	skipped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_skipped_steps_total",
		Help: "Empty steps of a time gap that were not emitted because every rolling window was already filled with empty steps.",
	})
	instruments := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "signald_features_instruments",
		Help: "Instruments (venue + instrument) tracked by the feature engine.",
	})
	stepDuration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "signald_features_step_duration_seconds",
		Help:    "Time to close one step and build its record, excluding the consumer's emit.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10us .. 2.6s
	})
	late := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_late_ticks_total",
		Help: "Ticks not applied because their step had already closed (RecvTS before the oldest open step).",
	})
	nonFinite := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_nonfinite_values_total",
		Help: "Per-step base values that overflowed to an infinity (absurd but valid input) and were treated as undefined (NaN; the series warms up again).",
	})
	reanchors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_reanchors_total",
		Help: "Rolling windows whose shift was moved to the window mean and whose sums were recomputed (O(window), for numerical accuracy).",
	})
	restarts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signald_features_series_restarts_total",
		Help: "Base series of an instrument that became undefined after having started (their windows warm up again).",
	})
	stateBytes := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "signald_features_state_bytes_per_instrument",
		Help: "Rolling-window state per instrument (ring buffers, sums, block extremes) at the last change of the instrument set.",
	})
	ignored := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_features_ignored_ticks_total",
		Help: "Ticks of a kind the feature engine does not use yet, by kind.",
	}, []string{"kind"})
	invalid := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signald_features_invalid_ticks_total",
		Help: "Ticks skipped because a field is unusable, by reason (recv_ts, price, size, crossed, clock_jump: a jump of the clock past max_clock_jump that later ticks did not confirm, before_min_time).",
	}, []string{"reason"})

	var err error
	m := &metrics{}
	if m.steps, err = promreg.Register(reg, steps); err != nil {
		return nil, err
	}
	if m.skippedSteps, err = promreg.Register(reg, skipped); err != nil {
		return nil, err
	}
	if m.instruments, err = promreg.Register(reg, instruments); err != nil {
		return nil, err
	}
	if m.stepDuration, err = promreg.Register(reg, stepDuration); err != nil {
		return nil, err
	}
	if m.lateTicks, err = promreg.Register(reg, late); err != nil {
		return nil, err
	}
	if m.nonFinite, err = promreg.Register(reg, nonFinite); err != nil {
		return nil, err
	}
	if m.reanchors, err = promreg.Register(reg, reanchors); err != nil {
		return nil, err
	}
	if m.restarts, err = promreg.Register(reg, restarts); err != nil {
		return nil, err
	}
	if m.stateBytes, err = promreg.Register(reg, stateBytes); err != nil {
		return nil, err
	}
	if ignored, err = promreg.Register(reg, ignored); err != nil {
		return nil, err
	}
	if invalid, err = promreg.Register(reg, invalid); err != nil {
		return nil, err
	}
	for k := range numKinds {
		m.ignored[k] = ignored.WithLabelValues(market.Kind(k).String())
	}
	m.ignored[numKinds] = ignored.WithLabelValues("other")
	for i, r := range reasons {
		m.invalid[i] = invalid.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) ignoredTick(k market.Kind) {
	if int(k) < numKinds {
		m.ignored[k].Inc()
		return
	}
	m.ignored[numKinds].Inc()
}
