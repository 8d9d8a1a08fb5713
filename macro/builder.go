// Package macro builds the market summary behind /v1/macro: once per feature
// step, from the step's feature record and the detectors' states, prepared
// as JSON, gzipped JSON and Arrow so that serving it computes nothing.
package macro

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/internal/stats"
	"github.com/signald-dev/signald/market"
)

// Defaults of Config.
var (
	// DefaultReturns: the step return and the 60- and 300-step returns
	// (sums of step log returns) of the feature catalogue.
	DefaultReturns = []string{"mid_ret", "mid_ret_sum_60", "mid_ret_sum_300"}
)

const (
	DefaultRV           = "mid_ret_rv_60"
	DefaultTopNovelties = 10
	DefaultTrendCalls   = 20
	DefaultStaleAfter   = 10 * time.Second
	DefaultRefresh      = 2 * time.Second
)

// Config configures the builder. The zero value of each field selects its
// default.
type Config struct {
	// Returns are the return columns whose cross-section gives breadth and
	// dispersion, in output order; default DefaultReturns. A column
	// the feature records lack is left out of the output and listed under
	// columns.missing.
	Returns []string
	// RV is the per-instrument realized volatility column of the RV index;
	// default "mid_ret_rv_60". Absent: no rv_index in the output.
	RV string
	// TopNovelties is how many instruments top_novelties lists; default 10.
	TopNovelties int
	// TrendCalls is how many instruments' latest trend calls are listed,
	// newest first; default 20.
	TrendCalls int
	// StaleAfter marks a venue stale when it sent nothing for this long;
	// default 10s.
	StaleAfter time.Duration
	// Refresh: when no step came for this long, the snapshot is rebuilt from
	// the last step's data so that venue freshness keeps moving (a venue
	// that went silent becomes stale even if no step closes); default 2s.
	Refresh time.Duration
	// Now is the clock of freshness and generated_at; default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Returns == nil {
		c.Returns = DefaultReturns
	}
	if c.RV == "" {
		c.RV = DefaultRV
	}
	if c.TopNovelties <= 0 {
		c.TopNovelties = DefaultTopNovelties
	}
	if c.TrendCalls <= 0 {
		c.TrendCalls = DefaultTrendCalls
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

type instKey struct{ venue, instrument string }

// Builder keeps the latest market summary. It is rebuilt once per feature
// step, on the feature stage's goroutine, and served as prepared bytes: a
// request never computes anything.
type Builder struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu        sync.Mutex // guards venues, novelty, trend
	venues    map[string]*venueState
	novelty   map[instKey]market.Signal // latest novelty signal per instrument
	trend     map[instKey]market.Signal // latest trend call per instrument
	buildMu   sync.Mutex                // one build at a time: step or refresh
	last      *macroInput               // the last step's input, for refreshes
	lastBuild atomic.Int64
	steps     atomic.Int64
	firstStep atomic.Int64 // wall time (ns) the first step's snapshot was published
	snap      atomic.Pointer[macroSnap]
	zw        *gzip.Writer // reused by publish, under buildMu (or before any step)
}

type venueState struct {
	lastRecv, lastIngest int64
	ticks                int64
}

type macroSnap struct {
	json, gz, arrow Prepared
	step            int64
	stepHdr         []string
}

// New returns a builder that serves a warming-up body until the first step.
// Its metrics go to reg (nil: not registered); log (nil: discarded) says
// which feature columns it reads, when that changes.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Builder {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Builder{
		cfg: cfg, log: log, m: newMetrics(reg),
		venues:  map[string]*venueState{},
		novelty: map[instKey]market.Signal{},
		trend:   map[instKey]market.Signal{},
	}
	b.publish(&macroView{Status: "warming up: no feature step completed yet", Columns: macroColumns{Read: []string{}, Missing: []string{}}}, 0)
	return b
}

// Seen records a tick for venue freshness.
func (b *Builder) Seen(t *market.Tick) {
	b.mu.Lock()
	v := b.venues[t.Venue]
	if v == nil {
		v = &venueState{}
		b.venues[strings.Clone(t.Venue)] = v
	}
	v.lastRecv, v.lastIngest = t.RecvTS, t.IngestTS
	v.ticks++
	b.mu.Unlock()
}

