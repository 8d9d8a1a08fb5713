package regime

import (
	"cmp"
	"fmt"
	"io"
	"slices"

	"github.com/signald-dev/signald/market"
)

// EvalConfig configures Evaluate. The zero value of each field selects its
// default.
type EvalConfig struct {
	// Synth is the evaluation stream; use another seed than the fit's.
	Synth SynthConfig
	// Detectors is the configuration under test.
	Detectors Config
	// MaxDelay is how many steps after a regime switch a regime, changepoint
	// or trend signal still counts as detecting it; default 300.
	MaxDelay int
	// NoveltyDelay is the same for anomalies; default 2.
	NoveltyDelay int
}

// DetectorEval is one detector's score on a synthetic stream.
type DetectorEval struct {
	Detector string `json:"detector"`
	// Events are the true events the detector is meant to find; Detected of
	// them had a matching signal within the allowed delay.
	Events   int `json:"events"`
	Detected int `json:"detected"`
	// Signals the detector emitted; FalseAlarms of them matched no event.
	Signals     int `json:"signals"`
	FalseAlarms int `json:"false_alarms"`
	// Delays of the detections, in steps.
	MeanDelay   float64 `json:"mean_delay_steps"`
	MedianDelay float64 `json:"median_delay_steps"`
	// FalseAlarmsPerHour is per instrument-hour of stream.
	FalseAlarmsPerHour float64 `json:"false_alarms_per_hour"`
	Precision          float64 `json:"precision"`
	Recall             float64 `json:"recall"`
}

// EvalReport is the result of Evaluate.
type EvalReport struct {
	InstrumentHours float64        `json:"instrument_hours"`
	Detectors       []DetectorEval `json:"detectors"`
	// StateAccuracy is the share of warm steps whose current HMM regime is
	// the true one (names match with a 3-state calm/trending/volatile model).
	StateAccuracy float64 `json:"state_accuracy"`
	// Signals counts every emitted signal by type.
	Signals map[string]int `json:"signals"`
}

