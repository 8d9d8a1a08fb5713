package regime

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/prometheus/client_golang/prometheus"
)

// ModelVersion identifies the volatility regime model in its signals. Bump it
// when a change alters which signals the same input produces.
const ModelVersion = "volregime/1"

// Volatility regime states.
const (
	StateCalm     = "calm"
	StateVolatile = "volatile"
)

// Names of the identifying columns of a feature record (see package features).
const (
	colTime       = "time"
	colVenue      = "venue"
	colInstrument = "instrument"
)

// VolConfig configures a VolRegime. The zero value of each field selects its
// default.
type VolConfig struct {
	// Feature is the input column, a short realized volatility; default
	// "mid_ret_rv_15" (sqrt of the sum of squared 1-step mid log returns
	// over 15 steps; see features.Catalog).
	Feature string
	// Baseline is the half-life, in observations (steps), of the exponentially
	// weighted mean and variance of the feature; default 300.
	Baseline int
	// Enter is the z-score above which a calm instrument becomes volatile;
	// default 4.0 (at 2.0, a 10-step rv's sampling noise alone crossed it about
	// every 150 steps on a calm random walk; at 4.0 never in 19,000 steps,
	// while a 3x volatility burst is still caught within a step).
	Enter float64
	// Exit is the z-score below which a volatile instrument returns to calm;
	// default 1.0; must be below Enter (the hysteresis band).
	Exit float64
	// WarmUp is the number of valid observations of an instrument that only
	// build its baseline: no transition, hence no signal, before it; default 60.
	WarmUp int
}

// Defaults of VolConfig.
const (
	DefaultVolFeature  = "mid_ret_rv_15"
	DefaultVolBaseline = 300
	DefaultVolEnter    = 4.0
	DefaultVolExit     = 1.0
	DefaultVolWarmUp   = 60
)

func (c VolConfig) withDefaults() (VolConfig, error) {
	if c.Feature == "" {
		c.Feature = DefaultVolFeature
	}
	if c.Baseline == 0 {
		c.Baseline = DefaultVolBaseline
	}
	if c.Enter == 0 {
		c.Enter = DefaultVolEnter
	}
	if c.Exit == 0 {
		c.Exit = DefaultVolExit
	}
	if c.WarmUp == 0 {
		c.WarmUp = DefaultVolWarmUp
	}
	switch {
	case c.Feature == colTime || c.Feature == colVenue || c.Feature == colInstrument:
		return c, fmt.Errorf("regime: feature %q: not a feature column", c.Feature)
	case c.Baseline < 1:
		return c, fmt.Errorf("regime: baseline %d: must be >= 1 step", c.Baseline)
	case math.IsNaN(c.Enter) || math.IsInf(c.Enter, 0):
		return c, fmt.Errorf("regime: enter %v: must be finite", c.Enter)
	case math.IsNaN(c.Exit) || math.IsInf(c.Exit, 0):
		return c, fmt.Errorf("regime: exit %v: must be finite", c.Exit)
	case c.Exit >= c.Enter:
		return c, fmt.Errorf("regime: exit %v: must be below enter %v (hysteresis)", c.Exit, c.Enter)
	case c.WarmUp < 1:
		return c, fmt.Errorf("regime: warm-up %d: must be >= 1", c.WarmUp)
	}
	return c, nil
}

// State is a snapshot of one instrument's volatility regime.
type State struct {
	Venue      string  `json:"venue"`
	Instrument string  `json:"instrument"`
	State      string  `json:"state"` // StateCalm or StateVolatile
	Z          float64 `json:"z"`     // z-score of the last observation
	// Since is the step time (ns) the current state began: its transition, or
	// the instrument's first observation.
	Since int64 `json:"since"`
	// Time is the step time (ns) of the last observation.
	Time int64 `json:"time"`
	// Warm reports whether the warm-up is over (transitions are signalled).
	Warm bool `json:"warm"`
	// BaselineMean and BaselineStd are the baseline after the last observation.
	BaselineMean float64 `json:"baseline_mean"`
	BaselineStd  float64 `json:"baseline_std"`
}

type instKey struct{ venue, instrument string }