// Signal records a detector output as the instrument's latest novelty or
// trend call.
func (b *Builder) Signal(s market.Signal) {
	b.mu.Lock()
	k := instKey{s.Venue, s.Instrument}
	switch s.Type {
	case market.TypeNovelty:
		b.novelty[k] = s
	case market.TypeTrendCall:
		b.trend[k] = s
	}
	b.mu.Unlock()
}

// macroInput is what one build reads: the step's cross-section, extracted
// from its feature record, and the detector states.
type macroInput struct {
	step          int64
	stepTime      int64
	schemaVersion string
	keys          []instKey
	returns       []returnCol // present return columns, in config order
	rv            []float64   // nil when the RV column is absent
	columns       macroColumns
	states        []market.InstrumentState
	market        features.Market // the engine's cross-instrument aggregates of the step
}

type returnCol struct {
	name string
	vals []float64
}

// Step rebuilds the snapshot from a feature record and the detectors'
// states; rec is not kept.
func (b *Builder) Step(rec arrow.Record, market features.Market, states []market.InstrumentState) {
	start := time.Now()
	in := b.extract(rec)
	in.states = states
	in.market = market
	in.step = b.steps.Load() + 1
	if b.last == nil || !slices.Equal(b.last.columns.Read, in.columns.Read) || !slices.Equal(b.last.columns.Missing, in.columns.Missing) {
		b.log.Info("macro: feature columns", "read", in.columns.Read, "missing", in.columns.Missing)
	}
	b.buildMu.Lock()
	b.build(in)
	b.last = in
	b.buildMu.Unlock()
	b.steps.Store(in.step)
	if in.step == 1 {
		b.firstStep.Store(time.Now().UnixNano())
	}
	b.m.builds.WithLabelValues("step").Inc()
	b.m.buildSeconds.Observe(time.Since(start).Seconds())
}

// Steps is the number of steps built so far.
func (b *Builder) Steps() int64 { return b.steps.Load() }

// FirstStep is the wall time (ns since the epoch) the first step's snapshot
// was published; 0 before.
func (b *Builder) FirstStep() int64 { return b.firstStep.Load() }

// RefreshEvery is how often Refresh should be called: half the configured
// Refresh, so that a refresh is at most that late.
func (b *Builder) RefreshEvery() time.Duration { return b.cfg.Refresh / 2 }

// Refresh rebuilds the snapshot from the last step's data when no step came
// for Config.Refresh, so that venue freshness does not freeze with the steps.
func (b *Builder) Refresh() {
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	if b.last == nil || b.cfg.Now().UnixNano()-b.lastBuild.Load() < int64(b.cfg.Refresh) {
		return
	}
	b.build(b.last)
	b.m.builds.WithLabelValues("refresh").Inc()
}

func (b *Builder) extract(rec arrow.Record) *macroInput {
	in := &macroInput{schemaVersion: SchemaVersion(rec.Schema()), columns: macroColumns{Read: []string{}, Missing: []string{}}}
	n := int(rec.NumRows())
	sch := rec.Schema()
	strCol := func(name string) *array.String {
		if idx := sch.FieldIndices(name); len(idx) == 1 {
			a, _ := rec.Column(idx[0]).(*array.String)
			return a
		}
		return nil
	}
	floatCol := func(name string) []float64 {
		if idx := sch.FieldIndices(name); len(idx) == 1 {
			if a, ok := rec.Column(idx[0]).(*array.Float64); ok {
				out := make([]float64, n)
				for i := range out {
					if a.IsNull(i) {
						out[i] = math.NaN()
					} else {
						out[i] = a.Value(i)
					}
				}
				in.columns.Read = append(in.columns.Read, name)
				return out
			}
		}
		in.columns.Missing = append(in.columns.Missing, name)
		return nil
	}
	if idx := sch.FieldIndices(features.ColTime); len(idx) == 1 && n > 0 {
		if a, ok := rec.Column(idx[0]).(*array.Timestamp); ok {
			in.stepTime = int64(a.Value(0)) // the engine writes ns
		}
	}
	venues, insts := strCol(features.ColVenue), strCol(features.ColInstrument)
	var prev []instKey
	if b.last != nil {
		prev = b.last.keys
	}
	in.keys = make([]instKey, n)
	if venues != nil && insts != nil {
		for i := range in.keys {
			v, s := venues.Value(i), insts.Value(i)
			// Arrow memory is not ours to keep: reuse last step's strings
			// (the rows rarely change), clone otherwise.
			if i < len(prev) && prev[i].venue == v && prev[i].instrument == s {
				in.keys[i] = prev[i]
			} else {
				in.keys[i] = instKey{strings.Clone(v), strings.Clone(s)}
			}
		}
	}
	for _, name := range b.cfg.Returns {
		if vals := floatCol(name); vals != nil {
			in.returns = append(in.returns, returnCol{name, vals})
		}
	}
	in.rv = floatCol(b.cfg.RV)
	return in
}

