package market

import (
	"encoding/binary"
	"testing"

	"github.com/signald-dev/signald/internal/gold"
)

// Signal ids and the signals stream's JSON are pinned: downstream consumers
// and the store deduplicate signals by id.
func TestSignalGolden(t *testing.T) {
	sigs := []Signal{
		{Time: 1723161255300000000, Venue: "binance", Instrument: "BTC-USDT", Type: TypeTrendCall, State: "long",
			Score: 0.75, ModelVersion: "trend-v1", Explanation: "fast above slow", Values: map[string]float64{"strength": 0.75, "stop": 61000.5}},
		{Time: 5, Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Type: TypeRegimeChange, State: "volatile",
			Score: 0.9, ModelVersion: "hmm-v1", Values: map[string]float64{"calm": 0.1, "volatile": 0.9}},
		{Time: -1, Venue: "x", Instrument: "ü-€", Type: TypeNovelty, ModelVersion: ""},
	}
	var ids, js []byte
	for i := range sigs {
		sigs[i].ComputeID()
		ids = binary.LittleEndian.AppendUint64(ids, sigs[i].ID)
		b, err := sigs[i].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		js = append(append(js, b...), '\n')
	}
	gold.Bytes(t, ids, "signal_ids")
	gold.Bytes(t, js, "signal_json")
}
