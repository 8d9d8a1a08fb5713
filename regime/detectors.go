package regime

import (
	"cmp"
	"encoding/json"
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
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// codeVersion is part of every signal's ModelVersion. Bump it when a change
// alters which signals the same input produces.
const codeVersion = 1

// Columns names the feature columns the detectors read. The zero value of
// each field selects its default (the feature catalogue's names).
type Columns struct {
	// Mid is the step's mid price; default "mid".
	Mid string
	// Ret is the 1-step log return of mid; default "mid_ret".
	Ret string
	// RetMean and RetStd are the mean and standard deviation of Ret over
	// the model's input window W (Model.Inputs.Window); default
	// "mid_ret_mean_<W>" and "mid_ret_std_<W>" ("mid_ret_mean_60",
	// "mid_ret_std_60" with the built-in model).
	RetMean string
	RetStd  string
}

// ChangepointConfig configures the changepoint detector (BOCPD). It watches
// y = ln(ret² + 0.1σ²) = ln σ² + ln(z² + 0.1), σ the baseline volatility and
// z the return in baseline standard deviations; a new run's prior mean is an
// EW mean of y. A volatility change is a shift of y's mean, and the log tames
// the fat tails of returns
// that a Gaussian segment model would otherwise take for new segments (on
// stationary Student-t(5) returns, z clipped at 8 gave 1.8 false alarms per
// hour, y none in 100,000 steps).
type ChangepointConfig struct {
	// Hazard is the prior probability of a change at each step; default
	// 1e-4.
	Hazard float64
	// MaxRunLengths bounds the run-length hypotheses kept per instrument
	// (the least probable is dropped beyond it); default 100 (as good as 300
	// in the evaluation, at a third of the cost; 32 added false alarms).
	MaxRunLengths int
	// MinDrop is how far the most probable run length must fall in one step
	// (and to less than half) to start a candidate changepoint; default 20.
	MinDrop int
	// Confirm: a candidate is signalled once its new run has been the most
	// probable for this many steps (the signal's delay); default 20.
	Confirm int
}

// NoveltyConfig configures the novelty detector.
type NoveltyConfig struct {
	// Features are the columns scored; default {"mid_ret", "spread_bps"}.
	Features []string
	// HalfLife of the EW mean and variance, in steps; default 300.
	HalfLife int
	// Clip is the Huber clip of updates, in standard deviations; default 3.
	Clip float64
	// Threshold on the distance D that raises a novelty signal; default 8.
	Threshold float64
	// Rearm: after an alarm, D must fall below this before the next; default
	// Threshold/2.
	Rearm float64
	// WarmUp is the number of observations that only build the estimate
	// (plain, unclipped updates; no alarm); default 100.
	WarmUp int
	// MinRelStd floors each feature's standard deviation at this fraction of
	// its mean's size, so a feature that has hardly varied (a spread pinned
	// at one tick) does not turn its first small change into an enormous
	// score; default 1e-3. Set it far lower (e.g. 1e-12) for level features
	// with tiny relative variation.
	MinRelStd float64
}

// TrendConfig configures the trend-following calls (see trend).
type TrendConfig struct {
	// Enter and Exit are the momentum t-statistic thresholds; defaults 3.5
	// and 0.5; Exit must be below Enter.
	Enter, Exit float64
	// StopK is the stop distance in W-step volatilities; default 2.
	StopK float64
}

// Config configures Detectors. The zero value works: every zero field selects
// its default.
type Config struct {
	Columns Columns
	// Model is the regime HMM; default DefaultModel(), the built-in model.
	Model *Model
	// WarmUp is the number of steps with valid inputs an instrument needs
	// before its regime, changepoint and trend signals; default 120.
	WarmUp int
	// SwitchProb is the filtered probability a state needs to become the
	// instrument's regime (hysteresis against flapping between two states
	// near 0.5); default 0.8.
	SwitchProb float64
	// MinDwell is how many consecutive steps a state must be the most
	// probable with at least SwitchProb before it becomes the regime;
	// default 90.
	MinDwell int
	// ProbsDelta: a regime_probs signal is emitted when some state's
	// probability moved by more than this since the last regime_probs signal
	// of the instrument, or on a regime change; default 0.25.
	ProbsDelta  float64
	Changepoint ChangepointConfig
	Novelty     NoveltyConfig
	Trend       TrendConfig
}

// Defaults of Config.
const (
	DefaultWarmUp           = 120
	DefaultSwitchProb       = 0.8
	DefaultProbsDelta       = 0.25
	DefaultHazard           = 1e-4
	DefaultMaxRunLengths    = 100
	DefaultMinDrop          = 20
	DefaultConfirm          = 20
	DefaultMinDwell         = 90
	DefaultNoveltyHalfLife  = 300
	DefaultNoveltyClip      = 3
	DefaultNoveltyThreshold = 8
	DefaultNoveltyWarmUp    = 100
	DefaultNoveltyMinRelStd = 1e-3
	DefaultTrendEnter       = 3.5
	DefaultTrendExit        = 0.5
	DefaultTrendStopK       = 2
)

// DefaultNoveltyFeatures are the novelty detector's default columns.
var DefaultNoveltyFeatures = []string{"mid_ret", "spread_bps"}

// reservedValue are Values keys of regime_change signals, besides state names.
var reservedValue = map[string]bool{"switch": true, "changepoint": true, "run_length": true, "run_length_before": true}

func (c Config) withDefaults() (Config, error) {
	if c.Model == nil {
		c.Model = DefaultModel()
	} else if err := c.Model.Validate(); err != nil {
		return c, err
	}
	w := strconv.Itoa(c.Model.Inputs.Window)
	c.Columns.Mid = cmp.Or(c.Columns.Mid, "mid")
	c.Columns.Ret = cmp.Or(c.Columns.Ret, "mid_ret")
	c.Columns.RetMean = cmp.Or(c.Columns.RetMean, "mid_ret_mean_"+w)
	c.Columns.RetStd = cmp.Or(c.Columns.RetStd, "mid_ret_std_"+w)
	c.WarmUp = cmp.Or(c.WarmUp, DefaultWarmUp)
	c.SwitchProb = cmp.Or(c.SwitchProb, DefaultSwitchProb)
	c.ProbsDelta = cmp.Or(c.ProbsDelta, DefaultProbsDelta)
	cp := &c.Changepoint
	cp.Hazard = cmp.Or(cp.Hazard, DefaultHazard)
	cp.MaxRunLengths = cmp.Or(cp.MaxRunLengths, DefaultMaxRunLengths)
	cp.MinDrop = cmp.Or(cp.MinDrop, DefaultMinDrop)
	cp.Confirm = cmp.Or(cp.Confirm, DefaultConfirm)
	c.MinDwell = cmp.Or(c.MinDwell, DefaultMinDwell)
	nv := &c.Novelty
	if len(nv.Features) == 0 {
		nv.Features = DefaultNoveltyFeatures
	}
	nv.Features = slices.Clone(nv.Features)
	nv.HalfLife = cmp.Or(nv.HalfLife, DefaultNoveltyHalfLife)
	nv.Clip = cmp.Or(nv.Clip, DefaultNoveltyClip)
	nv.Threshold = cmp.Or(nv.Threshold, DefaultNoveltyThreshold)
	nv.Rearm = cmp.Or(nv.Rearm, nv.Threshold/2)
	nv.WarmUp = cmp.Or(nv.WarmUp, DefaultNoveltyWarmUp)
	nv.MinRelStd = cmp.Or(nv.MinRelStd, DefaultNoveltyMinRelStd)
	tr := &c.Trend
	tr.Enter = cmp.Or(tr.Enter, DefaultTrendEnter)
	tr.Exit = cmp.Or(tr.Exit, DefaultTrendExit)
	tr.StopK = cmp.Or(tr.StopK, DefaultTrendStopK)

	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("regime: "+format, args...))
		}
	}
	check(c.WarmUp >= 1, "warm-up %d: must be >= 1", c.WarmUp)
	check(c.SwitchProb > 0.5 && c.SwitchProb <= 1, "switch probability %v: must be in (0.5, 1]", c.SwitchProb)
	check(c.ProbsDelta > 0 && c.ProbsDelta <= 1, "probs delta %v: must be in (0, 1]", c.ProbsDelta)
	check(cp.Hazard > 0 && cp.Hazard < 1, "changepoint hazard %v: must be in (0, 1)", cp.Hazard)
	check(cp.MaxRunLengths >= 2 && cp.MaxRunLengths <= 100000, "changepoint max run lengths %d: must be 2-100000", cp.MaxRunLengths)
	check(cp.MinDrop >= 1, "changepoint min drop %d: must be >= 1", cp.MinDrop)
	check(cp.Confirm >= 0, "changepoint confirm %d: must be >= 0", cp.Confirm)
	check(c.MinDwell >= 1, "min dwell %d: must be >= 1", c.MinDwell)
	check(nv.HalfLife >= 1, "novelty half-life %d: must be >= 1", nv.HalfLife)
	check(nv.Clip > 0 && !bad(nv.Clip), "novelty clip %v: must be > 0", nv.Clip)
	check(nv.Threshold > 0 && !bad(nv.Threshold), "novelty threshold %v: must be > 0", nv.Threshold)
	check(nv.Rearm > 0 && nv.Rearm <= nv.Threshold, "novelty re-arm %v: must be in (0, threshold %v]", nv.Rearm, nv.Threshold)
	check(nv.WarmUp >= 1, "novelty warm-up %d: must be >= 1", nv.WarmUp)
	check(nv.MinRelStd > 0 && nv.MinRelStd < 1, "novelty min relative std %v: must be in (0, 1)", nv.MinRelStd)
	check(!bad(tr.Enter) && !bad(tr.Exit) && tr.Exit >= 0 && tr.Exit < tr.Enter, "trend exit %v, enter %v: want 0 <= exit < enter (hysteresis)", tr.Exit, tr.Enter)
	check(tr.StopK > 0 && !bad(tr.StopK), "trend stop k %v: must be > 0", tr.StopK)
	for _, f := range append(c.columnNames(), nv.Features...) {
		check(f != colTime && f != colVenue && f != colInstrument && f != "", "column %q: not a feature column", f)
	}
	for i, f := range nv.Features {
		check(!slices.Contains(nv.Features[:i], f), "novelty feature %q listed twice", f)
	}
	return c, errors.Join(errs...)
}

