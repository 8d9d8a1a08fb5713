package ingest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

func TestNormalizeBitfinex(t *testing.T) {
	for sym, want := range map[string]string{
		"tBTCUSD": "BTC-USD", "tETHUST": "ETH-USDT", "tTESTBTC:TESTUSD": "TESTBTC-TESTUSD",
		"tBTCF0:USTF0": "BTC-USDT-PERP", "tETHF0:USTF0": "ETH-USDT-PERP", "tDOGE:USD": "DOGE-USD",
	} {
		got, ok := NormalizeBitfinexSymbol(sym)
		if !ok || got != want {
			t.Errorf("%s → %q %v, want %q", sym, got, ok, want)
		}
	}
	for _, sym := range []string{"fUSD", "t", "tBTCUS", "BTCUSD", "t:USD"} {
		if _, ok := NormalizeBitfinexSymbol(sym); ok {
			t.Errorf("%s normalized", sym)
		}
	}
}

func TestAppendJSNumber(t *testing.T) {
	// Expected strings are what JavaScript's String(x) prints.
	for x, want := range map[float64]string{
		0: "0", 1: "1", -0.5: "-0.5", 7254.7: "7254.7", 0.000001: "0.000001", 1e-7: "1e-7",
		1.5e-8: "1.5e-8", -2.5e-10: "-2.5e-10", 1e21: "1e+21", 123456789012345680000: "123456789012345680000",
		1.7023900800000002: "1.7023900800000002", 0.00002532: "0.00002532",
	} {
		if got := string(appendJSNumber(nil, x)); got != want {
			t.Errorf("%v → %q, want %q", x, got, want)
		}
	}
}

func TestBitfinexSubscribeFrames(t *testing.T) {
	f := NewBitfinexFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "tBTCUSD"}, {ChanTrades, "tBTCUSD"}, {ChanQuotes, "tETHUSD"}, {ChanFunding, "tBTCF0:USTF0"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"event":"conf","flags":196608}`,
		`{"event":"subscribe","channel":"book","symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"100"}`,
		`{"event":"subscribe","channel":"trades","symbol":"tBTCUSD"}`,
		`{"event":"subscribe","channel":"ticker","symbol":"tETHUSD"}`,
		`{"event":"subscribe","channel":"status","key":"deriv:tBTCF0:USTF0"}`,
	}
	for i := range want {
		if string(fr[i]) != want[i] {
			t.Errorf("frame %d: %s, want %s", i, fr[i], want[i])
		}
	}
	if _, err := f.SubscribeFrames([]Subscription{{ChanLiquidations, "tBTCUSD"}}); err == nil {
		t.Error("liquidations accepted")
	}
	nc := NewBitfinexFeed(FeedConfig{NoChecksum: true})
	fr, _ = nc.SubscribeFrames(nil)
	if string(fr[0]) != `{"event":"conf","flags":65536}` {
		t.Errorf("NoChecksum conf: %s", fr[0])
	}
	if u, _ := f.URL(nil); u != "wss://api-pub.bitfinex.com/ws/2" {
		t.Errorf("URL %s", u)
	}
}

