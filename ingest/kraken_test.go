package ingest

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

const krakenBookExcerpt = "KRAKEN.ws.50.0_head300.gz"

func TestKrakenGoldenV1(t *testing.T) {
	const recv = int64(1618678142592855000)
	cases := []goldenCase{
		{
			// Recorded (KRAKEN.ws.48.0): "s" is the taker's side.
			name:  "trade",
			frame: `[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""]],"trade","XMR/USD"]`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "kraken", Instrument: "XMR-USD", Symbol: "XMR/USD", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1618678142_557535000, RecvTS: recv, Price: 354.11, Size: 0.89594024})},
		},
		{
			// Recorded (KRAKEN.ws.49.0): a/b are [price, whole lot volume, lot volume].
			name:  "ticker",
			frame: `[996,{"a":["355.24000000",27,"27.19106411"],"b":["354.32000000",6,"6.87748868"],"c":["355.23000000","1.20454360"],"v":["17858.85261084","33470.74135600"],"p":["355.33503706","349.16721624"],"t":[6481,10283],"l":["340.88000000","333.87000000"],"h":["368.00000000","368.00000000"],"o":["340.88000000","335.21000000"]},"ticker","XMR/USD"]`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "kraken", Instrument: "XMR-USD", Symbol: "XMR/USD", Kind: market.KindQuote,
				RecvTS: recv, BidPx: 354.32, BidSz: 6.87748868, AskPx: 355.24, AskSz: 27.19106411})},
		},
		{
			// The documented spread example.
			name:  "spread",
			frame: `[0,["5698.40000","5700.00000","1542057299.545897","1.01234567","0.98765432"],"spread","XBT/USD"]`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "kraken", Instrument: "BTC-USD", Symbol: "XBT/USD", Kind: market.KindQuote,
				ExchTS: 1542057299_545897000, RecvTS: recv, BidPx: 5698.4, BidSz: 1.01234567, AskPx: 5700, AskSz: 0.98765432})},
		},
	}
	runGoldenCases(t, VenueKraken, recv, cases)
}

// krakenDocBook is the book of Kraken's v1 checksum guide: asks 0.05005 to
// 0.05050 and bids 0.05000 to 0.04950 (without 0.04985), every volume
// 0.00000500. The guide gives its checksum string and CRC32 974947235.
func krakenDocBook() (snapshot string) {
	var as, bs []string
	for p := 5005; p <= 5050; p += 5 {
		as = append(as, fmt.Sprintf(`["0.0%d","0.00000500","1582905486.493008"]`, p))
	}
	for p := 5000; p >= 4950; p -= 5 {
		if p == 4985 {
			continue
		}
		bs = append(bs, fmt.Sprintf(`["0.0%d","0.00000500","1582905486.493008"]`, p))
	}
	return `[0,{"as":[` + strings.Join(as, ",") + `],"bs":[` + strings.Join(bs, ",") + `]},"book-10","XBT/USD"]`
}

