// Package regime turns feature batches into signals: regime states, novelty
// and trend calls.
package regime

import (
	"encoding/json"
	"fmt"

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
