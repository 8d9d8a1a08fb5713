package ingest

import (
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

func TestBitstampGolden(t *testing.T) {
	const recv = int64(1641343699529292000)
	for path, f := range feedsPerPath(t, VenueBitstamp, FeedConfig{}) {
		// Recorded: type 0 is a buy (the taker bought).
		out, err := f.Handle(recv, []byte(`{"data":{"id":216000477,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000","price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596000","buy_order_id":1443875737346049,"sell_order_id":1443875731320832},"channel":"live_trades_ethusd","event":"trade"}`), nil)
		want := []market.Tick{goldenTick(market.Tick{Venue: "bitstamp", Instrument: "ETH-USD", Symbol: "ethusd", Kind: market.KindTrade, Side: market.SideBuy,
			ExchTS: 1641343699_596000000, RecvTS: recv, Price: 3805.44, Size: 0.0792, TradeID: 216000477})}
		if err != nil || !reflect.DeepEqual(out, want) {
			t.Fatalf("%s trade: %+v %v", path, out, err)
		}
		// A diff before any snapshot: withheld, buffered, snapshot asked.
		diff := `{"data":{"timestamp":"1641343700","microtimestamp":"1641343700000002","bids":[["3800.00","1.50000000"]],"asks":[["3806.00","0.00000000"]]},"channel":"diff_order_book_ethusd","event":"data"}`
		stale := `{"data":{"timestamp":"1641343699","microtimestamp":"1641343699000000","bids":[["3700.00","9.00000000"]],"asks":[]},"channel":"diff_order_book_ethusd","event":"data"}`
		for _, d := range []string{stale, diff} {
			if out, err := f.Handle(recv, []byte(d), nil); err != nil || len(out) != 0 {
				t.Fatalf("%s: unsynced diff: %+v %v", path, out, err)
			}
		}
		reqs := f.SnapshotRequests(nil)
		if len(reqs) != 1 || reqs[0] != (SnapshotRequest{Symbol: "ethusd", URL: "https://www.bitstamp.net/api/v2/order_book/ethusd"}) {
			t.Fatalf("%s: requests %+v", path, reqs)
		}
		// The snapshot (microtimestamp between the two diffs): its levels,
		// then the later diff; the earlier one is dropped.
		body := `{"timestamp": "1641343699", "microtimestamp": "1641343699500000", "bids": [["3805.00", "2.00000000"]], "asks": [["3806.00", "1.00000000"], ["3807.50", "3.00000000"]]}`
		out, err = f.HandleSnapshot(recv+1, reqs[0], []byte(body), nil)
		if err != nil {
			t.Fatal(err)
		}
		sn := market.Tick{Venue: "bitstamp", Instrument: "ETH-USD", Symbol: "ethusd", ExchTS: 1641343699_500000000, RecvTS: recv + 1, Seq: 1641343699500000}
		dl := market.Tick{Venue: "bitstamp", Instrument: "ETH-USD", Symbol: "ethusd", Kind: market.KindBookDelta, ExchTS: 1641343700_000002000, RecvTS: recv, Seq: 1641343700000002}
		mk := func(base market.Tick, kind market.Kind, side market.Side, px, sz float64) market.Tick {
			base.Kind, base.Side, base.Price, base.Size = kind, side, px, sz
			return goldenTick(base)
		}
		want = []market.Tick{
			mk(sn, market.KindSnapshot, market.SideBuy, 3805, 2), mk(sn, market.KindSnapshot, market.SideSell, 3806, 1), mk(sn, market.KindSnapshot, market.SideSell, 3807.5, 3),
			mk(dl, market.KindBookDelta, market.SideBuy, 3800, 1.5), mk(dl, market.KindBookDelta, market.SideSell, 3806, 0),
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("%s snapshot:\n got %+v\nwant %+v", path, out, want)
		}
		if f.ignored("stale_diff") != 1 {
			t.Fatalf("%s: stale diff not counted", path)
		}
		bk := f.Feed.(*BitstampFeed).books["ethusd"]
		if bid, ask, _ := bk.Best(); bid.Px != 3805 || ask.Px != 3807.5 || bk.Len(market.SideBuy) != 2 {
			t.Fatalf("%s: book %v/%v", path, bid, ask)
		}
		// A diff older than the last applied one: gap, resnapshot.
		old := `{"data":{"timestamp":"1641343700","microtimestamp":"1641343700000001","bids":[],"asks":[["3808.00","1.00000000"]]},"channel":"diff_order_book_ethusd","event":"data"}`
		out, err = f.Handle(recv+2, []byte(old), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindGap || f.resyncs("gap") != 1 {
			t.Fatalf("%s: out-of-order diff: %+v %v", path, out, err)
		}
		if reqs := f.SnapshotRequests(nil); len(reqs) != 1 {
			t.Fatalf("%s: no new snapshot request", path)
		}
		// A crossing diff after a fresh snapshot.
		f.HandleSnapshot(recv+3, SnapshotRequest{URL: "https://www.bitstamp.net/api/v2/order_book/ethusd"}, []byte(body), nil)
		cross := `{"data":{"timestamp":"1641343701","microtimestamp":"1641343701000000","bids":[["3806.50","1.00000000"]],"asks":[]},"channel":"diff_order_book_ethusd","event":"data"}`
		out, err = f.Handle(recv+4, []byte(cross), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindGap || f.resyncs("crossed") != 1 {
			t.Fatalf("%s: crossing diff: %+v %v", path, out, err)
		}
	}
}

// bsRef rebuilds Bitstamp books with encoding/json: the snapshot, then the
// diffs after its microtimestamp.
type bsRef struct {
	books  map[string]*[2]map[float64]float64
	snapMT map[string]int64
	deltas int
	snaps  int
	stale  int
}

func (r *bsRef) apply(l capLine) {
	if l.url != "" {
		var m struct {
			MT   string     `json:"microtimestamp"`
			Bids [][]string `json:"bids"`
			Asks [][]string `json:"asks"`
		}
		json.Unmarshal(l.body, &m)
		pair := l.url[strings.LastIndexByte(l.url, '/')+1:]
		r.books[pair] = &[2]map[float64]float64{{}, {}}
		r.snapMT[pair], _ = strconv.ParseInt(m.MT, 10, 64)
		r.snaps += len(m.Bids) + len(m.Asks)
		r.set(pair, m.Bids, m.Asks)
		return
	}
	var m struct {
		Channel string `json:"channel"`
		Data    struct {
			MT   string     `json:"microtimestamp"`
			Bids [][]string `json:"bids"`
			Asks [][]string `json:"asks"`
		} `json:"data"`
	}
	json.Unmarshal(l.body, &m)
	pair, ok := strings.CutPrefix(m.Channel, "diff_order_book_")
	if !ok || m.Data.MT == "" {
		return
	}
	mt, _ := strconv.ParseInt(m.Data.MT, 10, 64)
	if r.books[pair] == nil || mt <= r.snapMT[pair] {
		r.stale++
		return
	}
	r.deltas += len(m.Data.Bids) + len(m.Data.Asks)
	r.set(pair, m.Data.Bids, m.Data.Asks)
}

func (r *bsRef) set(pair string, bids, asks [][]string) {
	for side, lvs := range [2][][]string{bids, asks} {
		for _, l := range lvs {
			px, _ := strconv.ParseFloat(l[0], 64)
			sz, _ := strconv.ParseFloat(l[1], 64)
			if sz == 0 {
				delete(r.books[pair][side], px)
			} else {
				r.books[pair][side][px] = sz
			}
		}
	}
}

// bitstampMerged reads the websocket and REST captures and orders them by
// receive time, as they happened.
func bitstampMerged(t testing.TB, ws, http string) []capLine {
	lines := append(readCapture(t, ws), readCapture(t, http)...)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].recv < lines[j].recv })
	return lines
}