func TestKrakenChecksumV1Documented(t *testing.T) {
	const docString = "50055005010500501550050205005025500503050050355005040500504550050505005000500499550049905004980500497550049705004965500496050049555004950500"
	if crc32.ChecksumIEEE([]byte(docString)) != 974947235 {
		t.Fatal("the guide's example string does not hash to its checksum")
	}
	for path, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
		snap, err := f.Handle(1, []byte(krakenDocBook()), nil)
		if err != nil || len(snap) != 20 {
			t.Fatalf("%s: snapshot: %d ticks, %v", path, len(snap), err)
		}
		kf := f.Feed.(*KrakenFeed)
		if got := kf.checksumV1(kf.books["XBT/USD"]); got != 974947235 {
			t.Fatalf("%s: checksum of the guide's book %d, want 974947235", path, got)
		}
		// An update that re-states the best ask keeps the book: the
		// checksum matches and the delta is published.
		out, err := f.Handle(2, []byte(`[0,{"a":[["0.05005","0.00000500","1582905487.000001"]],"c":"974947235"},"book-10","XBT/USD"]`), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindBookDelta {
			t.Fatalf("%s: matching update: %+v %v", path, out, err)
		}
		if f.resyncTotal() != 0 {
			t.Fatalf("%s: resync on a matching checksum", path)
		}
		// The same update with another volume does not match: no delta, a
		// gap tick, a resync and a v1 resubscription.
		out, err = f.Handle(3, []byte(`[0,{"a":[["0.05005","0.00000600","1582905487.000002"]],"c":"974947235"},"book-10","XBT/USD"]`), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindGap || out[0].Instrument != "BTC-USD" {
			t.Fatalf("%s: mismatching update: %+v %v", path, out, err)
		}
		if f.resyncs("checksum") != 1 {
			t.Fatalf("%s: checksum resync not counted", path)
		}
		ob := f.Outbox(nil)
		want := []string{
			`{"event":"unsubscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":10}}`,
			`{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":10}}`,
		}
		if len(ob) != 2 || string(ob[0]) != want[0] || string(ob[1]) != want[1] {
			t.Fatalf("%s: outbox %q", path, ob)
		}
		// Withheld until the next snapshot.
		out, _ = f.Handle(4, []byte(`[0,{"b":[["0.04990","0.00000700","1582905487.000003"]],"c":"1"},"book-10","XBT/USD"]`), nil)
		if len(out) != 0 {
			t.Fatalf("%s: delta published while out of sync: %+v", path, out)
		}
		if out, _ = f.Handle(5, []byte(krakenDocBook()), nil); len(out) != 20 {
			t.Fatalf("%s: resnapshot: %d ticks", path, len(out))
		}
		// NoChecksum turns verification off.
		nf := NewKrakenFeed(FeedConfig{NoChecksum: true, ForceFallback: path == "fallback"})
		nf.Handle(1, []byte(krakenDocBook()), nil)
		out, _ = nf.Handle(2, []byte(`[0,{"a":[["0.05005","0.00000600","1582905487.000002"]],"c":"974947235"},"book-10","XBT/USD"]`), nil)
		if len(out) != 1 || out[0].Kind != market.KindBookDelta {
			t.Fatalf("%s: NoChecksum: %+v", path, out)
		}
	}
}

// krRef rebuilds Kraken v1 books with encoding/json and sorting, for
// comparison with the feed's books.
type krRef struct {
	books  map[string]*[2]map[float64][2]string // pair → asks, bids: price → price text, volume text
	depth  map[string]int
	deltas int
	snaps  int
	sums   int
}

func (r *krRef) apply(t testing.TB, body []byte) {
	var arr []json.RawMessage
	if json.Unmarshal(body, &arr) != nil || len(arr) < 4 {
		return
	}
	var name, pair string
	json.Unmarshal(arr[len(arr)-2], &name)
	json.Unmarshal(arr[len(arr)-1], &pair)
	if !strings.HasPrefix(name, "book-") {
		return
	}
	depth, _ := strconv.Atoi(name[5:])
	r.depth[pair] = depth
	for _, p := range arr[1 : len(arr)-2] {
		var m map[string]json.RawMessage
		json.Unmarshal(p, &m)
		if _, ok := m["as"]; ok {
			r.books[pair] = &[2]map[float64][2]string{{}, {}}
		}
		for k, side := range map[string]int{"as": 0, "bs": 1, "a": 0, "b": 1} {
			var lv [][]string
			if raw, ok := m[k]; ok {
				json.Unmarshal(raw, &lv)
			}
			_ = k
			for _, l := range lv {
				if len(k) == 2 {
					r.snaps++
				} else {
					r.deltas++
				}
				book := r.books[pair][side]
				px, _ := strconv.ParseFloat(l[0], 64)
				if v, _ := strconv.ParseFloat(l[1], 64); v == 0 {
					delete(book, px)
				} else {
					book[px] = [2]string{l[0], l[1]}
				}
			}
		}
		if _, ok := m["c"]; ok {
			r.sums++
		}
	}
	// Truncate to depth.
	for side := 0; side < 2; side++ {
		book := r.books[pair][side]
		keys := sortedPrices(book, side == 1)
		for _, k := range keys[min(len(keys), depth):] {
			delete(book, k)
		}
	}
}

func sortedPrices(book map[float64][2]string, desc bool) []float64 {
	keys := make([]float64, 0, len(book))
	for k := range book {
		keys = append(keys, k)
	}
	sort.Float64s(keys)
	if desc {
		slices.Reverse(keys)
	}
	return keys
}

func testKrakenReplay(t *testing.T, paths ...string) {
	var lines []capLine
	for _, p := range paths {
		lines = append(lines, readCapture(t, p)...)
	}
	ref := &krRef{books: map[string]*[2]map[float64][2]string{}, depth: map[string]int{}}
	for _, l := range lines {
		ref.apply(t, l.body)
	}
	if ref.sums == 0 {
		t.Fatal("no checksummed update in the file")
	}
	got := map[string][]market.Tick{}
	for name, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
		ticks := replayFeed(t, f, lines)
		got[name] = ticks
		if n := f.malformedTotal(); n != 0 {
			t.Errorf("%s: %v malformed", name, n)
		}
		// Every checksum of the recording verifies: no resync at all.
		if n := f.resyncTotal(); n != 0 {
			t.Errorf("%s: %v resyncs (checksum %v, crossed %v)", name, n, f.resyncs("checksum"), f.resyncs("crossed"))
		}
		kc := kindCounts(ticks)
		if kc[market.KindSnapshot] != ref.snaps || kc[market.KindBookDelta] != ref.deltas || kc[market.KindGap] != 0 {
			t.Errorf("%s: %d snapshot / %d delta / %d gap ticks, reference %d / %d / 0", name, kc[market.KindSnapshot], kc[market.KindBookDelta], kc[market.KindGap], ref.snaps, ref.deltas)
		}
		kf := f.Feed.(*KrakenFeed)
		for pair, sides := range ref.books {
			bk := kf.books[pair]
			for side, s := range [2]market.Side{market.SideSell, market.SideBuy} {
				lv := bk.Side(s)
				keys := sortedPrices(sides[side], s == market.SideBuy)
				if len(lv) != len(keys) {
					t.Fatalf("%s %s side %v: %d levels, reference %d", name, pair, s, len(lv), len(keys))
				}
				for i, k := range keys {
					if lv[i].PxText != sides[side][k][0] || lv[i].SzText != sides[side][k][1] {
						t.Fatalf("%s %s side %v level %d: %s/%s, reference %v", name, pair, s, i, lv[i].PxText, lv[i].SzText, sides[side][k])
					}
				}
			}
		}
	}
	samePaths(t, got)
}

