package ingest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

// cfLine is one line of a cryptofeed capture, read with strconv and
// strings only (independently of the replayer).
type cfLine struct {
	recv int64
	body string
	url  string // REST snapshot lines
}

func readCryptofeed(t *testing.T, paths ...string) []cfLine {
	t.Helper()
	var out []cfLine
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line := sc.Text()
			var l cfLine
			switch {
			case line == "" || strings.HasPrefix(line, "wss://"):
				continue
			case strings.HasPrefix(line, "https://"):
				u, rest, _ := strings.Cut(line, " -> ")
				l.url, line = u, rest
			}
			ts, body, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s: %q", p, line[:min(len(line), 80)])
			}
			sec, err := strconv.ParseFloat(ts, 64)
			if err != nil {
				t.Fatal(err)
			}
			l.recv, l.body = int64(sec*1e6)*1000, body
			out = append(out, l)
		}
		f.Close()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].recv < out[j].recv })
	return out
}

type refEvent struct {
	S       string
	U, LowU uint64
	B, A    [][]string
}

// refDepth decodes a depthUpdate with encoding/json (into raw maps: its
// struct matching ignores case, and Binance's keys differ only by case).
func refDepth(t *testing.T, body string) (refEvent, bool) {
	t.Helper()
	var w struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &w); err != nil {
		t.Fatal(err)
	}
	var e string
	json.Unmarshal(w.Data["e"], &e)
	if e != "depthUpdate" {
		return refEvent{}, false
	}
	var d refEvent
	for k, v := range map[string]any{"s": &d.S, "U": &d.U, "u": &d.LowU, "b": &d.B, "a": &d.A} {
		if err := json.Unmarshal(w.Data[k], v); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	return d, true
}

// binanceRef computes each symbol's final book naively with encoding/json:
// the REST snapshot, then every later depth event (u > lastUpdateId) in
// order. upto, when set, stops a symbol's book after the event with that u.
func binanceRef(t *testing.T, lines []cfLine, usdm bool) map[string]*refBook {
	t.Helper()
	books := map[string]*refBook{}
	snapID := map[string]uint64{}
	type lv = [][]string
	apply := func(b *refBook, side market.Side, levels lv) {
		for _, l := range levels {
			px, _ := strconv.ParseFloat(l[0], 64)
			sz, _ := strconv.ParseFloat(l[1], 64)
			b.set(side, px, sz)
		}
	}
	for _, l := range lines {
		if l.url != "" {
			var s struct {
				LastUpdateID uint64 `json:"lastUpdateId"`
				Bids, Asks   lv
			}
			if err := json.Unmarshal([]byte(l.body), &s); err != nil {
				t.Fatal(err)
			}
			sym := l.url[strings.Index(l.url, "symbol=")+7:]
			sym = sym[:strings.IndexByte(sym, '&')]
			b := newRefBook()
			apply(b, market.SideBuy, s.Bids)
			apply(b, market.SideSell, s.Asks)
			books[sym], snapID[sym] = b, s.LastUpdateID
			continue
		}
		d, ok := refDepth(t, l.body)
		if !ok || books[d.S] == nil {
			continue
		}
		L := snapID[d.S]
		if d.LowU < L || !usdm && d.LowU == L {
			continue
		}
		apply(books[d.S], market.SideBuy, d.B)
		apply(books[d.S], market.SideSell, d.A)
	}
	return books
}