func testBitstampReplay(t *testing.T, ws, http string) {
	lines := bitstampMerged(t, ws, http)
	ref := &bsRef{books: map[string]*[2]map[float64]float64{}, snapMT: map[string]int64{}}
	for _, l := range lines {
		ref.apply(l)
	}
	got := map[string][]market.Tick{}
	for name, f := range feedsPerPath(t, VenueBitstamp, FeedConfig{}) {
		var ticks []market.Tick
		for _, l := range lines {
			var err error
			if l.url != "" {
				ticks, err = f.HandleSnapshot(l.recv, SnapshotRequest{URL: l.url}, l.body, ticks)
			} else {
				ticks, err = f.Handle(l.recv, l.body, ticks)
			}
			if err != nil {
				t.Fatalf("%s line %d: %v", name, l.line, err)
			}
		}
		got[name] = ticks
		if f.malformedTotal() != 0 || f.resyncTotal() != 0 {
			t.Errorf("%s: %v malformed, %v resyncs", name, f.malformedTotal(), f.resyncTotal())
		}
		kc := kindCounts(ticks)
		if kc[market.KindSnapshot] != ref.snaps || kc[market.KindBookDelta] != ref.deltas || kc[market.KindTrade] != 10 || kc[market.KindGap] != 0 {
			t.Errorf("%s: snapshot/delta/trade/gap %d/%d/%d/%d, reference %d/%d/10/0", name, kc[market.KindSnapshot], kc[market.KindBookDelta], kc[market.KindTrade], kc[market.KindGap], ref.snaps, ref.deltas)
		}
		if int(f.ignored("stale_diff")) != ref.stale || ref.stale == 0 {
			t.Errorf("%s: %v stale diffs, reference %d", name, f.ignored("stale_diff"), ref.stale)
		}
		bf := f.Feed.(*BitstampFeed)
		for pair, sides := range ref.books {
			checkRefBook(t, map[string]map[float64]float64{"buy": sides[0], "sell": sides[1]}, bf.books[pair], name+" "+pair)
		}
	}
	samePaths(t, got)
}

