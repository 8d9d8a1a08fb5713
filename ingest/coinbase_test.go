package ingest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

const coinbaseExcerpt = "COINBASE.ws.28.0_head400.gz"

func TestCoinbaseGolden(t *testing.T) {
	const recv = int64(1618677817129516100)
	cases := []struct {
		name, frame string
		want        []market.Tick
	}{
		{
			// Recorded (line 56): side is the maker's, so the taker bought.
			name:  "match",
			frame: `{"type":"match","trade_id":280232,"maker_order_id":"2a0da34e-61f7-4c36-88e5-c9dd15927b16","taker_order_id":"3c82abaa-c01e-4608-be59-6a1e69742891","side":"sell","size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,"time":"2021-04-17T16:43:37.089723Z"}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "coinbase", Instrument: "SKL-BTC", Symbol: "SKL-BTC", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1618677817_089723000, RecvTS: recv, Price: 0.00001305, Size: 985, TradeID: 280232, Seq: 177100030})},
		},
		{
			// Recorded ticker of 2021: no best_bid_size / best_ask_size yet.
			name:  "ticker 2021",
			frame: `{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","price":"14.7775","open_24h":"14.6647","volume_24h":"94381.28000000","low_24h":"14.3691","high_24h":"16.55","volume_30d":"2295579.57000000","best_bid":"14.7550","best_ask":"14.8060","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":881613,"last_size":"0.04"}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "coinbase", Instrument: "BAND-GBP", Symbol: "BAND-GBP", Kind: market.KindQuote,
				ExchTS: 1618677810_244075000, RecvTS: recv, BidPx: 14.755, AskPx: 14.806, Seq: 333938798})},
		},
		{
			// The documented current ticker, with sizes.
			name:  "ticker current",
			frame: `{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "coinbase", Instrument: "ETH-USD", Symbol: "ETH-USD", Kind: market.KindQuote,
				ExchTS: 1666222102_061769000, RecvTS: recv, BidPx: 1285.04, BidSz: 0.46688654, AskPx: 1285.27, AskSz: 1.5663704, Seq: 37475248783})},
		},
		{
			name:  "snapshot",
			frame: `{"type":"snapshot","product_id":"BTC-USD","bids":[["10101.10","0.45054140"],["10100.00","2"]],"asks":[["10102.55","0.57753524"]]}`,
			want: []market.Tick{
				goldenTick(market.Tick{Venue: "coinbase", Instrument: "BTC-USD", Symbol: "BTC-USD", Kind: market.KindSnapshot, Side: market.SideBuy, RecvTS: recv, Price: 10101.1, Size: 0.4505414}),
				goldenTick(market.Tick{Venue: "coinbase", Instrument: "BTC-USD", Symbol: "BTC-USD", Kind: market.KindSnapshot, Side: market.SideBuy, RecvTS: recv, Price: 10100, Size: 2}),
				goldenTick(market.Tick{Venue: "coinbase", Instrument: "BTC-USD", Symbol: "BTC-USD", Kind: market.KindSnapshot, Side: market.SideSell, RecvTS: recv, Price: 10102.55, Size: 0.57753524}),
			},
		},
	}
	for path, f := range feedsPerPath(t, VenueCoinbase, FeedConfig{}) {
		for _, c := range cases {
			got, err := f.Handle(recv, []byte(c.frame), nil)
			if err != nil {
				t.Fatalf("%s %s: %v", path, c.name, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s %s:\n got %+v\nwant %+v", path, c.name, got, c.want)
			}
		}
		// The documented l2update on the snapshot above: the bid at
		// 10101.10 goes, a level at 10101.80 comes.
		got, err := f.Handle(recv, []byte(`{"type":"l2update","product_id":"BTC-USD","time":"2019-08-14T20:42:27.265Z","changes":[["buy","10101.80000000","0.162567"],["buy","10101.10","0"]]}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		ts := int64(1565815347_265000000) // date -u -d 2019-08-14T20:42:27Z +%s → 1565815347
		want := []market.Tick{
			goldenTick(market.Tick{Venue: "coinbase", Instrument: "BTC-USD", Symbol: "BTC-USD", Kind: market.KindBookDelta, Side: market.SideBuy, ExchTS: ts, RecvTS: recv, Price: 10101.8, Size: 0.162567}),
			goldenTick(market.Tick{Venue: "coinbase", Instrument: "BTC-USD", Symbol: "BTC-USD", Kind: market.KindBookDelta, Side: market.SideBuy, ExchTS: ts, RecvTS: recv, Price: 10101.1, Size: 0}),
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s l2update:\n got %+v\nwant %+v", path, got, want)
		}
		bk := f.Feed.(*CoinbaseFeed).books["BTC-USD"]
		bid, ask, _ := bk.Best()
		if bid.Px != 10101.8 || ask.Px != 10102.55 || bk.Len(market.SideBuy) != 2 {
			t.Errorf("%s: book after update: best %v/%v, %d bids", path, bid.Px, ask.Px, bk.Len(market.SideBuy))
		}
	}
}