// build computes the view from in and publishes it. Callers hold buildMu.
func (b *Builder) build(in *macroInput) {
	now := b.cfg.Now()
	b.mu.Lock()
	venues := make(map[string]venueState, len(b.venues))
	for k, v := range b.venues {
		venues[k] = *v
	}
	nov := make(map[instKey]market.Signal, len(b.novelty))
	for k, v := range b.novelty {
		nov[k] = v
	}
	trends := make([]market.Signal, 0, len(b.trend))
	for _, v := range b.trend {
		trends = append(trends, v)
	}
	b.mu.Unlock()
	v := computeMacro(in, venues, nov, trends, now, b.cfg)
	b.publish(v, in.step)
	b.lastBuild.Store(now.UnixNano())
}

// publish encodes v (JSON, gzipped JSON, Arrow) and swaps the snapshot in.
func (b *Builder) publish(v *macroView, step int64) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(fmt.Sprintf(`{"error":%q}`, "macro: "+err.Error()))
	}
	s := &macroSnap{step: step, stepHdr: []string{strconv.FormatInt(step, 10)}}
	s.json = NewPrepared(body, "application/json", "")
	var gz bytes.Buffer
	if b.zw == nil {
		b.zw, _ = gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	} else {
		b.zw.Reset(&gz) // a new writer costs ~1 MB of compressor state
	}
	b.zw.Write(body)
	b.zw.Close()
	s.gz = NewPrepared(gz.Bytes(), "application/json", "gzip")
	s.gz.etag = strings.TrimSuffix(s.json.etag, `"`) + `-gz"` // one entity, two encodings
	s.gz.etagHdr = []string{s.gz.etag}
	ab, err := macroArrow(v)
	if err != nil {
		ab = nil
	}
	s.arrow = NewPrepared(ab, "application/vnd.apache.arrow.stream", "")
	b.snap.Store(s)
}

// SchemaVersion is the feature schema version a record's schema carries; ""
// when it carries none.
func SchemaVersion(s *arrow.Schema) string {
	if i := s.Metadata().FindKey(features.SchemaVersionKey); i >= 0 {
		return s.Metadata().Values()[i]
	}
	return ""
}

// The macro view, as served in JSON. Shares and statistics over no
// instruments are null.
type macroView struct {
	Status        string           `json:"status,omitempty"`
	Step          int64            `json:"step"`
	StepTime      string           `json:"step_time,omitempty"`
	GeneratedAt   string           `json:"generated_at,omitempty"`
	SchemaVersion string           `json:"schema_version,omitempty"`
	Instruments   int              `json:"instruments"`
	Columns       macroColumns     `json:"columns"`
	RegimeMix     regimeMix        `json:"regime_mix"`
	Breadth       breadthView      `json:"breadth"`
	Dispersion    []dispersionView `json:"dispersion"`
	RVIndex       *rvIndexView     `json:"rv_index,omitempty"`
	TopNovelties  []noveltyView    `json:"top_novelties"`
	TrendCalls    []trendCallView  `json:"trend_calls"`
	Venues        []venueView      `json:"venues"`
	// Market: the feature engine's market aggregates of the step, by name
	// (`signald features list`); null where undefined.
	Market map[string]jsonFloat `json:"market"`
}

type macroColumns struct {
	Read    []string `json:"read"`
	Missing []string `json:"missing"`
}

// regimeMix: every instrument of the step, by its regime state;
// "warming_up" holds those without a state yet.
type regimeMix struct {
	N      int                  `json:"n"`
	Counts map[string]int       `json:"counts"`
	Shares map[string]jsonFloat `json:"shares"`
}