func newTestBinanceFeed(t *testing.T, mkt string, fallback bool, m *Metrics) *BinanceFeed {
	t.Helper()
	f, err := NewBinanceFeed(mkt, FeedConfig{Metrics: m, ForceFallback: fallback})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// feedPaths runs fn for the fallback path and, where supported, simdjson.
func feedPaths(t *testing.T, fn func(t *testing.T, fallback bool)) {
	t.Run("fallback", func(t *testing.T) { fn(t, true) })
	t.Run("simdjson", func(t *testing.T) {
		if !simdjson.SupportedCPU() {
			t.Skip("CPU lacks AVX2/CLMUL")
		}
		fn(t, false)
	})
}

// drive hands the lines to the feed (frames to Handle, REST lines to
// HandleSnapshot) and rebuilds the published books.
func drive(t *testing.T, f Feed, lines []cfLine, rb *bookRebuilder) (*bookRebuilder, []SnapshotRequest) {
	t.Helper()
	if rb == nil {
		rb = newBookRebuilder()
	}
	var reqs []SnapshotRequest
	var out []market.Tick
	var err error
	for _, l := range lines {
		if l.url != "" {
			out, err = f.HandleSnapshot(l.recv, SnapshotRequest{URL: l.url}, []byte(l.body), out[:0])
		} else {
			out, err = f.Handle(l.recv, []byte(l.body), out[:0])
		}
		if err != nil {
			t.Fatalf("%v: %.100s", err, l.body)
		}
		rb.apply(out)
		reqs = f.SnapshotRequests(reqs)
	}
	return rb, reqs
}

func checkBooks(t *testing.T, rb *bookRebuilder, ref map[string]*refBook, mkt string) {
	t.Helper()
	if len(rb.errs) > 0 {
		t.Fatalf("published book errors: %v", rb.errs[:min(5, len(rb.errs))])
	}
	if len(ref) == 0 {
		t.Fatal("no reference books")
	}
	for sym, want := range ref {
		inst, _ := NormalizeBinanceSymbol(mkt, sym)
		if !rb.synced[inst] {
			t.Errorf("%s not in sync at the end (gaps %d)", inst, rb.gaps[inst])
			continue
		}
		if got := bookString(rb.books[inst]); got != want.String() {
			t.Errorf("%s: rebuilt book differs from the reference (%d vs %d bytes)", inst, len(got), len(want.String()))
		}
	}
}

// TestBinanceFeedSyncsRealCaptures replays cryptofeed's recorded frames and
// REST snapshots (spot and USD-M) through the feed: every book syncs without
// a gap, and the books rebuilt from what the feed published equal the naive
// reference (snapshot + every later event).
func TestBinanceFeedSyncsRealCaptures(t *testing.T) {
	cases := []struct {
		mkt   string
		files []string
	}{
		{MarketSpot, []string{"cryptofeed_BINANCE.ws.1.0", "cryptofeed_BINANCE.http.0.0"}},
		{MarketUSDM, []string{"cryptofeed_BINANCE_FUTURES.ws.1.0_head400", "cryptofeed_BINANCE_FUTURES.http.0.0"}},
	}
	for _, c := range cases {
		t.Run(c.mkt, func(t *testing.T) {
			lines := readCryptofeed(t, testdataPath(c.files[0]), testdataPath(c.files[1]))
			ref := binanceRef(t, lines, c.mkt == MarketUSDM)
			feedPaths(t, func(t *testing.T, fallback bool) {
				reg := prometheus.NewRegistry()
				m := NewMetrics(reg)
				f := newTestBinanceFeed(t, c.mkt, fallback, m)
				rb, reqs := drive(t, f, lines, nil)
				checkBooks(t, rb, ref, c.mkt)
				if n := testutil.CollectAndCount(m.resyncs); n != 0 {
					t.Errorf("%d resync series on gap-free captures", n)
				}
				// One snapshot asked per book, at Binance's URL.
				if len(reqs) != len(ref) {
					t.Errorf("%d snapshot requests, want %d: %+v", len(reqs), len(ref), reqs)
				}
				for _, r := range reqs {
					want := "https://api.binance.com/api/v3/depth?symbol=" + r.Symbol + "&limit=1000"
					if c.mkt == MarketUSDM {
						want = "https://fapi.binance.com/fapi/v1/depth?symbol=" + r.Symbol + "&limit=1000"
					}
					if r.URL != want || ref[r.Symbol] == nil {
						t.Errorf("request %+v, want URL %s", r, want)
					}
				}
			})
		})
	}
}

// dropDepthFrame returns lines without the k-th depth frame of sym after
// its snapshot, and that frame's u.
func dropDepthFrame(t *testing.T, lines []cfLine, sym string, k int) ([]cfLine, uint64) {
	t.Helper()
	seen, i := false, 0
	for j, l := range lines {
		if l.url != "" && strings.Contains(l.url, "symbol="+sym+"&") {
			seen = true
		}
		if seen && l.url == "" && strings.Contains(l.body, `"e":"depthUpdate"`) && strings.Contains(l.body, `"s":"`+sym+`"`) {
			if i == k {
				d, _ := refDepth(t, l.body)
				return append(append([]cfLine(nil), lines[:j]...), lines[j+1:]...), d.LowU
			}
			i++
		}
	}
	t.Fatalf("no depth frame %d of %s", k, sym)
	return nil, 0
}

// TestBinanceFeedInjectedGap removes one depth frame after the book is in
// sync: the feed publishes one gap tick, withholds the instrument's deltas,
// counts the resync and asks for a snapshot; a fresh snapshot (built from the
// reference at a later event) brings it back in sync, equal to the reference.
func TestBinanceFeedInjectedGap(t *testing.T) {
	for _, c := range []struct {
		mkt, ws, http, sym string
	}{
		{MarketSpot, "cryptofeed_BINANCE.ws.1.0", "cryptofeed_BINANCE.http.0.0", "NKNUSDT"},
		{MarketUSDM, "cryptofeed_BINANCE_FUTURES.ws.1.0_head400", "cryptofeed_BINANCE_FUTURES.http.0.0", "SUSHIUSDT"},
	} {
		t.Run(c.mkt, func(t *testing.T) {
			all := readCryptofeed(t, testdataPath(c.ws), testdataPath(c.http))
			lines, _ := dropDepthFrame(t, all, c.sym, 10)
			usdm := c.mkt == MarketUSDM
			inst, _ := NormalizeBinanceSymbol(c.mkt, c.sym)
			feedPaths(t, func(t *testing.T, fallback bool) {
				m := NewMetrics(prometheus.NewRegistry())
				f := newTestBinanceFeed(t, c.mkt, fallback, m)
				// Up to 20 depth frames after the drop: the gap must be
				// detected, and nothing of the instrument's book published.
				rb := newBookRebuilder()
				var out []market.Tick
				var err error
				cut := 0
				depthAfter := 0
				for i, l := range lines {
					if l.url != "" {
						out, err = f.HandleSnapshot(l.recv, SnapshotRequest{URL: l.url}, []byte(l.body), out[:0])
					} else {
						out, err = f.Handle(l.recv, []byte(l.body), out[:0])
					}
					if err != nil {
						t.Fatal(err)
					}
					rb.apply(out)
					if rb.gaps[inst] > 0 && strings.Contains(l.body, `"s":"`+c.sym+`"`) && strings.Contains(l.body, "depthUpdate") {
						if depthAfter++; depthAfter == 5 {
							cut = i + 1
							break
						}
					}
				}
				if rb.gaps[inst] != 1 || len(rb.errs) > 0 {
					t.Fatalf("gaps %v, errors %v", rb.gaps, rb.errs)
				}
				if got := testutil.ToFloat64(m.resyncs.WithLabelValues(f.Venue(), "gap")); got != 1 {
					t.Errorf("resyncs{gap} = %v", got)
				}
				reqs := f.SnapshotRequests(nil)
				found := false
				for _, r := range reqs {
					found = found || r.Symbol == c.sym
				}
				if !found {
					t.Fatalf("no snapshot asked for %s: %+v", c.sym, reqs)
				}
				// A fresh snapshot of the true book (the reference over
				// all frames, including the dropped one) as of the next
				// depth event's u.
				var snapAt int
				var snapU uint64
				for i := cut; i < len(lines); i++ {
					if strings.Contains(lines[i].body, `"s":"`+c.sym+`"`) && strings.Contains(lines[i].body, "depthUpdate") {
						d, _ := refDepth(t, lines[i].body)
						snapAt, snapU = i+1, d.LowU
						break
					}
				}
				if snapAt == 0 {
					t.Fatal("no later depth frame")
				}
				refLines := append([]cfLine(nil), all...)
				// reference up to and including the event with u = snapU
				var upto []cfLine
				for _, l := range refLines {
					upto = append(upto, l)
					if l.url == "" && strings.Contains(l.body, fmt.Sprintf(`"u":%d,`, snapU)) && strings.Contains(l.body, `"s":"`+c.sym+`"`) {
						break
					}
				}
				truth := binanceRef(t, upto, usdm)[c.sym]
				body := snapshotBody(truth, snapU)
				url := "https://api.binance.com/api/v3/depth?symbol=" + c.sym + "&limit=1000"
				rest := []cfLine{{recv: lines[snapAt-1].recv + 1, url: url, body: body}}
				rest = append(rest, lines[snapAt:]...)
				// Feed the frames up to snapAt (already past cut) then the
				// snapshot and the rest.
				for _, l := range lines[cut:snapAt] {
					out, _ = f.Handle(l.recv, []byte(l.body), out[:0])
					rb.apply(out)
				}
				drive(t, f, rest, rb)
				ref := binanceRef(t, all, usdm)
				checkBooks(t, rb, map[string]*refBook{c.sym: ref[c.sym]}, c.mkt)
				if rb.gaps[inst] != 1 {
					t.Errorf("%d gaps in all, want 1", rb.gaps[inst])
				}
			})
		})
	}
}

// snapshotBody renders a REST depth snapshot of b at lastUpdateId id.
func snapshotBody(b *refBook, id uint64) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"lastUpdateId":%d,"bids":[`, id)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	first := true
	for _, side := range []string{"buy", "sell"} {
		if side == "sell" {
			sb.WriteString(`],"asks":[`)
			first = true
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != side {
				continue
			}
			if !first {
				sb.WriteByte(',')
			}
			first = false
			fmt.Fprintf(&sb, `["%s","%s"]`, f[1], f[2])
		}
	}
	sb.WriteString("]}")
	return sb.String()
}

func depthFrame(sym string, U, u, pu uint64, bids, asks string) string {
	puField := ""
	if pu != 0 {
		puField = fmt.Sprintf(`"pu":%d,`, pu)
	}
	return fmt.Sprintf(`{"stream":"%s@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"%s","U":%d,"u":%d,%s"b":[%s],"a":[%s]}}`,
		strings.ToLower(sym), sym, U, u, puField, bids, asks)
}

// TestBinanceFeedSequenceRules checks the documented rules one by one on
// hand-made frames.
func TestBinanceFeedSequenceRules(t *testing.T) {
	snap := `{"lastUpdateId":100,"bids":[["10","1"]],"asks":[["11","1"]]}`
	req := SnapshotRequest{Symbol: "BTCUSDT"}
	cases := []struct {
		name       string
		mkt        string
		frames     []string // before the snapshot
		after      []string // after it
		wantDeltas []uint64 // Seq (u) of the published delta ticks, one per event (one level each)
		wantGap    string   // resync reason, "" for none
		wantSnap   bool     // the snapshot is published
	}{
		{name: "spot straddle", mkt: MarketSpot,
			frames:     []string{depthFrame("BTCUSDT", 90, 95, 0, `["9","1"]`, ""), depthFrame("BTCUSDT", 96, 101, 0, `["9","2"]`, "")},
			after:      []string{depthFrame("BTCUSDT", 102, 103, 0, `["9","3"]`, "")},
			wantDeltas: []uint64{101, 103}, wantSnap: true},
		{name: "spot event already in snapshot after it", mkt: MarketSpot,
			after:      []string{depthFrame("BTCUSDT", 99, 100, 0, `["9","1"]`, ""), depthFrame("BTCUSDT", 101, 102, 0, `["9","2"]`, "")},
			wantDeltas: []uint64{102}, wantSnap: true},
		{name: "spot gap after sync", mkt: MarketSpot,
			after:      []string{depthFrame("BTCUSDT", 101, 102, 0, `["9","2"]`, ""), depthFrame("BTCUSDT", 104, 105, 0, `["9","3"]`, ""), depthFrame("BTCUSDT", 106, 107, 0, `["9","4"]`, "")},
			wantDeltas: []uint64{102}, wantGap: "gap", wantSnap: true},
		{name: "spot bad straddle", mkt: MarketSpot,
			after:    []string{depthFrame("BTCUSDT", 102, 103, 0, `["9","2"]`, "")},
			wantGap:  "gap",
			wantSnap: true},
		{name: "spot stale snapshot", mkt: MarketSpot,
			frames:  []string{depthFrame("BTCUSDT", 150, 151, 0, `["9","2"]`, "")},
			wantGap: "stale_snapshot"},
		{name: "spot gap inside the buffer", mkt: MarketSpot,
			frames:  []string{depthFrame("BTCUSDT", 99, 101, 0, `["9","2"]`, ""), depthFrame("BTCUSDT", 103, 104, 0, `["9","3"]`, "")},
			wantGap: "gap"},
		{name: "crossed", mkt: MarketSpot,
			after:    []string{depthFrame("BTCUSDT", 101, 101, 0, `["12","1"]`, "")},
			wantGap:  "crossed",
			wantSnap: true},
		{name: "usdm straddle on lastUpdateId", mkt: MarketUSDM,
			frames:     []string{depthFrame("BTCUSDT", 90, 99, 80, `["9","1"]`, ""), depthFrame("BTCUSDT", 100, 110, 99, `["9","2"]`, "")},
			after:      []string{depthFrame("BTCUSDT", 115, 120, 110, `["9","3"]`, "")},
			wantDeltas: []uint64{110, 120}, wantSnap: true},
		{name: "usdm pu break", mkt: MarketUSDM,
			frames:     []string{depthFrame("BTCUSDT", 95, 105, 90, `["9","2"]`, "")},
			after:      []string{depthFrame("BTCUSDT", 112, 120, 111, `["9","3"]`, "")},
			wantDeltas: []uint64{105}, wantGap: "gap", wantSnap: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			f := newTestBinanceFeed(t, c.mkt, true, m)
			var all []market.Tick
			var out []market.Tick
			for _, fr := range c.frames {
				out, _ = f.Handle(1, []byte(fr), out[:0])
				if len(out) != 0 {
					t.Fatalf("ticks before the snapshot: %+v", out)
				}
			}
			if rq := f.SnapshotRequests(nil); len(c.frames) > 0 && len(rq) != 1 {
				t.Fatalf("snapshot requests %+v", rq)
			}
			out, err := f.HandleSnapshot(2, req, []byte(snap), out[:0])
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, out...)
			for _, fr := range c.after {
				out, err = f.Handle(3, []byte(fr), out[:0])
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, out...)
			}
			var deltas []uint64
			gaps, snaps := 0, 0
			for _, tk := range all {
				switch tk.Kind {
				case market.KindBookDelta:
					deltas = append(deltas, tk.Seq)
				case market.KindGap:
					gaps++
					if tk.Instrument != "BTC-USDT" && tk.Instrument != "BTC-USDT-PERP" {
						t.Errorf("gap for %q", tk.Instrument)
					}
				case market.KindSnapshot:
					snaps++
				}
			}
			if fmt.Sprint(deltas) != fmt.Sprint(c.wantDeltas) {
				t.Errorf("deltas %v, want %v", deltas, c.wantDeltas)
			}
			if (snaps > 0) != c.wantSnap {
				t.Errorf("snapshot ticks %d, want published=%v", snaps, c.wantSnap)
			}
			wantGaps := 0
			if c.wantGap != "" && c.wantGap != "stale_snapshot" {
				wantGaps = 1
			}
			if gaps != wantGaps {
				t.Errorf("%d gap ticks, want %d", gaps, wantGaps)
			}
			if c.wantGap != "" {
				if got := testutil.ToFloat64(m.resyncs.WithLabelValues(f.Venue(), c.wantGap)); got != 1 {
					t.Errorf("resyncs{%s} = %v", c.wantGap, got)
				}
				if rq := f.SnapshotRequests(nil); len(rq) != 1 || rq[0].Symbol != "BTCUSDT" {
					t.Errorf("after the resync: requests %+v", rq)
				}
			}
		})
	}
}