// cbRefBook rebuilds Coinbase books with encoding/json, independently of
// the feed.
type cbRefBook map[string]map[string]map[float64]float64 // product → side → px → sz

func (r cbRefBook) apply(t testing.TB, body []byte) (trades, quotes, snapLevels, deltas int) {
	var m struct {
		Type      string     `json:"type"`
		ProductID string     `json:"product_id"`
		Bids      [][]string `json:"bids"`
		Asks      [][]string `json:"asks"`
		Changes   [][]string `json:"changes"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	num := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	switch m.Type {
	case "snapshot":
		r[m.ProductID] = map[string]map[float64]float64{"buy": {}, "sell": {}}
		for _, l := range m.Bids {
			r[m.ProductID]["buy"][num(l[0])] = num(l[1])
		}
		for _, l := range m.Asks {
			r[m.ProductID]["sell"][num(l[0])] = num(l[1])
		}
		return 0, 0, len(m.Bids) + len(m.Asks), 0
	case "l2update":
		for _, c := range m.Changes {
			if sz := num(c[2]); sz == 0 {
				delete(r[m.ProductID][c[0]], num(c[1]))
			} else {
				r[m.ProductID][c[0]][num(c[1])] = sz
			}
		}
		return 0, 0, 0, len(m.Changes)
	case "ticker":
		return 0, 1, 0, 0
	case "match", "last_match":
		return 1, 0, 0, 0
	}
	return 0, 0, 0, 0
}

func checkRefBook(t testing.TB, ref map[string]map[float64]float64, bk *bookState, what string) {
	t.Helper()
	for _, side := range []market.Side{market.SideBuy, market.SideSell} {
		key := map[market.Side]string{market.SideBuy: "buy", market.SideSell: "sell"}[side]
		lv := bk.Side(side)
		if len(lv) != len(ref[key]) {
			t.Fatalf("%s %s: %d levels, reference %d", what, key, len(lv), len(ref[key]))
		}
		for i, l := range lv {
			if ref[key][l.Px] != l.Sz {
				t.Fatalf("%s %s level %v: size %v, reference %v", what, key, l.Px, l.Sz, ref[key][l.Px])
			}
			if i > 0 && ((side == market.SideBuy && lv[i-1].Px <= l.Px) || (side == market.SideSell && lv[i-1].Px >= l.Px)) {
				t.Fatalf("%s %s: levels out of order at %d", what, key, i)
			}
		}
	}
}

func testCoinbaseReplay(t *testing.T, path string) {
	lines := readCapture(t, path)
	ref := cbRefBook{}
	var trades, quotes, snaps, deltas int
	seenTrade := map[string]bool{}
	for _, l := range lines {
		tr, q, s, d := ref.apply(t, l.body)
		if tr > 0 {
			// match and last_match of the same trade are one trade.
			var m struct {
				ProductID string `json:"product_id"`
				TradeID   uint64 `json:"trade_id"`
			}
			json.Unmarshal(l.body, &m)
			k := m.ProductID + "/" + strconv.FormatUint(m.TradeID, 10)
			if seenTrade[k] {
				tr = 0
			}
			seenTrade[k] = true
		}
		trades, quotes, snaps, deltas = trades+tr, quotes+q, snaps+s, deltas+d
	}
	got := map[string][]market.Tick{}
	for name, f := range feedsPerPath(t, VenueCoinbase, FeedConfig{}) {
		ticks := replayFeed(t, f, lines)
		got[name] = ticks
		if n := f.malformedTotal(); n != 0 {
			t.Errorf("%s: %v malformed frames", name, n)
		}
		if n := f.resyncTotal(); n != 0 {
			t.Errorf("%s: %v resyncs on a gap-free recording", name, n)
		}
		kc := kindCounts(ticks)
		want := map[market.Kind]int{market.KindTrade: trades, market.KindQuote: quotes, market.KindSnapshot: snaps, market.KindBookDelta: deltas}
		for k, v := range want {
			if kc[k] != v {
				t.Errorf("%s: %d %s ticks, reference %d", name, kc[k], k, v)
			}
		}
		if kc[market.KindGap] != 0 {
			t.Errorf("%s: %d gap ticks", name, kc[market.KindGap])
		}
		cf := f.Feed.(*CoinbaseFeed)
		for prod, sides := range ref {
			checkRefBook(t, sides, cf.books[prod], name+" "+prod)
			if cf.books[prod].Crossed() {
				t.Errorf("%s %s: crossed", name, prod)
			}
		}
		for _, tk := range ticks {
			if tk.Kind == market.KindTrade && (tk.Side == market.SideUnknown || tk.TradeID == 0 || tk.ExchTS == 0) {
				t.Fatalf("%s: incomplete trade %+v", name, tk)
			}
		}
	}
	samePaths(t, got)
}

func TestCoinbaseReplayExcerpt(t *testing.T) {
	testCoinbaseReplay(t, venueTestdata("coinbase", coinbaseExcerpt))
}

func TestCoinbaseReplayFullFile(t *testing.T) {
	testCoinbaseReplay(t, sharedCapture(t, "COINBASE.ws.28.0"))
}

// TestCoinbaseInjectedGap drops a match from the recording: the next match
// skips a trade id, which must produce one gap tick, a resubscription of
// the book, withheld l2updates until the new snapshot, and books that match
// the reference afterwards.
func TestCoinbaseInjectedGap(t *testing.T) {
	lines := readCapture(t, venueTestdata("coinbase", coinbaseExcerpt))
	// Drop the second trade of a product that trades again later, so that
	// the next match skips a trade id.
	dropAt := -1
	var prod string
	seen := map[string]int{}
	for i, l := range lines {
		var mm struct {
			Type      string `json:"type"`
			ProductID string `json:"product_id"`
		}
		json.Unmarshal(l.body, &mm)
		if mm.Type == "match" || mm.Type == "last_match" {
			seen[mm.ProductID]++
			if seen[mm.ProductID] == 2 && dropAt < 0 && mm.Type == "match" {
				// the second trade of a product, with a third to follow
				rest := 0
				for _, l2 := range lines[i+1:] {
					if strings.Contains(string(l2.body), `"type":"match"`) && strings.Contains(string(l2.body), `"product_id":"`+mm.ProductID+`"`) {
						rest++
					}
				}
				if rest > 0 {
					dropAt, prod = i, mm.ProductID
				}
			}
		}
	}
	if dropAt < 0 {
		t.Fatal("no match to drop in the excerpt")
	}
	for name, f := range feedsPerPath(t, VenueCoinbase, FeedConfig{}) {
		var out []market.Tick
		var gapAt = -1
		for i, l := range lines {
			if i == dropAt {
				continue
			}
			n := len(out)
			var err error
			out, err = f.Handle(l.recv, l.body, out)
			if err != nil {
				t.Fatal(err)
			}
			for _, tk := range out[n:] {
				if tk.Kind == market.KindGap {
					if gapAt >= 0 {
						t.Fatalf("%s: second gap tick", name)
					}
					gapAt = i
					if tk.Instrument != prod {
						t.Fatalf("%s: gap for %s, want %s", name, tk.Instrument, prod)
					}
					ob := f.Outbox(nil)
					want := []string{
						`{"type":"unsubscribe","product_ids":["` + prod + `"],"channels":["level2_batch"]}`,
						`{"type":"subscribe","product_ids":["` + prod + `"],"channels":["level2_batch"]}`,
					}
					if len(ob) != 2 || string(ob[0]) != want[0] || string(ob[1]) != want[1] {
						t.Fatalf("%s: outbox %q", name, ob)
					}
				}
				if gapAt >= 0 && tk.Instrument == prod && tk.Kind == market.KindBookDelta {
					t.Fatalf("%s: book delta for %s published before a new snapshot", name, prod)
				}
			}
		}
		if gapAt < 0 {
			t.Fatalf("%s: no gap tick", name)
		}
		if f.resyncs("gap") != 1 || f.resyncTotal() != 1 {
			t.Fatalf("%s: resyncs gap=%v total=%v", name, f.resyncs("gap"), f.resyncTotal())
		}
		if f.ignored("book_unsynced") == 0 {
			t.Fatalf("%s: no withheld l2update counted", name)
		}
		// A fresh snapshot (as the resubscription brings) resumes the book.
		snap := `{"type":"snapshot","product_id":"` + prod + `","bids":[["1.0","2"]],"asks":[["1.5","3"]]}`
		out, err := f.Handle(1, []byte(snap), nil)
		if err != nil || len(out) != 2 {
			t.Fatalf("%s: snapshot: %v %v", name, out, err)
		}
		out, err = f.Handle(2, []byte(`{"type":"l2update","product_id":"`+prod+`","changes":[["sell","1.4","1"]],"time":"2021-04-17T16:43:37.075687Z"}`), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindBookDelta {
			t.Fatalf("%s: delta after resync: %v %v", name, out, err)
		}
	}
}

func TestCoinbaseCrossedAndHeartbeat(t *testing.T) {
	for name, f := range feedsPerPath(t, VenueCoinbase, FeedConfig{}) {
		frames := []string{
			`{"type":"snapshot","product_id":"ETH-EUR","bids":[["100","1"]],"asks":[["101","1"]]}`,
			`{"type":"l2update","product_id":"ETH-EUR","changes":[["buy","100.5","2"]],"time":"2021-04-17T16:43:37Z"}`,
		}
		for _, fr := range frames {
			if _, err := f.Handle(1, []byte(fr), nil); err != nil {
				t.Fatal(err)
			}
		}
		// A bid at the ask crosses the book: its delta is not published.
		out, err := f.Handle(2, []byte(`{"type":"l2update","product_id":"ETH-EUR","changes":[["buy","101","1"]],"time":"2021-04-17T16:43:38Z"}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "ETH-EUR" {
			t.Fatalf("%s: crossed update gave %+v", name, out)
		}
		if f.resyncs("crossed") != 1 || len(f.Outbox(nil)) != 2 {
			t.Fatalf("%s: crossed resync not counted or not resubscribed", name)
		}
		// Heartbeats: a last_trade_id beyond the last match seen is a gap.
		for _, fr := range []string{
			`{"type":"match","trade_id":10,"side":"buy","size":"1","price":"5","product_id":"LTC-USD","sequence":1,"time":"2021-04-17T16:43:38Z"}`,
			`{"type":"heartbeat","sequence":2,"last_trade_id":10,"product_id":"LTC-USD","time":"2021-04-17T16:43:39Z"}`,
		} {
			out, err := f.Handle(3, []byte(fr), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) > 0 && out[0].Kind == market.KindGap {
				t.Fatalf("%s: unexpected gap %s", name, fr)
			}
		}
		out, err = f.Handle(4, []byte(`{"type":"heartbeat","sequence":9,"last_trade_id":12,"product_id":"LTC-USD","time":"2021-04-17T16:43:40Z"}`), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindGap {
			t.Fatalf("%s: heartbeat past the last trade: %+v %v", name, out, err)
		}
		if f.resyncs("trade_gap") != 1 {
			t.Fatalf("%s: trade gap not counted", name)
		}
		// Reset forgets: the same match is new again.
		f.Reset()
		out, _ = f.Handle(5, []byte(`{"type":"match","trade_id":10,"side":"buy","size":"1","price":"5","product_id":"LTC-USD","sequence":1,"time":"2021-04-17T16:43:38Z"}`), nil)
		if len(out) != 1 || out[0].Side != market.SideSell {
			t.Fatalf("%s: after Reset: %+v", name, out)
		}
	}
}

func TestCoinbaseMalformed(t *testing.T) {
	bad := map[string]Reason{
		`not json`:                 ReasonBadJSON,
		`[1,2]`:                    ReasonBadType,
		`{"type":1}`:               ReasonBadType,
		`{"product_id":"BTC-USD"}`: ReasonMissingField,
		`{"type":"match","trade_id":1,"side":"buy","size":"1","price":"x","product_id":"BTC-USD"}`:  ReasonBadNumber,
		`{"type":"match","trade_id":1,"side":"up","size":"1","price":"1","product_id":"BTC-USD"}`:   ReasonBadType,
		`{"type":"match","trade_id":-1,"side":"buy","size":"1","price":"1","product_id":"BTC-USD"}`: ReasonBadNumber,
		`{"type":"match","trade_id":1,"side":"buy","size":"-1","price":"1","product_id":"BTC-USD"}`: ReasonBadNumber,
		`{"type":"ticker","product_id":"","best_bid":"1","best_ask":"2"}`:                           ReasonBadSymbol,
		`{"type":"snapshot","product_id":"BTC-USD","bids":[["1"]],"asks":[]}`:                       ReasonBadType,
		`{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","2"]],"time":"yesterday"}`: ReasonBadNumber,
		`{"type":"l2update","product_id":"BTC-USD","changes":{}}`:                                   ReasonBadType,
		`{"type":"match","type":"ticker"}`:                                                          ReasonDuplicateField,
	}
	for name, f := range feedsPerPath(t, VenueCoinbase, FeedConfig{}) {
		for frame, reason := range bad {
			out, err := f.Handle(1, []byte(frame), []market.Tick{{Venue: "keep"}})
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) || pe.Reason != reason || pe.Venue != "coinbase" {
				t.Errorf("%s %s: err %v, want reason %s", name, frame, err, reason)
			}
			if len(out) != 1 || out[0].Venue != "keep" {
				t.Errorf("%s %s: out changed: %v", name, frame, out)
			}
		}
		if got := f.malformedTotal(); got != float64(len(bad)) {
			t.Errorf("%s: %v malformed counted, want %d", name, got, len(bad))
		}
	}
}

