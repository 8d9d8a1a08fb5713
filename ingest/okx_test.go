package ingest

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

const okxExcerpt = "OKX.ws.1.0_head150.gz"

func TestOKXGolden(t *testing.T) {
	const recv = int64(1652459225507070000)
	cases := []goldenCase{
		{
			// Recorded: a dated future; side is the taker's.
			name:  "trade future",
			frame: `{"arg":{"channel":"trades","instId":"BTC-USD-220527"},"data":[{"instId":"BTC-USD-220527","tradeId":"7849","px":"30218.8","sz":"1","side":"buy","ts":"1652459199958"}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "BTC-USD-20220527", Symbol: "BTC-USD-220527", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1652459199958_000000, RecvTS: recv, Price: 30218.8, Size: 1, TradeID: 7849})},
		},
		{
			// Recorded: a perpetual swap.
			name:  "trade swap",
			frame: `{"arg":{"channel":"trades","instId":"UNI-USD-SWAP"},"data":[{"instId":"UNI-USD-SWAP","tradeId":"12883020","px":"5.123","sz":"100","side":"sell","ts":"1652459215150"}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "UNI-USD-PERP", Symbol: "UNI-USD-SWAP", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1652459215150_000000, RecvTS: recv, Price: 5.123, Size: 100, TradeID: 12883020})},
		},
		{
			// Recorded ticker: best bid and offer.
			name:  "ticker",
			frame: `{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT","last":"30236","lastSz":"0.0002","askPx":"30228.7","askSz":"1.55896972","bidPx":"30228.6","bidSz":"0.23393","open24h":"29700.4","high24h":"31073","low24h":"28020.3","sodUtc0":"29028.8","sodUtc8":"30337.7","volCcy24h":"525802090.62716611","vol24h":"17602.13085371","ts":"1652459224956"}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "BTC-USDT", Symbol: "BTC-USDT", Kind: market.KindQuote,
				ExchTS: 1652459224956_000000, RecvTS: recv, BidPx: 30228.6, BidSz: 0.23393, AskPx: 30228.7, AskSz: 1.55896972})},
		},
		{
			// The documented bbo-tbt push.
			name:  "bbo-tbt",
			frame: `{"arg":{"channel":"bbo-tbt","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "BCH-USDT-PERP", Symbol: "BCH-USDT-SWAP", Kind: market.KindQuote,
				ExchTS: 1670324386802_000000, RecvTS: recv, BidPx: 111.05, BidSz: 57745, AskPx: 111.06, AskSz: 55154, Seq: 363996337})},
		},
		{
			// The documented funding-rate push (negative rates are valid).
			name:  "funding",
			frame: `{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"formulaType":"noRate","fundingRate":"-0.0001875391284828","fundingTime":"1700726400000","impactValue":"","instId":"BTC-USD-SWAP","instType":"SWAP","interestRate":"","method":"current_period","maxFundingRate":"0.00375","minFundingRate":"-0.00375","nextFundingRate":"","nextFundingTime":"1700755200000","premium":"0.0001233824646391","settFundingRate":"0.0001699799259033","settState":"settled","ts":"1700724675402"}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "BTC-USD-PERP", Symbol: "BTC-USD-SWAP", Kind: market.KindFunding,
				ExchTS: 1700724675402_000000, RecvTS: recv, Price: -0.0001875391284828})},
		},
		{
			// The documented liquidation-orders push: a short was closed
			// by a forced buy.
			name:  "liquidation",
			frame: `{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0","bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"}]}`,
			want: []market.Tick{goldenTick(market.Tick{Venue: "okx", Instrument: "IOST-USDT-PERP", Symbol: "IOST-USDT-SWAP", Kind: market.KindLiquidation, Side: market.SideBuy,
				ExchTS: 1692266434010_000000, RecvTS: recv, Price: 0.007831, Size: 13})},
		},
	}
	runGoldenCases(t, VenueOKX, recv, cases)
}

