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

func TestKucoinURLAndFrames(t *testing.T) {
	f := NewKucoinFeed(FeedConfig{})
	if _, err := f.URL(nil); err == nil || !strings.Contains(err.Error(), "bullet-public") {
		t.Fatalf("URL without endpoint: %v", err)
	}
	// Docs example of a bullet-public response.
	body := []byte(`{"code":"200000","data":{"token":"2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZxftpOeh_55i3Ysy2q2LEsEWU64mdzUOPusi34M_wGoSf7iNyEWJ4aBZXpWhrmY9jKtqkdWoFa75w3istPvPtiYB9J6i9GjsxUuhPw3BlrzazF6ghq4L_h4NQtXkalJVoOb6ljuM2Y=.m_2SO3KwN8bK5oygEGuj_w==","instanceServers":[{"endpoint":"wss://ws-api-spot.kucoin.com/","encrypt":true,"protocol":"websocket","pingInterval":18000,"pingTimeout":10000}]}}`)
	u, ping, err := KucoinBulletURL(body, "c1")
	if err != nil || ping != 18*time.Second || !strings.HasPrefix(u, "wss://ws-api-spot.kucoin.com/?") || !strings.Contains(u, "connectId=c1") {
		t.Fatalf("bullet: %q %v %v", u, ping, err)
	}
	g := NewKucoinFeed(FeedConfig{Endpoint: u})
	if got, err := g.URL(nil); err != nil || got != u {
		t.Fatalf("URL %q %v", got, err)
	}
	if _, _, err := KucoinBulletURL([]byte(`{"code":"400100","msg":"x"}`), "c"); err == nil {
		t.Fatal("error response accepted")
	}
	if _, err := NewKucoinFeed(FeedConfig{Endpoint: "wss://x/"}).URL(nil); err == nil {
		t.Fatal("endpoint without token accepted")
	}
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "BTC-USDT"}, {ChanBook, "ETH-USDT"}, {ChanTrades, "BTC-USDT"}, {ChanQuotes, "BTC-USDT"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"id":"1","type":"subscribe","topic":"/market/level2:BTC-USDT,ETH-USDT","privateChannel":false,"response":true}`,
		`{"id":"2","type":"subscribe","topic":"/market/match:BTC-USDT","privateChannel":false,"response":true}`,
		`{"id":"3","type":"subscribe","topic":"/market/ticker:BTC-USDT","privateChannel":false,"response":true}`}
	for i := range want {
		if string(fr[i]) != want[i] {
			t.Errorf("%s, want %s", fr[i], want[i])
		}
	}
	if n, ok := NormalizeKucoinSymbol("BTC-USDT"); !ok || n != "BTC-USDT" {
		t.Fatal(n)
	}
	if _, ok := NormalizeKucoinSymbol("BTCUSDT"); ok {
		t.Fatal("BTCUSDT normalized")
	}
}

func TestKucoinKnownFrames(t *testing.T) {
	const recv = int64(1619378328157583000)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, _ := newTestFeed(t, "kucoin", FeedConfig{ForceFallback: fb})
			run := frameRunner(t, f, recv)
			for _, fr := range []string{`{"id":"NSkIrWGB1s","type":"welcome"}`, `{"id":"1","type":"ack"}`, `{"id":"ping","type":"pong"}`} {
				if got := run(fr); len(got) != 0 {
					t.Fatal(got)
				}
			}
			// Recorded match: side is the taker's; time in ns.
			got := run(`{"data":{"symbol":"DAPPT-BTC","sequence":"1612701563869","side":"buy","size":"81.8814","price":"0.0000001117","takerOrderId":"6085c097587c2000060cde57","time":"1619378327739050725","type":"match","makerOrderId":"6085c06144b3790006512a4d","tradeId":"6085c09769bc506996295e36"},"subject":"trade.l3match","topic":"/market/match:DAPPT-BTC","type":"message"}`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "kucoin", Instrument: "DAPPT-BTC", Symbol: "DAPPT-BTC", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1619378327739050725, RecvTS: recv, Price: 0.0000001117, Size: 81.8814, TradeID: 1612701563869, Seq: 1612701563869})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("match:\n got %+v\nwant %+v", got, want)
			}
			// Recorded ticker.
			got = run(`{"data":{"sequence":"1612844051653","bestAsk":"0.00028717","size":"0.01745248","bestBidSize":"3.70422021","price":"0.00028676","time":1619378326323,"bestAskSize":"14.04274325","bestBid":"0.00028678"},"subject":"trade.ticker","topic":"/market/ticker:SNX-BTC","type":"message"}`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "kucoin", Instrument: "SNX-BTC", Symbol: "SNX-BTC", Kind: market.KindQuote, ExchTS: 1619378326323_000000, RecvTS: recv,
				BidPx: 0.00028678, BidSz: 3.70422021, AskPx: 0.00028717, AskSz: 14.04274325, Seq: 1612844051653})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ticker:\n got %+v\nwant %+v", got, want)
			}
			// Book: updates before the snapshot are buffered and a REST
			// snapshot is asked for once.
			upd := func(start, end int, changes string) string {
				return `{"data":{"sequenceStart":` + strconv.Itoa(start) + `,"symbol":"BTC-USDT","changes":` + changes + `,"sequenceEnd":` + strconv.Itoa(end) + `,"time":1700000000000},"subject":"trade.l2update","topic":"/market/level2:BTC-USDT","type":"message"}`
			}
			if got := run(upd(10, 11, `{"asks":[["101","1","10"]],"bids":[["99","2","11"]]}`)); len(got) != 0 {
				t.Fatal(got)
			}
			if got := run(upd(12, 13, `{"asks":[["0","0","12"]],"bids":[["98","5","13"]]}`)); len(got) != 0 {
				t.Fatal(got)
			}
			reqs := f.SnapshotRequests(nil)
			if len(reqs) != 1 || reqs[0].Symbol != "BTC-USDT" || reqs[0].URL != "https://api.kucoin.com/api/v1/market/orderbook/level2_100?symbol=BTC-USDT" {
				t.Fatalf("requests %+v", reqs)
			}
			// Snapshot at sequence 11: the first update is in it, the second
			// (13) applies on top; "0" prices are sequence-only.
			got, err := f.HandleSnapshot(recv, reqs[0], []byte(`{"code":"200000","data":{"time":1700000000001,"sequence":"11","bids":[["99","2"],["97","1"]],"asks":[["101","1"]]}}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			sb := market.Tick{Venue: "kucoin", Instrument: "BTC-USDT", Symbol: "BTC-USDT", Kind: market.KindSnapshot, ExchTS: 1700000000001_000000, RecvTS: recv, Seq: 11}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			db := sb
			db.Kind, db.Seq, db.ExchTS = market.KindBookDelta, 13, 1700000000000_000000
			want = []market.Tick{lv(sb, market.SideBuy, 99, 2), lv(sb, market.SideBuy, 97, 1), lv(sb, market.SideSell, 101, 1), lv(db, market.SideBuy, 98, 5)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("snapshot:\n got %+v\nwant %+v", got, want)
			}
			got = run(upd(14, 14, `{"asks":[],"bids":[["99","0","14"]]}`))
			db.Seq = 14
			if want := []market.Tick{lv(db, market.SideBuy, 99, 0)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("live delta:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func kucoinUpd(start, end int, changes string) []byte {
	return []byte(`{"data":{"sequenceStart":` + strconv.Itoa(start) + `,"symbol":"BTC-USDT","changes":` + changes + `,"sequenceEnd":` + strconv.Itoa(end) + `},"subject":"trade.l2update","topic":"/market/level2:BTC-USDT","type":"message"}`)
}

func kucoinLive(t *testing.T, f Feed) {
	t.Helper()
	f.Handle(1, kucoinUpd(10, 10, `{"asks":[],"bids":[["99","1","10"]]}`), nil)
	reqs := f.SnapshotRequests(nil)
	if len(reqs) != 1 {
		t.Fatalf("requests %+v", reqs)
	}
	if _, err := f.HandleSnapshot(2, reqs[0], []byte(`{"code":"200000","data":{"sequence":"10","bids":[["99","1"]],"asks":[["101","1"]]}}`), nil); err != nil {
		t.Fatal(err)
	}
}

func TestKucoinGapAndStaleSnapshot(t *testing.T) {
	f, reg := newTestFeed(t, "kucoin", FeedConfig{})
	kucoinLive(t, f)
	if out, _ := f.Handle(3, kucoinUpd(11, 11, `{"asks":[],"bids":[["98","1","11"]]}`), nil); len(out) != 1 {
		t.Fatalf("%+v", out)
	}
	// 12 is lost.
	out, _ := f.Handle(4, kucoinUpd(13, 13, `{"asks":[],"bids":[["97","1","13"]]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USDT" || resyncCount(reg, "gap") != 1 {
		t.Fatalf("gap gave %+v", out)
	}
	reqs := f.SnapshotRequests(nil)
	if len(reqs) != 1 {
		t.Fatalf("requests %+v", reqs)
	}
	// Buffered meanwhile, nothing published.
	if out, _ := f.Handle(5, kucoinUpd(14, 15, `{"asks":[],"bids":[["96","1","15"]]}`), nil); len(out) != 0 {
		t.Fatalf("withheld: %+v", out)
	}
	// A snapshot older than the buffer (12 < 14-1) is dropped and asked again.
	out, err := f.HandleSnapshot(6, reqs[0], []byte(`{"code":"200000","data":{"sequence":"12","bids":[["99","1"]],"asks":[["101","1"]]}}`), nil)
	if err != nil || len(out) != 0 {
		t.Fatalf("stale snapshot: %v %+v", err, out)
	}
	if reqs = f.SnapshotRequests(nil); len(reqs) != 1 {
		t.Fatalf("stale snapshot not asked again: %+v", reqs)
	}
	// A good one (14): snapshot then the buffered 15.
	out, _ = f.HandleSnapshot(7, reqs[0], []byte(`{"code":"200000","data":{"sequence":"14","bids":[["99","1"]],"asks":[["101","1"]]}}`), nil)
	if k := kindCounts(out); k[market.KindSnapshot] != 2 || k[market.KindBookDelta] != 1 || len(out) != 3 {
		t.Fatalf("resnapshot: %+v", out)
	}
	if resyncCount(reg, "") != 1 {
		t.Fatal("resyncs")
	}
	// An unusable body asks again.
	f.Handle(8, kucoinUpd(17, 17, `{"asks":[],"bids":[]}`), nil) // gap (16 lost)
	reqs = f.SnapshotRequests(nil)
	if _, err := f.HandleSnapshot(9, reqs[0], []byte(`{"code":"429000","msg":"too many requests"}`), nil); err == nil {
		t.Fatal("error body accepted")
	}
	if reqs = f.SnapshotRequests(nil); len(reqs) != 1 {
		t.Fatalf("failed snapshot not asked again: %+v", reqs)
	}
}

func TestKucoinCrossedAndMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "kucoin", FeedConfig{})
	kucoinLive(t, f)
	bad := []string{``, `[]`, `{}`, `{"type":"message"}`, `{"type":"message","subject":"trade.l2update","data":[]}`,
		string(kucoinUpd(11, 10, `{"asks":[],"bids":[]}`)), string(kucoinUpd(11, 11, `{"asks":[["1","x","11"]],"bids":[]}`)),
		string(kucoinUpd(11, 11, `{"asks":[["1","1"]],"bids":[]}`)), string(kucoinUpd(11, 11, `[]`)),
		`{"data":{"symbol":"BTC-USDT","sequence":"1","size":"1","price":"1"},"subject":"trade.l3match","type":"message"}`,
		`{"data":{"symbol":"BTC-USDT","sequence":"x","side":"buy","size":"1","price":"1","time":"1"},"subject":"trade.l3match","type":"message"}`,
		`{"data":{"sequence":"1","bestAsk":"1","bestBidSize":"1","bestAskSize":"1"},"subject":"trade.ticker","topic":"/market/ticker:A-B","type":"message"}`,
	}
	for _, fr := range bad {
		wantMalformed(t, f, fr)
	}
	if m := malformedCount(reg); m != float64(len(bad)) {
		t.Fatalf("malformed %v, want %d", m, len(bad))
	}
	out, _ := f.Handle(3, kucoinUpd(11, 11, `{"asks":[],"bids":[["102","1","11"]]}`), nil)
	if len(out) != 1 || out[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 || len(f.SnapshotRequests(nil)) != 1 {
		t.Fatalf("crossed gave %+v", out)
	}
}

// kucoinExpected models the sync independently (encoding/json): per symbol,
// updates until its snapshot is delivered are buffered; the snapshot gives
// its distinct non-zero levels; every later change with a non-zero price and
// a sequence beyond the snapshot's is one delta.
func kucoinExpected(t *testing.T, ws, rest []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	snapSeq := map[string]int64{}
	all := append(append([]capLine{}, ws...), rest...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].recv < all[j].recv })
	seen := map[string]bool{} // symbols with an update before (so a snapshot was asked)
	buffered := map[string][]int64{}
	for _, l := range all {
		if l.body == nil {
			continue
		}
		if l.url != "" {
			sym := l.url[strings.Index(l.url, "symbol=")+7:]
			if !seen[sym] || snapSeq[sym] != 0 {
				continue
			}
			var b struct {
				Data struct {
					Sequence   string
					Bids, Asks [][2]string
				}
			}
			json.Unmarshal(l.body, &b)
			s, _ := strconv.ParseInt(b.Data.Sequence, 10, 64)
			snapSeq[sym] = s
			for _, side := range [][][2]string{b.Data.Bids, b.Data.Asks} {
				px := map[float64]bool{}
				for _, lv := range side {
					p, _ := strconv.ParseFloat(lv[0], 64)
					if q, _ := strconv.ParseFloat(lv[1], 64); q != 0 {
						px[p] = true
					}
				}
				want[market.KindSnapshot] += len(px)
			}
			for _, cs := range buffered[sym] {
				if cs > s {
					want[market.KindBookDelta]++
				}
			}
			continue
		}
		var m struct {
			Subject string
			Data    struct {
				Symbol  string
				Changes struct{ Asks, Bids [][3]string }
			}
		}
		json.Unmarshal(l.body, &m)
		switch m.Subject {
		case "trade.ticker":
			want[market.KindQuote]++
		case "trade.l3match":
			want[market.KindTrade]++
		case "trade.l2update":
			sym := m.Data.Symbol
			seen[sym] = true
			for _, c := range append(m.Data.Changes.Asks, m.Data.Changes.Bids...) {
				if c[0] == "0" {
					continue
				}
				cs, _ := strconv.ParseInt(c[2], 10, 64)
				if s := snapSeq[sym]; s == 0 {
					buffered[sym] = append(buffered[sym], cs)
				} else if cs > s {
					want[market.KindBookDelta]++
				}
			}
		}
	}
	return want
}

func kucoinSym(u string) string { return u[strings.Index(u, "symbol=")+7:] }

func TestKucoinRecordedExcerpt(t *testing.T) {
	ws, rest := readCaptureAll(t, venueTestdata("kucoin", "KUCOIN.ws.1.0_head400")), readCaptureAll(t, venueTestdata("kucoin", "KUCOIN.http.0.0_head3"))
	want := kucoinExpected(t, ws, rest)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "kucoin", fb, ws, rest, kucoinSym, want)
	}
}

func TestKucoinRecordedFile(t *testing.T) {
	ws := readCaptureAll(t, sharedCapture(t, "KUCOIN.ws.1.0"))
	rest := readCaptureAll(t, sharedCapture(t, "KUCOIN.http.0.0"))
	want := kucoinExpected(t, ws, rest)
	for _, fb := range jsonPaths(t) {
		_, out, asked := replayClean(t, "kucoin", fb, ws, rest, kucoinSym, want)
		for s, n := range asked {
			if n != 1 {
				t.Fatalf("%s asked %d times", s, n)
			}
		}
		t.Logf("%s: %d ticks %v, snapshots asked %d", pathName(fb), len(out), kindCounts(out), len(asked))

		// Drop an l2update of BCHSV-USDT mid-file: one gap, one
		// resync, a new request, no book tick of it afterwards.
		drop := -1
		for i := len(ws) / 2; i < len(ws); i++ {
			if strings.Contains(string(ws[i].body), `"symbol":"BCHSV-USDT","changes"`) {
				drop = i
				break
			}
		}
		if drop < 0 {
			t.Fatal("no update to drop")
		}
		g, reg := newTestFeed(t, "kucoin", FeedConfig{ForceFallback: fb})
		kept := append(append([]capLine{}, ws[:drop]...), ws[drop+1:]...)
		all, asked2 := replayREST(t, g, kept, rest, kucoinSym)
		cut := kept[drop-1].recv
		gaps := 0
		for _, k := range all {
			if k.Symbol != "BCHSV-USDT" || k.RecvTS <= cut {
				continue
			}
			switch k.Kind {
			case market.KindGap:
				gaps++
			case market.KindBookDelta, market.KindSnapshot:
				t.Fatalf("book tick after the gap: %+v", k)
			}
		}
		if gaps != 1 || resyncCount(reg, "gap") != 1 || resyncCount(reg, "") != 1 {
			t.Fatalf("%d gap ticks, %v resyncs", gaps, resyncCount(reg, ""))
		}
		if asked2["BCHSV-USDT"] != 2 {
			t.Fatalf("BCHSV-USDT snapshot asked %d times, want 2 (start, gap)", asked2["BCHSV-USDT"])
		}
	}
}

// FuzzFeedKucoin: Handle never panics; both JSON paths agree.
func FuzzFeedKucoin(f *testing.F) {
	for i, l := range readCaptureAll(f, venueTestdata("kucoin", "KUCOIN.ws.1.0_head400")) {
		if l.body != nil && i%10 == 0 {
			f.Add(l.body)
		}
	}
	f.Add(kucoinUpd(11, 11, `{"asks":[],"bids":[["102","1","11"]]}`))
	f.Add(kucoinUpd(13, 13, `{"asks":[],"bids":[["97","1","13"]]}`))
	prime := func(fd Feed) {
		fd.Handle(1, kucoinUpd(10, 10, `{"asks":[],"bids":[["99","1","10"]]}`), nil)
		for _, r := range fd.SnapshotRequests(nil) {
			fd.HandleSnapshot(2, r, []byte(`{"code":"200000","data":{"sequence":"10","bids":[["99","1"]],"asks":[["101","1"]]}}`), nil)
		}
	}
	paths := fuzzPaths(f, "kucoin", FeedConfig{}, nil, prime)
	// fuzzCompare also checks that the paths ask for the same snapshots.
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCompare(t, paths, data, nil) })
}

func BenchmarkFeedKucoin(b *testing.B) {
	benchReplay(b, "kucoin", readCaptureAll(b, venueTestdata("kucoin", "KUCOIN.ws.1.0_head400")), readCaptureAll(b, venueTestdata("kucoin", "KUCOIN.http.0.0_head3")), kucoinSym)
}