// Evaluate runs the detectors over a synthetic stream with known regime
// switches and anomalies and scores each detector:
//
//   - hmm: regime_change signals with a state switch, against every regime
//     switch;
//   - changepoint: regime_change signals with a changepoint, against the
//     switches into or out of the volatile regime (a return-distribution
//     detector cannot be expected to see a drift of a third of a standard
//     deviation quickly);
//   - novelty: novelty signals against the injected anomalies, within
//     NoveltyDelay steps;
//   - trend: long/short trend_call signals against switches into a trending
//     regime, in the right direction; a call counts as correct (not a false
//     alarm) when the true trend had its direction at some step of the
//     preceding window.
//
// A signal matches an event when it comes at most MaxDelay steps after it
// and before the instrument's next event of the same kind.
func Evaluate(cfg EvalConfig) (*EvalReport, error) {
	cfg.MaxDelay = cmp.Or(cfg.MaxDelay, 300)
	cfg.NoveltyDelay = cmp.Or(cfg.NoveltyDelay, 2)
	s := Synthesize(cfg.Synth)
	det, err := NewDetectors(cfg.Detectors, nil, nil)
	if err != nil {
		return nil, err
	}
	schema := s.Schema()
	if err := det.CheckSchema(schema); err != nil {
		return nil, err
	}
	nInst := len(s.Names)
	type sig struct {
		step int
		s    market.Signal
	}
	sigs := make([][]sig, nInst)
	idx := map[string]int{}
	for i, n := range s.Names {
		idx[n] = i
	}
	rep := &EvalReport{Signals: map[string]int{}}
	var match, total int
	for k := range s.Cfg.Steps {
		rec := s.Record(schema, k)
		err := det.Step(rec, func(x market.Signal) error {
			sigs[idx[x.Instrument]] = append(sigs[idx[x.Instrument]], sig{k, x})
			rep.Signals[x.Type]++
			return nil
		})
		rec.Release()
		if err != nil {
			return nil, err
		}
		for i, name := range s.Names {
			st := det.insts[instKey{"synth", name}]
			if st != nil && st.cur >= 0 {
				total++
				if det.cfg.Model.States[st.cur] == s.Regime[i][k] {
					match++
				}
			}
		}
	}
	if total > 0 {
		rep.StateAccuracy = float64(match) / float64(total)
	}
	rep.InstrumentHours = float64(nInst*s.Cfg.Steps) / 3600

	score := func(name string, events func(SynthEvent) bool, isSig func(market.Signal) bool, delay int, ok func(inst, step int, ev *SynthEvent, x market.Signal) bool) DetectorEval {
		r := DetectorEval{Detector: name}
		var delays []int
		for i := range nInst {
			var evs []SynthEvent
			for _, e := range s.Events {
				if e.Instrument == i && events(e) {
					evs = append(evs, e)
				}
			}
			var ss []sig
			for _, x := range sigs[i] {
				if isSig(x.s) {
					ss = append(ss, x)
				}
			}
			r.Events += len(evs)
			r.Signals += len(ss)
			used := make([]bool, len(ss))
			for e := range evs {
				end := evs[e].Step + delay
				if e+1 < len(evs) {
					end = min(end, evs[e+1].Step-1)
				}
				first := -1
				for j, x := range ss {
					if x.step >= evs[e].Step && x.step <= end && ok(i, x.step, &evs[e], x.s) {
						used[j] = true
						if first < 0 {
							first = x.step - evs[e].Step
						}
					}
				}
				if first >= 0 {
					r.Detected++
					delays = append(delays, first)
				}
			}
			for j, x := range ss {
				if !used[j] && !ok(i, x.step, nil, x.s) {
					r.FalseAlarms++
				}
			}
		}
		if len(delays) > 0 {
			sum := 0
			for _, d := range delays {
				sum += d
			}
			slices.Sort(delays)
			r.MeanDelay = float64(sum) / float64(len(delays))
			r.MedianDelay = float64(delays[len(delays)/2])
		}
		r.FalseAlarmsPerHour = float64(r.FalseAlarms) / rep.InstrumentHours
		if r.Signals > 0 {
			r.Precision = 1 - float64(r.FalseAlarms)/float64(r.Signals)
		}
		if r.Events > 0 {
			r.Recall = float64(r.Detected) / float64(r.Events)
		}
		return r
	}
	isSwitch := func(e SynthEvent) bool { return e.Kind == EventSwitch }
	always := func(_, _ int, ev *SynthEvent, _ market.Signal) bool { return ev != nil }
	rep.Detectors = append(rep.Detectors,
		score("hmm", isSwitch, func(x market.Signal) bool { return x.Type == market.TypeRegimeChange && x.Values["switch"] == 1 }, cfg.MaxDelay, always),
		score("changepoint", func(e SynthEvent) bool {
			return e.Kind == EventSwitch && (e.From == StateVolatile || e.To == StateVolatile)
		}, func(x market.Signal) bool { return x.Type == market.TypeRegimeChange && x.Values["changepoint"] == 1 }, cfg.MaxDelay, always),
		score("novelty", func(e SynthEvent) bool { return e.Kind == EventAnomaly },
			func(x market.Signal) bool { return x.Type == market.TypeNovelty }, cfg.NoveltyDelay, always),
		score("trend", func(e SynthEvent) bool { return e.Kind == EventSwitch && e.To == StateTrending },
			func(x market.Signal) bool { return x.Type == market.TypeTrendCall && x.State != CallFlat },
			cfg.MaxDelay, func(i, step int, ev *SynthEvent, x market.Signal) bool {
				want := int8(1)
				if x.State == CallShort {
					want = -1
				}
				if ev != nil {
					return ev.Dir == want
				}
				// not matched to an onset: still right if it follows a true trend
				for k := max(0, step-s.Cfg.Window); k <= step; k++ {
					if s.Dir[i][k] == want {
						return true
					}
				}
				return false
			}),
	)
	return rep, nil
}

// WriteText prints the report as a table.
func (r *EvalReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%.1f instrument-hours; HMM state accuracy %.3f; signals %v\n", r.InstrumentHours, r.StateAccuracy, r.Signals)
	fmt.Fprintf(w, "%-12s %7s %8s %8s %7s %10s %10s %9s %9s %7s\n", "detector", "events", "detected", "signals", "false", "delay_mean", "delay_med", "FA/hour", "precision", "recall")
	for _, d := range r.Detectors {
		fmt.Fprintf(w, "%-12s %7d %8d %8d %7d %10.1f %10.0f %9.2f %9.3f %7.3f\n", d.Detector, d.Events, d.Detected, d.Signals,
			d.FalseAlarms, d.MeanDelay, d.MedianDelay, d.FalseAlarmsPerHour, d.Precision, d.Recall)
	}
}