func TestKrakenReplayExcerpts(t *testing.T) {
	testKrakenReplay(t, venueTestdata("kraken", "KRAKEN.ws.48.0"), venueTestdata("kraken", "KRAKEN.ws.49.0"), venueTestdata("kraken", krakenBookExcerpt))
}

func TestKrakenReplayFullFiles(t *testing.T) {
	testKrakenReplay(t, sharedCapture(t, "KRAKEN.ws.48.0"), sharedCapture(t, "KRAKEN.ws.49.0"), sharedCapture(t, "KRAKEN.ws.50.0"))
}

// TestKrakenInjectedCorruption corrupts one level of one recorded update,
// and separately drops one update: each must give exactly one checksum
// resync and one gap tick for that pair, and no book tick for the pair
// afterwards (the recording sends no new snapshot).
func TestKrakenInjectedCorruption(t *testing.T) {
	lines := readCapture(t, sharedOrExcerpt(t))
	// The 40th checksummed update: a book well under way.
	target, seen := -1, 0
	for i, l := range lines {
		if strings.Contains(string(l.body), `"c":"`) {
			if seen++; seen == 40 {
				target = i
				break
			}
		}
	}
	if target < 0 {
		t.Fatal("no update to corrupt")
	}
	var arr []json.RawMessage
	json.Unmarshal(lines[target].body, &arr)
	var pair string
	json.Unmarshal(arr[len(arr)-1], &pair)
	inst, _ := NormalizeKrakenSymbol(pair)

	corrupt := func(body []byte) []byte {
		// Change the volume of the first level of the update: the second
		// string of the frame's first level array, e.g. "0.00000000" → "0.00000001"-ish.
		s := string(body)
		i := strings.Index(s, `[["`)
		j := strings.Index(s[i+3:], `","`) + i + 6 // start of the volume
		k := strings.Index(s[j:], `"`) + j
		vol := s[j:k]
		nv := vol[:len(vol)-1] + string('1'+(vol[len(vol)-1]-'0')%8)
		return []byte(s[:j] + nv + s[k:])
	}
	for _, mode := range []string{"corrupt", "drop"} {
		for name, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
			gaps := 0
			resynced := false
			edit := corrupt
			if mode == "drop" {
				edit = nil
			}
			for _, tk := range replayEdited(t, f, lines, target, edit) {
				if tk.Kind == market.KindGap {
					gaps++
					resynced = true
					if tk.Instrument != inst {
						t.Fatalf("%s %s: gap for %s, want %s", mode, name, tk.Instrument, inst)
					}
				} else if resynced && tk.Instrument == inst && (tk.Kind == market.KindBookDelta || tk.Kind == market.KindSnapshot) {
					t.Fatalf("%s %s: book tick for %s after the resync without a snapshot", mode, name, inst)
				}
			}
			if gaps != 1 || f.resyncs("checksum") != 1 || f.resyncTotal() != 1 {
				t.Fatalf("%s %s: %d gap ticks, %v checksum resyncs, %v total", mode, name, gaps, f.resyncs("checksum"), f.resyncTotal())
			}
			if ob := f.Outbox(nil); len(ob) != 2 || !strings.Contains(string(ob[1]), `"pair":["`+pair+`"]`) {
				t.Fatalf("%s %s: outbox %q", mode, name, ob)
			}
			if f.ignored("book_unsynced") == 0 {
				t.Fatalf("%s %s: withheld updates not counted", mode, name)
			}
		}
	}
}