// volInst is one instrument's detector state.
type volInst struct {
	key      instKey
	n        int     // valid observations
	mean     float64 // EW mean of the feature
	variance float64 // EW variance of the feature
	volatile bool
	z        float64
	since    int64
	last     int64
}

// VolRegime classifies each instrument as calm or volatile from a short
// realized volatility feature, against an exponentially weighted baseline of
// the same feature:
//
//	z = (x - mean) / std        mean, std: the baseline before x
//	calm     -> volatile  when z > Enter
//	volatile -> calm      when z < Exit
//
// then x updates the baseline (EW mean and variance, West/Finch incremental
// form: d = x - mean; mean += a*d; var = (1-a)*(var + a*d*d)), with
// a = max(1 - 2^(-1/Baseline), 1/n) for the n-th observation, so the first
// observations get the plain running mean and variance instead of a biased
// start. The baseline keeps learning while the instrument is volatile: a
// volatility level that persists for several half-lives becomes the new calm.
//
// Each transition after the warm-up emits one Signal of TypeRegimeChange. The
// output depends only on the records' content and order. A VolRegime is safe
// for concurrent use (States may be called while Process runs).
type VolRegime struct {
	cfg   VolConfig
	alpha float64
	log   *slog.Logger
	m     *metrics

	mu    sync.Mutex
	insts map[instKey]*volInst
}

// NewVolRegime validates cfg, fills in its defaults and returns a detector.
// logger and reg may be nil.
func NewVolRegime(cfg VolConfig, logger *slog.Logger, reg prometheus.Registerer) (*VolRegime, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &VolRegime{
		cfg:   cfg,
		alpha: -math.Expm1(-math.Ln2 / float64(cfg.Baseline)), // 1 - 2^(-1/h)
		log:   logger.With("component", "regime", "model", ModelVersion),
		m:     m,
		insts: make(map[instKey]*volInst),
	}, nil
}

// Config returns the detector's configuration with defaults filled in.
func (d *VolRegime) Config() VolConfig { return d.cfg }

// columns are the input columns of one record.
type columns struct {
	time  *array.Timestamp
	tsMul int64 // to ns
	venue *array.String
	inst  *array.String
	x     *array.Float64
}

func (d *VolRegime) columns(rec arrow.Record) (columns, error) {
	var c columns
	sc := rec.Schema()
	col := func(name string) (arrow.Array, error) {
		idx := sc.FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("regime: record has %d %q columns, want 1", len(idx), name)
		}
		return rec.Column(idx[0]), nil
	}
	a, err := col(colTime)
	if err != nil {
		return c, err
	}
	var ok bool
	if c.time, ok = a.(*array.Timestamp); !ok {
		return c, fmt.Errorf("regime: column %q is %v, want a timestamp", colTime, a.DataType())
	}
	switch a.DataType().(*arrow.TimestampType).Unit {
	case arrow.Second:
		c.tsMul = 1e9
	case arrow.Millisecond:
		c.tsMul = 1e6
	case arrow.Microsecond:
		c.tsMul = 1e3
	default:
		c.tsMul = 1
	}
	for _, s := range []struct {
		name string
		dst  **array.String
	}{{colVenue, &c.venue}, {colInstrument, &c.inst}} {
		if a, err = col(s.name); err != nil {
			return c, err
		}
		if *s.dst, ok = a.(*array.String); !ok {
			return c, fmt.Errorf("regime: column %q is %v, want utf8", s.name, a.DataType())
		}
	}
	if a, err = col(d.cfg.Feature); err != nil {
		return c, err
	}
	if c.x, ok = a.(*array.Float64); !ok {
		return c, fmt.Errorf("regime: column %q is %v, want float64", d.cfg.Feature, a.DataType())
	}
	return c, nil
}

