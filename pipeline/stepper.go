package pipeline

import (
	"context"
	"log/slog"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/regime"
	"github.com/signald-dev/signald/store"
)

// StepperConfig configures a Stepper. The zero value runs the feature engine
// with its defaults and no detectors.
type StepperConfig struct {
	Features features.Config
	// Detect runs the regime detectors on every record, with Model (nil:
	// the built-in model).
	Detect bool
	Model  *regime.Model
	// Dedup drops a tick whose id is among the last Dedup ids applied (a
	// redelivery of at-least-once transport); 0 applies every tick.
	Dedup int
	// OnTick, when set, sees every tick just before it is applied (after
	// deduplication).
	OnTick func(*market.Tick)
}

// Stepper feeds ticks through the feature engine and the detectors: the one
// loop the daemon's feature stage, backtest, regime fit and features compute
// share, so that all of them step and detect alike. It is not safe for
// concurrent use.
type Stepper struct {
	cfg   StepperConfig
	eng   *features.Engine
	det   *regime.Detectors
	dedup *idWindow
	dups  prometheus.Counter
}

// NewStepper builds the engine and, with Detect, the detectors for its
// records; a model whose inputs the engine's columns lack fails here,
// naming them. Engine and detector metrics go to reg (nil: not registered).
func NewStepper(cfg StepperConfig, log *slog.Logger, reg prometheus.Registerer) (*Stepper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stepper{cfg: cfg}
	var err error
	if s.eng, err = features.NewEngine(cfg.Features, log, reg); err != nil {
		return nil, err
	}
	if cfg.Detect {
		if s.det, err = newDetectors(s.eng.Schema(), cfg.Model, log, reg); err != nil {
			return nil, err
		}
	}
	if cfg.Dedup > 0 {
		s.dedup = newIDWindow(cfg.Dedup)
		s.dups = newDuplicatesCounter(reg)
	}
	return s, nil
}

// Engine is the stepper's feature engine.
func (s *Stepper) Engine() *features.Engine { return s.eng }

// Detectors are the stepper's detectors; nil without Detect.
func (s *Stepper) Detectors() *regime.Detectors { return s.det }

// Feed applies ticks in order. Each closed step's record goes to the
// detectors first (onSignal gets their signals) and then to onRecord;
// either may be nil.
func (s *Stepper) Feed(ticks []market.Tick, onRecord func(arrow.Record) error, onSignal func(market.Signal) error) error {
	step := s.onStep(onRecord, onSignal)
	for i := range ticks {
		t := &ticks[i]
		if s.dedup != nil && !s.dedup.add(t.ID) {
			s.dups.Inc()
			continue
		}
		if s.cfg.OnTick != nil {
			s.cfg.OnTick(t)
		}
		if err := s.eng.Apply(t, step); err != nil {
			return err
		}
	}
	return nil
}

// FeedAll feeds every batch that read passes to its function, stopping when
// ctx ends, and with flush then closes the steps still open; it returns the
// number of ticks read.
func (s *Stepper) FeedAll(ctx context.Context, read func(fn func([]market.Tick) error) error, flush bool, onRecord func(arrow.Record) error, onSignal func(market.Signal) error) (int, error) {
	n := 0
	err := read(func(ticks []market.Tick) error {
		if err := s.Feed(ticks, onRecord, onSignal); err != nil {
			return err
		}
		n += len(ticks)
		return ctx.Err()
	})
	if err == nil && flush {
		err = s.Flush(onRecord, onSignal)
	}
	return n, err
}

// Backtest reads the stored ticks of q back in receive-time order through a
// fresh stepper of cfg and returns the signals and the number of ticks read.
// Like the daemon, it closes a step only once a later tick shows that the
// step's allowed lateness has passed; with flush it also closes the steps
// still open at the end, which a run had not closed yet.
func Backtest(ctx context.Context, st store.Store, q store.Query, cfg StepperConfig, flush bool, log *slog.Logger) ([]market.Signal, int, error) {
	sp, err := NewStepper(cfg, log, nil)
	if err != nil {
		return nil, 0, err
	}
	var sigs []market.Signal
	n, err := sp.FeedAll(ctx, func(fn func([]market.Tick) error) error { return st.ReadTicks(ctx, q, fn) }, flush, nil, func(s market.Signal) error {
		sigs = append(sigs, s)
		return nil
	})
	if err != nil {
		return nil, n, err
	}
	return sigs, n, nil
}

// Flush closes the steps still open, as Feed does the closed ones.
func (s *Stepper) Flush(onRecord func(arrow.Record) error, onSignal func(market.Signal) error) error {
	return s.eng.Flush(s.onStep(onRecord, onSignal))
}

func (s *Stepper) onStep(onRecord func(arrow.Record) error, onSignal func(market.Signal) error) func(arrow.Record) error {
	if onSignal == nil {
		onSignal = func(market.Signal) error { return nil }
	}
	return func(rec arrow.Record) error {
		if s.det != nil {
			if err := s.det.Step(rec, onSignal); err != nil {
				return err
			}
		}
		if onRecord != nil {
			return onRecord(rec)
		}
		return nil
	}
}

// RegimeColumns returns the detectors' configuration for records of the
// feature schema sc (the catalogue's mid, mid_ret, mid_ret_mean_<W>,
// mid_ret_std_<W>, spread_bps); a schema without them fails here, at
// start-up, naming the missing columns.
func RegimeColumns(sc *arrow.Schema, model *regime.Model) (regime.Config, error) {
	cfg := regime.Config{Model: model}
	det, err := regime.NewDetectors(cfg, nil, nil)
	if err != nil {
		return cfg, err
	}
	return cfg, det.CheckSchema(sc)
}

// newDetectors builds the detectors for records of schema sc.
func newDetectors(sc *arrow.Schema, model *regime.Model, log *slog.Logger, reg prometheus.Registerer) (*regime.Detectors, error) {
	if model == nil {
		model = regime.DefaultModel()
	}
	cfg, err := RegimeColumns(sc, model)
	if err != nil {
		return nil, err
	}
	d, err := regime.NewDetectors(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	if err := d.CheckSchema(sc); err != nil {
		return nil, err
	}
	log.Info("regime: detectors ready", "model", model.Version, "states", model.States)
	return d, nil
}

// idWindow remembers the last n ids, to drop redelivered ticks.
type idWindow struct {
	set  map[uint64]struct{}
	ring []uint64
	pos  int
}

func newIDWindow(n int) *idWindow {
	return &idWindow{set: make(map[uint64]struct{}, n), ring: make([]uint64, 0, n)}
}

// add reports whether id is new.
func (w *idWindow) add(id uint64) bool {
	if _, ok := w.set[id]; ok {
		return false
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, id)
	} else {
		delete(w.set, w.ring[w.pos])
		w.ring[w.pos] = id
		w.pos = (w.pos + 1) % len(w.ring)
	}
	w.set[id] = struct{}{}
	return true
}