// RegimeWarmingUp is the regime_mix bucket of instruments the detectors have
// no state for yet.
const RegimeWarmingUp = "warming_up"

type upDown struct {
	N    int       `json:"n"`
	Up   jsonFloat `json:"up"`
	Down jsonFloat `json:"down"`
	Flat jsonFloat `json:"flat"`
}

type returnBreadth struct {
	Column string `json:"column"`
	upDown
}

type breadthView struct {
	// Trend: shares of warm instruments whose trend call is long (up),
	// short (down) or flat.
	Trend upDown `json:"trend"`
	// Returns: shares of instruments with a positive, negative or zero
	// return, per return column (instruments whose value is NaN excluded).
	Returns []returnBreadth `json:"returns"`
}

type dispersionView struct {
	Column string    `json:"column"`
	N      int       `json:"n"`
	Mean   jsonFloat `json:"mean"`
	Std    jsonFloat `json:"std"` // population (divides by n)
}

type rvIndexView struct {
	Column string    `json:"column"`
	N      int       `json:"n"`
	Median jsonFloat `json:"median"`
	Mean   jsonFloat `json:"mean"`
}

type noveltyView struct {
	Venue       string             `json:"venue"`
	Instrument  string             `json:"instrument"`
	Novelty     jsonFloat          `json:"novelty"`
	Regime      string             `json:"regime"`
	SignalTime  string             `json:"signal_time,omitempty"`
	Explanation string             `json:"explanation,omitempty"`
	Values      map[string]float64 `json:"values,omitempty"`
}

type trendCallView struct {
	Time        string    `json:"time"`
	Venue       string    `json:"venue"`
	Instrument  string    `json:"instrument"`
	State       string    `json:"state"`
	Score       jsonFloat `json:"score"`
	Strength    jsonFloat `json:"strength"`
	Stop        jsonFloat `json:"stop"`
	Explanation string    `json:"explanation"`
}

type venueView struct {
	Venue            string    `json:"venue"`
	Instruments      int       `json:"instruments"`
	Ticks            int64     `json:"ticks"`
	LastRecv         string    `json:"last_recv"`
	SecondsSinceTick jsonFloat `json:"seconds_since_tick"`
	Stale            bool      `json:"stale"`
}

type jsonFloat float64