// Process runs the detector over one feature record (one row per instrument
// and step, as produced by features.Engine) and calls emit for every regime
// change, in row order, after the record has been fully processed. The
// detector's state does not depend on emit's result; emit errors are joined
// and returned.
//
// Rows whose feature value is NaN, Inf or null, and rows whose time is not
// after the instrument's last processed step (a replayed record), are skipped
// without any state change.
func (d *VolRegime) Process(rec arrow.Record, emit func(Signal) error) error {
	c, err := d.columns(rec)
	if err != nil {
		return err
	}
	var out []Signal
	d.mu.Lock()
	for i := range int(rec.NumRows()) {
		if sig, ok := d.row(&c, i); ok {
			out = append(out, sig)
		}
	}
	d.mu.Unlock()

	var errs []error
	for _, s := range out {
		if err := emit(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// row processes row i and returns the signal of a transition, if any.
func (d *VolRegime) row(c *columns, i int) (Signal, bool) {
	x := c.x.Value(i)
	if c.x.IsNull(i) || math.IsNaN(x) || math.IsInf(x, 0) || c.time.IsNull(i) {
		d.m.skippedRows.Inc()
		return Signal{}, false
	}
	t := int64(c.time.Value(i)) * c.tsMul
	k := instKey{c.venue.Value(i), c.inst.Value(i)} // aliases Arrow memory: cloned if kept
	st := d.insts[k]
	if st == nil {
		k = instKey{strings.Clone(k.venue), strings.Clone(k.instrument)}
		st = &volInst{key: k, since: t, last: t}
		d.insts[k] = st
	} else if t <= st.last {
		d.m.skippedRows.Inc()
		return Signal{}, false
	}
	st.last = t

	if st.n == 0 {
		st.n, st.mean, st.variance, st.z = 1, x, 0, 0
		return Signal{}, false
	}
	mean, std := st.mean, math.Sqrt(st.variance)
	st.z = zScore(x, mean, std)
	warm := st.n >= d.cfg.WarmUp

	// Baseline update (after z: x is judged against the past).
	st.n++
	a := max(d.alpha, 1/float64(st.n))
	diff := x - mean
	incr := float64(a * diff)
	st.mean = mean + incr
	st.variance = float64((1 - a) * (st.variance + float64(diff*incr)))

	if !warm {
		return Signal{}, false
	}
	var threshold float64
	switch {
	case !st.volatile && st.z > d.cfg.Enter:
		st.volatile, threshold = true, d.cfg.Enter
		d.m.volatile.Inc()
	case st.volatile && st.z < d.cfg.Exit:
		st.volatile, threshold = false, d.cfg.Exit
		d.m.volatile.Dec()
	default:
		return Signal{}, false
	}
	st.since = t
	dir := "above"
	if !st.volatile {
		dir = "below"
	}
	sig := Signal{
		Time:         t,
		Venue:        st.key.venue,
		Instrument:   st.key.instrument,
		Type:         TypeRegimeChange,
		State:        stateName(st.volatile),
		Score:        st.z,
		ModelVersion: ModelVersion,
		Explanation: fmt.Sprintf("%s z=%.2f %s %.2f (baseline mean %s, std %s)",
			d.cfg.Feature, st.z, dir, threshold, sci(mean), sci(std)),
	}
	sig.ComputeID()
	d.m.regimeChanges.Inc()
	return sig, true
}

// zCap bounds z so that it stays finite (and JSON-encodable) when the
// baseline has no variance yet.
const zCap = 1e6

func zScore(x, mean, std float64) float64 {
	dev := x - mean
	if dev == 0 {
		return 0
	}
	if std == 0 || math.Abs(dev) >= zCap*std {
		return math.Copysign(zCap, dev)
	}
	return dev / std
}

func stateName(volatile bool) string {
	if volatile {
		return StateVolatile
	}
	return StateCalm
}

// sci formats v with two significant digits, e.g. 1.2e-04.
func sci(v float64) string { return strconv.FormatFloat(v, 'e', 1, 64) }

// States returns a snapshot of every instrument's state, sorted by venue and
// instrument.
func (d *VolRegime) States() []State {
	d.mu.Lock()
	out := make([]State, 0, len(d.insts))
	for _, st := range d.insts {
		out = append(out, State{
			Venue:        st.key.venue,
			Instrument:   st.key.instrument,
			State:        stateName(st.volatile),
			Z:            st.z,
			Since:        st.since,
			Time:         st.last,
			Warm:         st.n >= d.cfg.WarmUp,
			BaselineMean: st.mean,
			BaselineStd:  math.Sqrt(st.variance),
		})
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b State) int {
		return cmp.Or(cmp.Compare(a.Venue, b.Venue), cmp.Compare(a.Instrument, b.Instrument))
	})
	return out
}