func TestBinanceFeedConnection(t *testing.T) {
	f := newTestBinanceFeed(t, MarketSpot, true, nil)
	subs := []Subscription{{ChanTrades, "BTCUSDT"}, {ChanBook, "ethusdt"}, {ChanQuotes, "BNBBTC"}}
	u, err := f.URL(subs)
	if err != nil || u != "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@depth@100ms/bnbbtc@bookTicker" {
		t.Errorf("URL = %q, %v", u, err)
	}
	if fr, err := f.SubscribeFrames(subs); err != nil || len(fr) != 0 {
		t.Errorf("SubscribeFrames = %q, %v", fr, err)
	}
	if _, err := f.URL([]Subscription{{ChanFunding, "BTCUSDT"}}); err == nil || !strings.Contains(err.Error(), "funding") {
		t.Errorf("unsupported channel: %v", err)
	}
	// Beyond 100 streams the rest go in SUBSCRIBE frames of 200.
	var many []Subscription
	for i := 0; i < 450; i++ {
		many = append(many, Subscription{ChanTrades, fmt.Sprintf("S%dUSDT", i)})
	}
	u, _ = f.URL(many)
	fr, _ := f.SubscribeFrames(many)
	if strings.Count(u, "@trade") != 100 || len(fr) != 2 {
		t.Fatalf("URL with %d streams, %d frames", strings.Count(u, "@trade"), len(fr))
	}
	var sub struct {
		Method string
		Params []string
		ID     int
	}
	if err := json.Unmarshal(fr[1], &sub); err != nil || sub.Method != "SUBSCRIBE" || len(sub.Params) != 150 || sub.Params[0] != "s300usdt@trade" || sub.ID != 2 {
		t.Errorf("frame 2 = %s", fr[1])
	}
	if l := f.Limits(); l.MaxSubsPerConn != 1024 || l.SubscribeRate != 5 || l.PingInterval != 0 {
		t.Errorf("spot limits %+v", l)
	}
	fu := newTestBinanceFeed(t, MarketUSDM, true, nil)
	if l := fu.Limits(); l.SubscribeRate != 10 {
		t.Errorf("usdm limits %+v", l)
	}
	if u, _ := fu.URL([]Subscription{{ChanTrades, "BTCUSDT"}}); u != "wss://fstream.binance.com/stream?streams=btcusdt@aggTrade" {
		t.Errorf("usdm URL %q", u)
	}
	if inst, ok := fu.Normalize("btcusdt"); !ok || inst != "BTC-USDT-PERP" {
		t.Errorf("Normalize = %q %v", inst, ok)
	}
	fe, err := NewFeed("binance", FeedConfig{Endpoint: "ws://127.0.0.1:1/", RESTEndpoint: "http://127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := fe.URL(subs[:1]); u != "ws://127.0.0.1:1/stream?streams=btcusdt@trade" {
		t.Errorf("Endpoint override: %q", u)
	}
	fe.Handle(1, []byte(depthFrame("BTCUSDT", 1, 2, 0, `["1","1"]`, "")), nil)
	if rq := fe.SnapshotRequests(nil); len(rq) != 1 || rq[0].URL != "http://127.0.0.1:2/api/v3/depth?symbol=BTCUSDT&limit=1000" {
		t.Errorf("RESTEndpoint override: %+v", rq)
	}
	// Reset forgets the pending request and the buffer.
	fe.Reset()
	fe.Handle(1, []byte(depthFrame("BTCUSDT", 3, 4, 0, `["1","1"]`, "")), nil)
	if rq := fe.SnapshotRequests(nil); len(rq) != 1 {
		t.Errorf("after Reset: %+v", rq)
	}
}

// TestBinanceFeedEmptySnapshotAfterGap: an empty book snapshot whose
// buffered events break the sequence again, while a gap was already
// published, yields nothing and does not crash; the drops are counted.
func TestBinanceFeedEmptySnapshotAfterGap(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	f := newTestBinanceFeed(t, MarketSpot, true, m)
	req := SnapshotRequest{Symbol: "BTCUSDT"}
	out, _ := f.HandleSnapshot(1, req, []byte(`{"lastUpdateId":10,"bids":[["1","1"]],"asks":[]}`), nil)
	out, _ = f.Handle(2, []byte(depthFrame("BTCUSDT", 20, 21, 0, `["1","2"]`, "")), out[:0]) // gap
	if len(out) != 1 || out[0].Kind != market.KindGap {
		t.Fatalf("%+v", out)
	}
	f.Handle(3, []byte(depthFrame("BTCUSDT", 22, 23, 0, `["1","3"]`, "")), nil)
	f.Handle(4, []byte(depthFrame("BTCUSDT", 30, 31, 0, `["1","4"]`, "")), nil)
	out, err := f.HandleSnapshot(5, req, []byte(`{"lastUpdateId":21,"bids":[],"asks":[]}`), nil)
	if err != nil || len(out) != 0 {
		t.Fatalf("%+v %v", out, err)
	}
	if got := testutil.ToFloat64(m.dropped.WithLabelValues("binance", "depth_in_snapshot")); got != 1 {
		t.Errorf("depth_in_snapshot = %v, want 1 (u=21)", got)
	}
	// The events from the failing one on wait for the next snapshot.
	out, _ = f.HandleSnapshot(6, req, []byte(`{"lastUpdateId":30,"bids":[["1","9"]],"asks":[]}`), nil)
	if len(out) != 2 || out[0].Kind != market.KindSnapshot || out[1].Seq != 31 {
		t.Fatalf("%+v", out)
	}
}

// TestBinanceFeedRandomized drives the feed with a simulated venue: random
// lost diffs, snapshots taken when asked and delivered some diffs later,
// duplicated snapshot deliveries. Whatever happens, no delta is published
// for a book out of sync, and once the last snapshot is in, the rebuilt
// book equals the venue's.
func TestBinanceFeedRandomized(t *testing.T) {
	for _, mkt := range []string{MarketSpot, MarketUSDM} {
		for seed := uint64(1); seed <= 40; seed++ {
			sim := newBinanceSim(mkt == MarketUSDM, seed, "BTCUSDT")
			rng := sim.rng
			f := newTestBinanceFeed(t, mkt, seed%2 == 0, nil)
			rb := newBookRebuilder()
			type pend struct {
				body  string
				after int
			}
			var pending []pend
			var out []market.Tick
			deliver := func(p pend) {
				out, _ = f.HandleSnapshot(1, SnapshotRequest{Symbol: "BTCUSDT"}, []byte(p.body), out[:0])
				rb.apply(out)
			}
			for i := 0; i < 400; i++ {
				fr := sim.event("BTCUSDT")
				if rng.IntN(40) != 0 { // 1 in 40 lost
					out, _ = f.Handle(1, []byte(fr), out[:0])
					rb.apply(out)
				}
				for _, r := range f.SnapshotRequests(nil) {
					body, _ := sim.snapshot(r.Symbol)
					pending = append(pending, pend{body, i + rng.IntN(10)})
				}
				for len(pending) > 0 && pending[0].after <= i {
					deliver(pending[0])
					if rng.IntN(5) == 0 {
						deliver(pending[0]) // again: stale now
					}
					pending = pending[1:]
				}
			}
			for _, p := range pending {
				deliver(p)
			}
			// Lossless to the end: a diff lost last shows as a gap on the
			// next one; snapshots come at once.
			for k := 0; k < 3; k++ {
				out, _ = f.Handle(1, []byte(sim.event("BTCUSDT")), out[:0])
				rb.apply(out)
				for _, r := range f.SnapshotRequests(nil) {
					body, _ := sim.snapshot(r.Symbol)
					deliver(pend{body: body})
				}
			}
			inst, _ := NormalizeBinanceSymbol(mkt, "BTCUSDT")
			if len(rb.errs) > 0 {
				t.Fatalf("%s seed %d: %v", mkt, seed, rb.errs[:min(3, len(rb.errs))])
			}
			if !rb.synced[inst] || bookString(rb.books[inst]) != sim.truth("BTCUSDT") {
				t.Fatalf("%s seed %d: synced %v, book differs from the venue's (gaps %d)", mkt, seed, rb.synced[inst], rb.gaps[inst])
			}
		}
	}
}