func TestCoinbaseSubscribe(t *testing.T) {
	f := NewCoinbaseFeed(FeedConfig{})
	frames, err := f.SubscribeFrames([]Subscription{{ChanBook, "BTC-USD"}, {ChanTrades, "BTC-USD"}, {ChanQuotes, "ETH-USD"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2_batch"]}`,
		`{"type":"subscribe","product_ids":["BTC-USD"],"channels":["matches"]}`,
		`{"type":"subscribe","product_ids":["ETH-USD"],"channels":["ticker"]}`,
		`{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["heartbeat"]}`,
	}
	if len(frames) != len(want) {
		t.Fatalf("%q", frames)
	}
	for i := range want {
		if string(frames[i]) != want[i] {
			t.Errorf("frame %d: %s, want %s", i, frames[i], want[i])
		}
	}
	if _, err := f.SubscribeFrames([]Subscription{{ChanFunding, "BTC-USD"}}); err == nil {
		t.Error("funding accepted")
	}
	if u, _ := f.URL(nil); u != "wss://ws-feed.exchange.coinbase.com" {
		t.Error(u)
	}
	if inst, ok := f.Normalize("btc-usd"); !ok || inst != "BTC-USD" {
		t.Error(inst, ok)
	}
	if _, ok := f.Normalize("BTCUSD"); ok {
		t.Error("BTCUSD normalized")
	}
}

// FuzzFeedCoinbase: go test ./ingest -run '^$' -fuzz FuzzFeedCoinbase -fuzztime 30s
func FuzzFeedCoinbase(f *testing.F) {
	fuzzFeed(f, VenueCoinbase, FeedConfig{}, seedBodies(readCapture(f, venueTestdata("coinbase", coinbaseExcerpt)), 5))
}

// BenchmarkFeedCoinbase: go test ./ingest -run '^$' -bench FeedCoinbase -benchtime 1s
func BenchmarkFeedCoinbase(b *testing.B) {
	benchFeed(b, VenueCoinbase, FeedConfig{}, readCapture(b, venueTestdata("coinbase", coinbaseExcerpt)))
}