func sharedOrExcerpt(t *testing.T) string {
	return venueTestdata("kraken", krakenBookExcerpt)
}

// v1ToV2 turns a recorded v1 book frame into the v2 format (numbers as
// JSON numbers with the recorded text, so at the pair's precision), for the
// v2 path to be checked against real checksums.
func v1ToV2(t testing.TB, body []byte) (frame []byte, pair string, prec [2]int, ok bool) {
	var arr []json.RawMessage
	if json.Unmarshal(body, &arr) != nil || len(arr) < 4 {
		return nil, "", prec, false
	}
	var name string
	json.Unmarshal(arr[len(arr)-2], &name)
	json.Unmarshal(arr[len(arr)-1], &pair)
	if !strings.HasPrefix(name, "book-") {
		return nil, "", prec, false
	}
	typ := "update"
	var bids, asks []string
	var sum string
	decimals := func(s string) int { return len(s) - strings.IndexByte(s, '.') - 1 }
	for _, p := range arr[1 : len(arr)-2] {
		var m map[string]json.RawMessage
		json.Unmarshal(p, &m)
		for k, dst := range map[string]*[]string{"as": &asks, "bs": &bids, "a": &asks, "b": &bids} {
			raw, has := m[k]
			if !has {
				continue
			}
			if len(k) == 2 {
				typ = "snapshot"
			}
			var lv [][]string
			json.Unmarshal(raw, &lv)
			for _, l := range lv {
				*dst = append(*dst, `{"price":`+l[0]+`,"qty":`+l[1]+`}`)
				prec = [2]int{decimals(l[0]), decimals(l[1])}
			}
		}
		if c, has := m["c"]; has {
			json.Unmarshal(c, &sum)
		}
	}
	v2sym := strings.Replace(pair, "XBT", "BTC", 1)
	data := `{"symbol":"` + v2sym + `","bids":[` + strings.Join(bids, ",") + `],"asks":[` + strings.Join(asks, ",") + `]`
	if sum != "" {
		data += `,"checksum":` + sum
	}
	data += `,"timestamp":"2021-04-17T16:48:53.000000Z"}`
	return []byte(`{"channel":"book","type":"` + typ + `","data":[` + data + `]}`), v2sym, prec, true
}

