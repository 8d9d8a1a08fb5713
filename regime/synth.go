package regime

import (
	"cmp"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/signald-dev/signald/internal/stats"
)

// SynthConfig configures a synthetic stream with known regime switches and
// injected anomalies, for evaluating and fitting the detectors. The zero value
// of each field selects its default.
//
// Each instrument's mid follows a random walk in log price whose per-step
// return is drift + vol*e, e a Student-t with 5 degrees of freedom scaled to
// unit variance (fat tails, as real returns have). Regimes last a random
// number of steps (exponential with mean MeanSegment, at least MinSegment)
// and are drawn among
//
//	calm      vol = Vol,        drift = 0
//	trending  vol = Vol,        drift = ±TrendDrift * Vol (sign drawn per segment)
//	volatile  vol = VolRatio*Vol, drift = 0
//
// never the same twice in a row. spread_bps is SpreadBps times a lognormal
// noise (sd 5%), doubled in the volatile regime. Anomalies arrive at rate
// AnomalyRate per step: half of them a one-step return shock of
// ±AnomalyShock*vol (the mid jumps), half a one-step spread blowout of
// AnomalySpread times the usual spread.
//
// Features are computed exactly (rolling windows recomputed from scratch): mid,
// mid_ret, mid_ret_mean_W, mid_ret_std_W (sample, n-1) and spread_bps, NaN
// until their window is full, like the feature engine's.
type SynthConfig struct {
	Seed          uint64  // default 1
	Instruments   int     // default 8
	Steps         int     // default 20000 (1 s steps: 5.6 h per instrument)
	Window        int     // default 60
	Vol           float64 // default 1e-4
	VolRatio      float64 // default 3
	TrendDrift    float64 // default 0.35 (a W-step t-statistic of about 2.7)
	SpreadBps     float64 // default 1
	MeanSegment   int     // default 1500
	MinSegment    int     // default 400
	AnomalyRate   float64 // default 1/1500
	AnomalyShock  float64 // default 10
	AnomalySpread float64 // default 6
}

func (c SynthConfig) withDefaults() SynthConfig {
	c.Seed = cmp.Or(c.Seed, 1)
	c.Instruments = cmp.Or(c.Instruments, 8)
	c.Steps = cmp.Or(c.Steps, 20000)
	c.Window = cmp.Or(c.Window, DefaultWindow)
	c.Vol = cmp.Or(c.Vol, 1e-4)
	c.VolRatio = cmp.Or(c.VolRatio, 3)
	c.TrendDrift = cmp.Or(c.TrendDrift, 0.35)
	c.SpreadBps = cmp.Or(c.SpreadBps, 1)
	c.MeanSegment = cmp.Or(c.MeanSegment, 1500)
	c.MinSegment = cmp.Or(c.MinSegment, 400)
	c.AnomalyRate = cmp.Or(c.AnomalyRate, 1.0/1500)
	c.AnomalyShock = cmp.Or(c.AnomalyShock, 10)
	c.AnomalySpread = cmp.Or(c.AnomalySpread, 6)
	return c
}

// Synthetic truth.
const (
	EventSwitch  = "switch"  // a regime segment starts (not at step 0)
	EventAnomaly = "anomaly" // an injected one-step anomaly
)

// SynthEvent is one known event of a synthetic stream.
type SynthEvent struct {
	Instrument int
	Step       int
	Kind       string // EventSwitch or EventAnomaly
	From, To   string // regimes of a switch
	Dir        int8   // trend direction of a switch to "trending"
	Feature    string // column of an anomaly
}

// Synth is a generated stream: per instrument and step, the feature values
// and the true regime.
type Synth struct {
	Cfg    SynthConfig
	Names  []string
	Mid    [][]float64
	Ret    [][]float64
	Mean   [][]float64
	Std    [][]float64
	Spread [][]float64
	Regime [][]string // true regime per step
	Dir    [][]int8   // true trend direction per step (0 unless trending)
	Events []SynthEvent
}

// SynthT0 is the time of step 0's start; step k is stamped SynthT0+(k+1)s.
const SynthT0 = int64(1_700_000_000) * 1e9

