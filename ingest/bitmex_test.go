package ingest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

func TestNormalizeBitmex(t *testing.T) {
	for sym, want := range map[string]string{"XBTUSD": "BTC-USD-PERP", "SOLUSDT": "SOL-USDT-PERP", "ETHUSD": "ETH-USD-PERP",
		"XBTU21": "BTC-USD-20210924", "XBTZ24": "BTC-USD-20241227", "XBTH25": "BTC-USD-20250328"} {
		if got, ok := NormalizeBitmexSymbol(sym); !ok || got != want {
			t.Errorf("%s → %q %v, want %q", sym, got, ok, want)
		}
	}
	for _, sym := range []string{"XRPU21", "TRXU21", ".BXBT"} {
		if _, ok := NormalizeBitmexSymbol(sym); ok {
			t.Errorf("%s normalized", sym)
		}
	}
	f := NewBitmexFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "XBTUSD"}, {ChanTrades, "XBTUSD"}, {ChanQuotes, "XBTUSD"}})
	if err != nil || len(fr) != 1 || string(fr[0]) != `{"op":"subscribe","args":["orderBookL2:XBTUSD","trade:XBTUSD","quote:XBTUSD"]}` {
		t.Fatalf("%q %v", fr, err)
	}
	if string(f.Ping()) != "ping" {
		t.Fatal("ping")
	}
	if out, err := f.Handle(1, []byte("pong"), nil); err != nil || len(out) != 0 {
		t.Fatalf("pong: %v %+v", err, out)
	}
}

