package ingest

import (
	"slices"
	"testing"
)

// TestVenueRegistry: every venue file registers one descriptor whose name
// is the name its Feed stamps on ticks, and whose Channels are exactly the
// channels its Feed subscribes to.
func TestVenueRegistry(t *testing.T) {
	symbols := map[string]string{
		VenueBinance: "BTCUSDT", VenueBinanceUSDM: "BTCUSDT", VenueBitfinex: "tBTCUSD", VenueBitmex: "XBTUSD",
		VenueBitstamp: "btcusd", VenueBybit: "BTCUSDT", VenueBybitLinear: "BTCUSDT", VenueCoinbase: "BTC-USD",
		VenueDeribit: "BTC-PERPETUAL", VenueGateio: "BTC_USDT", VenueGemini: "BTCUSD", VenueHuobi: "btcusdt",
		VenueKraken: "XBT/USD", VenueKucoin: "BTC-USDT", VenueOKX: "BTC-USDT-SWAP",
	}
	all := []Channel{ChanTrades, ChanQuotes, ChanBook, ChanFunding, ChanLiquidations}
	var names []string
	for _, v := range Venues() {
		if v.Name == "replaytest" {
			continue
		}
		names = append(names, v.Name)
		sym, ok := symbols[v.Name]
		if !ok {
			t.Errorf("venue %q is not one of the Venue constants", v.Name)
			continue
		}
		f, err := NewFeed(v.Name, FeedConfig{})
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if f.Venue() != v.Name {
			t.Errorf("%s: the feed stamps %q", v.Name, f.Venue())
		}
		for _, ch := range all {
			_, err := f.SubscribeFrames([]Subscription{{Channel: ch, Symbol: sym}})
			if got, want := err == nil, slices.Contains(v.Channels, ch); got != want {
				t.Errorf("%s: channel %s: subscribes %v (err %v), descriptor lists it %v", v.Name, ch, got, err, want)
			}
		}
	}
	if len(names) != len(symbols) {
		t.Errorf("registered venues %v, want the %d Venue constants", names, len(symbols))
	}
	if got := FeedVenues(); !slices.IsSorted(got) {
		t.Errorf("FeedVenues() = %v, not sorted", got)
	}
}
