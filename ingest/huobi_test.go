package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/signald-dev/signald/market"
)

// pyBytesB decodes a Python bytes literal b'...' (how the recorder stored
// Huobi's gzip frames).
func pyBytesB(t testing.TB, s string) []byte {
	t.Helper()
	if len(s) < 3 || s[0] != 'b' || (s[1] != '\'' && s[1] != '"') || s[len(s)-1] != s[1] {
		t.Fatalf("not a bytes literal: %.40q", s)
	}
	s = s[2 : len(s)-1]
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'x':
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, byte(v))
			i += 2
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '\\', '\'', '"':
			out = append(out, s[i])
		default:
			t.Fatalf("escape \\%c", s[i])
		}
	}
	return out
}

func huobiLines(t testing.TB, lines []capLine) []capLine {
	for i := range lines {
		if lines[i].body != nil {
			lines[i].body = pyBytesB(t, string(lines[i].body))
		}
	}
	return lines
}

func gzipB(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestHuobiFramesAndNormalize(t *testing.T) {
	f := NewHuobiFeed(FeedConfig{})
	fr, err := f.SubscribeFrames([]Subscription{{ChanBook, "btcusdt"}, {ChanTrades, "BTCUSDT"}, {ChanQuotes, "btcusdt"}})
	if err != nil || len(fr) != 3 || string(fr[0]) != `{"sub":"market.btcusdt.depth.step0","id":"1"}` ||
		string(fr[1]) != `{"sub":"market.btcusdt.trade.detail","id":"2"}` || string(fr[2]) != `{"sub":"market.btcusdt.bbo","id":"3"}` {
		t.Fatalf("%q %v", fr, err)
	}
	for sym, want := range map[string]string{"btcusdt": "BTC-USDT", "trioeth": "TRIO-ETH", "yfihusd": "YFI-HUSD", "omgbtc": "OMG-BTC"} {
		if got, ok := NormalizeHuobiSymbol(sym); !ok || got != want {
			t.Errorf("%s → %s", sym, got)
		}
	}
}

func TestHuobiKnownFrames(t *testing.T) {
	const recv = int64(1618678070909736900)
	for _, fb := range jsonPaths(t) {
		t.Run(pathName(fb), func(t *testing.T) {
			f, reg := newTestFeed(t, "huobi", FeedConfig{ForceFallback: fb})
			run := func(frame string) []market.Tick {
				t.Helper()
				out, err := f.Handle(recv, gzipB(frame), nil)
				if err != nil {
					t.Fatalf("%s: %v", frame, err)
				}
				return out
			}
			// Recorded (HUOBI.ws.44.0, gunzipped): the tradeId, not the
			// 27-digit id, is the trade id.
			got := run(`{"ch":"market.trioeth.trade.detail","ts":1618678027942,"tick":{"id":100182534526,"ts":1618678027940,"data":[{"id":100182534526255757567432481,"ts":1618678027940,"tradeId":100045088885,"amount":20995.88,"price":9.2e-07,"direction":"buy"}]}}`)
			want := []market.Tick{goldenTick(market.Tick{Venue: "huobi", Instrument: "TRIO-ETH", Symbol: "trioeth", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1618678027940_000000, RecvTS: recv, Price: 9.2e-07, Size: 20995.88, TradeID: 100045088885})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("trade:\n got %+v\nwant %+v", got, want)
			}
			got = run(`{"ch":"market.btcusdt.depth.step0","ts":1618678069870,"tick":{"bids":[[60000.1,1.5],[59999,2]],"asks":[[60001,0.5]],"version":123,"ts":1618678069860}}`)
			base := market.Tick{Venue: "huobi", Instrument: "BTC-USDT", Symbol: "btcusdt", Kind: market.KindSnapshot, ExchTS: 1618678069860_000000, RecvTS: recv, Seq: 123}
			lv := func(b market.Tick, side market.Side, px, sz float64) market.Tick {
				b.Side, b.Price, b.Size = side, px, sz
				return goldenTick(b)
			}
			if want := []market.Tick{lv(base, market.SideBuy, 60000.1, 1.5), lv(base, market.SideBuy, 59999, 2), lv(base, market.SideSell, 60001, 0.5)}; !reflect.DeepEqual(got, want) {
				t.Fatalf("depth:\n got %+v\nwant %+v", got, want)
			}
			// Docs example of bbo.
			got = run(`{"ch":"market.btcusdt.bbo","ts":1630982225968,"tick":{"seqId":136372393553,"ask":52101.74,"askSize":0.024339,"bid":52101.73,"bidSize":0.69,"quoteTime":1630982225968,"symbol":"btcusdt"}}`)
			want = []market.Tick{goldenTick(market.Tick{Venue: "huobi", Instrument: "BTC-USDT", Symbol: "btcusdt", Kind: market.KindQuote, ExchTS: 1630982225968_000000, RecvTS: recv,
				BidPx: 52101.73, BidSz: 0.69, AskPx: 52101.74, AskSz: 0.024339, Seq: 136372393553})}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("bbo:\n got %+v\nwant %+v", got, want)
			}
			// ping → pong.
			if got := run(`{"ping":1618678073643}`); len(got) != 0 {
				t.Fatal(got)
			}
			if ob := f.Outbox(nil); len(ob) != 1 || string(ob[0]) != `{"pong":1618678073643}` {
				t.Fatalf("pong %q", ob)
			}
			// Crossed push: a gap; the next push is a whole book again.
			got = run(`{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":[[60002,1]],"asks":[[60001,0.5]],"version":124,"ts":2}}`)
			if len(got) != 1 || got[0].Kind != market.KindGap || resyncCount(reg, "crossed") != 1 {
				t.Fatalf("crossed: %+v", got)
			}
			if got := run(`{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":[[60000,1]],"asks":[[60001,0.5]],"version":125,"ts":2}}`); len(got) != 2 {
				t.Fatalf("after crossed: %+v", got)
			}
		})
	}
}

