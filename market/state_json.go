package market

import (
	"encoding/json"
	"math"
)

// MarshalJSON encodes the state with non-finite numbers (TrendStop is NaN
// while flat) as null, which encoding/json cannot do on its own: one NaN would
// otherwise fail the whole macro document.
func (s InstrumentState) MarshalJSON() ([]byte, error) {
	type plain InstrumentState // no MarshalJSON: no recursion
	return json.Marshal(struct {
		plain
		TrendStop *float64 `json:"trend_stop"`
	}{plain(s), finiteOrNil(s.TrendStop)})
}

func finiteOrNil(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