// MarshalJSON writes NaN and Inf (features still warming up) as null.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 64), nil
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func share(k, n int) jsonFloat {
	if n == 0 {
		return jsonFloat(math.NaN())
	}
	return jsonFloat(float64(k) / float64(n))
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// computeMacro is the aggregation itself, a pure function of its inputs.
func computeMacro(in *macroInput, venues map[string]venueState, nov map[instKey]market.Signal, trends []market.Signal, now time.Time, cfg Config) *macroView {
	n := len(in.keys)
	v := &macroView{
		Step:          in.step,
		StepTime:      rfc3339(in.stepTime),
		GeneratedAt:   now.UTC().Format(time.RFC3339Nano),
		SchemaVersion: in.schemaVersion,
		Instruments:   n,
		Columns:       in.columns,
		Market:        map[string]jsonFloat{},
	}
	if len(in.market.Values) > 0 {
		for i, d := range features.MarketCatalog() {
			v.Market[d.Name] = jsonFloat(in.market.Values[i])
		}
	}
	states := make(map[instKey]*market.InstrumentState, len(in.states))
	for i := range in.states {
		s := &in.states[i]
		states[instKey{s.Venue, s.Instrument}] = s
	}

	// Regime mix and trend breadth.
	counts := map[string]int{}
	var tUp, tDown, tFlat int
	perVenue := map[string]int{}
	for _, k := range in.keys {
		perVenue[k.venue]++
		s := states[k]
		if s == nil || !s.Warm || s.Regime == "" {
			counts[RegimeWarmingUp]++
			continue
		}
		counts[s.Regime]++
		switch {
		case s.Trend > 0:
			tUp++
		case s.Trend < 0:
			tDown++
		default:
			tFlat++
		}
	}
	v.RegimeMix = regimeMix{N: n, Counts: counts, Shares: make(map[string]jsonFloat, len(counts))}
	for st, c := range counts {
		v.RegimeMix.Shares[st] = share(c, n)
	}
	tn := tUp + tDown + tFlat
	v.Breadth.Trend = upDown{tn, share(tUp, tn), share(tDown, tn), share(tFlat, tn)}

	// Return breadth and dispersion.
	v.Breadth.Returns = []returnBreadth{}
	v.Dispersion = []dispersionView{}
	for _, rc := range in.returns {
		var up, down, flat int
		w := stats.ShiftedWelford()
		for _, x := range rc.vals {
			if !finite(x) {
				continue
			}
			w.Add(x)
			switch {
			case x > 0:
				up++
			case x < 0:
				down++
			default:
				flat++
			}
		}
		m := up + down + flat
		v.Breadth.Returns = append(v.Breadth.Returns, returnBreadth{rc.name, upDown{m, share(up, m), share(down, m), share(flat, m)}})
		d := dispersionView{Column: rc.name, N: m, Mean: jsonFloat(math.NaN()), Std: jsonFloat(math.NaN())}
		if m > 0 {
			d.Mean, d.Std = jsonFloat(w.Mean()), jsonFloat(math.Sqrt(w.PopVar()))
		}
		v.Dispersion = append(v.Dispersion, d)
	}

	// Realized-volatility index.
	if in.rv != nil {
		xs := make([]float64, 0, len(in.rv))
		var sum stats.Neumaier
		for _, x := range in.rv {
			if finite(x) {
				xs = append(xs, x)
				sum.Add(x)
			}
		}
		r := &rvIndexView{Column: cfg.RV, N: len(xs), Median: jsonFloat(math.NaN()), Mean: jsonFloat(math.NaN())}
		if len(xs) > 0 {
			sort.Float64s(xs)
			r.Median = jsonFloat(median(xs))
			r.Mean = jsonFloat(sum.Value() / float64(len(xs)))
		}
		v.RVIndex = r
	}

	// Top novelties: the warm instruments of the step with the highest
	// novelty above 0 (0 = typical), each with its latest novelty signal.
	v.TopNovelties = []noveltyView{}
	type cand struct {
		k instKey
		s *market.InstrumentState
	}
	var cands []cand
	for _, k := range in.keys {
		if s := states[k]; s != nil && s.Warm && finite(s.Novelty) && s.Novelty > 0 {
			cands = append(cands, cand{k, s})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(b.s.Novelty, a.s.Novelty), cmp.Compare(a.k.venue, b.k.venue), cmp.Compare(a.k.instrument, b.k.instrument))
	})
	for _, c := range cands[:min(len(cands), cfg.TopNovelties)] {
		nv := noveltyView{Venue: c.k.venue, Instrument: c.k.instrument, Novelty: jsonFloat(c.s.Novelty), Regime: c.s.Regime}
		if sig, ok := nov[c.k]; ok {
			nv.SignalTime, nv.Explanation, nv.Values = rfc3339(sig.Time), sig.Explanation, sig.Values
		}
		v.TopNovelties = append(v.TopNovelties, nv)
	}

	// Latest trend call per instrument, newest first.
	slices.SortFunc(trends, func(a, b market.Signal) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), cmp.Compare(a.Venue, b.Venue), cmp.Compare(a.Instrument, b.Instrument))
	})
	v.TrendCalls = []trendCallView{}
	for _, s := range trends[:min(len(trends), cfg.TrendCalls)] {
		tv := trendCallView{Time: rfc3339(s.Time), Venue: s.Venue, Instrument: s.Instrument, State: s.State,
			Score: jsonFloat(s.Score), Strength: jsonFloat(math.NaN()), Stop: jsonFloat(math.NaN()), Explanation: s.Explanation}
		if x, ok := s.Values["strength"]; ok {
			tv.Strength = jsonFloat(x)
		}
		if x, ok := s.Values["stop"]; ok {
			tv.Stop = jsonFloat(x)
		}
		v.TrendCalls = append(v.TrendCalls, tv)
	}

	// Venue freshness.
	v.Venues = make([]venueView, 0, len(venues))
	for name, vs := range venues {
		age := now.Sub(time.Unix(0, vs.lastIngest))
		v.Venues = append(v.Venues, venueView{name, perVenue[name], vs.ticks, rfc3339(vs.lastRecv), jsonFloat(age.Seconds()), age > cfg.StaleAfter})
	}
	slices.SortFunc(v.Venues, func(a, b venueView) int { return cmp.Compare(a.Venue, b.Venue) })
	return v
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return sorted[n/2-1]/2 + sorted[n/2]/2
}

