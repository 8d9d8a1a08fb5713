package ingest

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/signald-dev/signald/market"
)

func TestNormalizeGemini(t *testing.T) {
	for sym, want := range map[string]string{"BTCUSD": "BTC-USD", "ethbtc": "ETH-BTC", "BTCGUSDPERP": "BTC-GUSD-PERP",
		"ALCXUSD": "ALCX-USD", "BTCGBP": "BTC-GBP", "ZECLTC": "ZEC-LTC", "ETHUSDT": "ETH-USDT"} {
		if got, ok := NormalizeGeminiSymbol(sym); !ok || got != want {
			t.Errorf("%s → %q %v, want %q", sym, got, ok, want)
		}
	}
	if _, ok := NormalizeGeminiSymbol("XYZ"); ok {
		t.Error("XYZ normalized")
	}
}

func TestGeminiSubscribeFrames(t *testing.T) {
	f := NewGeminiFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "BTCUSD"}, {ChanTrades, "BTCUSD"}, {ChanTrades, "ETHUSD"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fr) != 1 || string(fr[0]) != `{"type":"subscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD","ETHUSD"]}]}` {
		t.Fatalf("%q", fr)
	}
	if _, err := f.SubscribeFrames([]Subscription{{ChanQuotes, "BTCUSD"}}); err == nil {
		t.Fatal("quotes accepted")
	}
	if u, _ := f.URL(nil); u != "wss://api.gemini.com/v2/marketdata" {
		t.Fatal(u)
	}
}

func TestGeminiKnownFrames(t *testing.T) {
	const recv = int64(1624493670760541000)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "gemini", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			// Recorded (GEMINI.ws.1.0): side is the taker's.
			got := run(`{"type":"trade","symbol":"ANKRUSD","event_id":45465818387,"timestamp":1624493670759,"price":"0.07946","quantity":"1020.482111","side":"buy"}`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "gemini", Instrument: "ANKR-USD", Symbol: "ANKRUSD", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1624493670759_000000, RecvTS: recv, Price: 0.07946, Size: 1020.482111, TradeID: 45465818387})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("trade:\n got %+v\nwant %+v", got, want)
			}
			if got := run(`{"type":"heartbeat","timestamp":1624493666869}`); len(got) != 0 {
				t.Fatal(got)
			}
			// Docs example shape: the first l2_updates (with trades) is the book.
			got = run(`{"type":"l2_updates","symbol":"BTCUSD","changes":[["sell","9122.07","0.98942292"],["buy","9122.04","0.00121425"],["buy","9121.1","0"],["buy","9120.5","2"]],"trades":[{"type":"trade","symbol":"BTCUSD","event_id":169841458,"timestamp":1560976400428,"price":"9122.04","quantity":"0.0073173","side":"sell"}]}`)
			base := market.Tick{Venue: "gemini", Instrument: "BTC-USD", Symbol: "BTCUSD", Kind: market.KindSnapshot, RecvTS: recv}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			want = []market.Tick{lv(base, market.SideBuy, 9122.04, 0.00121425), lv(base, market.SideBuy, 9120.5, 2), lv(base, market.SideSell, 9122.07, 0.98942292)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("book:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"type":"l2_updates","symbol":"BTCUSD","changes":[["sell","9122.07","0"],["sell","9123","1.5"]]}`)
			base.Kind = market.KindBookDelta
			if want := []market.Tick{lv(base, market.SideSell, 9122.07, 0), lv(base, market.SideSell, 9123, 1.5)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("delta:\n got %+v\nwant %+v", got, want)
			}
			// Deltas of a symbol whose book has not come yet are withheld.
			if got := run(`{"type":"l2_updates","symbol":"ETHUSD","changes":[["sell","2000","1"]]}`); len(got) != 0 {
				t.Fatalf("delta before book: %+v", got)
			}
		})
	}
}

func geminiBookSession(t *testing.T, f Feed, seq0 int) {
	t.Helper()
	fr := `{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":` + strconv.Itoa(seq0) + `,"changes":[["buy","100","1"],["sell","101","1"]],"trades":[]}`
	if out, err := f.Handle(1, []byte(fr), nil); err != nil || len(out) != 2 {
		t.Fatalf("%v %+v", err, out)
	}
}

