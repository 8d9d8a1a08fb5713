package ingest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

func TestNormalizeDeribit(t *testing.T) {
	for sym, want := range map[string]string{
		"BTC-PERPETUAL": "BTC-USD-PERP", "ETH-PERPETUAL": "ETH-USD-PERP", "BTC_USDC-PERPETUAL": "BTC-USDC-PERP",
		"BTC-27DEC24": "BTC-USD-20241227", "ETH-3JAN25": "ETH-USD-20250103", "BTC_USDC": "BTC-USDC",
		"BTC-24SEP21-8000-P": "BTC-USD-20210924-8000-P", "ETH-30JUL21-2800-C": "ETH-USD-20210730-2800-C",
	} {
		if got, ok := NormalizeDeribitSymbol(sym); !ok || got != want {
			t.Errorf("%s → %q %v, want %q", sym, got, ok, want)
		}
	}
	for _, sym := range []string{"BTC", "BTC-27XYZ24", "BTC-24SEP21-8000-X", "-PERPETUAL", "BTC-1-2"} {
		if _, ok := NormalizeDeribitSymbol(sym); ok {
			t.Errorf("%s normalized", sym)
		}
	}
}

func TestDeribitSubscribeFrames(t *testing.T) {
	f := NewDeribitFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "BTC-PERPETUAL"}, {ChanTrades, "BTC-PERPETUAL"},
		{ChanLiquidations, "BTC-PERPETUAL"}, {ChanQuotes, "BTC-PERPETUAL"}, {ChanFunding, "BTC-PERPETUAL"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}`,
		`{"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.100ms","trades.BTC-PERPETUAL.100ms","ticker.BTC-PERPETUAL.100ms"]}}`}
	if len(fr) != 2 || string(fr[0]) != want[0] || string(fr[1]) != want[1] {
		t.Fatalf("%q", fr)
	}
	if _, err := f.SubscribeFrames([]Subscription{{ChanBook, "a.b"}}); err == nil {
		t.Fatal("bad symbol accepted")
	}
}

func TestDeribitKnownFrames(t *testing.T) {
	const recv = int64(1626993723844026000)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "deribit", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			// Recorded snapshot (DERIBIT.ws.1.0), cut to two levels a side.
			got := run(`{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.ETH-30JUL21-2800-C.raw","data":{"type":"snapshot","timestamp":1626993723632,"instrument_name":"ETH-30JUL21-2800-C","change_id":13169025645,"bids":[["new",0.0015,4714.0],["new",0.001,861.0]],"asks":[["new",0.0025,873.0],["new",0.003,167.0]]}}}`)
			base := market.Tick{Venue: "deribit", Instrument: "ETH-USD-20210730-2800-C", Symbol: "ETH-30JUL21-2800-C", Kind: market.KindSnapshot,
				ExchTS: 1626993723632_000000, RecvTS: recv, Seq: 13169025645}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			want := []market.Tick{lv(base, market.SideBuy, 0.0015, 4714), lv(base, market.SideBuy, 0.001, 861), lv(base, market.SideSell, 0.0025, 873), lv(base, market.SideSell, 0.003, 167)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.ETH-30JUL21-2800-C.raw","data":{"type":"change","timestamp":1626993724318,"prev_change_id":13169025645,"instrument_name":"ETH-30JUL21-2800-C","change_id":13169025700,"bids":[["delete",0.001,0.0]],"asks":[["change",0.0025,800.0]]}}}`)
			base.Kind, base.Seq, base.ExchTS = market.KindBookDelta, 13169025700, 1626993724318_000000
			if want := []market.Tick{lv(base, market.SideBuy, 0.001, 0), lv(base, market.SideSell, 0.0025, 800)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("change:\n got %+v\nwant %+v", got, want)
			}
			// Docs example trade: direction is the taker's.
			got = run(`{"params":{"data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"tick_direction":0,"price":8950.0,"mark_price":8948.9,"instrument_name":"BTC-PERPETUAL","index_price":8955.88,"direction":"sell","amount":10.0}],"channel":"trades.BTC-PERPETUAL.raw"},"method":"subscription","jsonrpc":"2.0"}`)
			tr := goldenTick(market.Tick{Venue: "deribit", Instrument: "BTC-USD-PERP", Symbol: "BTC-PERPETUAL", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1590484156350_000000, RecvTS: recv, Price: 8950, Size: 10, TradeID: 48079254, Seq: 30289432})
			if !reflect.DeepEqual(got, []market.Tick{tr}) {
				t.Fatalf("trade:\n got %+v\nwant %+v", got, tr)
			}
			// A liquidation trade (liquidation "T": the taker was liquidated).
			got = run(`{"params":{"data":[{"trade_seq":1,"trade_id":"ETH-5","timestamp":1590484156350,"price":200.5,"instrument_name":"ETH-PERPETUAL","direction":"buy","amount":3,"liquidation":"T"}],"channel":"trades.ETH-PERPETUAL.100ms"},"method":"subscription","jsonrpc":"2.0"}`)
			if len(got) != 1 || got[0].Kind != market.KindLiquidation || got[0].TradeID != 5 || got[0].Side != market.SideBuy {
				t.Fatalf("liquidation: %+v", got)
			}
			// Docs-shaped perpetual ticker: a quote and a funding tick.
			got = run(`{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"timestamp":1623060194301,"stats":{"volume":1},"state":"open","mark_price":35766.21,"last_price":35777.5,"instrument_name":"BTC-PERPETUAL","index_price":35797.48,"funding_8h":0.00002585,"current_funding":0.0001,"best_bid_price":35777.0,"best_bid_amount":24200.0,"best_ask_price":35777.5,"best_ask_amount":1710.0}}}`)
			q := market.Tick{Venue: "deribit", Instrument: "BTC-USD-PERP", Symbol: "BTC-PERPETUAL", ExchTS: 1623060194301_000000, RecvTS: recv}
			qt, ft := q, q
			qt.Kind, qt.BidPx, qt.BidSz, qt.AskPx, qt.AskSz = market.KindQuote, 35777, 24200, 35777.5, 1710
			ft.Kind, ft.Price, ft.BidPx, ft.AskPx = market.KindFunding, 0.0001, 35766.21, 35797.48
			if want := []market.Tick{goldenTick(qt), goldenTick(ft)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("ticker:\n got %+v\nwant %+v", got, want)
			}
			// Subscribe response and a heartbeat test_request.
			if got := run(`{"jsonrpc":"2.0","id":0,"result":["book.BTC-PERPETUAL.100ms"]}`); len(got) != 0 {
				t.Fatal(got)
			}
			f.Outbox(nil)
			if got := run(`{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}`); len(got) != 0 {
				t.Fatal(got)
			}
			ob := f.Outbox(nil)
			if len(ob) != 1 || !strings.Contains(string(ob[0]), `"method":"public/test"`) {
				t.Fatalf("test_request answered with %q", ob)
			}
			run(`{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}`)
			if ob := f.Outbox(nil); len(ob) != 0 {
				t.Fatalf("plain heartbeat answered: %q", ob)
			}
		})
	}
}