// The Arrow form of the macro view is one long ("tidy") record: one row per
// number of the JSON view, named by metric (the JSON path) and key (the
// regime state, the return column, venue:instrument or the venue), with the
// explanation of novelty and trend rows in text. Schema metadata carries
// step, step_time, generated_at and schema_version.
var macroArrowSchemaFields = []arrow.Field{
	{Name: "metric", Type: arrow.BinaryTypes.String},
	{Name: "key", Type: arrow.BinaryTypes.String},
	{Name: "value", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "text", Type: arrow.BinaryTypes.String, Nullable: true},
}

func macroArrow(v *macroView) ([]byte, error) {
	md := arrow.NewMetadata(
		[]string{"signald.macro.step", "signald.macro.step_time", "signald.macro.generated_at", features.SchemaVersionKey, "signald.macro.status"},
		[]string{strconv.FormatInt(v.Step, 10), v.StepTime, v.GeneratedAt, v.SchemaVersion, v.Status})
	schema := arrow.NewSchema(macroArrowSchemaFields, &md)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer bld.Release()
	metric := bld.Field(0).(*array.StringBuilder)
	key := bld.Field(1).(*array.StringBuilder)
	value := bld.Field(2).(*array.Float64Builder)
	text := bld.Field(3).(*array.StringBuilder)
	add := func(m, k string, x float64, t string) {
		metric.Append(m)
		key.Append(k)
		if finite(x) {
			value.Append(x)
		} else {
			value.AppendNull()
		}
		if t == "" {
			text.AppendNull()
		} else {
			text.Append(t)
		}
	}
	add("instruments", "", float64(v.Instruments), "")
	add("regime_mix.n", "", float64(v.RegimeMix.N), "")
	for _, st := range sortedKeys(v.RegimeMix.Counts) {
		add("regime_mix.counts", st, float64(v.RegimeMix.Counts[st]), "")
		add("regime_mix.shares", st, float64(v.RegimeMix.Shares[st]), "")
	}
	ud := func(prefix, k string, u upDown) {
		add(prefix+".n", k, float64(u.N), "")
		add(prefix+".up", k, float64(u.Up), "")
		add(prefix+".down", k, float64(u.Down), "")
		add(prefix+".flat", k, float64(u.Flat), "")
	}
	ud("breadth.trend", "", v.Breadth.Trend)
	for _, r := range v.Breadth.Returns {
		ud("breadth.returns", r.Column, r.upDown)
	}
	for _, d := range v.Dispersion {
		add("dispersion.n", d.Column, float64(d.N), "")
		add("dispersion.mean", d.Column, float64(d.Mean), "")
		add("dispersion.std", d.Column, float64(d.Std), "")
	}
	if r := v.RVIndex; r != nil {
		add("rv_index.n", r.Column, float64(r.N), "")
		add("rv_index.median", r.Column, float64(r.Median), "")
		add("rv_index.mean", r.Column, float64(r.Mean), "")
	}
	for _, nv := range v.TopNovelties {
		add("top_novelties.novelty", nv.Venue+":"+nv.Instrument, float64(nv.Novelty), nv.Explanation)
	}
	for _, t := range v.TrendCalls {
		k := t.Venue + ":" + t.Instrument
		add("trend_calls.score", k, float64(t.Score), t.Explanation)
		add("trend_calls.strength", k, float64(t.Strength), "")
		add("trend_calls.stop", k, float64(t.Stop), "")
	}
	for _, vv := range v.Venues {
		add("venues.instruments", vv.Venue, float64(vv.Instruments), "")
		add("venues.ticks", vv.Venue, float64(vv.Ticks), "")
		add("venues.seconds_since_tick", vv.Venue, float64(vv.SecondsSinceTick), "")
		stale := 0.0
		if vv.Stale {
			stale = 1
		}
		add("venues.stale", vv.Venue, stale, "")
	}
	for _, k := range sortedKeys(v.Market) {
		add("market", k, float64(v.Market[k]), "")
	}
	rec := bld.NewRecord()
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("macro arrow: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("macro arrow: %w", err)
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