// TestKrakenV2FromRecording replays the recorded books converted to v2:
// the v2 checksum (rebuilt from numbers at the pair's precision) verifies on
// every update, and the books equal the v1 ones.
func TestKrakenV2FromRecording(t *testing.T) {
	lines := readCapture(t, venueTestdata("kraken", krakenBookExcerpt))
	for name, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
		v1 := NewKrakenFeed(FeedConfig{ForceFallback: name == "fallback"})
		precs := map[string][2]int{}
		var frames [][]byte
		for _, l := range lines {
			v1.Handle(l.recv, l.body, nil)
			fr, sym, prec, ok := v1ToV2(t, l.body)
			if !ok {
				continue
			}
			if _, seen := precs[sym]; !seen {
				precs[sym] = prec
			}
			frames = append(frames, fr)
		}
		// The instrument channel's snapshot, then the book acks (depth 1000).
		var pairs []string
		for sym, p := range precs {
			pairs = append(pairs, fmt.Sprintf(`{"symbol":"%s","base":"X","quote":"Y","status":"online","qty_precision":%d,"qty_increment":0.00000001,"price_precision":%d,"price_increment":0.1,"cost_precision":5,"marginable":false,"has_index":true,"cost_min":0.5,"tick_size":0.1}`, sym, p[1], p[0]))
			ack := `{"method":"subscribe","result":{"channel":"book","depth":1000,"snapshot":true,"symbol":"` + sym + `"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}`
			if _, err := f.Handle(1, []byte(ack), nil); err != nil {
				t.Fatal(err)
			}
		}
		inst := `{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[` + strings.Join(pairs, ",") + `]}}`
		if _, err := f.Handle(1, []byte(inst), nil); err != nil {
			t.Fatal(err)
		}
		var ticks int
		for _, fr := range frames {
			out, err := f.Handle(2, fr, nil)
			if err != nil {
				t.Fatalf("%s: %v\n%.300s", name, err, fr)
			}
			ticks += len(out)
		}
		if f.resyncTotal() != 0 || f.ignored("checksum_unverified") != 0 {
			t.Fatalf("%s: %v resyncs, %v unverified checksums", name, f.resyncTotal(), f.ignored("checksum_unverified"))
		}
		if ticks == 0 {
			t.Fatal("no ticks")
		}
		kf := f.Feed.(*KrakenFeed)
		for sym := range precs {
			v1pair := strings.Replace(sym, "BTC", "XBT", 1)
			for _, s := range []market.Side{market.SideBuy, market.SideSell} {
				a, b := kf.books[sym].Side(s), v1.books[v1pair].Side(s)
				if len(a) != len(b) {
					t.Fatalf("%s %s: %d levels in v2, %d in v1", name, sym, len(a), len(b))
				}
				for i := range a {
					if a[i].Px != b[i].Px || a[i].Sz != b[i].Sz {
						t.Fatalf("%s %s level %d differs", name, sym, i)
					}
				}
			}
		}
		// A wrong checksum on the v2 path resubscribes with v2 frames.
		sym := strings.Replace(pairsFirst(precs), "XBT", "BTC", 1)
		out, err := f.Handle(3, []byte(`{"channel":"book","type":"update","data":[{"symbol":"`+sym+`","bids":[],"asks":[],"checksum":1,"timestamp":"2023-10-06T17:35:55.219022Z"}]}`), nil)
		if err != nil || len(out) != 1 || out[0].Kind != market.KindGap {
			t.Fatalf("%s: %+v %v", name, out, err)
		}
		ob := f.Outbox(nil)
		if len(ob) != 2 || string(ob[0]) != `{"method":"unsubscribe","params":{"channel":"book","symbol":["`+sym+`"],"depth":1000}}` ||
			string(ob[1]) != `{"method":"subscribe","params":{"channel":"book","symbol":["`+sym+`"],"depth":1000,"snapshot":true}}` {
			t.Fatalf("%s: outbox %q", name, ob)
		}
	}
}

func pairsFirst(m map[string][2]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[0]
}

