package pipeline

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/signald-dev/signald/market"
)

// TestAppendTickJSON: every field, by its JSON name; a non-finite number is
// null, and the line is valid JSON.
func TestAppendTickJSON(t *testing.T) {
	tk := market.Tick{ID: 7, Venue: "binance", Instrument: "BTC-USDT", Symbol: "BTCUSDT", Kind: market.KindTrade, Side: market.SideBuy,
		ExchTS: 1, RecvTS: 2, Price: math.NaN(), Size: 0.5, TradeID: 9, BidPx: 1, BidSz: 2, AskPx: 3, AskSz: math.Inf(1), Seq: 11, IngestTS: 12}
	var got map[string]any
	if err := json.Unmarshal(AppendTickJSON(nil, &tk), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": 7.0, "venue": "binance", "instrument": "BTC-USDT", "symbol": "BTCUSDT", "kind": tk.Kind.String(), "side": tk.Side.String(),
		"exch_ts": 1.0, "recv_ts": 2.0, "price": nil, "size": 0.5, "trade_id": 9.0, "bid_px": 1.0, "bid_sz": 2.0, "ask_px": 3.0, "ask_sz": nil, "seq": 11.0, "ingest_ts": 12.0}
	if len(got) != len(want) {
		t.Fatalf("%d fields, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %v, want %v", k, got[k], w)
		}
	}
}
