package ingest

import (
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signald-dev/signald/market"
)

func TestGateioFrames(t *testing.T) {
	f := NewGateioFeed(FeedConfig{})
	f.now = func() time.Time { return time.Unix(1619093532, 0) }
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "BTC_USDT"}, {ChanTrades, "BTC_USDT"}, {ChanTrades, "ETH_USDT"}, {ChanQuotes, "BTC_USDT"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"time":1619093532,"channel":"spot.order_book_update","event":"subscribe","payload":["BTC_USDT","100ms"]}`,
		`{"time":1619093532,"channel":"spot.trades","event":"subscribe","payload":["BTC_USDT","ETH_USDT"]}`,
		`{"time":1619093532,"channel":"spot.book_ticker","event":"subscribe","payload":["BTC_USDT"]}`}
	if len(fr) != 3 {
		t.Fatalf("%q", fr)
	}
	for i := range want {
		if string(fr[i]) != want[i] {
			t.Errorf("%s, want %s", fr[i], want[i])
		}
	}
	if string(f.Ping()) != `{"time":1619093532,"channel":"spot.ping"}` {
		t.Fatal(string(f.Ping()))
	}
	for sym, want := range map[string]string{"BTC_USDT": "BTC-USDT", "QTUM3S_USDT": "QTUM3S-USDT", "hai_eth": "HAI-ETH"} {
		if got, ok := NormalizeGateioSymbol(sym); !ok || got != want {
			t.Errorf("%s → %s", sym, got)
		}
	}
	if _, ok := NormalizeGateioSymbol("BTCUSDT"); ok {
		t.Error("BTCUSDT normalized")
	}
}

func TestGateioKnownFrames(t *testing.T) {
	const recv = int64(1619093543755753000)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "gateio", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			if got := run(`{"time":1619093532,"channel":"spot.trades","event":"subscribe","result":{"status":"success"}}`); len(got) != 0 {
				t.Fatal(got)
			}
			// Recorded trade: create_time_ms 1619093543708.2642 → ns exactly.
			got := run(`{"time":1619093543,"channel":"spot.trades","event":"update","result":{"id":816995772,"create_time":1619093543,"create_time_ms":"1619093543708.2642","side":"sell","currency_pair":"DIS_USDT","amount":"0.2010000000","price":"121.5800000000"}}`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "gateio", Instrument: "DIS-USDT", Symbol: "DIS_USDT", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1619093543708264200, RecvTS: recv, Price: 121.58, Size: 0.201, TradeID: 816995772})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("trade:\n got %+v\nwant %+v", got, want)
			}
			// Docs example of spot.book_ticker.
			got = run(`{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "gateio", Instrument: "BTC-USDT", Symbol: "BTC_USDT", Kind: market.KindQuote, ExchTS: 1606293275123_000000, RecvTS: recv,
				BidPx: 19177.79, BidSz: 0.0003341504, AskPx: 19179.38, AskSz: 0.09, Seq: 48733182})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("book_ticker:\n got %+v\nwant %+v", got, want)
			}
			// Book: recorded shape, cut down. Buffered until the snapshot.
			upd := func(U, u int, b, a string) string {
				return `{"time":1619093538,"channel":"spot.order_book_update","event":"update","result":{"t":1619093538770,"e":"depthUpdate","E":1619093538,"s":"HAI_ETH","U":` +
					strconv.Itoa(U) + `,"u":` + strconv.Itoa(u) + `,"b":[` + b + `],"a":[` + a + `]}}`
			}
			if got := run(upd(2691446, 2691446, `["0.00010322","5360.209"]`, `["0.00010396","5876.967"]`)); len(got) != 0 {
				t.Fatal(got)
			}
			if got := run(upd(2691447, 2691448, `["0.00010322","0"]`, ``)); len(got) != 0 {
				t.Fatal(got)
			}
			reqs := f.SnapshotRequests(nil)
			if len(reqs) != 1 || reqs[0].URL != "https://api.gateio.ws/api/v4/spot/order_book?currency_pair=HAI_ETH&limit=100&with_id=true" {
				t.Fatalf("%+v", reqs)
			}
			got, err := f.HandleSnapshot(recv, reqs[0], []byte(`{"id":2691446,"current":1619093533760,"update":1619093533750,"asks":[["0.00010396","5876.967"]],"bids":[["0.00010322","5360.209"],["0.00010276","20.80412499"]]}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			sb := market.Tick{Venue: "gateio", Instrument: "HAI-ETH", Symbol: "HAI_ETH", Kind: market.KindSnapshot, ExchTS: 1619093533750_000000, RecvTS: recv, Seq: 2691446}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			db := sb
			db.Kind, db.Seq, db.ExchTS = market.KindBookDelta, 2691448, 1619093538770_000000
			want = []market.Tick{lv(sb, market.SideBuy, 0.00010322, 5360.209), lv(sb, market.SideBuy, 0.00010276, 20.80412499), lv(sb, market.SideSell, 0.00010396, 5876.967),
				lv(db, market.SideBuy, 0.00010322, 0)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func gateUpd(U, u int, b string) []byte {
	return []byte(`{"channel":"spot.order_book_update","event":"update","result":{"t":1,"s":"BTC_USDT","U":` + strconv.Itoa(U) + `,"u":` + strconv.Itoa(u) + `,"b":[` + b + `],"a":[]}}`)
}

func TestGateioGapCrossedMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "gateio", FeedConfig{})
	f.Handle(1, gateUpd(10, 10, `["99","1"]`), nil)
	reqs := f.SnapshotRequests(nil)
	if _, err := f.HandleSnapshot(2, reqs[0], []byte(`{"id":10,"update":1,"asks":[["101","1"]],"bids":[["99","1"]]}`), nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := f.Handle(3, gateUpd(11, 12, `["98","1"]`), nil); len(out) != 1 {
		t.Fatalf("%+v", out)
	}
	// A stale frame (u <= 12) is skipped.
	if out, _ := f.Handle(3, gateUpd(12, 12, `["97","1"]`), nil); len(out) != 0 {
		t.Fatalf("stale: %+v", out)
	}
	out, _ := f.Handle(4, gateUpd(14, 14, `["97","1"]`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USDT" || resyncCount(reg, "gap") != 1 || len(f.SnapshotRequests(nil)) != 1 {
		t.Fatalf("gap gave %+v", out)
	}
	if out, _ := f.Handle(5, gateUpd(15, 15, `["96","1"]`), nil); len(out) != 0 {
		t.Fatalf("withheld: %+v", out)
	}
	out, _ = f.HandleSnapshot(6, reqs[0], []byte(`{"id":14,"update":1,"asks":[["101","1"]],"bids":[["99","1"]]}`), nil)
	if k := kindCounts(out); k[market.KindSnapshot] != 2 || k[market.KindBookDelta] != 1 {
		t.Fatalf("resnapshot: %+v", out)
	}
	out, _ = f.Handle(7, gateUpd(16, 16, `["101.5","1"]`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 {
		t.Fatalf("crossed: %+v", out)
	}
	bad := []string{``, `[]`, `{}`, `{"channel":"spot.trades","event":"update"}`, `{"channel":"spot.trades","event":"update","result":[]}`,
		string(gateUpd(20, 19, ``)), string(gateUpd(20, 20, `["x","1"]`)), string(gateUpd(20, 20, `["0","1"]`)), string(gateUpd(20, 20, `[1,1]`)),
		`{"channel":"spot.trades","event":"update","result":{"id":1,"side":"sell","currency_pair":"A_B","amount":"1"}}`,
		`{"channel":"spot.trades","event":"update","result":{"id":1,"side":"sell","currency_pair":"A_B","amount":"1","price":"1","create_time_ms":"1.x"}}`,
		`{"channel":"spot.book_ticker","event":"update","result":{"s":"A_B","b":"1","B":"1","a":"1"}}`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", m, len(bad))
	}
}

// gateExpected models the sync independently: per pair, updates until the
// snapshot is delivered are buffered; the snapshot gives its distinct
// non-zero levels; each level of each update with u > id is one delta.
func gateExpected(t *testing.T, ws, rest []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	all := append(append([]capLine{}, ws...), rest...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].recv < all[j].recv })
	seen := map[string]bool{}
	snap := map[string]int64{}
	type upd struct{ u, n int64 }
	buf := map[string][]upd{}
	for _, l := range all {
		if l.body == nil {
			continue
		}
		if l.url != "" {
			sym := gateSym(l.url)
			if !seen[sym] {
				continue
			}
			var b struct {
				ID         int64
				Bids, Asks [][2]string
			}
			json.Unmarshal(l.body, &b)
			snap[sym] = b.ID
			for _, side := range [][][2]string{b.Bids, b.Asks} {
				px := map[float64]bool{}
				for _, lv := range side {
					p, _ := strconv.ParseFloat(lv[0], 64)
					if q, _ := strconv.ParseFloat(lv[1], 64); q != 0 {
						px[p] = true
					}
				}
				want[market.KindSnapshot] += len(px)
			}
			for _, u := range buf[sym] {
				if u.u > b.ID {
					want[market.KindBookDelta] += int(u.n)
				}
			}
			continue
		}
		var m struct {
			Channel, Event string
			Result         json.RawMessage
		}
		json.Unmarshal(l.body, &m)
		if m.Event != "update" {
			continue
		}
		switch m.Channel {
		case "spot.trades":
			want[market.KindTrade]++
		case "spot.order_book_update":
			var r struct {
				S    string
				U    int64 `json:"u"`
				B, A [][2]string
			}
			json.Unmarshal(m.Result, &r)
			seen[r.S] = true
			n := int64(len(r.B) + len(r.A))
			if id, ok := snap[r.S]; ok {
				if r.U > id {
					want[market.KindBookDelta] += int(n)
				}
			} else {
				buf[r.S] = append(buf[r.S], upd{r.U, n})
			}
		}
	}
	return want
}

func gateSym(u string) string {
	s := u[strings.Index(u, "currency_pair=")+14:]
	if i := strings.IndexByte(s, '&'); i >= 0 {
		s = s[:i]
	}
	return s
}

func TestGateioRecordedExcerpt(t *testing.T) {
	ws, rest := readCaptureAll(t, venueTestdata("gateio", "GATEIO.ws.1.0_head120")), readCaptureAll(t, venueTestdata("gateio", "GATEIO.http.0.0_head4"))
	want := gateExpected(t, ws, rest)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "gateio", fb, ws, rest, gateSym, want)
	}
}

func TestGateioRecordedFile(t *testing.T) {
	ws := readCaptureAll(t, sharedCapture(t, "GATEIO.ws.1.0"))
	rest := readCaptureAll(t, sharedCapture(t, "GATEIO.http.0.0"))
	want := gateExpected(t, ws, rest)
	for _, fb := range jsonPaths(t) {
		_, out, asked := replayClean(t, "gateio", fb, ws, rest, gateSym, want)
		t.Logf("%s: %d ticks %v, snapshots asked %d", pathName(fb), len(out), kindCounts(out), len(asked))

		// Drop one mid-file update of a live pair: one gap tick, one resync,
		// the snapshot asked again, no book tick of the pair afterwards.
		drop, sym := -1, ""
		for i := len(ws) / 2; i < len(ws); i++ {
			if s := string(ws[i].body); strings.Contains(s, `"spot.order_book_update","event":"update"`) {
				var m struct{ Result struct{ S string } }
				json.Unmarshal(ws[i].body, &m)
				drop, sym = i, m.Result.S
				break
			}
		}
		g, reg := newTestFeed(t, "gateio", FeedConfig{ForceFallback: fb})
		kept := append(append([]capLine{}, ws[:drop]...), ws[drop+1:]...)
		all, asked2 := replayREST(t, g, kept, rest, gateSym)
		gaps := 0
		for _, k := range all {
			if k.Symbol != sym || k.RecvTS < ws[drop].recv {
				continue
			}
			switch k.Kind {
			case market.KindGap:
				gaps++
			case market.KindBookDelta, market.KindSnapshot:
				t.Fatalf("book tick after the gap: %+v", k)
			}
		}
		if gaps != 1 || resyncCount(reg, "gap") != 1 || resyncCount(reg, "") != 1 || asked2[sym] != 2 {
			t.Fatalf("%s: %d gap ticks, %v resyncs, asked %d", sym, gaps, resyncCount(reg, ""), asked2[sym])
		}
	}
}

// FuzzFeedGateio: Handle never panics; both JSON paths agree.
func FuzzFeedGateio(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("gateio", "GATEIO.ws.1.0_head120")) {
		if l.body != nil && i%4 == 0 {
			f.Add(l.body)
		}
	}
	f.Add(gateUpd(11, 12, `["98","1"]`))
	f.Add(gateUpd(16, 16, `["101.5","1"]`))
	prime := func(fd Feed) {
		fd.Handle(1, gateUpd(10, 10, `["99","1"]`), nil)
		for _, r := range fd.SnapshotRequests(nil) {
			fd.HandleSnapshot(2, r, []byte(`{"id":10,"update":1,"asks":[["101","1"]],"bids":[["99","1"]]}`), nil)
		}
	}
	paths := fuzzPaths(f, "gateio", FeedConfig{}, nil, prime)
	// fuzzCompare also checks that the paths ask for the same snapshots.
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCompare(t, paths, data, nil) })
}

func BenchmarkFeedGateio(b *testing.B) {
	benchReplay(b, "gateio", readCaptureAll(b, venueTestdata("gateio", "GATEIO.ws.1.0_head120")), readCaptureAll(b, venueTestdata("gateio", "GATEIO.http.0.0_head4")), gateSym)
}