func TestBitmexKnownFrames(t *testing.T) {
	const recv = int64(1626993370146107000)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "bitmex", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			if got := run(`{"success":true,"subscribe":"orderBookL2:XRPU21","request":{"op":"subscribe","args":["orderBookL2:XRPU21"]}}`); len(got) != 0 {
				t.Fatal(got)
			}
			// Recorded trade: side is the taker's; trdMatchID's first 8 bytes.
			got := run(`{"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"UNIUSDT","side":"Buy","size":52,"price":17.297,"tickDirection":"PlusTick","trdMatchID":"39744121-c20e-44ba-8cc8-a6b8cdf72885","grossValue":899444,"homeNotional":16.73101673101673,"foreignNotional":289.39639639639637}]}`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "bitmex", Instrument: "UNI-USDT-PERP", Symbol: "UNIUSDT", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1626993370014_000000, RecvTS: recv, Price: 17.297, Size: 52, TradeID: 0x39744121c20e44ba})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("trade:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"table":"quote","action":"insert","data":[{"timestamp":"2021-07-22T22:36:10.014Z","symbol":"UNIUSDT","bidSize":750,"bidPrice":17.277,"askPrice":17.297,"askSize":123}]}`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "bitmex", Instrument: "UNI-USDT-PERP", Symbol: "UNIUSDT", Kind: market.KindQuote,
				ExchTS: 1626993370014_000000, RecvTS: recv, BidPx: 17.277, BidSz: 750, AskPx: 17.297, AskSz: 123})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("quote:\n got %+v\nwant %+v", got, want)
			}
			// Book by ids; the update and delete carry no price.
			got = run(`{"table":"orderBookL2","action":"partial","filter":{"symbol":"BCHUSD"},"data":[{"symbol":"BCHUSD","id":40199991243,"side":"Buy","size":2000,"price":437.85},{"symbol":"BCHUSD","id":40199991245,"side":"Buy","size":10,"price":437.55},{"symbol":"BCHUSD","id":40199991100,"side":"Sell","size":7,"price":440}]}`)
			base := market.Tick{Venue: "bitmex", Instrument: "BCH-USD-PERP", Symbol: "BCHUSD", Kind: market.KindSnapshot, RecvTS: recv}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			want = []market.Tick{lv(base, market.SideBuy, 437.85, 2000), lv(base, market.SideBuy, 437.55, 10), lv(base, market.SideSell, 440, 7)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("partial:\n got %+v\nwant %+v", got, want)
			}
			base.Kind = market.KindBookDelta
			got = run(`{"table":"orderBookL2","action":"update","data":[{"symbol":"BCHUSD","id":40199991243,"side":"Buy","size":2104}]}`)
			if want := []market.Tick{lv(base, market.SideBuy, 437.85, 2104)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("update:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"table":"orderBookL2","action":"delete","data":[{"symbol":"BCHUSD","id":40199991245,"side":"Buy"}]}`)
			if want := []market.Tick{lv(base, market.SideBuy, 437.55, 0)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("delete:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"table":"orderBookL2","action":"insert","data":[{"symbol":"BCHUSD","id":40199991000,"side":"Sell","size":3,"price":439.5}]}`)
			if want := []market.Tick{lv(base, market.SideSell, 439.5, 3)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("insert:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

const bitmexPartialB = `{"table":"orderBookL2","action":"partial","filter":{"symbol":"XBTUSD"},"data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":10,"price":100},{"symbol":"XBTUSD","id":2,"side":"Sell","size":10,"price":101}]}`

func TestBitmexGapCrossedMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "bitmex", FeedConfig{})
	f.Handle(1, []byte(bitmexPartialB), nil)
	// An update of an id the book never had: a lost insert.
	out, _ := f.Handle(2, []byte(`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":9,"side":"Buy","size":1}]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD-PERP" || resyncCount(reg, "gap") != 1 {
		t.Fatalf("gap gave %+v", out)
	}
	ob := f.Outbox(nil)
	if len(ob) != 2 || string(ob[0]) != `{"op":"unsubscribe","args":["orderBookL2:XBTUSD"]}` || string(ob[1]) != `{"op":"subscribe","args":["orderBookL2:XBTUSD"]}` {
		t.Fatalf("outbox %q", ob)
	}
	if out, _ := f.Handle(3, []byte(`{"table":"orderBookL2","action":"insert","data":[{"symbol":"XBTUSD","id":3,"side":"Buy","size":1,"price":99}]}`), nil); len(out) != 0 {
		t.Fatalf("withheld: %+v", out)
	}
	if out, _ := f.Handle(4, []byte(bitmexPartialB), nil); len(out) != 2 {
		t.Fatalf("partial: %+v", out)
	}
	out, _ = f.Handle(5, []byte(`{"table":"orderBookL2","action":"insert","data":[{"symbol":"XBTUSD","id":4,"side":"Buy","size":1,"price":101.5}]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 {
		t.Fatalf("crossed gave %+v", out)
	}
	bad := []string{``, `[]`, `pong2`, `{"table":"trade"}`, `{"table":"trade","action":"insert","data":{}}`,
		`{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","side":"Up","size":1,"price":1}]}`,
		`{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","side":"Buy","size":1,"price":1,"timestamp":"yesterday"}]}`,
		`{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","side":"Buy","size":1}]}`,
		`{"table":"orderBookL2","action":"replace","data":[]}`,
		`{"table":"orderBookL2","action":"insert","data":[{"symbol":"XBTUSD","id":5,"side":"Buy","size":1}]}`,
		`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy"}]}`,
		`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":-1}]}`,
		`{"table":"quote","action":"insert","data":[{"symbol":"","bidPrice":1}]}`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", m, len(bad))
	}
}

// bitmexExpected counts with encoding/json: a trade per inserted trade, a
// quote per quote entry, the distinct levels of each partial and a delta per
// insert/update/delete entry of a symbol whose partial came.
func bitmexExpected(t *testing.T, lines []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	live := map[string]bool{}
	for _, l := range lines {
		if l.body == nil || string(l.body) == "pong" {
			continue
		}
		var m struct {
			Table, Action string
			Data          []struct {
				Symbol, Side string
				Price        float64
			}
		}
		if err := json.Unmarshal(l.body, &m); err != nil {
			t.Fatal(err)
		}
		switch m.Table {
		case "trade":
			if m.Action == "insert" {
				want[market.KindTrade] += len(m.Data)
			}
		case "quote":
			want[market.KindQuote] += len(m.Data)
		case "orderBookL2":
			if m.Action == "partial" {
				px := map[[2]any]bool{}
				for _, d := range m.Data {
					live[d.Symbol] = true
					px[[2]any{d.Side, d.Price}] = true
				}
				want[market.KindSnapshot] += len(px)
				continue
			}
			for _, d := range m.Data {
				if live[d.Symbol] {
					want[market.KindBookDelta]++
				}
			}
		}
	}
	return want
}

func TestBitmexRecordedExcerpt(t *testing.T) {
	lines := readCaptureAll(t, venueTestdata("bitmex", "BITMEX.ws.1.0_lines1-150_no59"))
	want := bitmexExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "bitmex", fb, lines, nil, nil, want)
	}
}

func TestBitmexRecordedFile(t *testing.T) {
	lines := readCaptureAll(t, sharedCapture(t, "BITMEX.ws.1.0"))
	want := bitmexExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		_, out, _ := replayClean(t, "bitmex", fb, lines, nil, nil, want)
		t.Logf("%s: %d ticks %v", pathName(fb), len(out), kindCounts(out))

		// Drop an insert mid-file; the first later update or delete of its id
		// is a gap: one gap tick, one resync, no book tick of the symbol after.
		drop, sym, id := -1, "", uint64(0)
		for i := len(lines) / 2; i < len(lines) && drop < 0; i++ {
			if !strings.Contains(string(lines[i].body), `"table":"orderBookL2","action":"insert"`) {
				continue
			}
			var m struct {
				Data []struct {
					Symbol string
					ID     uint64
				}
			}
			json.Unmarshal(lines[i].body, &m)
			for j := i + 1; j < len(lines); j++ {
				if strings.Contains(string(lines[j].body), `"id":`+itoaB(int(m.Data[0].ID))+`,`) {
					drop, sym, id = i, m.Data[0].Symbol, m.Data[0].ID
					break
				}
			}
		}
		if drop < 0 {
			t.Fatal("no insert to drop")
		}
		g, reg := newTestFeed(t, "bitmex", FeedConfig{ForceFallback: fb})
		replayFeed(t, g, lines[:drop])
		after := replayFeed(t, g, lines[drop+1:])
		gaps, seenGap := 0, false
		for _, k := range after {
			if k.Symbol != sym {
				continue
			}
			switch k.Kind {
			case market.KindGap:
				gaps++
				seenGap = true
			case market.KindBookDelta, market.KindSnapshot:
				if seenGap {
					t.Fatalf("book tick after the gap: %+v", k)
				}
			}
		}
		if gaps != 1 || resyncCount(reg, "gap") != 1 || resyncCount(reg, "") != 1 {
			t.Fatalf("%s id %d: %d gap ticks, %v resyncs", sym, id, gaps, resyncCount(reg, ""))
		}
	}
}

// FuzzFeedBitmex: Handle never panics; both JSON paths agree.
func FuzzFeedBitmex(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("bitmex", "BITMEX.ws.1.0_lines1-150_no59")) {
		if l.body != nil && i > 60 && i%3 == 0 {
			f.Add(l.body)
		}
	}
	f.Add([]byte(`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":9,"side":"Buy","size":1}]}`))
	f.Add([]byte(`{"table":"orderBookL2","action":"insert","data":[{"symbol":"XBTUSD","id":4,"side":"Buy","size":1,"price":101.5}]}`))
	paths := fuzzPaths(f, "bitmex", FeedConfig{}, nil, func(fd Feed) { fd.Handle(1, []byte(bitmexPartialB), nil) })
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCompare(t, paths, data, nil) })
}

func BenchmarkFeedBitmex(b *testing.B) {
	benchReplay(b, "bitmex", readCaptureAll(b, venueTestdata("bitmex", "BITMEX.ws.1.0_lines1-150_no59")), nil, nil)
}
