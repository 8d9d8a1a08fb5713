package features

import (
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow/go/v17/arrow"
)

// SchemaVersion is stored in the record schema's metadata under
// SchemaVersionKey. Bump it when the meaning or layout of existing columns
// changes; adding feature columns or windows does not change it.
const (
	SchemaVersion    = "1"
	SchemaVersionKey = "signald.features.schema_version"
)

// FeatureDoc documents one feature column.
type FeatureDoc struct {
	Name        string `json:"name"`
	Description string `json:"description"` // definition / formula
	Window      int    `json:"window"`      // rolling window in steps; 0 for per-step features
	Unit        string `json:"unit"`
	// WarmUp is the number of closed steps after the instrument's first quote
	// (for price features) or first tick (for trade features) during which the
	// value is NaN.
	WarmUp int `json:"warm_up"`
}

// feature is a registered feature: its documentation and how to read its value
// for an instrument from the state of the step that just closed.
type feature struct {
	FeatureDoc
	value func(s *instState) float64
}

// buildFeatures is the feature registry: the column set for cfg, in column
// order. New features are added here.
func buildFeatures(cfg *Config) []feature {
	fs := []feature{
		{FeatureDoc{"mid", "last (bid+ask)/2 of the step's quotes; carried forward from the previous step when the step has none", 0, "price", 0},
			func(s *instState) float64 { return s.mid }},
		{FeatureDoc{"spread_bps", "last (ask-bid)/mid*1e4 of the step's quotes; carried forward", 0, "bps", 0},
			func(s *instState) float64 { return s.spreadBps }},
		{FeatureDoc{"ret", "ln(mid_t/mid_{t-1}), log return of mid over the step; 0 for a step without quotes", 0, "log return", 1},
			func(s *instState) float64 { return s.ret }},
		{FeatureDoc{"trade_count", "number of trades in the step", 0, "trades", 0},
			func(s *instState) float64 { return s.tradeCount }},
		{FeatureDoc{"volume", "sum of trade sizes in the step (all sides)", 0, "base units", 0},
			func(s *instState) float64 { return s.volume }},
	}
	for i, w := range cfg.Windows {
		ws := strconv.Itoa(w)
		fs = append(fs,
			feature{FeatureDoc{"ret_mean_" + ws, fmt.Sprintf("mean of ret over the last %d steps", w), w, "log return", w},
				func(s *instState) float64 {
					if m := &s.retWin[i]; m.full() {
						return m.mean()
					}
					return math.NaN()
				}},
			feature{FeatureDoc{"ret_std_" + ws, fmt.Sprintf("sample standard deviation (n-1) of ret over the last %d steps", w), w, "log return", w},
				func(s *instState) float64 {
					if m := &s.retWin[i]; m.full() {
						return m.std()
					}
					return math.NaN()
				}},
			feature{FeatureDoc{"rv_" + ws, fmt.Sprintf("realized volatility sqrt(sum ret^2) over the last %d steps", w), w, "log return", w},
				func(s *instState) float64 {
					if m := &s.retWin[i]; m.full() {
						return math.Sqrt(m.sumSq())
					}
					return math.NaN()
				}},
			feature{FeatureDoc{"trade_imb_" + ws, fmt.Sprintf("(buy volume - sell volume)/(buy volume + sell volume) over the last %d steps, by taker side; NaN without volume", w), w, "ratio in [-1,1]", w - 1},
				func(s *instState) float64 {
					b, sl := &s.buyWin[i], &s.sellWin[i]
					if !b.full() || b.nz+sl.nz == 0 {
						return math.NaN()
					}
					bv, sv := b.value(), sl.value()
					tot := bv + sv
					if tot <= 0 {
						return math.NaN()
					}
					return min(max((bv-sv)/tot, -1), 1)
				}},
		)
	}
	return fs
}

func docs(fs []feature) []FeatureDoc {
	out := make([]FeatureDoc, len(fs))
	for i := range fs {
		out[i] = fs[i].FeatureDoc
	}
	return out
}

// Catalog documents the feature columns of an engine with the default Config.
func Catalog() []FeatureDoc {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		panic(err) // the defaults are valid
	}
	return docs(buildFeatures(&cfg))
}

// Leading columns of every record, before the features.
const (
	ColTime       = "time"
	ColVenue      = "venue"
	ColInstrument = "instrument"
)

func buildSchema(cfg *Config, fs []feature) *arrow.Schema {
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
				[]string{"description", "unit", "window", "warm_up"},
				[]string{f.Description, f.Unit, strconv.Itoa(f.Window), strconv.Itoa(f.WarmUp)},
			),
		})
	}
	md := arrow.NewMetadata(
		[]string{SchemaVersionKey, "signald.features.step_ns", "signald.features.allowed_lateness_ns"},
		[]string{SchemaVersion, strconv.FormatInt(int64(cfg.Step), 10), strconv.FormatInt(int64(cfg.AllowedLateness), 10)},
	)
	return arrow.NewSchema(fields, &md)
}
