package features

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
)

// SchemaVersion is stored in the record schema's metadata under
// SchemaVersionKey. Bump it when the meaning or layout of existing columns
// changes; adding feature columns or windows does not change it.
//
// Version 2: the catalogue of base series x windows x statistics (issue 6);
// "ret" became "mid_ret", "rv_<w>" became "mid_ret_rv_<w>", the
// "ret_mean/std_<w>" columns "mid_ret_mean/std_<w>", and "trade_imb_<w>" the
// per-step "trade_imb" series with its window statistics.
const (
	SchemaVersion    = "2"
	SchemaVersionKey = "signald.features.schema_version"
)

// FeatureDoc documents one feature column.
type FeatureDoc struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`           // "step", "window" or "xrank"
	Base        string `json:"base,omitempty"` // the base series (step and window features)
	Stat        string `json:"stat,omitempty"` // the statistic (window features)
	Description string `json:"description"`    // definition / formula
	Window      int    `json:"window"`         // rolling window in steps; 0 for per-step features
	Unit        string `json:"unit"`
	// WarmUp is the number of closed steps, counted from the instrument's
	// first step (its first accepted tick), during which the value is NaN for
	// an instrument that quotes and trades at least twice in every step. A
	// series that starts later (no quote yet, no trade yet) starts its
	// warm-up later.
	WarmUp int `json:"warm_up"`
}

// Feature kinds.
const (
	KindStep   = "step"
	KindWindow = "window"
	KindXRank  = "xrank"
)

// Base series, in column order. Every base is a float64 per instrument and
// step; once it is defined for an instrument (its "start") it stays defined
// (carried forward or 0 in steps without data), so its windows are never
// broken by gaps.
const (
	bMidRet = iota
	bTradeRet
	bSpread
	bMicroDev
	bBBOImb
	bSignedVol
	bVolume
	bNotional
	bTradeCount
	bVWAPDev
	bTradeSize
	bTradeIAT
	bQuoteRate
	bBasis
	bTradeImb
	bMidRange
	numBases
)

type baseDef struct {
	name, desc, unit string
	// offset is the base's own warm-up in steps (see FeatureDoc.WarmUp).
	offset int
	rv     bool // also has the rv statistic
}

var bases = [numBases]baseDef{
	bMidRet: {"mid_ret", "ln(mid_t/mid_{t-1}), log return of the mid over the step; 0 for a step without quotes; starts at the second step with a quote",
		"log return", 1, true},
	bTradeRet: {"trade_ret", "ln(p_t/p_{t-1}) of the last trade price (largest RecvTS) of the step against the previous step's; 0 for a step without trades; starts at the second step with a trade",
		"log return", 1, true},
	bSpread: {"spread_bps", "(ask-bid)/mid*1e4 of the step's last quote; carried forward; starts at the first quote",
		"bps", 0, false},
	bMicroDev: {"micro_dev_bps", "(microprice-mid)/mid*1e4 of the step's last quote, microprice = (bid*ask_size+ask*bid_size)/(bid_size+ask_size); 0 without sizes; carried forward; starts at the first quote",
		"bps", 0, false},
	bBBOImb: {"bbo_imb", "(bid_size-ask_size)/(bid_size+ask_size) of the step's last quote; 0 without sizes; carried forward; starts at the first quote",
		"ratio in [-1,1]", 0, false},
	bSignedVol: {"signed_vol", "taker buy volume minus taker sell volume of the step (trades without a side count in neither); starts at the instrument's first step",
		"base units", 0, false},
	bVolume: {"volume", "sum of trade sizes of the step (all sides); starts at the instrument's first step",
		"base units", 0, false},
	bNotional: {"notional", "sum of price*size of the step's trades; starts at the instrument's first step",
		"quote units", 0, false},
	bTradeCount: {"trade_count", "number of trades in the step; starts at the instrument's first step",
		"trades", 0, false},
	bVWAPDev: {"vwap_dev_bps", "(vwap-mid)/mid*1e4, vwap = notional/volume of the step's trades, mid the step's (carried) mid; 0 for a step without trades; starts at the first quote",
		"bps", 0, false},
	bTradeSize: {"trade_size", "volume/trade_count of the step; carried forward from the last step with trades; starts at the first trade",
		"base units", 0, false},
	bTradeIAT: {"trade_iat", "mean time between consecutive trades ending in the step, the first gap measured from the previous trade (of an earlier step): (last-previous)/count; carried forward; starts once a trade has a predecessor",
		"seconds", 0, false},
	bQuoteRate: {"quote_rate", "valid quotes in the step divided by the step length; starts at the instrument's first step",
		"quotes per second", 0, false},
	bBasis: {"basis_bps", "(mid-consensus)/consensus*1e4, consensus = mean of the (carried) mids of every venue's instrument of the same name in the step (0 with a single venue); starts at the first quote",
		"bps", 0, false},
	bTradeImb: {"trade_imb", "signed_vol/volume of the step; 0 for a step without trades; starts at the instrument's first step",
		"ratio in [-1,1]", 0, false},
	bMidRange: {"mid_range_bps", "(max mid - min mid)/mid*1e4 over the step's quotes; 0 with fewer than two quotes; starts at the instrument's first step",
		"bps", 0, false},
}

// Window statistics, in column order within a (base, window).
const (
	sMean = iota
	sStd
	sZ
	sMin
	sMax
	sRangePos
	sSkew
	sKurt
	sEWM
	sEWStd
	sSlope
	sR2
	sAC1
	sSum
	sPosShare
	sUpDown
	sArgmaxAge
	sArgminAge
	sRV // only for bases with rv
	numStats
)

type statDef struct {
	name string
	desc string // %s is the base name, %d the window
	unit string // "" = the base's unit; "%s" is replaced by the base's unit
}

var statDefs = [numStats]statDef{
	sMean:      {"mean", "mean of %s over the last %d steps", ""},
	sStd:       {"std", "sample standard deviation (n-1) of %s over the last %d steps; 0 when they are all equal", ""},
	sZ:         {"z", "z-score of the latest %s against the last %d steps: (x-mean)/std; NaN when std is 0", "standard deviations"},
	sMin:       {"min", "minimum of %s over the last %d steps", ""},
	sMax:       {"max", "maximum of %s over the last %d steps", ""},
	sRangePos:  {"range_pos", "position of the latest %s in the range of the last %d steps: (x-min)/(max-min); NaN when max = min", "ratio in [0,1]"},
	sSkew:      {"skew", "skewness g1 = m3/m2^1.5 (population central moments) of %s over the last %d steps; NaN when they are all equal", "dimensionless"},
	sKurt:      {"kurt", "excess kurtosis g2 = m4/m2^2-3 (population central moments) of %s over the last %d steps; NaN when they are all equal", "dimensionless"},
	sEWM:       {"ewm", "exponentially weighted mean of %s, alpha = 2/(%[2]d+1) (span %[2]d): m += alpha*(x-m); warm after %[2]d steps", ""},
	sEWStd:     {"ewstd", "exponentially weighted standard deviation of %s, alpha = 2/(%[2]d+1): v = (1-alpha)*(v+alpha*(x-m)^2) with m before the update; warm after %[2]d steps", ""},
	sSlope:     {"slope", "OLS slope of %s against the step index over the last %d steps", "%s per step"},
	sR2:        {"r2", "R^2 of the OLS line of %s against the step index over the last %d steps; NaN when they are all equal", "ratio in [0,1]"},
	sAC1:       {"ac1", "lag-1 autocorrelation of %s over the last %d steps: sum over pairs (x_t-mean)(x_{t-1}-mean) / sum (x_t-mean)^2, mean of the whole window; NaN when they are all equal", "correlation"},
	sSum:       {"sum", "sum of %s over the last %d steps", ""},
	sPosShare:  {"pos_share", "share of the last %[2]d steps whose %[1]s is > 0", "ratio in [0,1]"},
	sUpDown:    {"updown", "over the last %[2]d steps, number of steps whose %[1]s rose minus number whose %[1]s fell (from the step before, within the window)", "steps"},
	sArgmaxAge: {"argmax_age", "steps since the latest occurrence of the maximum of %s over the last %d steps (0 = the current step)", "steps"},
	sArgminAge: {"argmin_age", "steps since the latest occurrence of the minimum of %s over the last %d steps (0 = the current step)", "steps"},
	sRV:        {"rv", "realized volatility sqrt(sum %s^2) over the last %d steps", ""},
}

// hasStat reports whether base b carries statistic s.
func hasStat(b, s int) bool { return s != sRV || bases[b].rv }

// DefaultXRank are the columns ranked across instruments when
// Config.XRank is empty; those whose window is not configured are left out.
var DefaultXRank = []string{
	"mid_ret", "mid_ret_sum_60", "mid_ret_sum_300", "mid_ret_std_60", "spread_bps", "basis_bps",
	"notional_sum_300", "trade_imb_mean_60", "trade_count_sum_60", "quote_rate_mean_60",
}

// XRankSuffix is appended to a column's name for its cross-sectional rank.
const XRankSuffix = "_xrank"

// layout is the column set of a Config: which column holds which value.
type layout struct {
	docs []FeatureDoc
	// midCol is the per-step mid column; stepCol[b] the per-step base columns.
	midCol  int
	stepCol [numBases]int
	// winCol[b][wi][s] is the column of statistic s of base b over window
	// cfg.Windows[wi], -1 if the base has no such statistic.
	winCol [numBases][][numStats]int
	// xrank[j] = {source column, rank column}.
	xrank [][2]int
	// market[j] is the column of marketDefs[j], -1 if not configured; set
	// on first use.
	market []int
}

func baseWarmUp(b, w int) int { return bases[b].offset + w - 1 }

// buildLayout is the feature registry: the column set for cfg, in column
// order (per-step columns, then per base, per window, per statistic, then
// the cross-sectional ranks). New features are added here.
func buildLayout(cfg *Config) (*layout, error) {
	l := &layout{}
	add := func(d FeatureDoc) int {
		l.docs = append(l.docs, d)
		return len(l.docs) - 1
	}
	l.midCol = add(FeatureDoc{Name: "mid", Kind: KindStep, Description: "last (bid+ask)/2 of the step's quotes (largest RecvTS); carried forward from the previous step when the step has none", Unit: "price"})
	for b := range numBases {
		d := &bases[b]
		l.stepCol[b] = add(FeatureDoc{Name: d.name, Kind: KindStep, Base: d.name, Description: d.desc, Unit: d.unit, WarmUp: d.offset})
	}
	for b := range numBases {
		d := &bases[b]
		l.winCol[b] = make([][numStats]int, len(cfg.Windows))
		for wi, w := range cfg.Windows {
			for s := range numStats {
				l.winCol[b][wi][s] = -1
				if !hasStat(b, s) {
					continue
				}
				st := &statDefs[s]
				unit := d.unit
				if st.unit != "" {
					unit = st.unit
					if strings.Contains(unit, "%s") {
						unit = fmt.Sprintf(unit, d.unit)
					}
				}
				l.winCol[b][wi][s] = add(FeatureDoc{
					Name:        d.name + "_" + st.name + "_" + strconv.Itoa(w),
					Kind:        KindWindow,
					Base:        d.name,
					Stat:        st.name,
					Description: fmt.Sprintf(st.desc, d.name, w),
					Window:      w,
					Unit:        unit,
					WarmUp:      baseWarmUp(b, w),
				})
			}
		}
	}
	names := make(map[string]int, len(l.docs))
	for i, d := range l.docs {
		names[d.Name] = i
	}
	xr := cfg.XRank
	explicit := len(xr) > 0
	if !explicit {
		xr = DefaultXRank
	}
	seen := map[string]bool{}
	for i, name := range xr {
		src, ok := names[name]
		if !ok {
			if explicit {
				return nil, fmt.Errorf("features: xrank %d: no column %q (see `signald features list`)", i, name)
			}
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("features: xrank %d: %q listed twice", i, name)
		}
		seen[name] = true
		sd := l.docs[src]
		dst := add(FeatureDoc{
			Name:        name + XRankSuffix,
			Kind:        KindXRank,
			Base:        sd.Base,
			Stat:        sd.Stat,
			Description: rankDesc(name),
			Window:      sd.Window,
			Unit:        "ratio in [0,1]",
			WarmUp:      sd.WarmUp,
		})
		l.xrank = append(l.xrank, [2]int{src, dst})
	}
	return l, nil
}

// Catalog documents the feature columns of an engine with the default Config.
func Catalog() []FeatureDoc {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		panic(err) // the defaults are valid
	}
	l, err := buildLayout(&cfg)
	if err != nil {
		panic(err)
	}
	return slices.Clone(l.docs)
}

// Leading columns of every record, before the features.
const (
	ColTime       = "time"
	ColVenue      = "venue"
	ColInstrument = "instrument"
)

func buildSchema(cfg *Config, fs []FeatureDoc) *arrow.Schema {
	fields := make([]arrow.Field, 0, 3+len(fs))
	fields = append(fields,
		arrow.Field{Name: ColTime, Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		arrow.Field{Name: ColVenue, Type: arrow.BinaryTypes.String},
		arrow.Field{Name: ColInstrument, Type: arrow.BinaryTypes.String},
	)
	for _, f := range fs {
		fields = append(fields, arrow.Field{
			Name: f.Name,
			Type: arrow.PrimitiveTypes.Float64,
			Metadata: arrow.NewMetadata(
				[]string{"description", "unit", "window", "warm_up", "kind"},
				[]string{f.Description, f.Unit, strconv.Itoa(f.Window), strconv.Itoa(f.WarmUp), f.Kind},
			),
		})
	}
	md := arrow.NewMetadata(
		[]string{SchemaVersionKey, "signald.features.step_ns", "signald.features.allowed_lateness_ns"},
		[]string{SchemaVersion, strconv.FormatInt(int64(cfg.Step), 10), strconv.FormatInt(int64(cfg.AllowedLateness), 10)},
	)
	return arrow.NewSchema(fields, &md)
}

func rankDesc(col string) string {
	return fmt.Sprintf("the cross-sectional rank of %s among the step's rows with a value: (rank-1)/(count-1) in [0,1], ties averaged; NaN when %s is NaN or fewer than two rows have a value", col, col)
}