func TestBitstampReplay(t *testing.T) {
	testBitstampReplay(t, venueTestdata("bitstamp", "BITSTAMP.ws.1.0.gz"), venueTestdata("bitstamp", "BITSTAMP.http.0.0.gz"))
}

func TestBitstampReplaySharedFiles(t *testing.T) {
	testBitstampReplay(t, sharedCapture(t, "BITSTAMP.ws.1.0"), sharedCapture(t, "BITSTAMP.http.0.0"))
}

// TestBitstampLiveOrder replays the websocket frames before any snapshot
// (as live: subscribe, buffer, fetch): the feed asks for every pair's
// snapshot once, and applying them then gives the reference books.
func TestBitstampLiveOrder(t *testing.T) {
	ws := readCapture(t, venueTestdata("bitstamp", "BITSTAMP.ws.1.0.gz"))
	snaps := readCapture(t, venueTestdata("bitstamp", "BITSTAMP.http.0.0.gz"))
	for name, f := range feedsPerPath(t, VenueBitstamp, FeedConfig{RESTEndpoint: "http://127.0.0.1:1/"}) {
		out := replayFeed(t, f, ws)
		if kc := kindCounts(out); kc[market.KindBookDelta] != 0 || kc[market.KindTrade] != 10 {
			t.Fatalf("%s: %v before snapshots", name, kc)
		}
		reqs := f.SnapshotRequests(nil)
		if len(reqs) != len(snaps) {
			t.Fatalf("%s: %d snapshot requests, want %d", name, len(reqs), len(snaps))
		}
		byPair := map[string]capLine{}
		for _, s := range snaps {
			byPair[s.url[strings.LastIndexByte(s.url, '/')+1:]] = s
		}
		var deltas int
		for _, r := range reqs {
			if r.URL != "http://127.0.0.1:1/api/v2/order_book/"+r.Symbol {
				t.Fatalf("%s: url %s", name, r.URL)
			}
			out, err := f.HandleSnapshot(2e18, r, byPair[r.Symbol].body, nil)
			if err != nil {
				t.Fatal(err)
			}
			deltas += kindCounts(out)[market.KindBookDelta]
		}
		if f.resyncTotal() != 0 || deltas == 0 {
			t.Fatalf("%s: %v resyncs, %d deltas from buffered diffs", name, f.resyncTotal(), deltas)
		}
		if len(f.SnapshotRequests(nil)) != 0 {
			t.Fatalf("%s: snapshot asked again", name)
		}
	}
}