// TestOKXChecksumDocumented (negative checksums, the int32 reading, are
// covered by the recording, where most are negative): the guide's example book (bids 3366.1×7,
// 3366×6; asks 3366.8×9, 3368×8) has the check string
// "3366.1:7:3366.8:9:3366:6:3368:8".
func TestOKXChecksumDocumented(t *testing.T) {
	sum := int32(crc32.ChecksumIEEE([]byte("3366.1:7:3366.8:9:3366:6:3368:8")))
	for path, f := range feedsPerPath(t, VenueOKX, FeedConfig{}) {
		snap := fmt.Sprintf(`{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["3366.8","9","10","3"],["3368","8","3","4"]],"bids":[["3366.1","7","0","3"],["3366","6","3","4"]],"ts":"1597026383085","checksum":%d,"prevSeqId":-1,"seqId":123456}]}`, sum)
		out, err := f.Handle(1, []byte(snap), nil)
		if err != nil || len(out) != 4 || f.resyncTotal() != 0 {
			t.Fatalf("%s: %d ticks, %v, %v resyncs", path, len(out), err, f.resyncTotal())
		}
		want := goldenTick(market.Tick{Venue: "okx", Instrument: "BTC-USDT", Symbol: "BTC-USDT", Kind: market.KindSnapshot, Side: market.SideBuy,
			ExchTS: 1597026383085_000000, RecvTS: 1, Price: 3366.1, Size: 7, Seq: 123456})
		if out[0] != want || out[2].Side != market.SideSell || out[2].Price != 3366.8 {
			t.Fatalf("%s: %+v", path, out)
		}
	}
}

// okxRef rebuilds OKX books with encoding/json.
type okxRef struct {
	books         map[string]*[2]map[float64]float64 // bids, asks
	snaps, deltas int
	sums          int
}