const deribitSnapB = `{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"snapshot","timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":100,"bids":[["new",5000,10]],"asks":[["new",5001,20]]}}}`

func deribitChangeB(prev, id int, side, level string) string {
	return `{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"type":"change","timestamp":2,"instrument_name":"BTC-PERPETUAL","prev_change_id":` +
		itoaB(prev) + `,"change_id":` + itoaB(id) + `,"` + side + `":[` + level + `]}}}`
}

func itoaB(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDeribitChangeIDGap(t *testing.T) {
	f, reg := newTestFeed(t, "deribit", FeedConfig{})
	if out, err := f.Handle(1, []byte(deribitSnapB), nil); err != nil || len(out) != 2 {
		t.Fatalf("%v %+v", err, out)
	}
	out, _ := f.Handle(2, []byte(deribitChangeB(100, 105, "bids", `["new",4999,1]`)), nil)
	if len(out) != 1 || out[0].Kind != market.KindBookDelta || out[0].Seq != 105 {
		t.Fatalf("%+v", out)
	}
	// prev_change_id 106 != 105: a change was lost.
	out, _ = f.Handle(3, []byte(deribitChangeB(106, 107, "bids", `["new",4998,1]`)), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD-PERP" || resyncCount(reg, "gap") != 1 {
		t.Fatalf("gap gave %+v", out)
	}
	ob := f.Outbox(nil)
	if len(ob) != 2 || !strings.Contains(string(ob[0]), `"public/unsubscribe","params":{"channels":["book.BTC-PERPETUAL.100ms"]}`) ||
		!strings.Contains(string(ob[1]), `"public/subscribe","params":{"channels":["book.BTC-PERPETUAL.100ms"]}`) {
		t.Fatalf("outbox %q", ob)
	}
	// Withheld (even when chained to the lost one) until a snapshot.
	if out, _ = f.Handle(4, []byte(deribitChangeB(107, 108, "bids", `["new",4997,1]`)), nil); len(out) != 0 {
		t.Fatalf("withheld: %+v", out)
	}
	if out, _ = f.Handle(5, []byte(deribitSnapB), nil); len(out) != 2 {
		t.Fatalf("resnapshot: %+v", out)
	}
	if out, _ = f.Handle(6, []byte(deribitChangeB(100, 101, "asks", `["delete",5001,0]`)), nil); len(out) != 1 || out[0].Size != 0 {
		t.Fatalf("after resnapshot: %+v", out)
	}
	if resyncCount(reg, "") != 1 {
		t.Fatal("resyncs")
	}
	// Crossed.
	out, _ = f.Handle(7, []byte(deribitChangeB(101, 102, "bids", `["new",5002,1]`)), nil)
	if len(out) != 1 || out[0].Kind != market.KindBookDelta {
		// The ask side is empty after the delete: not crossed.
		t.Fatalf("one-sided book: %+v", out)
	}
	out, _ = f.Handle(8, []byte(deribitChangeB(102, 103, "asks", `["new",5001.5,1]`)), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 {
		t.Fatalf("crossed gave %+v", out)
	}
}

func TestDeribitMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "deribit", FeedConfig{})
	f.Handle(1, []byte(deribitSnapB), nil)
	bad := []string{``, `[]`, `{}`, `{"method":"subscription"}`, `{"method":"subscription","params":{"channel":"book.X.100ms"}}`,
		`{"method":"subscription","params":{"data":{}}}`, `{"method":"subscription","params":[]}`,
		deribitChangeB(100, 101, "bids", `["add",1,1]`), deribitChangeB(100, 101, "bids", `["new",-1,1]`),
		deribitChangeB(100, 101, "bids", `["new",1]`), deribitChangeB(100, 101, "bids", `["new","1",1]`),
		strings.Replace(deribitChangeB(100, 101, "bids", `["new",1,1]`), `"prev_change_id":100,`, ``, 1),
		strings.Replace(deribitSnapB, `"snapshot"`, `"snap"`, 1), strings.Replace(deribitSnapB, `"change_id":100,`, ``, 1),
		`{"method":"subscription","params":{"channel":"trades.X.100ms","data":[{"instrument_name":"BTC-PERPETUAL","direction":"up","price":1,"amount":1,"timestamp":1}]}}`,
		`{"method":"subscription","params":{"channel":"trades.X.100ms","data":[{"instrument_name":"BTC-PERPETUAL","direction":"buy","price":1,"timestamp":1}]}}`,
		`{"method":"subscription","params":{"channel":"trades.X.100ms","data":{}}}`,
		`{"method":"subscription","params":{"channel":"ticker.X.100ms","data":{"instrument_name":"BTC-PERPETUAL","timestamp":1,"best_bid_price":"1"}}}`,
		`{"method":"subscription","params":{"channel":"ticker.X.100ms","data":{"instrument_name":"BTC-PERPETUAL"}}}`,
		`{"method":"heartbeat","params":{"type":1}}`, `{"jsonrpc":"2.0"}`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", m, len(bad))
	}
	if out, _ := f.Handle(2, []byte(deribitChangeB(100, 101, "bids", `["new",4999,1]`)), nil); len(out) != 1 || resyncCount(reg, "") != 0 {
		t.Fatalf("state changed by malformed frames: %+v", out)
	}
}