func TestHuobiMalformed(t *testing.T) {
	f, reg := newTestFeed(t, "huobi", FeedConfig{})
	bad := [][]byte{[]byte{0x1f, 0x8b, 1, 2, 3}, gzipB(`{`), gzipB(`[]`), gzipB(`{"ch":"btcusdt","tick":{}}`), gzipB(`{"ch":"market.btcusdt.bbo"}`),
		gzipB(`{"ch":"market.btcusdt.depth.step0","tick":{"bids":[[1]],"asks":[]}}`), gzipB(`{"ch":"market.btcusdt.depth.step0","tick":{"bids":[]}}`),
		gzipB(`{"ch":"market.btcusdt.trade.detail","tick":{"data":[{"price":1,"amount":1,"direction":"up","ts":1}]}}`),
		gzipB(`{"ch":"market.btcusdt.bbo","tick":{"bid":1,"ask":1,"askSize":1}}`), gzipB(`{"ping":"x"}`)}
	for _, fr := range bad {
		wantMalformed(t, f, string(fr))
	}
	// A gzip bomb: 17 MB of spaces.
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	io.Copy(w, io.LimitReader(zeroSpaces{}, huobiMaxFrame+1024))
	w.Close()
	wantMalformed(t, f, b.String())
	if m := malformedCount(reg); m != float64(len(bad)+1) {
		t.Fatalf("malformed %v, want %d", m, len(bad)+1)
	}
}

type zeroSpaces struct{}

func (zeroSpaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// huobiExpected counts with encoding/json on the gunzipped frames: each
// depth push gives its distinct non-zero levels, trade.detail one trade per
// entry.
func huobiExpected(t *testing.T, lines []capLine) map[market.Kind]int {
	want := map[market.Kind]int{}
	for _, l := range lines {
		if l.body == nil {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(l.body))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := io.ReadAll(zr)
		var m struct {
			Ch   string
			Tick struct {
				Bids, Asks [][2]float64
				Data       []any
			}
		}
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.Contains(m.Ch, ".depth."):
			for _, side := range [][][2]float64{m.Tick.Bids, m.Tick.Asks} {
				px := map[float64]bool{}
				for _, lv := range side {
					if lv[1] != 0 {
						px[lv[0]] = true
					}
				}
				want[market.KindSnapshot] += len(px)
			}
		case strings.HasSuffix(m.Ch, ".trade.detail"):
			want[market.KindTrade] += len(m.Tick.Data)
		}
	}
	return want
}

func TestHuobiRecordedExcerpt(t *testing.T) {
	lines := huobiLines(t, readCaptureAll(t, venueTestdata("huobi", "HUOBI.ws.44.0_head50")))
	want := huobiExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		replayClean(t, "huobi", fb, lines, nil, nil, want)
	}
}

func TestHuobiRecordedFile(t *testing.T) {
	lines := huobiLines(t, readCaptureAll(t, sharedCapture(t, "HUOBI.ws.44.0")))
	want := huobiExpected(t, lines)
	for _, fb := range jsonPaths(t) {
		f, out, _ := replayClean(t, "huobi", fb, lines, nil, nil, want)
		pongs := len(f.Outbox(nil))
		if pongs != 6 {
			t.Fatalf("%d pongs, want one per ping (6)", pongs)
		}
		t.Logf("%s: %d ticks %v", pathName(fb), len(out), kindCounts(out))
	}
}

// FuzzFeedHuobi: Handle never panics; both JSON paths agree (inputs are
// used as they are and gzipped).
func FuzzFeedHuobi(f *testing.F) {
	for i, l := range huobiLines(f, readCaptureAll(f, venueTestdata("huobi", "HUOBI.ws.44.0_head50"))) {
		if l.body != nil && i%3 == 0 {
			zr, _ := gzip.NewReader(bytes.NewReader(l.body))
			js, _ := io.ReadAll(zr)
			f.Add(js)
		}
	}
	f.Add([]byte(`{"ping":1618678073643}`))
	paths := fuzzPaths(f, "huobi", FeedConfig{}, nil, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCompare(t, paths, data, nil)
		fuzzCompare(t, paths, gzipB(string(data)), nil)
	})
}

func BenchmarkFeedHuobi(b *testing.B) {
	benchReplay(b, "huobi", huobiLines(b, readCaptureAll(b, venueTestdata("huobi", "HUOBI.ws.44.0_head50"))), nil, nil)
}