// TestKrakenGoldenV2 decodes the documented v2 trade and ticker examples and
// a small book whose checksum string is written out by hand.
func TestKrakenGoldenV2(t *testing.T) {
	const recv = int64(1695628177708706000)
	for path, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
		out, err := f.Handle(recv, []byte(`{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}`), nil)
		// date -u -d 2023-09-25T07:49:37Z +%s → 1695628177
		want := []market.Tick{goldenTick(market.Tick{Venue: "kraken", Instrument: "MATIC-USD", Symbol: "MATIC/USD", Kind: market.KindTrade, Side: market.SideSell,
			ExchTS: 1695628177_708706000, RecvTS: recv, Price: 0.5117, Size: 40, TradeID: 4665906})}
		if err != nil || !reflect.DeepEqual(out, want) {
			t.Fatalf("%s trade: %+v %v", path, out, err)
		}
		out, err = f.Handle(recv, []byte(`{"channel":"ticker","type":"update","data":[{"symbol":"ALGO/USD","bid":0.10025,"bid_qty":740.0,"ask":0.10036,"ask_qty":1240.0,"last":0.10035,"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17}]}`), nil)
		want = []market.Tick{goldenTick(market.Tick{Venue: "kraken", Instrument: "ALGO-USD", Symbol: "ALGO/USD", Kind: market.KindQuote,
			RecvTS: recv, BidPx: 0.10025, BidSz: 740, AskPx: 0.10036, AskSz: 1240})}
		if err != nil || !reflect.DeepEqual(out, want) {
			t.Fatalf("%s ticker: %+v %v", path, out, err)
		}
		// Precision 4 / 8: asks 0.5668×4410.79769741, 0.5669×4655.40412487;
		// bids 0.5666×4831.75496356, 0.566×18097.1547 (written 0.5660 and
		// 18097.15470000 at the pair's precision).
		sum := crc32.ChecksumIEEE([]byte("5668" + "441079769741" + "5669" + "465540412487" + "5666" + "483175496356" + "5660" + "1809715470000"))
		f.Handle(recv, []byte(`{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"MATIC/USD","price_precision":4,"qty_precision":8}]}}`), nil)
		snap := fmt.Sprintf(`{"channel":"book","type":"snapshot","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5666,"qty":4831.75496356},{"price":0.566,"qty":18097.1547}],"asks":[{"price":0.5668,"qty":4410.79769741},{"price":0.5669,"qty":4655.40412487}],"checksum":%d,"timestamp":"2023-10-06T17:35:55.440295Z"}]}`, sum)
		out, err = f.Handle(recv, []byte(snap), nil)
		if err != nil || len(out) != 4 || f.resyncTotal() != 0 {
			t.Fatalf("%s book: %d ticks, %v, %v resyncs", path, len(out), err, f.resyncTotal())
		}
		if out[0] != goldenTick(market.Tick{Venue: "kraken", Instrument: "MATIC-USD", Symbol: "MATIC/USD", Kind: market.KindSnapshot, Side: market.SideBuy,
			ExchTS: 1696613755_440295000, RecvTS: recv, Price: 0.5666, Size: 4831.75496356}) { // date -u -d 2023-10-06T17:35:55Z +%s
			t.Fatalf("%s: first snapshot tick %+v", path, out[0])
		}
	}
}

func TestKrakenMalformed(t *testing.T) {
	bad := map[string]Reason{
		`{`:                          ReasonBadJSON,
		`7`:                          ReasonBadJSON,
		`[1,2,3]`:                    ReasonBadType,
		`[1,[],"trade"]`:             ReasonBadType,
		`["x",[],"trade","XBT/USD"]`: ReasonBadType,
		`[1,[["1","2","3","x"]],"trade","XBT/USD"]`:                                                                  ReasonBadType,
		`[1,[["1","2","noon","b"]],"trade","XBT/USD"]`:                                                               ReasonBadNumber,
		`[1,{"as":[["1","2"]]},"book-10","XBT/USD"]`:                                                                 ReasonBadType,
		`[1,{"a":[["1","2","3"]],"c":"x"},"book-10","XBT/USD"]`:                                                      ReasonBadNumber,
		`[1,{"as":[],"bs":[]},"book-x","XBT/USD"]`:                                                                   ReasonBadNumber,
		`{"channel":"trade","type":"update","data":[{"symbol":"A/B","side":"buy","price":-1,"qty":1,"trade_id":1}]}`: ReasonBadNumber,
		`{"channel":"book","type":"partial","data":[]}`:                                                              ReasonBadType,
		`{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":1}],"asks":[]}]}`:                ReasonMissingField,
		`{"event":7}`: ReasonBadType,
	}
	for name, f := range feedsPerPath(t, VenueKraken, FeedConfig{}) {
		for frame, reason := range bad {
			out, err := f.Handle(1, []byte(frame), nil)
			var pe *ParseError
			if !isMalformed(err) || !asParseError(err, &pe) || pe.Reason != reason || len(out) != 0 {
				t.Errorf("%s %s: %v (%d ticks), want %s", name, frame, err, len(out), reason)
			}
		}
		if f.malformedTotal() != float64(len(bad)) {
			t.Errorf("%s: %v counted", name, f.malformedTotal())
		}
		// Events and pings are not malformed; a v1 ping is answered.
		for _, ok := range []string{`{"event":"heartbeat"}`, `{"event":"ping","reqid":42}`, `{"method":"pong","req_id":1,"time_in":"x","time_out":"y"}`, `{"channel":"heartbeat"}`, `{"channel":"status","type":"update","data":[{"system":"online"}]}`} {
			if _, err := f.Handle(1, []byte(ok), nil); err != nil {
				t.Errorf("%s %s: %v", name, ok, err)
			}
		}
		if ob := f.Outbox(nil); len(ob) != 1 || string(ob[0]) != `{"event":"pong","reqid":42}` {
			t.Errorf("%s: outbox %q", name, ob)
		}
	}
}