// deribitExpected counts with encoding/json: a quote per ticker (plus a
// funding tick where current_funding is sent), the distinct non-zero levels
// of each snapshot, a delta per change level.
func deribitExpected(t *testing.T, lines []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	for _, l := range lines {
		if l.body == nil {
			continue
		}
		var m struct {
			Params struct {
				Channel string
				Data    json.RawMessage
			}
		}
		if err := json.Unmarshal(l.body, &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(m.Params.Channel, "ticker."):
			want[market.KindQuote]++
			var d map[string]any
			json.Unmarshal(m.Params.Data, &d)
			if _, ok := d["current_funding"]; ok {
				want[market.KindFunding]++
			}
		case strings.HasPrefix(m.Params.Channel, "book."):
			var d struct {
				Type       string
				Bids, Asks [][3]any
			}
			json.Unmarshal(m.Params.Data, &d)
			for _, side := range [][][3]any{d.Bids, d.Asks} {
				if d.Type == "change" {
					want[market.KindBookDelta] += len(side)
					continue
				}
				px := map[float64]bool{}
				for _, lv := range side {
					if lv[2].(float64) != 0 {
						px[lv[1].(float64)] = true
					}
				}
				want[market.KindSnapshot] += len(px)
			}
		case strings.HasPrefix(m.Params.Channel, "trades."):
			var d []any
			json.Unmarshal(m.Params.Data, &d)
			want[market.KindTrade] += len(d)
		}
	}
	for k, v := range want {
		if v == 0 {
			delete(want, k)
		}
	}
	return want
}