func TestBitstampMalformed(t *testing.T) {
	bad := map[string]Reason{
		`{"event":`: ReasonBadJSON,
		`{"data":{"id":1,"amount_str":"1","price_str":"1","type":2,"microtimestamp":"1"},"channel":"live_trades_btcusd","event":"trade"}`: ReasonBadNumber,
		`{"data":{"id":1,"amount_str":"x","price_str":"1","type":0,"microtimestamp":"1"},"channel":"live_trades_btcusd","event":"trade"}`: ReasonBadNumber,
		`{"data":{"id":1,"amount_str":"1","price_str":"1","type":0,"microtimestamp":"1"},"channel":"trades_btcusd","event":"trade"}`:      ReasonBadSymbol,
		`{"data":{"microtimestamp":"1","bids":[["1","2"]]},"channel":"diff_order_book_btcusd","event":"data"}`:                            ReasonMissingField,
		`{"data":{"microtimestamp":"-1","bids":[],"asks":[]},"channel":"diff_order_book_btcusd","event":"data"}`:                          ReasonBadNumber,
		`{"data":{"microtimestamp":"99999999999999999999","bids":[],"asks":[]},"channel":"diff_order_book_btcusd","event":"data"}`:        ReasonBadNumber,
		`{"data":{"microtimestamp":"1","bids":[],"asks":[]},"channel":"diff_order_book_","event":"data"}`:                                 ReasonBadSymbol,
		`{"event":1}`: ReasonBadType,
	}
	for name, f := range feedsPerPath(t, VenueBitstamp, FeedConfig{}) {
		for frame, reason := range bad {
			out, err := f.Handle(1, []byte(frame), nil)
			var pe *ParseError
			if !isMalformed(err) || !asParseError(err, &pe) || pe.Reason != reason || len(out) != 0 {
				t.Errorf("%s %s: %v, want %s", name, frame, err, reason)
			}
		}
		if _, err := f.HandleSnapshot(1, SnapshotRequest{Symbol: "btcusd"}, []byte(`{"bids":[],"asks":[]}`), nil); !isMalformed(err) {
			t.Errorf("%s: snapshot without microtimestamp: %v", name, err)
		}
		if f.malformedTotal() != float64(len(bad)+1) {
			t.Errorf("%s: %v counted", name, f.malformedTotal())
		}
		for _, ok := range []string{`{"event":"bts:request_reconnect","channel":"","data":""}`, `{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}`} {
			if _, err := f.Handle(1, []byte(ok), nil); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestBitstampSubscribe(t *testing.T) {
	f := NewBitstampFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanTrades, "btcusd"}, {ChanBook, "ETHEUR"}})
	if err != nil || len(fr) != 2 || string(fr[0]) != `{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}` ||
		string(fr[1]) != `{"event":"bts:subscribe","data":{"channel":"diff_order_book_etheur"}}` {
		t.Fatalf("%q %v", fr, err)
	}
	if _, err := f.SubscribeFrames([]Subscription{{ChanQuotes, "btcusd"}}); err == nil {
		t.Error("quotes accepted")
	}
	for in, out := range map[string]string{"btcusd": "BTC-USD", "usdteur": "USDT-EUR", "sgbeur": "SGB-EUR", "batbtc": "BAT-BTC", "ethusdt": "ETH-USDT"} {
		if got, ok := f.Normalize(in); !ok || got != out {
			t.Errorf("%s → %s %v", in, got, ok)
		}
	}
}

// FuzzFeedBitstamp: go test ./ingest -run '^$' -fuzz FuzzFeedBitstamp -fuzztime 30s
func FuzzFeedBitstamp(f *testing.F) {
	seeds := seedBodies(readCapture(f, venueTestdata("bitstamp", "BITSTAMP.ws.1.0.gz")), 10)
	seeds = append(seeds, []byte(`{"timestamp": "1641343699", "microtimestamp": "1641343699500000", "bids": [["3805.00", "2.00000000"]], "asks": [["3806.00", "1.00000000"]]}`))
	fuzzFeedSnapshots(f, VenueBitstamp, FeedConfig{}, seeds, &SnapshotRequest{Symbol: "ethusd", URL: "https://www.bitstamp.net/api/v2/order_book/ethusd"})
}

// BenchmarkFeedBitstamp: go test ./ingest -run '^$' -bench FeedBitstamp -benchtime 1s
func BenchmarkFeedBitstamp(b *testing.B) {
	benchFeed(b, VenueBitstamp, FeedConfig{}, bitstampMerged(b, venueTestdata("bitstamp", "BITSTAMP.ws.1.0.gz"), venueTestdata("bitstamp", "BITSTAMP.http.0.0.gz")))
}

// TestUnnormalizedSymbol: a pair whose quote asset is unknown is published
// under the venue symbol and counted per frame.
func TestUnnormalizedSymbol(t *testing.T) {
	for name, f := range feedsPerPath(t, VenueBitstamp, FeedConfig{}) {
		fr := `{"data":{"id":1,"amount_str":"1","price_str":"2","type":1,"microtimestamp":"1641343699596000"},"channel":"live_trades_fooqux","event":"trade"}`
		for i := 0; i < 2; i++ {
			out, err := f.Handle(1, []byte(fr), nil)
			if err != nil || len(out) != 1 || out[0].Instrument != "fooqux" {
				t.Fatalf("%s: %+v %v", name, out, err)
			}
		}
		if got := testutil.ToFloat64(f.m.unnormalized.WithLabelValues(VenueBitstamp)); got != 2 {
			t.Fatalf("%s: %v unnormalized frames counted, want 2", name, got)
		}
	}
}
