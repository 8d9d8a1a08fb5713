package ingest

import (
	"errors"
	"strings"
	"testing"
)

// Test helpers shared by the Bitfinex, Gemini, Deribit, KuCoin and Gate.io
// feed tests (suffix B to stay clear of other venues' helpers).

// TestFeedsBResetForgets: after Reset a feed has no book, no sequence and
// nothing pending: a delta that would continue the old book is not
// published, and a new sequence start is no gap.
func TestFeedsBResetForgets(t *testing.T) {
	cases := map[string]struct{ prime, after []string }{
		"bitfinex": {
			prime: []string{`{"event":"subscribed","channel":"book","chanId":10,"symbol":"tBTCUSD"}`, `[10,[[7254.7,1,0.3],[7255.2,1,-0.5]],1]`},
			after: []string{`[10,[7254.5,1,1],500]`},
		},
		"deribit": {prime: []string{deribitSnapB}, after: []string{deribitChangeB(100, 101, "bids", `["new",4999,1]`)}},
		"gemini": {
			prime: []string{`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","100","1"],["sell","101","1"]],"trades":[]}`},
			after: []string{`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","99","1"]]}`},
		},
		"gateio": {prime: []string{string(gateUpd(10, 10, `["99","1"]`))}, after: []string{string(gateUpd(11, 11, `["98","1"]`))}},
		"bitmex": {prime: []string{bitmexPartialB}, after: []string{`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":3}]}`}},
	}
	for venue, c := range cases {
		f, reg := newTestFeed(t, venue, FeedConfig{})
		for _, fr := range c.prime {
			if _, err := f.Handle(1, []byte(fr), nil); err != nil {
				t.Fatalf("%s: %v", venue, err)
			}
		}
		f.Reset()
		if len(f.Outbox(nil)) != 0 || len(f.SnapshotRequests(nil)) != 0 {
			t.Fatalf("%s: pending sends after Reset", venue)
		}
		for _, fr := range c.after {
			out, err := f.Handle(2, []byte(fr), nil)
			if err != nil || len(out) != 0 {
				t.Fatalf("%s: after Reset: %v %+v", venue, err, out)
			}
		}
		if r := resyncCount(reg, ""); r != 0 {
			t.Fatalf("%s: %v resyncs after Reset", venue, r)
		}
	}
}

// A member read twice is malformed (ReasonDuplicateField naming it), where
// the hand-written member loops used to take the last one; the frames after
// it still parse.
func TestFeedsBDuplicateKey(t *testing.T) {
	kucoinTrade := `{"data":{"symbol":"BTC-USDT","sequence":"7","side":"buy","size":"1","price":"2","time":"1619378327739050725"},"subject":"trade.l3match","topic":"/market/match:BTC-USDT","type":"message"}`
	gateTrade := `{"time":1619093543,"channel":"spot.trades","event":"update","result":{"id":816995772,"create_time_ms":"1619093543708.2642","side":"sell","currency_pair":"DIS_USDT","amount":"0.201","price":"121.58"}}`
	deribitTrade := `{"params":{"data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"price":8950.0,"instrument_name":"BTC-PERPETUAL","direction":"sell","amount":10.0}],"channel":"trades.BTC-PERPETUAL.raw"},"method":"subscription","jsonrpc":"2.0"}`
	for _, c := range []struct {
		venue, dup, field, good string
	}{
		{"kucoin", strings.Replace(kucoinTrade, `"price":"2"`, `"price":"2","price":"3"`, 1), "price", kucoinTrade},
		{"kucoin", strings.Replace(kucoinTrade, `"type":"message"`, `"type":"message","type":"ack"`, 1), "type", kucoinTrade},
		{"gateio", strings.Replace(gateTrade, `"side":"sell"`, `"side":"sell","side":"buy"`, 1), "side", gateTrade},
		{"gateio", strings.Replace(gateTrade, `"event":"update"`, `"event":"update","event":"update"`, 1), "event", gateTrade},
		{"deribit", strings.Replace(deribitTrade, `"amount":10.0`, `"amount":10.0,"amount":11.0`, 1), "amount", deribitTrade},
	} {
		for _, fb := range jsonPaths(t) {
			t.Run(c.venue+"/"+c.field+"/"+pathName(fb), func(t *testing.T) {
				f, reg := newTestFeed(t, c.venue, FeedConfig{ForceFallback: fb})
				wantMalformed(t, f, c.dup)
				_, err := f.Handle(1, []byte(c.dup), nil)
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Reason != ReasonDuplicateField || pe.Field != c.field {
					t.Fatalf("error %v, want a duplicate %q", err, c.field)
				}
				if got := counter(reg, "signald_ingest_malformed_frames_total", map[string]string{"reason": ReasonDuplicateField.String()}); got != 2 {
					t.Fatalf("%v duplicate-field frames counted, want 2", got)
				}
				out, err := f.Handle(1, []byte(c.good), nil)
				if err != nil || len(out) != 1 {
					t.Fatalf("frame after the duplicate: %v, %+v", err, out)
				}
			})
		}
	}
}

// These feeds do not implement Resyncer (the connection manager publishes a
// plain gap for them); sharing feedCore must not give them its Resync.
func TestFeedsBNotResyncers(t *testing.T) {
	for _, v := range []string{"bitfinex", "gemini", "deribit", "kucoin", "gateio", "bitmex", "huobi"} {
		f, _ := newTestFeed(t, v, FeedConfig{})
		if _, ok := f.(Resyncer); ok {
			t.Errorf("%s implements Resyncer", v)
		}
	}
}