// TestBitfinexKnownFrames checks ticks computed by hand from recorded frames
// and, for formats the recording lacks (live trades, funding), frames built
// from the documentation's examples.
func TestBitfinexKnownFrames(t *testing.T) {
	const recv = int64(1618677543951228900)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "bitfinex", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			for _, ev := range []string{
				`{"event":"info","version":2,"serverId":"083bd8d4-aca7-4690-a573-eabfc8103de8","platform":{"status":1}}`,
				`{"event":"conf","status":"OK","flags":65536}`,
				`{"event":"subscribed","channel":"ticker","chanId":232949,"symbol":"tBFTUSD","pair":"BFTUSD"}`,
				`{"event":"subscribed","channel":"trades","chanId":17470,"symbol":"tBTCUSD","pair":"BTCUSD"}`,
				`{"event":"subscribed","channel":"book","chanId":225206,"symbol":"tDOGUSD","prec":"P0","freq":"F0","len":"100","pair":"DOGUSD"}`,
				`{"event":"subscribed","channel":"status","chanId":335856,"key":"deriv:tBTCF0:USTF0"}`,
			} {
				if got := run(ev); len(got) != 0 {
					t.Fatalf("event gave ticks: %+v", got)
				}
			}
			// Recorded ticker (BITFINEX.ws.11.0 line 27).
			got := run(`[232949,[0.068965,60157.36709703,0.0774,48578.50804052,0.001969,0.0262,0.076989,101459.39453471,0.0828,0.068961],1]`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "bitfinex", Instrument: "BFT-USD", Symbol: "tBFTUSD", Kind: market.KindQuote, RecvTS: recv,
				BidPx: 0.068965, BidSz: 60157.36709703, AskPx: 0.0774, AskSz: 48578.50804052, Seq: 1})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ticker:\n got %+v\nwant %+v", got, want)
			}
			// Book snapshot then recorded deltas (line 60: count 0, amount 1:
			// remove the bid at 215350).
			got = run(`[225206,[[277520,1,0.00383141],[215350,2,0.5],[279380,1,-0.0089],[282780,3,-1.25]],2]`)
			base := market.Tick{Venue: "bitfinex", Instrument: "DOG-USD", Symbol: "tDOGUSD", RecvTS: recv, Seq: 2, Kind: market.KindSnapshot}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			want = []market.Tick{lv(base, market.SideBuy, 277520, 0.00383141), lv(base, market.SideBuy, 215350, 0.5),
				lv(base, market.SideSell, 279380, 0.0089), lv(base, market.SideSell, 282780, 1.25)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot:\n got %+v\nwant %+v", got, want)
			}
			got = run(`[225206,[215350,0,1],3]`)
			base.Kind, base.Seq = market.KindBookDelta, 3
			if want := []market.Tick{lv(base, market.SideBuy, 215350, 0)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("delete:\n got %+v\nwant %+v", got, want)
			}
			got = run(`[225206,[279380,2,-0.0189],4]`)
			base.Seq = 4
			if want := []market.Tick{lv(base, market.SideSell, 279380, 0.0189)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("ask update:\n got %+v\nwant %+v", got, want)
			}
			// Heartbeat and tu: nothing.
			if got := run(`[225206,"hb",5]`); len(got) != 0 {
				t.Fatal(got)
			}
			// Trades (docs: [CHANNEL_ID, "te", [ID, MTS, AMOUNT, PRICE]]):
			// negative amount: the taker sold.
			got = run(`[17470,"te",[401597395,1574694475039,-0.005,7244.9],6]`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "bitfinex", Instrument: "BTC-USD", Symbol: "tBTCUSD", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1574694475039_000000, RecvTS: recv, Price: 7244.9, Size: 0.005, TradeID: 401597395, Seq: 6})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("te:\n got %+v\nwant %+v", got, want)
			}
			if got := run(`[17470,"tu",[401597395,1574694475039,-0.005,7244.9],7]`); len(got) != 0 {
				t.Fatalf("tu gave ticks %+v", got)
			}
			// Status (docs example): funding rate -0.01381344, mark 0.7664,
			// spot 0.771995.
			got = run(`[335856,[1596124822000,null,0.896,0.771995,null,1396531.67460709,null,1596153600000,0.0001056,6,null,-0.01381344,null,null,0.7664,null,null,100,null,null,null,-0.3,0.3],8]`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "bitfinex", Instrument: "BTC-USDT-PERP", Symbol: "tBTCF0:USTF0", Kind: market.KindFunding,
				ExchTS: 1596124822000_000000, RecvTS: recv, Price: -0.01381344, BidPx: 0.7664, AskPx: 0.771995, Seq: 8})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("status:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// bfxBookSession subscribes to one book and applies a three-level snapshot:
// bids 7254.7 (0.3), 7254.6 (0.1); ask 7255.2 (0.5).
func bfxBookSession(t *testing.T, f Feed) {
	t.Helper()
	for _, fr := range []string{
		`{"event":"conf","status":"OK","flags":196608}`,
		`{"event":"subscribed","channel":"book","chanId":10,"symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"100","pair":"BTCUSD"}`,
		`{"event":"subscribed","channel":"trades","chanId":11,"symbol":"tBTCUSD","pair":"BTCUSD"}`,
		`[10,[[7254.7,1,0.3],[7254.6,2,0.1],[7255.2,1,-0.5]],1]`,
	} {
		if _, err := f.Handle(1, []byte(fr), nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBitfinexChecksum(t *testing.T) {
	// By hand: "7254.7:0.3:7255.2:-0.5:7254.6:0.1" (bid, ask, bid: the
	// second ask is missing); CRC32 (IEEE) as a signed int: 52732754
	// (python3: zlib.crc32 → 52732754).
	f, reg := newTestFeed(t, "bitfinex", FeedConfig{})
	bfxBookSession(t, f)
	if out, err := f.Handle(2, []byte(`[10,"cs",52732754,2]`), nil); err != nil || len(out) != 0 {
		t.Fatalf("good checksum: %v %+v", err, out)
	}
	if r := resyncCount(reg, ""); r != 0 {
		t.Fatalf("resyncs %v after a good checksum", r)
	}
	// After removing the second bid: "7254.7:0.3:7255.2:-0.5" → -574516173.
	if _, err := f.Handle(3, []byte(`[10,[7254.6,0,1],3]`), nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := f.Handle(4, []byte(`[10,"cs",-574516173,4]`), nil); len(out) != 0 {
		t.Fatalf("good checksum after delete: %+v", out)
	}
	// A wrong checksum: one gap tick, a resync, a resubscription.
	out, err := f.Handle(5, []byte(`[10,"cs",12345,5]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD" || out[0].Seq != 5 {
		t.Fatalf("bad checksum gave %+v, want one gap tick", out)
	}
	if r := resyncCount(reg, "checksum"); r != 1 {
		t.Fatalf("checksum resyncs %v, want 1", r)
	}
	ob := f.Outbox(nil)
	if len(ob) != 2 || string(ob[0]) != `{"event":"unsubscribe","chanId":10}` ||
		string(ob[1]) != `{"event":"subscribe","channel":"book","symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"100"}` {
		t.Fatalf("outbox %q", ob)
	}
	if len(f.Outbox(nil)) != 0 {
		t.Fatal("outbox not emptied")
	}
	// Updates still arriving on the old channel are withheld; trades are not.
	out, _ = f.Handle(6, []byte(`[10,[7254.5,1,1],6]`), nil)
	if len(out) != 0 {
		t.Fatalf("withheld book gave %+v", out)
	}
	out, _ = f.Handle(7, []byte(`[11,"te",[1,1574694475039,0.01,7255.2],7]`), nil)
	if len(out) != 1 || out[0].Kind != market.KindTrade || out[0].Side != market.SideBuy {
		t.Fatalf("trade during resync: %+v", out)
	}
	// A second bad checksum on the old channel: no second gap.
	if out, _ := f.Handle(8, []byte(`[10,"cs",1,8]`), nil); len(out) != 0 {
		t.Fatalf("second gap: %+v", out)
	}
	// The resubscription's snapshot brings the book back.
	f.Handle(9, []byte(`{"event":"unsubscribed","status":"OK","chanId":10}`), nil)
	f.Handle(9, []byte(`{"event":"subscribed","channel":"book","chanId":12,"symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"100","pair":"BTCUSD"}`), nil)
	out, _ = f.Handle(10, []byte(`[12,[[7254.7,1,0.3],[7255.2,1,-0.5]],9]`), nil)
	if k := kindCounts(out); k[market.KindSnapshot] != 2 || len(out) != 2 {
		t.Fatalf("resnapshot gave %+v", out)
	}
	out, _ = f.Handle(11, []byte(`[12,[7254.7,0,1],10]`), nil)
	if len(out) != 1 || out[0].Kind != market.KindBookDelta || out[0].Size != 0 {
		t.Fatalf("delta after resnapshot: %+v", out)
	}
	if r := resyncCount(reg, ""); r != 1 {
		t.Fatalf("resyncs %v, want 1", r)
	}

	// NoChecksum: the same wrong checksum is not checked.
	nc, reg2 := newTestFeed(t, "bitfinex", FeedConfig{NoChecksum: true})
	bfxBookSession(t, nc)
	if out, _ := nc.Handle(2, []byte(`[10,"cs",12345,2]`), nil); len(out) != 0 || resyncCount(reg2, "") != 0 {
		t.Fatalf("NoChecksum still checks: %+v", out)
	}
}

func TestBitfinexSequenceGap(t *testing.T) {
	f, reg := newTestFeed(t, "bitfinex", FeedConfig{})
	bfxBookSession(t, f)
	// seq 2 is lost: 3 follows 1.
	out, err := f.Handle(2, []byte(`[10,[7254.5,1,1],3]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	// One gap tick for the instrument (book and trades share it), no delta.
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD" {
		t.Fatalf("gap gave %+v", out)
	}
	if r := resyncCount(reg, "gap"); r != 1 {
		t.Fatalf("gap resyncs %v", r)
	}
	if ob := f.Outbox(nil); len(ob) != 2 {
		t.Fatalf("outbox %q", ob)
	}
	// The sequence continues from 3: no further gap.
	out, _ = f.Handle(3, []byte(`[11,"hb",4]`), nil)
	if len(out) != 0 || resyncCount(reg, "") != 1 {
		t.Fatalf("after gap: %+v", out)
	}
}

func TestBitfinexCrossed(t *testing.T) {
	f, reg := newTestFeed(t, "bitfinex", FeedConfig{NoChecksum: true})
	bfxBookSession(t, f)
	// A bid above the best ask crosses the book.
	out, err := f.Handle(2, []byte(`[10,[7256,1,0.2],2]`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Kind != market.KindGap {
		t.Fatalf("crossed gave %+v", out)
	}
	if r := resyncCount(reg, "crossed"); r != 1 {
		t.Fatalf("crossed resyncs %v", r)
	}
}

func TestBitfinexMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "bitfinex", FeedConfig{})
	bfxBookSession(t, f)
	bad := []string{``, `nul`, `"x"`, `5`, `{}`, `[]`, `[10]`, `["a",[1,1,1],2]`, `[10,{"a":1},2]`, `[10,[1,1],2]`,
		`[10,[1,1,"x"],2]`, `[10,[-1,1,1],2]`, `[10,[1,1,0],2]`, `[10,"cs","x",2]`, `[10,"cs",99999999999,2]`, `[10,"zz",1,2]`,
		`[10,[1,1,1],-2]`, `[10,[1,1,1],"2"]`, `[11,"te",[1,2,3],4]`, `[11,"te",[1,2,0,5],4]`, `[11,"te",[1,-2,1,5],4]`,
		`[10,[[1,1,1],[2,"x",1]],2]`, `{"event":"subscribed","channel":"book","symbol":"tX"}`,
		`{"event":"subscribed","channel":"book","chanId":3,"symbol":""}`, "[10,[1,1,1],2]\x00", `[1,2,3,4,5,6,7]`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed counted %v, want %d", m, len(bad))
	}
	// The book is untouched: the next frame continues the sequence (1 → 2).
	out, err := f.Handle(2, []byte(`[10,[7254.5,1,1],2]`), nil)
	if err != nil || len(out) != 1 || out[0].Kind != market.KindBookDelta {
		t.Fatalf("after malformed frames: %v %+v", err, out)
	}
}

// bfxExpected counts, with encoding/json, what the recording should give:
// a quote per ticker message, a snapshot tick per level of each book
// snapshot (after the 100-level cut) and a delta per book update.
func bfxExpected(t *testing.T, lines []capLine) map[market.Kind]int {
	chans := map[float64]string{}
	want := map[market.Kind]int{}
	for _, l := range lines {
		if l.body == nil {
			continue
		}
		var v any
		if err := json.Unmarshal(l.body, &v); err != nil {
			t.Fatal(err)
		}
		switch m := v.(type) {
		case map[string]any:
			if m["event"] == "subscribed" {
				chans[m["chanId"].(float64)] = m["channel"].(string)
			}
		case []any:
			data, ok := m[1].([]any)
			if !ok {
				continue
			}
			switch chans[m[0].(float64)] {
			case "ticker":
				want[market.KindQuote]++
			case "book":
				if len(data) > 0 {
					if _, snap := data[0].([]any); snap {
						want[market.KindSnapshot] += len(data)
						continue
					}
				}
				if len(data) == 0 {
					continue
				}
				want[market.KindBookDelta]++
			}
		}
	}
	return want
}

func TestBitfinexRecordedExcerpt(t *testing.T) {
	lines := readCaptureAll(t, venueTestdata("bitfinex", "BITFINEX.ws.11.0_head120"))
	want := bfxExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "bitfinex", fb, lines, nil, nil, want)
	}
}

// TestBitfinexRecordedFile replays the whole recording: its sequence is
// gap-free and its books never cross, so no resync and no malformed frame.
func TestBitfinexRecordedFile(t *testing.T) {
	lines := readCaptureAll(t, sharedCapture(t, "BITFINEX.ws.11.0"))
	want := bfxExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		_, out, _ := replayClean(t, "bitfinex", fb, lines, nil, nil, want)
		t.Logf("%s: %d ticks %v", pathName(fb), len(out), kindCounts(out))

		// The same file with one book update dropped mid-way: exactly one
		// gap per instrument on the connection, a resync per live book, and
		// no book tick of those books afterwards (no snapshot follows).
		drop := -1
		for i := len(lines) / 2; i < len(lines); i++ {
			if l := lines[i]; l.body != nil && strings.Count(string(l.body), "[") == 2 && !strings.Contains(string(l.body), `"`) {
				drop = i
				break
			}
		}
		if drop < 0 {
			t.Fatal("no book update to drop")
		}
		g, reg := newTestFeed(t, "bitfinex", FeedConfig{ForceFallback: fb})
		before := replayFeed(t, g, lines[:drop])
		after := replayFeed(t, g, lines[drop+1:])
		insts := map[string]bool{}
		for _, k := range before {
			insts[k.Instrument] = true
		}
		books := 0
		seen := map[string]bool{}
		for _, k := range before {
			if k.Kind == market.KindSnapshot && !seen[k.Instrument] {
				seen[k.Instrument] = true
				books++
			}
		}
		gaps := map[string]int{}
		for _, k := range after {
			switch k.Kind {
			case market.KindGap:
				gaps[k.Instrument]++
			case market.KindBookDelta, market.KindSnapshot:
				t.Fatalf("book tick after the gap: %+v", k)
			}
		}
		if len(gaps) != len(insts) {
			t.Fatalf("gap ticks for %v, want one for each of %v", gaps, insts)
		}
		for i, n := range gaps {
			if n != 1 {
				t.Fatalf("%s: %d gap ticks", i, n)
			}
		}
		if r := resyncCount(reg, "gap"); r != float64(books) {
			t.Fatalf("gap resyncs %v, want %d (one per live book)", r, books)
		}
		if ob := g.Outbox(nil); len(ob) != 2*books {
			t.Fatalf("outbox has %d frames, want unsubscribe+subscribe for %d books", len(ob), books)
		}
	}
}

// FuzzFeedBitfinex: Handle never panics; both JSON paths agree.
//
//	go test ./ingest -run '^$' -fuzz FuzzFeedBitfinex -fuzztime 30s
func FuzzFeedBitfinex(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("bitfinex", "BITFINEX.ws.11.0_head120")) {
		if l.body != nil && (i < 40 || i%5 == 0) {
			f.Add(l.body)
		}
	}
	for _, s := range []string{`[10,"cs",52732754,2]`, `[11,"te",[1,1574694475039,0.01,7255.2],7]`, `[10,[7256,1,0.2],2]`,
		`[335856,[1596124822000,null,0.896,0.771995,null,1,null,1,0.0001056,6,null,-0.01,null,null,0.7664],8]`, `[10,[[1,1,1e400]],2]`} {
		f.Add([]byte(s))
	}
	prime := func(fd Feed) {
		for _, fr := range []string{
			`{"event":"subscribed","channel":"book","chanId":10,"symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"100"}`,
			`{"event":"subscribed","channel":"trades","chanId":11,"symbol":"tBTCUSD"}`,
			`{"event":"subscribed","channel":"status","chanId":335856,"key":"deriv:tBTCF0:USTF0"}`,
			`[10,[[7254.7,1,0.3],[7254.6,2,0.1],[7255.2,1,-0.5]],1]`,
		} {
			fd.Handle(1, []byte(fr), nil)
		}
	}
	paths := fuzzPaths(f, "bitfinex", FeedConfig{}, nil, prime)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCompare(t, paths, data, nil)
	})
}

func BenchmarkFeedBitfinex(b *testing.B) {
	benchReplay(b, "bitfinex", readCaptureAll(b, venueTestdata("bitfinex", "BITFINEX.ws.11.0_head120")), nil, nil)
}
