package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/signald-dev/signald/market"
)

func TestVenueFromFileName(t *testing.T) {
	for name, want := range map[string]string{
		"/x/BINANCE.ws.1.0":                           "binance",
		"BINANCE.http.0.0":                            "binance",
		"BINANCE_FUTURES.ws.1.0":                      "binance-usdm",
		"cryptofeed_BINANCE_FUTURES.ws.1.0_head400":   "binance-usdm",
		"cryptofeed_BINANCE.http.0.0":                 "binance",
		"KRAKEN.ws.50.0":                              "kraken",
		"testdata/kraken/cryptofeed_KRAKEN.ws.50.0_h": "kraken",
		"COINBASE.ws.28.0":                            "coinbase",
		"OKX.ws.1.0":                                  "okx",
		"BYBIT.ws.26.0":                               "bybit",
		"BITSTAMP.http.0.0":                           "bitstamp",
		"BITFINEX.ws.11.0":                            "bitfinex",
		"GEMINI.ws.1.0":                               "gemini",
		"DERIBIT.ws.1.0":                              "deribit",
		"KUCOIN.http.0.0":                             "kucoin",
		"GATEIO.ws.1.0":                               "gateio",
		"BITMEX.ws.1.0":                               "bitmex",
		"HUOBI.ws.44.0":                               "huobi",
		"binance_spot_btcusdt_20240808.gz":            "",
		"XBINANCE.ws.1.0":                             "",
		"NOTAVENUE.ws.1.0":                            "",
	} {
		if got := VenueFromFileName(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// TestReplayBookSync replays cryptofeed's ws and http files together
// through the Binance feeds (venue detected from the names): the books
// rebuilt from the replay equal the naive reference, without a gap.
func TestReplayBookSync(t *testing.T) {
	for _, c := range []struct {
		mkt   string
		files []string
	}{
		{MarketSpot, []string{"cryptofeed_BINANCE.ws.1.0", "cryptofeed_BINANCE.http.0.0"}},
		{MarketUSDM, []string{"cryptofeed_BINANCE_FUTURES.ws.1.0_head400", "cryptofeed_BINANCE_FUTURES.http.0.0"}},
	} {
		t.Run(c.mkt, func(t *testing.T) {
			paths := []string{testdataPath(c.files[0]), testdataPath(c.files[1])}
			ref := binanceRef(t, readCryptofeed(t, paths...), c.mkt == MarketUSDM)
			for _, fb := range []bool{false, true} {
				rb := newBookRebuilder()
				r := newReplayer(t, ReplayConfig{Paths: paths, BookSync: true, ForceFallback: fb}, nil)
				if err := r.Run(context.Background(), func(ts []market.Tick) error { rb.apply(ts); return nil }); err != nil {
					t.Fatal(err)
				}
				checkBooks(t, rb, ref, c.mkt)
				if len(rb.gaps) != 0 {
					t.Errorf("gaps %v", rb.gaps)
				}
			}
			// Without BookSync the same files give the parser's ticks: the
			// deltas before each snapshot too.
			var synced, raw int
			for _, bs := range []bool{true, false} {
				r := newReplayer(t, ReplayConfig{Paths: paths, BookSync: bs}, nil)
				n := 0
				r.Run(context.Background(), func(ts []market.Tick) error {
					for _, tk := range ts {
						if tk.Kind == market.KindBookDelta {
							n++
						}
					}
					return nil
				})
				if bs {
					synced = n
				} else {
					raw = n
				}
			}
			if synced >= raw {
				t.Errorf("book sync published %d deltas, raw %d: the pre-snapshot ones should be withheld", synced, raw)
			}
		})
	}
}

// replayTestFeed records what replay hands it.
type replayTestFeed struct {
	testFeed
	mu     sync.Mutex
	frames []string
	snaps  []SnapshotRequest
	resets int
}

func (f *replayTestFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.mu.Lock()
	f.frames = append(f.frames, string(frame))
	f.mu.Unlock()
	t := market.Tick{Venue: "replaytest", Instrument: "X-USD", Symbol: "X", Kind: market.KindTrade, RecvTS: recv, Price: float64(len(frame)), Size: 1}
	t.ComputeID()
	return append(out, t), nil
}

func (f *replayTestFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	f.mu.Lock()
	f.snaps = append(f.snaps, req)
	f.mu.Unlock()
	t := market.Tick{Venue: "replaytest", Instrument: "X-USD", Symbol: req.Symbol, Kind: market.KindSnapshot, RecvTS: recv, Price: 1, Size: 1}
	return append(out, t), nil
}

func (f *replayTestFeed) Reset() { f.mu.Lock(); f.resets++; f.mu.Unlock() }

var (
	replayFeedsMu sync.Mutex
	replayFeeds   []*replayTestFeed
)

func init() {
	RegisterVenue(VenueInfo{Name: "replaytest", New: func(FeedConfig) (Feed, error) {
		f := &replayTestFeed{}
		replayFeedsMu.Lock()
		replayFeeds = append(replayFeeds, f)
		replayFeedsMu.Unlock()
		return f, nil
	}})
}

// TestReplayAnyFeed drives a registered non-Binance Feed with both
// formats: hftbacktest ns lines and cryptofeed lines, a Python bytes
// literal (binary frame), connection and client lines, REST snapshots.
func TestReplayAnyFeed(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	bin := gz(`{"ch":"market.btcusdt.trade.detail"}` + "\n'\\")
	lit := "b'"
	for _, c := range bin {
		lit += fmt.Sprintf("\\x%02x", c)
	}
	lit += "'"
	a := writeCapture(t, "capture_a.gz", true,
		`1700000000000000000 {"a":1}`,
		`https://api.example.com/v1/book?currency_pair=BTC_USDT&limit=5 -> 1700000000.5: {"bids":[]}`,
		`1700000001000000000 {"a":2}`,
	)
	b := writeCapture(t, "capture_b.txt", false,
		"wss://example.com/ws <-> 1700000000.1",
		`wss://example.com/ws <- 1700000000.2: {"sub":"x"}`,
		"1700000000.25: "+lit,
		`https://www.example.com/api/v2/order_book/btcusd -> 1700000000.75: {"bids":[]}`,
	)
	replayFeedsMu.Lock()
	replayFeeds = nil
	replayFeedsMu.Unlock()
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{a, b}, Venue: "replaytest"}, nil))
	replayFeedsMu.Lock()
	feeds := replayFeeds
	replayFeedsMu.Unlock()
	// One feed validated the venue in NewReplayer, one decoded.
	f := feeds[len(feeds)-1]
	if len(ticks) != 5 {
		t.Fatalf("%d ticks, want 5", len(ticks))
	}
	wantRecv := []int64{1700000000_000000000, 1700000000_250000000, 1700000000_500000000, 1700000000_750000000, 1700000001_000000000}
	for i, tk := range ticks {
		if tk.RecvTS != wantRecv[i] {
			t.Errorf("tick %d recv %d, want %d", i, tk.RecvTS, wantRecv[i])
		}
	}
	if len(f.frames) != 3 || f.frames[0] != `{"a":1}` || f.frames[1] != string(bin) || f.frames[2] != `{"a":2}` {
		t.Errorf("frames %q", f.frames)
	}
	if len(f.snaps) != 2 || f.snaps[0].Symbol != "BTC_USDT" || !strings.HasPrefix(f.snaps[0].URL, "https://api.example.com/v1/book?") || f.snaps[1].Symbol != "btcusd" {
		t.Errorf("snapshots %+v", f.snaps)
	}
	if f.resets != 0 {
		t.Errorf("%d resets in one pass", f.resets)
	}
	// A looping replay starts every later pass from fresh books.
	collect(t, newReplayer(t, ReplayConfig{Paths: []string{a, b}, Venue: "replaytest", Loop: true, Limit: 12}, nil))
	replayFeedsMu.Lock()
	f = replayFeeds[len(replayFeeds)-1]
	replayFeedsMu.Unlock()
	if f.resets != 2 {
		t.Errorf("%d resets over three passes, want 2", f.resets)
	}
	if _, err := NewReplayer(ReplayConfig{Paths: []string{a}, Venue: "nosuchvenue"}, nil, nil); err == nil || !strings.Contains(err.Error(), "unknown venue") {
		t.Errorf("unknown venue: %v", err)
	}
	if _, err := NewReplayer(ReplayConfig{Paths: []string{a}, Venue: "binance", Market: MarketUSDM}, nil, nil); err == nil {
		t.Error("Venue binance with Market usdm accepted")
	}
}

func TestPyBytesLiteral(t *testing.T) {
	for in, want := range map[string]string{
		`b'abc'`:              "abc",
		`b'\x1f\x8b\x00'`:     "\x1f\x8b\x00",
		`b'a\'b\\c\n\r\t"'`:   "a'b\\c\n\r\t\"",
		`b"it's"`:             "it's",
		`b'bad\x1'`:           "<nil>",
		`b'bad\q'`:            "<nil>",
		`{"not":"a literal"}`: "<nil>",
	} {
		got, ok := pyBytesLiteral([]byte(in), nil)
		s := string(got)
		if !ok {
			s = "<nil>"
		}
		if s != want {
			t.Errorf("%s: %q, want %q", in, s, want)
		}
	}
}