func TestGeminiSocketSequenceGap(t *testing.T) {
	f, reg := newTestFeed(t, "gemini", FeedConfig{})
	geminiBookSession(t, f, 0)
	out, _ := f.Handle(2, []byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":1,"changes":[["buy","99","1"]]}`), nil)
	if len(out) != 1 || out[0].Seq != 1 {
		t.Fatalf("%+v", out)
	}
	// 2 is lost.
	out, _ = f.Handle(3, []byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":3,"changes":[["buy","98","1"]]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD" {
		t.Fatalf("gap gave %+v", out)
	}
	if resyncCount(reg, "gap") != 1 {
		t.Fatal("no gap resync")
	}
	ob := f.Outbox(nil)
	if len(ob) != 2 || string(ob[0]) != `{"type":"unsubscribe","subscriptions":[{"name":"l2","symbols":["BTCUSD"]}]}` {
		t.Fatalf("outbox %q", ob)
	}
	// Withheld until the resubscription's book; trades go on.
	out, _ = f.Handle(4, []byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":4,"changes":[["buy","97","1"]]}`), nil)
	if len(out) != 0 {
		t.Fatalf("withheld: %+v", out)
	}
	out, _ = f.Handle(5, []byte(`{"type":"trade","symbol":"BTCUSD","socket_sequence":5,"event_id":1,"timestamp":1,"price":"100","quantity":"1","side":"sell"}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindTrade {
		t.Fatalf("trade: %+v", out)
	}
	geminiBookSession(t, f, 6)
	out, _ = f.Handle(6, []byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":7,"changes":[["buy","97","1"]]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindBookDelta || resyncCount(reg, "") != 1 {
		t.Fatalf("after resnapshot: %+v", out)
	}
}

func TestGeminiCrossed(t *testing.T) {
	f, reg := newTestFeed(t, "gemini", FeedConfig{})
	geminiBookSession(t, f, 0)
	out, _ := f.Handle(2, []byte(`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","101.5","1"]]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 || len(f.Outbox(nil)) != 2 {
		t.Fatalf("crossed gave %+v", out)
	}
}

func TestGeminiMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "gemini", FeedConfig{})
	geminiBookSession(t, f, 0)
	bad := []string{``, `[]`, `{}`, `{"type":1}`, `{"type":"trade","symbol":"BTCUSD","timestamp":1,"price":"x","quantity":"1","side":"buy"}`,
		`{"type":"trade","symbol":"BTCUSD","timestamp":1,"price":"1","quantity":"1","side":"up"}`,
		`{"type":"trade","symbol":"BTCUSD","timestamp":-1,"price":"1","quantity":"1","side":"buy"}`,
		`{"type":"trade","symbol":"","timestamp":1,"price":"1","quantity":"1","side":"buy"}`,
		`{"type":"trade","symbol":"BTCUSD","timestamp":1,"price":"1","quantity":"-1","side":"buy"}`,
		`{"type":"l2_updates","symbol":"BTCUSD"}`, `{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","1"]]}`,
		`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","0","1"]]}`, `{"type":"l2_updates","symbol":"BTCUSD","changes":{}}`,
		`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy",1,"1"]]}`, `{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":"x","changes":[]}`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", m, len(bad))
	}
	out, _ := f.Handle(2, []byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":1,"changes":[["buy","99","1"]]}`), nil)
	if len(out) != 1 || resyncCount(reg, "") != 0 {
		t.Fatalf("state changed by malformed frames: %+v", out)
	}
}

// geminiExpected counts with encoding/json: a trade per trade message, the
// distinct non-zero levels of each initial book, a delta per later change.
func geminiExpected(t *testing.T, lines []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	for _, l := range lines {
		if l.body == nil {
			continue
		}
		var m struct {
			Type    string
			Changes [][3]string
			Trades  *json.RawMessage
		}
		if err := json.Unmarshal(l.body, &m); err != nil {
			t.Fatal(err)
		}
		switch m.Type {
		case "trade":
			want[market.KindTrade]++
		case "l2_updates":
			if m.Trades == nil {
				want[market.KindBookDelta] += len(m.Changes)
				continue
			}
			lv := map[[2]string]string{}
			for _, c := range m.Changes {
				p, _ := strconv.ParseFloat(c[1], 64)
				lv[[2]string{c[0], strconv.FormatFloat(p, 'g', -1, 64)}] = c[2]
			}
			for _, q := range lv {
				if v, _ := strconv.ParseFloat(q, 64); v != 0 {
					want[market.KindSnapshot]++
				}
			}
		}
	}
	return want
}

func TestGeminiRecordedExcerpt(t *testing.T) {
	lines := readCaptureAll(t, venueTestdata("gemini", "GEMINI.ws.1.0_head60"))
	want := geminiExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "gemini", fb, lines, nil, nil, want)
	}
}

func TestGeminiRecordedFile(t *testing.T) {
	lines := readCaptureAll(t, sharedCapture(t, "GEMINI.ws.1.0"))
	want := geminiExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		_, out, _ := replayClean(t, "gemini", fb, lines, nil, nil, want)
		t.Logf("%s: %d ticks %v", pathName(fb), len(out), kindCounts(out))
	}
}

// FuzzFeedGemini: Handle never panics; both JSON paths agree.
func FuzzFeedGemini(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("gemini", "GEMINI.ws.1.0_head60")) {
		if l.body != nil && i > 12 {
			f.Add(l.body)
		}
	}
	f.Add([]byte(`{"type":"l2_updates","symbol":"BTCUSD","socket_sequence":1,"changes":[["buy","101.5","1"]]}`))
	f.Add([]byte(`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","100","1"],["sell","101","1"]],"trades":[]}`))
	fuzzFeed(f, "gemini", FeedConfig{}, nil)
}

func BenchmarkFeedGemini(b *testing.B) {
	benchReplay(b, "gemini", readCaptureAll(b, venueTestdata("gemini", "GEMINI.ws.1.0_head60")), nil, nil)
}