func TestDeribitRecordedExcerpt(t *testing.T) {
	lines := readCaptureAll(t, venueTestdata("deribit", "DERIBIT.ws.1.0_head60"))
	want := deribitExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "deribit", fb, lines, nil, nil, want)
	}
}

func TestDeribitRecordedFile(t *testing.T) {
	lines := readCaptureAll(t, sharedCapture(t, "DERIBIT.ws.1.0"))
	want := deribitExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		_, out, _ := replayClean(t, "deribit", fb, lines, nil, nil, want)
		t.Logf("%s: %d ticks %v", pathName(fb), len(out), kindCounts(out))

		// Drop the first change of one instrument: exactly one gap for it,
		// a resync, and none of its book ticks afterwards.
		drop, sym := -1, ""
		for i, l := range lines {
			if l.body != nil && strings.Contains(string(l.body), `"type":"change"`) {
				drop = i
				var m struct {
					Params struct {
						Data struct{ Instrument_name string }
					}
				}
				json.Unmarshal(l.body, &m)
				sym = m.Params.Data.Instrument_name
				break
			}
		}
		g, reg := newTestFeed(t, "deribit", FeedConfig{ForceFallback: fb})
		replayFeed(t, g, lines[:drop])
		after := replayFeed(t, g, lines[drop+1:])
		gaps := 0
		for _, k := range after {
			if k.Symbol != sym {
				continue
			}
			switch k.Kind {
			case market.KindGap:
				gaps++
			case market.KindBookDelta, market.KindSnapshot:
				t.Fatalf("book tick of %s after the gap: %+v", sym, k)
			}
		}
		if gaps != 1 || resyncCount(reg, "gap") != 1 || resyncCount(reg, "") != 1 || len(g.Outbox(nil)) != 2 {
			t.Fatalf("%s: %d gap ticks, %v resyncs", sym, gaps, resyncCount(reg, ""))
		}
	}
}

// FuzzFeedDeribit: Handle never panics; both JSON paths agree.
func FuzzFeedDeribit(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("deribit", "DERIBIT.ws.1.0_head60")) {
		if l.body != nil && i%3 == 0 {
			f.Add(l.body)
		}
	}
	f.Add([]byte(deribitChangeB(100, 101, "bids", `["new",4999,1]`)))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}`))
	f.Add([]byte(`{"params":{"data":[{"trade_seq":1,"trade_id":"ETH-5","timestamp":1,"price":200.5,"instrument_name":"ETH-PERPETUAL","direction":"buy","amount":3,"liquidation":"T"}],"channel":"trades.ETH-PERPETUAL.100ms"},"method":"subscription"}`))
	paths := fuzzPaths(f, "deribit", FeedConfig{}, nil, func(fd Feed) { fd.Handle(1, []byte(deribitSnapB), nil) })
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCompare(t, paths, data, nil) })
}

func BenchmarkFeedDeribit(b *testing.B) {
	benchReplay(b, "deribit", readCaptureAll(b, venueTestdata("deribit", "DERIBIT.ws.1.0_head60")), nil, nil)
}