func (c *Config) columnNames() []string {
	return []string{c.Columns.Mid, c.Columns.Ret, c.Columns.RetMean, c.Columns.RetStd}
}

// RequiredColumns returns the feature columns the detectors read.
func (c Config) RequiredColumns() ([]string, error) {
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	out := c.columnNames()
	for _, f := range c.Novelty.Features {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// Names of the identifying columns of a feature record (see package features).
const (
	colTime       = "time"
	colVenue      = "venue"
	colInstrument = "instrument"
)

type instKey struct{ venue, instrument string }

// zCap bounds z-scores so that they stay finite (and JSON-encodable) when a
// feature has not varied yet.
const zCap = 1e6

// inst is one instrument's state across all detectors. Its slices are
// allocated when the instrument first appears; a step allocates nothing.
type inst struct {
	key  instKey
	last int64 // step time of the last processed row
	n    int   // steps with valid regime inputs

	// inputs
	volBase float64 // EW mean of ln(ret_std)
	volN    int
	x       [2]float64 // last HMM input
	zRet    float64    // last standardized return
	y       float64    // last changepoint input
	yBase   float64    // EW mean of y: the prior mean of a new run

	// regime
	f         filter
	cur       int // current regime state; -1 before warm-up
	cand      int // state that has been the most probable with >= SwitchProb ...
	candN     int // ... for candN consecutive steps
	lastProbs [MaxStates]float64
	cp        bocpdState

	nov noveltyState
	tr  trendState
}

// Detectors runs every detector over every instrument: the regime HMM as a
// forward filter, changepoint detection, novelty and trend calls. See the
// package documentation (doc.go) for the signals and their rules.
//
// Step is O(1) per instrument and allocates nothing per instrument in steady
// state (signals allocate their explanation when emitted). The output depends
// only on the records' content and order: replaying the same records gives
// the same signals with the same ids. Safe for concurrent use: States may be
// called while Step runs.
type Detectors struct {
	cfg   Config
	hmm   *hmm
	cpd   *bocpd
	nov   *novelty
	trend trend
	volA  float64
	log   *slog.Logger
	m     *detMetrics

	verRegime, verNovelty, verTrend string

	mu     sync.Mutex
	insts  map[instKey]*inst
	sorted []*inst // by venue, instrument
	cols   detColumns
	out    []market.Signal
	novX   []float64
}

// NewDetectors validates cfg, fills in its defaults and returns the
// detectors. logger and reg may be nil.
func NewDetectors(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Detectors, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newDetMetrics(reg, cfg.Model.States)
	if err != nil {
		return nil, fmt.Errorf("regime: register metrics: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Detectors{
		cfg:   cfg,
		hmm:   newHMM(cfg.Model),
		cpd:   newBOCPD(cfg.Changepoint.Hazard, cfg.Changepoint.MaxRunLengths, cfg.Changepoint.MinDrop, cfg.Changepoint.Confirm),
		trend: trend{enter: cfg.Trend.Enter, exit: cfg.Trend.Exit, stopK: cfg.Trend.StopK, sqrtW: math.Sqrt(float64(cfg.Model.Inputs.Window))},
		nov: &novelty{d: len(cfg.Novelty.Features), alpha: halfLifeAlpha(cfg.Novelty.HalfLife), clip: cfg.Novelty.Clip,
			warmUp: cfg.Novelty.WarmUp, threshold: cfg.Novelty.Threshold, rearm: cfg.Novelty.Rearm, minRelStd: cfg.Novelty.MinRelStd},
		volA:  halfLifeAlpha(cfg.Model.Inputs.VolHalfLife),
		m:     m,
		insts: make(map[instKey]*inst),
		novX:  make([]float64, len(cfg.Novelty.Features)),
	}
	d.verRegime = fmt.Sprintf("regime/%d %s %s", codeVersion, cfg.Model.Version,
		cfgHash(cfg.Columns, cfg.WarmUp, cfg.SwitchProb, cfg.MinDwell, cfg.ProbsDelta, cfg.Changepoint))
	d.verNovelty = fmt.Sprintf("novelty/%d %s", codeVersion, cfgHash(cfg.Novelty))
	d.verTrend = fmt.Sprintf("trend/%d %s", codeVersion, cfgHash(cfg.Columns, cfg.WarmUp, cfg.Model.Inputs, cfg.Trend))
	d.log = logger.With("component", "regime", "model", cfg.Model.Version)
	return d, nil
}

// cfgHash is a short hash of the configuration that decides a detector's
// signals, so that signal ids differ when the configuration does.
func cfgHash(v ...any) string {
	b, _ := json.Marshal(v)
	return fmt.Sprintf("%08x", uint32(xxhash.Sum64(b)))
}

func halfLifeAlpha(h int) float64 { return -math.Expm1(-math.Ln2 / float64(h)) } // 1 - 2^(-1/h)

// Config returns the configuration with defaults filled in.
func (d *Detectors) Config() Config { return d.cfg }

// Model returns the regime model in use.
func (d *Detectors) Model() *Model { return d.cfg.Model }

// detColumns are the resolved input columns of one schema.
type detColumns struct {
	schema                  *arrow.Schema
	tsMul                   int64
	time                    int
	venue, inst             int
	mid, ret, mean, std     int
	nov                     []int
	midA, retA, meanA, stdA *array.Float64
	novA                    []*array.Float64
	timeA                   *array.Timestamp
	venueA, instA           *array.String
}

// CheckSchema reports whether records of schema s carry every column the
// detectors read, with the right types; the error names the missing ones.
func (d *Detectors) CheckSchema(s *arrow.Schema) error {
	_, err := d.resolve(s)
	return err
}

func (d *Detectors) resolve(s *arrow.Schema) (detColumns, error) {
	c := detColumns{schema: s}
	var missing, errs []string
	idx := func(name string, want arrow.Type) int {
		ii := s.FieldIndices(name)
		switch {
		case len(ii) == 0:
			missing = append(missing, name)
			return -1
		case len(ii) > 1:
			errs = append(errs, fmt.Sprintf("%d columns named %q", len(ii), name))
			return -1
		case s.Field(ii[0]).Type.ID() != want:
			errs = append(errs, fmt.Sprintf("column %q is %v, want %v", name, s.Field(ii[0]).Type, want))
			return -1
		}
		return ii[0]
	}
	c.time = idx(colTime, arrow.TIMESTAMP)
	c.venue = idx(colVenue, arrow.STRING)
	c.inst = idx(colInstrument, arrow.STRING)
	c.mid = idx(d.cfg.Columns.Mid, arrow.FLOAT64)
	c.ret = idx(d.cfg.Columns.Ret, arrow.FLOAT64)
	c.mean = idx(d.cfg.Columns.RetMean, arrow.FLOAT64)
	c.std = idx(d.cfg.Columns.RetStd, arrow.FLOAT64)
	for _, f := range d.cfg.Novelty.Features {
		c.nov = append(c.nov, idx(f, arrow.FLOAT64))
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Sprintf("missing columns %s (configure regime.Config.Columns and Novelty.Features to match the feature engine)", strings.Join(missing, ", ")))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("regime: feature records: %s", strings.Join(errs, "; "))
	}
	if c.time >= 0 {
		switch s.Field(c.time).Type.(*arrow.TimestampType).Unit {
		case arrow.Second:
			c.tsMul = 1e9
		case arrow.Millisecond:
			c.tsMul = 1e6
		case arrow.Microsecond:
			c.tsMul = 1e3
		default:
			c.tsMul = 1
		}
	}
	c.novA = make([]*array.Float64, len(c.nov))
	return c, nil
}

// bind points the resolved columns at rec's arrays.
func (c *detColumns) bind(rec arrow.Record) {
	c.timeA = rec.Column(c.time).(*array.Timestamp)
	c.venueA = rec.Column(c.venue).(*array.String)
	c.instA = rec.Column(c.inst).(*array.String)
	c.midA = rec.Column(c.mid).(*array.Float64)
	c.retA = rec.Column(c.ret).(*array.Float64)
	c.meanA = rec.Column(c.mean).(*array.Float64)
	c.stdA = rec.Column(c.std).(*array.Float64)
	for i, j := range c.nov {
		c.novA[i] = rec.Column(j).(*array.Float64)
	}
}

func (c *detColumns) unbind() {
	c.timeA, c.venueA, c.instA, c.midA, c.retA, c.meanA, c.stdA = nil, nil, nil, nil, nil, nil, nil
	clear(c.novA)
}

// value reads a float64 cell; null reads as NaN.
func value(a *array.Float64, i int) float64 {
	if a.IsNull(i) {
		return math.NaN()
	}
	return a.Value(i)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// Step runs every detector over one feature record (one row per instrument,
// as produced by features.Engine) and then calls emit for each signal, in row
// order and, within a row, in Type order (novelty, regime_change,
// regime_probs, trend_call), which is also the order in which a store returns
// them. Columns are looked up by name once per schema. The detectors' state
// does not depend on emit's result; emit errors are joined and returned.
//
// A row whose time is not after its instrument's last processed step (a
// replayed record) is skipped whole. A detector whose inputs are NaN (warm-up)
// or otherwise not finite does not update at that step.
func (d *Detectors) Step(rec arrow.Record, emit func(market.Signal) error) error {
	d.mu.Lock()
	if d.cols.schema != rec.Schema() {
		c, err := d.resolve(rec.Schema())
		if err != nil {
			d.mu.Unlock()
			return err
		}
		d.cols = c
	}
	c := &d.cols
	c.bind(rec)
	var skipped, noInput int
	d.out = d.out[:0]
	for i := range int(rec.NumRows()) {
		if c.timeA.IsNull(i) || c.venueA.IsNull(i) || c.instA.IsNull(i) {
			skipped++
			continue
		}
		t := int64(c.timeA.Value(i)) * c.tsMul
		k := instKey{c.venueA.Value(i), c.instA.Value(i)} // aliases Arrow memory: cloned if kept
		st := d.insts[k]
		if st == nil {
			st = d.newInst(instKey{strings.Clone(k.venue), strings.Clone(k.instrument)})
		} else if t <= st.last {
			skipped++
			continue
		}
		st.last = t
		if !d.row(st, c, i, t) {
			noInput++
		}
	}
	c.unbind()
	out := d.out
	d.mu.Unlock()
	if skipped > 0 {
		d.m.skippedRows.Add(float64(skipped))
	}
	if noInput > 0 {
		d.m.noInput.Add(float64(noInput))
	}
	var errs []error
	for i := range out {
		d.m.signals.WithLabelValues(out[i].Type).Inc()
		if emit == nil {
			continue
		}
		if err := emit(out[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Detectors) newInst(k instKey) *inst {
	st := &inst{key: k, cur: -1, cp: d.cpd.newState(), nov: d.nov.newState(), last: math.MinInt64}
	st.tr.stop = math.NaN()
	d.insts[k] = st
	i, _ := slices.BinarySearchFunc(d.sorted, k, func(a *inst, k instKey) int {
		return cmp.Or(cmp.Compare(a.key.venue, k.venue), cmp.Compare(a.key.instrument, k.instrument))
	})
	d.sorted = slices.Insert(d.sorted, i, st)
	return st
}

// row runs the detectors on row i for instrument st; it reports false when
// the regime inputs were not all finite.
func (d *Detectors) row(st *inst, c *detColumns, i int, t int64) bool {
	// novelty: its own columns and warm-up
	okNov := true
	for j, a := range c.novA {
		v := value(a, i)
		okNov = okNov && finite(v)
		d.novX[j] = v
	}
	if okNov && d.nov.step(&st.nov, d.novX) {
		d.out = append(d.out, d.noveltySignal(st, t))
	}

	mid, ret, mean, std := value(c.midA, i), value(c.retA, i), value(c.meanA, i), value(c.stdA, i)
	if !finite(mid) || !finite(ret) || !finite(mean) || !finite(std) || std < 0 || mid <= 0 {
		return false
	}
	var tau float64
	st.x, tau, st.zRet = deriveInputs(&st.volBase, &st.volN, d.volA, d.cfg.Model.Inputs.Window, ret, mean, std)
	st.n++
	warm := st.n > d.cfg.WarmUp
	// Changepoint input: ln(ret² + 0.1 σ_b²) with σ_b the baseline
	// volatility. Unstandardized, so that the baseline's slow adaptation
	// after a change is not itself a series of changes; the baseline only
	// sets the prior mean of a new run (yBase) and the floor under zero
	// returns.
	volB := math.Exp(2 * st.volBase)
	st.y = math.Log(ret*ret + 0.1*volB)
	if st.n == 1 {
		st.yBase = st.y
	}

	// regime: HMM forward filter and changepoints
	d.hmm.step(&st.f, &st.x)
	cpChanged, cpProb := d.cpd.step(&st.cp, st.y, st.yBase)
	st.yBase += d.volA * (st.y - st.yBase)
	if warm {
		switched := false
		prevState := st.cur
		best := 0
		for j := 1; j < d.hmm.k; j++ {
			if st.f.p[j] > st.f.p[best] {
				best = j
			}
		}
		if st.cur < 0 {
			st.cur = best
			d.m.instruments[best].Inc()
		} else if best == st.cur || st.f.p[best] < d.cfg.SwitchProb {
			st.candN = 0
		} else if st.candN++; best != st.cand {
			st.cand, st.candN = best, 1
		}
		if prevState >= 0 && st.candN >= d.cfg.MinDwell {
			st.candN = 0
			d.m.instruments[st.cur].Dec()
			d.m.instruments[best].Inc()
			st.cur, switched = best, true
		}
		if switched || cpChanged {
			d.out = append(d.out, d.changeSignal(st, t, prevState, switched, cpChanged, st.cp.candPrev, cpProb))
		}
		maxMove := 0.0
		for j := range d.hmm.k {
			maxMove = max(maxMove, math.Abs(st.f.p[j]-st.lastProbs[j]))
		}
		if switched || prevState < 0 || maxMove > d.cfg.ProbsDelta {
			var why string
			switch {
			case prevState < 0:
				why = "warm-up over"
			case switched:
				why = "regime now " + d.cfg.Model.States[st.cur]
			default:
				why = fmt.Sprintf("largest move %.2f since the last report", maxMove)
			}
			d.out = append(d.out, d.probsSignal(st, t, why))
			st.lastProbs = st.f.p
		}
	}
	// trend: stops trail from the first valid step; calls only once warm
	if changed := d.trend.step(&st.tr, mid, tau, std); changed && warm {
		d.out = append(d.out, d.trendSignal(st, t, mid, std))
	} else if changed {
		// Calls are not signalled in the warm-up; start flat after it.
		st.tr = trendState{stop: math.NaN(), tau: tau}
	}
	return true
}

// deriveInputs computes the HMM inputs (log_vol_ratio, abs_trend_t), the
// signed trend t-statistic and the standardized return from one step's
// columns, and updates the instrument's volatility baseline. The same code
// serves the online detectors and the offline fit.
func deriveInputs(volBase *float64, volN *int, volA float64, window int, ret, mean, std float64) (x [2]float64, tau, zRet float64) {
	lstd := math.Log(max(std, 1e-12))
	*volN++
	if *volN == 1 {
		*volBase = lstd
	}
	base := *volBase
	x[0] = min(max(lstd-base, -10), 10)
	*volBase += max(volA, 1/float64(*volN)) * (lstd - base)
	if std > 0 {
		tau = min(max(mean*math.Sqrt(float64(window))/std, -50), 50)
	}
	x[1] = math.Abs(tau)
	zRet = ret / math.Exp(base)
	return x, tau, zRet
}

// States returns every instrument's latest state, sorted by venue and
// instrument.
func (d *Detectors) States() []market.InstrumentState {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]market.InstrumentState, len(d.sorted))
	for i, st := range d.sorted {
		s := &out[i]
		s.Venue, s.Instrument, s.Time = st.key.venue, st.key.instrument, st.last
		s.Warm = st.n > d.cfg.WarmUp && st.nov.n > d.cfg.Novelty.WarmUp
		s.Novelty = st.nov.score
		s.RunLength = st.cp.mapRL
		if st.cur >= 0 {
			s.Regime = d.cfg.Model.States[st.cur]
			s.RegimeProbs = make(map[string]float64, d.hmm.k)
			for j, name := range d.cfg.Model.States {
				s.RegimeProbs[name] = st.f.p[j]
			}
		}
		s.Trend, s.TrendStrength, s.TrendStop = st.tr.call, st.tr.strength, st.tr.stop
	}
	return out
}

// --- signals ---

func (d *Detectors) signal(st *inst, t int64, typ, state, ver string, score float64, values map[string]float64, expl string) market.Signal {
	s := market.Signal{Time: t, Venue: st.key.venue, Instrument: st.key.instrument, Type: typ, State: state,
		Score: score, ModelVersion: ver, Explanation: expl, Values: values}
	s.ComputeID()
	return s
}

func (d *Detectors) probsMap(st *inst) map[string]float64 {
	m := make(map[string]float64, d.hmm.k+4)
	for j, name := range d.cfg.Model.States {
		m[name] = round6(st.f.p[j])
	}
	return m
}

// round6 keeps probabilities readable in JSON; the rounding is deterministic.
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

func (d *Detectors) inputsText(st *inst) string {
	return fmt.Sprintf("volatility %.2fx its baseline (log_vol_ratio %+.2f), |trend t| %.2f",
		math.Exp(st.x[0]), st.x[0], st.x[1])
}

func (d *Detectors) changeSignal(st *inst, t int64, prev int, switched, cp bool, cpPrev int, cpProb float64) market.Signal {
	names := d.cfg.Model.States
	cur := names[st.cur]
	v := d.probsMap(st)
	v["run_length"] = float64(st.cp.mapRL)
	var parts []string
	score := st.f.p[st.cur]
	if switched {
		v["switch"] = 1
		parts = append(parts, fmt.Sprintf("regime %s -> %s (P=%.2f): %s", names[prev], cur, st.f.p[st.cur], d.inputsText(st)))
	}
	if cp {
		v["changepoint"] = 1
		v["run_length_before"] = float64(cpPrev)
		if !switched {
			score = cpProb
		}
		// y = ln(ret² + 0.1σ²): exp(Δy/2) approximates the volatility ratio
		parts = append(parts, fmt.Sprintf("changepoint about %d steps ago: most probable run length fell from %d to %d (P=%.2f); volatility since about %.1fx its baseline",
			st.cp.mapRL, cpPrev, st.cp.mapRL, cpProb, math.Exp((st.cp.mapMu-st.yBase)/2)))
	}
	return d.signal(st, t, market.TypeRegimeChange, cur, d.verRegime, round6(score), v, strings.Join(parts, "; "))
}

func (d *Detectors) probsSignal(st *inst, t int64, why string) market.Signal {
	var b strings.Builder
	b.WriteString("P(")
	for j, name := range d.cfg.Model.States {
		if j > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f", name, st.f.p[j])
	}
	fmt.Fprintf(&b, "); %s; %s", why, d.inputsText(st))
	return d.signal(st, t, market.TypeRegimeProbs, d.cfg.Model.States[st.cur], d.verRegime, round6(st.f.p[st.cur]), d.probsMap(st), b.String())
}

func (d *Detectors) noveltySignal(st *inst, t int64) market.Signal {
	feats := d.cfg.Novelty.Features
	d2 := st.nov.score * st.nov.score
	v := make(map[string]float64, len(feats))
	order := make([]int, len(feats))
	for i, f := range feats {
		v[f] = round6(st.nov.z[i] * st.nov.z[i] / d2)
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(math.Abs(st.nov.z[b]), math.Abs(st.nov.z[a])) })
	var b strings.Builder
	fmt.Fprintf(&b, "novelty D=%.1f above %.1f:", st.nov.score, d.cfg.Novelty.Threshold)
	for n, i := range order {
		if n == 3 {
			break
		}
		fmt.Fprintf(&b, " %s %.0f%% (z=%+.1f)", feats[i], 100*v[feats[i]], st.nov.z[i])
	}
	return d.signal(st, t, market.TypeNovelty, "novel", d.verNovelty, round6(st.nov.score), v, b.String())
}

func (d *Detectors) trendSignal(st *inst, t int64, mid, std float64) market.Signal {
	tr := &st.tr
	w := d.cfg.Model.Inputs.Window
	v := map[string]float64{"strength": round6(tr.strength)}
	var expl string
	switch tr.call {
	case 0:
		expl = fmt.Sprintf("flat (%s): %d-step momentum t=%+.2f, mid %s", tr.reason, w, tr.tau, strconv.FormatFloat(mid, 'g', 8, 64))
	default:
		v["stop"] = tr.stop
		side, dir := "above", "below"
		if tr.call > 0 {
			side, dir = "below", "above"
		}
		expl = fmt.Sprintf("%s: %d-step momentum t=%+.2f (%s %.1f), strength %.2f; stop %s, %.1f %d-step vols %s mid %s",
			callName(tr.call), w, tr.tau, dir, math.Copysign(d.cfg.Trend.Enter, float64(tr.call)), tr.strength,
			strconv.FormatFloat(tr.stop, 'g', 8, 64), d.cfg.Trend.StopK, w, side, strconv.FormatFloat(mid, 'g', 8, 64))
	}
	return d.signal(st, t, market.TypeTrendCall, callName(tr.call), d.verTrend, round6(tr.tau), v, expl)
}
