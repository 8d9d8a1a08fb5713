package market

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Signal types.
const (
	TypeRegimeChange = "regime_change"
	TypeRegimeProbs  = "regime_probs"
	TypeNovelty      = "novelty"
	TypeTrendCall    = "trend_call"
)

// Signal is one detector output. ID is derived from the detector, model
// version, instrument, time and type, so the same input always gives the same
// id and a replay does not duplicate signals downstream.
type Signal struct {
	ID           uint64  `json:"id"`
	Time         int64   `json:"time"` // event time of the step, ns since epoch
	Venue        string  `json:"venue"`
	Instrument   string  `json:"instrument"`
	Type         string  `json:"type"`
	State        string  `json:"state"` // e.g. "calm", "volatile"
	Score        float64 `json:"score"`
	ModelVersion string  `json:"model_version"`
	Explanation  string  `json:"explanation"`
	// Values carries the numbers behind the signal, by name: the state
	// probabilities of a regime_probs signal (state name -> probability), the
	// per-feature contributions of a novelty signal (feature -> share of the
	// score), "strength" and "stop" of a trend_call, the state probabilities
	// and "switch", "changepoint", "run_length" of a regime_change (see the
	// package documentation). Not part of ID.
	Values map[string]float64 `json:"values,omitempty"`
	// Origin and OriginSeq number the signals a daemon run publishes, 1, 2,
	// 3... per venue and instrument, so that the signals store stage counts
	// what never reached it (as Tick's do for ticks). Not part of ID; not
	// stored.
	Origin    uint64 `json:"origin,omitempty"`
	OriginSeq uint64 `json:"origin_seq,omitempty"`
}

// InstrumentState is the detectors' latest view of one instrument, read by
// the macro endpoint once per step.
type InstrumentState struct {
	Venue      string `json:"venue"`
	Instrument string `json:"instrument"`
	Time       int64  `json:"time"` // step time (ns) of the last observation
	Warm       bool   `json:"warm"` // past every detector's warm-up
	// Regime is the most probable filtered regime state (e.g. "calm",
	// "trending", "volatile"); "" before warm-up.
	Regime string `json:"regime"`
	// RegimeProbs are the filtered state probabilities, by state name.
	RegimeProbs map[string]float64 `json:"regime_probs,omitempty"`
	// RunLength is the changepoint detector's most probable run length in
	// steps (steps since the last break).
	RunLength int `json:"run_length"`
	// Novelty is the latest novelty score (0 = typical).
	Novelty float64 `json:"novelty"`
	// Trend is the current trend call: 1 long, 0 flat, -1 short, with its
	// strength in [0,1] and stop level (price; NaN when flat).
	Trend         int8    `json:"trend"`
	TrendStrength float64 `json:"trend_strength"`
	TrendStop     float64 `json:"trend_stop"`
}

// ComputeID sets s.ID from the fields that identify a signal.
func (s *Signal) ComputeID() {
	h := xxhash.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d", s.ModelVersion, s.Venue, s.Instrument, s.Type, s.Time)
	s.ID = h.Sum64()
}

// MarshalBinary encodes the signal for the signals stream. JSON keeps the
// stream readable by any consumer; signals are few compared to ticks.
func (s *Signal) MarshalBinary() ([]byte, error) { return json.Marshal(s) }

// UnmarshalBinary decodes what MarshalBinary produced.
func (s *Signal) UnmarshalBinary(b []byte) error {
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("signal: %w", err)
	}
	return nil
}

// Validate reports what makes s unfit to store: a signal from the stream
// must name its venue, instrument, known type and model, carry a time and a
// finite score, and its id must be the one ComputeID gives (an entry
// written by hand or by a foreign producer is refused, not stored as an
// empty signal dated 1970).
func (s *Signal) Validate() error {
	var bad []string
	if s.Venue == "" {
		bad = append(bad, "venue is empty")
	}
	if s.Instrument == "" {
		bad = append(bad, "instrument is empty")
	}
	switch s.Type {
	case TypeRegimeChange, TypeRegimeProbs, TypeNovelty, TypeTrendCall:
	default:
		bad = append(bad, fmt.Sprintf("type %q is not one of %s, %s, %s, %s", s.Type, TypeRegimeChange, TypeRegimeProbs, TypeNovelty, TypeTrendCall))
	}
	if s.ModelVersion == "" {
		bad = append(bad, "model_version is empty")
	}
	if s.Time <= 0 {
		bad = append(bad, fmt.Sprintf("time %d is not a time after 1970", s.Time))
	}
	if math.IsNaN(s.Score) || math.IsInf(s.Score, 0) {
		bad = append(bad, "score is not finite")
	}
	if len(bad) == 0 {
		c := *s
		c.ComputeID()
		if c.ID != s.ID {
			bad = append(bad, fmt.Sprintf("id %d is not the signal's id %d", s.ID, c.ID))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("invalid signal: %s", strings.Join(bad, "; "))
	}
	return nil
}