// Synthesize generates a stream; deterministic for a given config.
func Synthesize(cfg SynthConfig) *Synth {
	cfg = cfg.withDefaults()
	s := &Synth{Cfg: cfg}
	rng := newSplitMix(cfg.Seed)
	regimes := []string{StateCalm, StateTrending, StateVolatile}
	for n := range cfg.Instruments {
		s.Names = append(s.Names, fmt.Sprintf("SYN%02d-USD", n))
		T := cfg.Steps
		mid, ret, mean, std, spr := make([]float64, T), make([]float64, T), make([]float64, T), make([]float64, T), make([]float64, T)
		reg, dir := make([]string, T), make([]int8, T)
		p := math.Log(100 * float64(n+1))
		cur := rng.intn(len(regimes))
		var d int8 = 1
		left := 0
		for k := range T {
			if left == 0 {
				if k > 0 {
					next := (cur + 1 + rng.intn(len(regimes)-1)) % len(regimes)
					cur = next
				}
				if regimes[cur] == StateTrending {
					d = 1
					if rng.float64() < 0.5 {
						d = -1
					}
				}
				left = max(cfg.MinSegment, int(-float64(cfg.MeanSegment)*math.Log(1-rng.float64())))
				if k > 0 {
					ev := SynthEvent{Instrument: n, Step: k, Kind: EventSwitch, From: reg[k-1], To: regimes[cur]}
					if regimes[cur] == StateTrending {
						ev.Dir = d
					}
					s.Events = append(s.Events, ev)
				}
			}
			left--
			reg[k] = regimes[cur]
			vol, drift, sp := cfg.Vol, 0.0, cfg.SpreadBps
			switch regimes[cur] {
			case StateTrending:
				drift = float64(d) * cfg.TrendDrift * cfg.Vol
				dir[k] = d
			case StateVolatile:
				vol *= cfg.VolRatio
				sp *= 2
			}
			r := drift + vol*studentT5(rng)
			sp *= math.Exp(0.05 * rng.norm())
			if rng.float64() < cfg.AnomalyRate && k > 0 {
				ev := SynthEvent{Instrument: n, Step: k, Kind: EventAnomaly}
				if rng.float64() < 0.5 {
					sign := 1.0
					if rng.float64() < 0.5 {
						sign = -1
					}
					r += sign * cfg.AnomalyShock * vol
					ev.Feature = "mid_ret"
				} else {
					sp *= cfg.AnomalySpread
					ev.Feature = "spread_bps"
				}
				s.Events = append(s.Events, ev)
			}
			p += r
			mid[k], spr[k] = math.Exp(p), sp
			if k == 0 {
				ret[k] = math.NaN() // no previous mid, as in the engine
			} else {
				ret[k] = math.Log(mid[k] / mid[k-1])
			}
		}
		W := cfg.Window
		for k := range T {
			if k < W {
				mean[k], std[k] = math.NaN(), math.NaN()
				continue
			}
			var w stats.Welford
			for _, v := range ret[k-W+1 : k+1] {
				w.Add(v)
			}
			mean[k], std[k] = w.Mean(), math.Sqrt(w.Var())
		}
		s.Mid, s.Ret, s.Mean, s.Std, s.Spread = append(s.Mid, mid), append(s.Ret, ret), append(s.Mean, mean), append(s.Std, std), append(s.Spread, spr)
		s.Regime, s.Dir = append(s.Regime, reg), append(s.Dir, dir)
	}
	return s
}

// studentT5 is a Student-t variate with 5 degrees of freedom scaled to unit
// variance.
func studentT5(r *splitMix) float64 {
	chi := 0.0
	for range 5 {
		z := r.norm()
		chi += z * z
	}
	return r.norm() / math.Sqrt(chi/5) * math.Sqrt(3.0/5)
}

// SynthColumns are the column names of Synth records: the detectors'
// default names for window w.
func SynthColumns(w int) []string {
	ws := strconv.Itoa(w)
	return []string{"mid", "mid_ret", "mid_ret_mean_" + ws, "mid_ret_std_" + ws, "spread_bps"}
}

// Schema returns the schema of the stream's records.
func (s *Synth) Schema() *arrow.Schema {
	fields := []arrow.Field{
		{Name: colTime, Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: colVenue, Type: arrow.BinaryTypes.String},
		{Name: colInstrument, Type: arrow.BinaryTypes.String},
	}
	for _, c := range SynthColumns(s.Cfg.Window) {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64})
	}
	return arrow.NewSchema(fields, nil)
}

// Record builds step k's record (one row per instrument, sorted by name) with
// schema sc (from Schema). The caller releases it.
func (s *Synth) Record(sc *arrow.Schema, k int) arrow.Record {
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for n := range s.Names {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(SynthT0 + int64(k+1)*1e9))
		b.Field(1).(*array.StringBuilder).Append("synth")
		b.Field(2).(*array.StringBuilder).Append(s.Names[n])
		for j, v := range []float64{s.Mid[n][k], s.Ret[n][k], s.Mean[n][k], s.Std[n][k], s.Spread[n][k]} {
			b.Field(3 + j).(*array.Float64Builder).Append(v)
		}
	}
	return b.NewRecord()
}