func TestKrakenSubscribe(t *testing.T) {
	f := NewKrakenFeed(FeedConfig{})
	frames, err := f.SubscribeFrames([]Subscription{{ChanTrades, "BTC/USD"}, {ChanBook, "BTC/USD"}, {ChanQuotes, "ETH/USD"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"]}}`,
		`{"method":"subscribe","params":{"channel":"instrument","snapshot":true}}`,
		`{"method":"subscribe","params":{"channel":"book","symbol":["BTC/USD"],"depth":100,"snapshot":true}}`,
		`{"method":"subscribe","params":{"channel":"ticker","symbol":["ETH/USD"],"event_trigger":"bbo"}}`,
	}
	if len(frames) != len(want) {
		t.Fatalf("%q", frames)
	}
	for i := range want {
		if string(frames[i]) != want[i] {
			t.Errorf("%d: %s\nwant %s", i, frames[i], want[i])
		}
	}
	for in, out := range map[string]string{"XBT/USD": "BTC-USD", "XDG/EUR": "DOGE-EUR", "BTC/USD": "BTC-USD", "eth/xbt": "ETH-BTC"} {
		if got, ok := f.Normalize(in); !ok || got != out {
			t.Errorf("%s → %s %v", in, got, ok)
		}
	}
	if string(f.Ping()) != `{"method":"ping"}` {
		t.Error("ping")
	}
}

func asParseError(err error, pe **ParseError) bool {
	p, ok := err.(*ParseError)
	*pe = p
	return ok
}

// FuzzFeedKraken: go test ./ingest -run '^$' -fuzz FuzzFeedKraken -fuzztime 30s
func FuzzFeedKraken(f *testing.F) {
	var seeds [][]byte
	for _, n := range []string{"KRAKEN.ws.48.0", "KRAKEN.ws.49.0", krakenBookExcerpt} {
		seeds = append(seeds, seedBodies(readCapture(f, venueTestdata("kraken", n)), 5)...)
	}
	seeds = append(seeds, []byte(krakenDocBook()),
		[]byte(`{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":[{"price":0.5666,"qty":0}],"asks":[],"checksum":12,"timestamp":"2023-10-06T17:35:55.440295Z"}]}`),
		[]byte(`{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"MATIC/USD","price_precision":4,"qty_precision":8}]}}`))
	fuzzFeed(f, VenueKraken, FeedConfig{}, seeds)
}

// BenchmarkFeedKraken: go test ./ingest -run '^$' -bench FeedKraken -benchtime 1s
func BenchmarkFeedKraken(b *testing.B) {
	lines := readCapture(b, venueTestdata("kraken", krakenBookExcerpt))
	// Updates only (snapshots of 1000 levels would dominate), after the
	// snapshots have been applied once in the warm-up of each path.
	benchFeed(b, VenueKraken, FeedConfig{NoChecksum: false}, lines)
}
