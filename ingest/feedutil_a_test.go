package ingest

import (
	"reflect"
	"testing"
)

// goldenCase is a frame and the ticks it gives.
type goldenCase struct {
	name, frame string
	want        []Tick
}

// runGoldenCases hands each case's frame, received at recv, to one feed of
// venue per JSON path and compares the ticks.
func runGoldenCases(t *testing.T, venue string, recv int64, cases []goldenCase) {
	t.Helper()
	for path, f := range feedsPerPath(t, venue, FeedConfig{}) {
		for _, c := range cases {
			got, err := f.Handle(recv, []byte(c.frame), nil)
			if err != nil {
				t.Fatalf("%s %s: %v", path, c.name, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s %s:\n got %+v\nwant %+v", path, c.name, got, c.want)
			}
		}
	}
}

// TestVenuesAResync: the manager-driven Resync of every venues-a feed gives
// one gap tick, counts the reason, withholds the book and asks for the
// snapshot the venue's way.
func TestVenuesAResync(t *testing.T) {
	cases := []struct {
		venue, symbol, snapshot, delta string
		wantOutbox                     string // the resubscribe frame, or "" for a REST request
	}{
		{VenueCoinbase, "BTC-USD", `{"type":"snapshot","product_id":"BTC-USD","bids":[["1","1"]],"asks":[["2","1"]]}`,
			`{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1.5","1"]],"time":"2021-04-17T16:43:37Z"}`,
			`{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2_batch"]}`},
		{VenueKraken, "XBT/USD", krakenDocBook(), `[0,{"b":[["0.04990","0.00000700","1582905487.000003"]]},"book-10","XBT/USD"]`,
			`{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":10}}`},
		{VenueOKX, "BTC-USDT", `{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["2","1","0","1"]],"bids":[["1","1","0","1"]],"ts":"1"}]}`,
			`{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[["1.5","1","0","1"]],"ts":"2"}]}`,
			`{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}`},
		{VenueBybitLinear, "BTCUSDT", `{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["1","1"]],"a":[["2","1"]],"u":1,"seq":1}}`,
			`{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":2,"data":{"s":"BTCUSDT","b":[["1.5","1"]],"a":[],"u":2,"seq":2}}`,
			`{"op":"subscribe","args":["orderbook.50.BTCUSDT"]}`},
		{VenueBitstamp, "btcusd", "", `{"data":{"microtimestamp":"1641343700000002","bids":[["1.5","1"]],"asks":[]},"channel":"diff_order_book_btcusd","event":"data"}`, ""},
	}
	for _, c := range cases {
		for name, f := range feedsPerPath(t, c.venue, FeedConfig{}) {
			if c.snapshot != "" {
				if _, err := f.Handle(1, []byte(c.snapshot), nil); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.HandleSnapshot(1, SnapshotRequest{Symbol: c.symbol}, []byte(`{"microtimestamp":"1641343699000000","bids":[["1","1"]],"asks":[["2","1"]]}`), nil); err != nil {
				t.Fatal(err)
			}
			r, ok := f.Feed.(interface {
				Resync(int64, string, string, []Tick) []Tick
			})
			if !ok {
				t.Fatalf("%s: no Resync", c.venue)
			}
			out := r.Resync(5, c.symbol, "overflow", nil)
			if len(out) != 1 || out[0].Kind != KindGap || out[0].Symbol != c.symbol || f.resyncs("overflow") != 1 {
				t.Fatalf("%s %s: %+v", c.venue, name, out)
			}
			if c.wantOutbox != "" {
				ob := f.Outbox(nil)
				if len(ob) != 2 || string(ob[1]) != c.wantOutbox {
					t.Fatalf("%s %s: outbox %q", c.venue, name, ob)
				}
			} else if reqs := f.SnapshotRequests(nil); len(reqs) != 1 || reqs[0].Symbol != c.symbol {
				t.Fatalf("%s %s: requests %+v", c.venue, name, reqs)
			}
			if out, err := f.Handle(6, []byte(c.delta), nil); err != nil || len(out) != 0 {
				t.Fatalf("%s %s: delta after Resync: %+v %v", c.venue, name, out, err)
			}
		}
	}
}