func (r *okxRef) apply(body []byte) {
	var m struct {
		Arg struct {
			Channel string `json:"channel"`
			InstID  string `json:"instId"`
		} `json:"arg"`
		Action string `json:"action"`
		Data   []struct {
			Bids     [][]string `json:"bids"`
			Asks     [][]string `json:"asks"`
			Checksum *int64     `json:"checksum"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &m) != nil || m.Arg.Channel != "books" {
		return
	}
	for _, d := range m.Data {
		if m.Action == "snapshot" {
			r.books[m.Arg.InstID] = &[2]map[float64]float64{{}, {}}
			r.snaps += len(d.Bids) + len(d.Asks)
		} else {
			r.deltas += len(d.Bids) + len(d.Asks)
		}
		if d.Checksum != nil {
			r.sums++
		}
		for side, lvs := range [2][][]string{d.Bids, d.Asks} {
			for _, l := range lvs {
				px, _ := strconv.ParseFloat(l[0], 64)
				sz, _ := strconv.ParseFloat(l[1], 64)
				if sz == 0 {
					delete(r.books[m.Arg.InstID][side], px)
				} else {
					r.books[m.Arg.InstID][side][px] = sz
				}
			}
		}
	}
}

func testOKXReplay(t *testing.T, path string) {
	lines := readCapture(t, path)
	ref := &okxRef{books: map[string]*[2]map[float64]float64{}}
	for _, l := range lines {
		ref.apply(l.body)
	}
	if ref.sums == 0 {
		t.Fatal("no checksummed frame")
	}
	got := map[string][]market.Tick{}
	for name, f := range feedsPerPath(t, VenueOKX, FeedConfig{}) {
		ticks := replayFeed(t, f, lines)
		got[name] = ticks
		if f.malformedTotal() != 0 || f.resyncTotal() != 0 {
			t.Errorf("%s: %v malformed, %v resyncs (checksum %v)", name, f.malformedTotal(), f.resyncTotal(), f.resyncs("checksum"))
		}
		kc := kindCounts(ticks)
		if kc[market.KindSnapshot] != ref.snaps || kc[market.KindBookDelta] != ref.deltas || kc[market.KindGap] != 0 {
			t.Errorf("%s: snapshot/delta/gap %d/%d/%d, reference %d/%d/0", name, kc[market.KindSnapshot], kc[market.KindBookDelta], kc[market.KindGap], ref.snaps, ref.deltas)
		}
		if kc[market.KindTrade] == 0 || kc[market.KindQuote] == 0 {
			t.Errorf("%s: %d trades, %d quotes", name, kc[market.KindTrade], kc[market.KindQuote])
		}
		of := f.Feed.(*OKXFeed)
		for inst, sides := range ref.books {
			ref := map[string]map[float64]float64{"buy": sides[0], "sell": sides[1]}
			checkRefBook(t, ref, of.books[inst], name+" "+inst)
		}
	}
	samePaths(t, got)
}

func TestOKXReplayExcerpt(t *testing.T) { testOKXReplay(t, venueTestdata("okx", okxExcerpt)) }

func TestOKXReplayFullFile(t *testing.T) { testOKXReplay(t, sharedCapture(t, "OKX.ws.1.0")) }

// withSeq rewrites recorded books frames of one instrument with seqId and
// prevSeqId as OKX sends them today: snapshot prevSeqId -1, then each
// update's prevSeqId the previous seqId.
func withSeq(lines []capLine, inst string) []capLine {
	out := make([]capLine, len(lines))
	seq := int64(1000)
	for i, l := range lines {
		out[i] = l
		s := string(l.body)
		if !strings.Contains(s, `"channel":"books","instId":"`+inst+`"`) {
			continue
		}
		prev := seq
		if strings.Contains(s, `"action":"snapshot"`) {
			prev = -1
		}
		seq += 3
		s = strings.Replace(s, `"checksum":`, fmt.Sprintf(`"prevSeqId":%d,"seqId":%d,"checksum":`, prev, seq), 1)
		out[i].body = []byte(s)
	}
	return out
}

// TestOKXInjected: a skipped books update (seqId gap) and a corrupted
// level (checksum) each give one resync of the right reason, one gap tick,
// a books resubscription, and no book tick for the instrument afterwards.
func TestOKXInjected(t *testing.T) {
	const inst = "BTC-USDT"
	lines := withSeq(readCapture(t, venueTestdata("okx", okxExcerpt)), inst)
	target, n := -1, 0
	for i, l := range lines {
		if strings.Contains(string(l.body), `"channel":"books","instId":"`+inst+`"},"action":"update"`) {
			if n++; n == 10 {
				target = i
				break
			}
		}
	}
	if target < 0 {
		t.Fatal("no update")
	}
	corrupt := func(b []byte) []byte {
		// Bump the first size of the update: ["px","sz",... → sz+1 digit.
		s := string(b)
		i := strings.Index(s, `[["`)
		j := strings.Index(s[i+3:], `","`) + i + 6
		return []byte(s[:j] + "1" + s[j:])
	}
	for mode, reason := range map[string]string{"drop": "gap", "corrupt": "checksum"} {
		for name, f := range feedsPerPath(t, VenueOKX, FeedConfig{}) {
			gaps := 0
			edit := corrupt
			if mode == "drop" {
				edit = nil
			}
			for _, tk := range replayEdited(t, f, lines, target, edit) {
				if tk.Kind == market.KindGap {
					gaps++
				} else if gaps > 0 && tk.Instrument == inst && (tk.Kind == market.KindBookDelta || tk.Kind == market.KindSnapshot) {
					t.Fatalf("%s %s: book tick after the resync", mode, name)
				}
			}
			if gaps != 1 || f.resyncs(reason) != 1 || f.resyncTotal() != 1 {
				t.Fatalf("%s %s: %d gaps, %v %s resyncs, %v total", mode, name, gaps, f.resyncs(reason), reason, f.resyncTotal())
			}
			ob := f.Outbox(nil)
			if len(ob) != 2 || string(ob[0]) != `{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}` ||
				string(ob[1]) != `{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}` {
				t.Fatalf("%s %s: outbox %q", mode, name, ob)
			}
		}
	}
	// With sequence numbers and nothing dropped, no resync.
	for name, f := range feedsPerPath(t, VenueOKX, FeedConfig{}) {
		replayFeed(t, f, lines)
		if f.resyncTotal() != 0 {
			t.Fatalf("%s: %v resyncs with intact sequence", name, f.resyncTotal())
		}
	}
}

func TestOKXMalformedAndControl(t *testing.T) {
	bad := map[string]Reason{
		`{"arg":`: ReasonBadJSON,
		`{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":{}}`:                                                                         ReasonBadType,
		`{"arg":{"channel":"trades"},"data":[]}`:                                                                                             ReasonMissingField,
		`{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"x","px":"1","sz":"1","side":"buy","ts":"1"}]}`:                  ReasonBadNumber,
		`{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"up","ts":"1"}]}`:                   ReasonBadType,
		`{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"bids":[],"ts":"1","checksum":99999999999}]}`: ReasonBadNumber,
		`{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["1"]],"bids":[],"ts":"1"}]}`:                   ReasonBadType,
		`{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingRate":"abc","ts":"1"}]}`:                                ReasonBadNumber,
	}
	for name, f := range feedsPerPath(t, VenueOKX, FeedConfig{}) {
		for frame, reason := range bad {
			out, err := f.Handle(1, []byte(frame), nil)
			var pe *ParseError
			if !isMalformed(err) || !asParseError(err, &pe) || pe.Reason != reason || len(out) != 0 {
				t.Errorf("%s %s: %v, want %s", name, frame, err, reason)
			}
		}
		if f.malformedTotal() != float64(len(bad)) {
			t.Errorf("%s: %v counted", name, f.malformedTotal())
		}
		for _, ok := range []string{"pong", `{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"}}`, `{"event":"error","code":"60012","msg":"Invalid request"}`, `{"event":"notice","code":"64008","msg":"upgrade"}`} {
			if out, err := f.Handle(1, []byte(ok), nil); err != nil || len(out) != 0 {
				t.Errorf("%s %s: %v", name, ok, err)
			}
		}
	}
}

func TestOKXSubscribe(t *testing.T) {
	f := NewOKXFeed(FeedConfig{})
	frames, err := f.SubscribeFrames([]Subscription{{ChanTrades, "BTC-USDT"}, {ChanBook, "BTC-USDT-SWAP"}, {ChanFunding, "BTC-USDT-SWAP"}, {ChanLiquidations, "BTC-USDT-SWAP"}, {ChanLiquidations, "ETH-USDT-SWAP"}, {ChanQuotes, "ETH-USDT"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"books","instId":"BTC-USDT-SWAP"},{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},{"channel":"liquidation-orders","instType":"SWAP"},{"channel":"bbo-tbt","instId":"ETH-USDT"}]}`
	if len(frames) != 1 || string(frames[0]) != want {
		t.Fatalf("%s\nwant %s", frames, want)
	}
	for in, out := range map[string]string{"BTC-USDT": "BTC-USDT", "BTC-USDT-SWAP": "BTC-USDT-PERP", "BTC-USD-220527": "BTC-USD-20220527"} {
		if got, ok := f.Normalize(in); !ok || got != out {
			t.Errorf("%s → %s %v", in, got, ok)
		}
	}
	if _, ok := f.Normalize("BTC-USD-220527-30000-C"); ok {
		t.Error("option normalized")
	}
	if string(f.Ping()) != "ping" || f.Limits().PingInterval >= 30e9 {
		t.Error("ping")
	}
}

// FuzzFeedOKX: go test ./ingest -run '^$' -fuzz FuzzFeedOKX -fuzztime 30s
func FuzzFeedOKX(f *testing.F) {
	seeds := seedBodies(readCapture(f, venueTestdata("okx", okxExcerpt)), 3)
	seeds = append(seeds, []byte(`{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0","bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],"instId":"IOST-USDT-SWAP"}]}`),
		[]byte(`{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"fundingRate":"0.0001","fundingTime":"1700726400000","ts":"1700724675402"}]}`))
	fuzzFeed(f, VenueOKX, FeedConfig{}, seeds)
}

// BenchmarkFeedOKX: go test ./ingest -run '^$' -bench FeedOKX -benchtime 1s
func BenchmarkFeedOKX(b *testing.B) {
	benchFeed(b, VenueOKX, FeedConfig{}, readCapture(b, venueTestdata("okx", okxExcerpt)))
}
