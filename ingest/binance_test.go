package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

// parsers returns the parsers to compare: the simdjson one (when the CPU
// supports it) and the fallback one, sharing m.
func parsers(t testing.TB, mkt string, m *Metrics) map[string]*BinanceParser {
	t.Helper()
	out := map[string]*BinanceParser{}
	fb, err := NewBinanceParser(BinanceConfig{Market: mkt, ForceFallback: true}, m)
	if err != nil {
		t.Fatal(err)
	}
	if fb.SIMD() {
		t.Fatal("ForceFallback parser uses simdjson")
	}
	out["fallback"] = fb
	if simdjson.SupportedCPU() {
		sp, err := NewBinanceParser(BinanceConfig{Market: mkt}, m)
		if err != nil {
			t.Fatal(err)
		}
		if !sp.SIMD() {
			t.Fatal("parser on a supported CPU does not use simdjson")
		}
		out["simdjson"] = sp
	}
	return out
}

func withID(t market.Tick) market.Tick {
	t.IngestTS = t.RecvTS
	t.ComputeID()
	return t
}

func TestBinanceKnownFrames(t *testing.T) {
	const recv = int64(1723161254087896568)
	type tc struct {
		name, mkt, frame string
		want             []market.Tick
	}
	cases := []tc{
		{
			// hftbacktest spot: m=true → the buyer is the maker → taker SELL; T wins over E.
			name: "spot trade", mkt: MarketSpot,
			frame: `{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance", Instrument: "BTC-USDT", Symbol: "BTCUSDT", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1723161255342_000000, RecvTS: recv, Price: 61837.63, Size: 0.02, TradeID: 3735683259})},
		},
		{
			// hftbacktest USD-M: m=false → taker BUY; X=MARKET.
			name: "usdm trade", mkt: MarketUSDM,
			frame: `{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256321,"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":false}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1723161256321_000000, RecvTS: recv, Price: 61800.3, Size: 0.006, TradeID: 5266583935})},
		},
		{
			name: "usdm insurance fund trade", mkt: MarketUSDM,
			frame: `{"e":"trade","E":1723161256322,"T":1723161256321,"s":"BTCUSDT","t":7,"p":"61800.30","q":"0.006","X":"INSURANCE_FUND","m":true}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindLiquidation, Side: market.SideSell,
				ExchTS: 1723161256321_000000, RecvTS: recv, Price: 61800.3, Size: 0.006, TradeID: 7})},
		},
		{name: "usdm ADL trade ignored", mkt: MarketUSDM,
			frame: `{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":7,"p":"1","q":"1","X":"ADL","m":true}`},
		{
			// cryptofeed spot aggTrade: TradeID is a, not f/l.
			name: "spot aggTrade", mkt: MarketSpot,
			frame: `{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance", Instrument: "NKN-USDT", Symbol: "NKNUSDT", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 1633998523963_000000, RecvTS: recv, Price: 0.3528, Size: 58, TradeID: 15683430})},
		},
		{
			name: "usdm aggTrade", mkt: MarketUSDM,
			frame: `{"stream":"ctkusdt@aggTrade","data":{"e":"aggTrade","E":1626992741575,"a":16599292,"s":"CTKUSDT","p":"1.01100","q":"10","f":23961322,"l":23961322,"T":1626992741421,"m":true}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "CTK-USDT-PERP", Symbol: "CTKUSDT", Kind: market.KindTrade, Side: market.SideSell,
				ExchTS: 1626992741421_000000, RecvTS: recv, Price: 1.011, Size: 10, TradeID: 16599292})},
		},
		{
			// spot bookTicker has no e, E or T: ExchTS 0.
			name: "spot bookTicker", mkt: MarketSpot,
			frame: `{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance", Instrument: "BTC-USDT", Symbol: "BTCUSDT", Kind: market.KindQuote, RecvTS: recv,
				BidPx: 61837.63, BidSz: 3.78826, AskPx: 61837.64, AskSz: 1.54698, Seq: 50093239212})},
		},
		{
			name: "spot bookTicker bare", mkt: MarketSpot,
			frame: `{"u":499869768,"s":"BLZETH","b":"0.35210000","B":"672.00000000","a":"0.35260000","A":"3199.00000000"}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance", Instrument: "BLZ-ETH", Symbol: "BLZETH", Kind: market.KindQuote, RecvTS: recv,
				BidPx: 0.3521, BidSz: 672, AskPx: 0.3526, AskSz: 3199, Seq: 499869768})},
		},
		{
			name: "usdm bookTicker", mkt: MarketUSDM,
			frame: `{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256314}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindQuote, RecvTS: recv,
				ExchTS: 1723161256313_000000, BidPx: 61800.2, BidSz: 2.507, AskPx: 61800.3, AskSz: 2.51, Seq: 5123107839020})},
		},
		{
			// spot depthUpdate: E only; bids then asks, size 0 kept (removes the level).
			name: "spot depthUpdate", mkt: MarketSpot,
			frame: `{"stream":"runeeur@depth@100ms","data":{"e":"depthUpdate","E":1633998513369,"s":"RUNEEUR","U":499869765,"u":499869767,"b":[["0.35120000","6567.00000000"],["0.35080000","8246.00000000"]],"a":[["0.35340000","0.00000000"]]}}`,
			want: func() []market.Tick {
				b := market.Tick{Venue: "binance", Instrument: "RUNE-EUR", Symbol: "RUNEEUR", Kind: market.KindBookDelta, ExchTS: 1633998513369_000000, RecvTS: recv, Seq: 499869767}
				t1, t2, t3 := b, b, b
				t1.Side, t1.Price, t1.Size = market.SideBuy, 0.3512, 6567
				t2.Side, t2.Price, t2.Size = market.SideBuy, 0.3508, 8246
				t3.Side, t3.Price, t3.Size = market.SideSell, 0.3534, 0
				return []market.Tick{withID(t1), withID(t2), withID(t3)}
			}(),
		},
		{
			// USD-M depthUpdate with pu; T wins over E.
			name: "usdm depthUpdate", mkt: MarketUSDM,
			frame: `{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,"T":1723161256298,"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,"b":[["58710.20","0.014"]],"a":[["61800.30","0.000"],["61801.00","1.5"]]}}`,
			want: func() []market.Tick {
				b := market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindBookDelta, ExchTS: 1723161256298_000000, RecvTS: recv, Seq: 5123107837557}
				t1, t2, t3 := b, b, b
				t1.Side, t1.Price, t1.Size = market.SideBuy, 58710.2, 0.014
				t2.Side, t2.Price, t2.Size = market.SideSell, 61800.3, 0
				t3.Side, t3.Price, t3.Size = market.SideSell, 61801, 1.5
				return []market.Tick{withID(t1), withID(t2), withID(t3)}
			}(),
		},
		{
			name: "quarterly future", mkt: MarketUSDM,
			frame: `{"e":"aggTrade","E":1,"a":2,"s":"BTCUSDT_240927","p":"1.5","q":"2","f":1,"l":1,"T":3,"m":false}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-240927", Symbol: "BTCUSDT_240927", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 3_000000, RecvTS: recv, Price: 1.5, Size: 2, TradeID: 2})},
		},
		{
			// spot partial depth: no symbol in the payload, taken from the stream name.
			name: "spot partial depth", mkt: MarketSpot,
			frame: `{"stream":"ethbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}`,
			want: func() []market.Tick {
				b := market.Tick{Venue: "binance", Instrument: "ETH-BTC", Symbol: "ETHBTC", Kind: market.KindSnapshot, RecvTS: recv, Seq: 160}
				t1, t2 := b, b
				t1.Side, t1.Price, t1.Size = market.SideBuy, 0.0024, 10
				t2.Side, t2.Price, t2.Size = market.SideSell, 0.0026, 100
				return []market.Tick{withID(t1), withID(t2)}
			}(),
		},
		{
			name: "usdm partial depth", mkt: MarketUSDM,
			frame: `{"stream":"btcusdt@depth5","data":{"e":"depthUpdate","E":5,"T":4,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.0","2.0"]],"a":[]}}`,
			want: []market.Tick{withID(market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindSnapshot, Side: market.SideBuy,
				ExchTS: 4_000000, RecvTS: recv, Price: 1, Size: 2, Seq: 2})},
		},
		{name: "kline ignored", mkt: MarketSpot,
			frame: `{"stream":"nknusdt@kline_1m","data":{"e":"kline","E":1633998514000,"s":"NKNUSDT","k":{"t":1633998480000,"T":1633998539999,"s":"NKNUSDT","i":"1m","o":"0.35060000","x":false}}}`},
		{name: "subscribe response ignored", mkt: MarketSpot, frame: `{"result":null,"id":1}`},
		{name: "empty depthUpdate", mkt: MarketSpot,
			frame: `{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":1,"b":[],"a":[]}`},
		{
			name: "escapes and unknown quote", mkt: MarketSpot,
			frame: " \n{\"e\":\"tr\\u0061de\",\"E\":1,\"s\":\"FOO\\u00e9\",\"t\":1,\"p\":\"1e2\",\"q\":\"0.5\",\"T\":2,\"m\":false,\"x\":[{\"y\":null},true,-1.5e3]}\r\n",
			want: []market.Tick{withID(market.Tick{Venue: "binance", Instrument: "FOOé", Symbol: "FOOé", Kind: market.KindTrade, Side: market.SideBuy,
				ExchTS: 2_000000, RecvTS: recv, Price: 100, Size: 0.5, TradeID: 1})},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for path, p := range parsers(t, c.mkt, nil) {
				prefix := []market.Tick{{ID: 42}}
				got, err := p.Parse(recv, []byte(c.frame), prefix)
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if got[0].ID != 42 {
					t.Fatalf("%s: Parse changed the ticks it appends to", path)
				}
				got = got[1:]
				if len(got) != len(c.want) {
					t.Fatalf("%s: got %d ticks, want %d: %+v", path, len(got), len(c.want), got)
				}
				for i := range got {
					if got[i] != c.want[i] {
						t.Errorf("%s: tick %d:\n got %+v\nwant %+v", path, i, got[i], c.want[i])
					}
				}
			}
		})
	}
}

func TestBinanceParseSnapshot(t *testing.T) {
	spot := `{"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],["61837.62000000","0.61700000"]],"asks":[["61837.64000000","1.54698000"]]}`
	usdm := `{"lastUpdateId":5123107852948,"E":1723161256501,"T":1723161256493,"bids":[["61800.20","2.909"]],"asks":[["61800.30","0.5"]]}`
	for path, p := range parsers(t, MarketSpot, nil) {
		got, err := p.ParseSnapshot(7, "BTCUSDT", []byte(spot), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b := market.Tick{Venue: "binance", Instrument: "BTC-USDT", Symbol: "BTCUSDT", Kind: market.KindSnapshot, RecvTS: 7, Seq: 50093239218}
		w1, w2, w3 := b, b, b
		w1.Side, w1.Price, w1.Size = market.SideBuy, 61837.63, 3.78826
		w2.Side, w2.Price, w2.Size = market.SideBuy, 61837.62, 0.617
		w3.Side, w3.Price, w3.Size = market.SideSell, 61837.64, 1.54698
		if want := []market.Tick{withID(w1), withID(w2), withID(w3)}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", path, got, want)
		}
		// Parse cannot know the symbol of a bare body.
		if _, err := p.Parse(7, []byte(spot), nil); !isReason(err, ReasonMissingSymbol) {
			t.Errorf("%s: Parse(bare snapshot) = %v, want missing_symbol", path, err)
		}
		if _, err := p.ParseSnapshot(7, "BTCUSDT", []byte(`{"e":"trade"}`), nil); !isReason(err, ReasonNotSnapshot) {
			t.Errorf("%s: ParseSnapshot(trade) = %v, want not_snapshot", path, err)
		}
		if _, err := p.ParseSnapshot(7, "", []byte(spot), nil); !isReason(err, ReasonBadSymbol) {
			t.Errorf("%s: ParseSnapshot(no symbol) = %v, want bad_symbol", path, err)
		}
	}
	for path, p := range parsers(t, MarketUSDM, nil) {
		got, err := p.ParseSnapshot(7, "BTCUSDT", []byte(usdm), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b := market.Tick{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: market.KindSnapshot, RecvTS: 7,
			ExchTS: 1723161256493_000000, Seq: 5123107852948}
		w1, w2 := b, b
		w1.Side, w1.Price, w1.Size = market.SideBuy, 61800.2, 2.909
		w2.Side, w2.Price, w2.Size = market.SideSell, 61800.3, 0.5
		if want := []market.Tick{withID(w1), withID(w2)}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", path, got, want)
		}
	}
}

func isReason(err error, r Reason) bool {
	var pe *ParseError
	return errors.As(err, &pe) && pe.Reason == r && errors.Is(err, ErrMalformed)
}

func TestBinanceMalformed(t *testing.T) {
	trade := `{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":2,"m":true}`
	cases := []struct {
		name, frame string
		reason      Reason
		field       string
	}{
		{"empty", ``, ReasonBadJSON, ""},
		{"spaces", " \n ", ReasonBadJSON, ""},
		{"truncated", trade[:len(trade)-10], ReasonBadJSON, ""},
		{"truncated wrapper", `{"stream":"btcusdt@trade","data":{"e":"trade"`, ReasonBadJSON, ""},
		{"not json", `hello`, ReasonBadJSON, ""},
		{"trailing garbage", trade + `x`, ReasonBadJSON, ""},
		{"two documents", trade + "\n" + trade, ReasonBadJSON, ""},
		{"trailing comma", `{"e":"trade",}`, ReasonBadJSON, ""},
		{"bad escape", `{"e":"tr\xade"}`, ReasonBadJSON, ""},
		{"control char", "{\"e\":\"tr\x01ade\"}", ReasonBadJSON, ""},
		{"nul after literal", "{\"m\":true\x00}", ReasonBadJSON, ""},
		{"leading zero", `{"e":"trade","t":01}`, ReasonBadJSON, ""},
		{"bad literal", `{"m":tru}`, ReasonBadJSON, ""},
		{"array root", `[1,2]`, ReasonBadType, "root"},
		{"string root", `"trade"`, ReasonBadJSON, ""},
		{"price as number", strings.Replace(trade, `"p":"1.5"`, `"p":1.5`, 1), ReasonBadType, "p"},
		{"trade id as string", strings.Replace(trade, `"t":1`, `"t":"1"`, 1), ReasonBadType, "t"},
		{"trade id negative", strings.Replace(trade, `"t":1`, `"t":-1`, 1), ReasonBadType, "t"},
		{"trade id float", strings.Replace(trade, `"t":1`, `"t":1.0`, 1), ReasonBadType, "t"},
		{"maker as string", strings.Replace(trade, `"m":true`, `"m":"true"`, 1), ReasonBadType, "m"},
		{"event as number", strings.Replace(trade, `"e":"trade"`, `"e":1`, 1), ReasonBadType, "e"},
		{"data not object", `{"stream":"x","data":[1]}`, ReasonBadType, "data"},
		{"stream not string", `{"stream":1,"data":{}}`, ReasonBadType, "stream"},
		{"missing price", strings.Replace(trade, `"p":"1.5",`, ``, 1), ReasonMissingField, "p"},
		{"missing symbol", strings.Replace(trade, `"s":"BTCUSDT",`, ``, 1), ReasonMissingField, "s"},
		{"missing maker", strings.Replace(trade, `,"m":true`, ``, 1), ReasonMissingField, "m"},
		{"missing event", `{"E":1,"s":"BTCUSDT"}`, ReasonMissingField, "e"},
		{"bookTicker missing ask size", `{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"1"}`, ReasonMissingField, "A"},
		{"depth missing asks", `{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[]}`, ReasonMissingField, "a"},
		{"depth level not pair", `{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1"]],"a":[]}`, ReasonBadType, "b"},
		{"depth level numbers", `{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[[1,2]],"a":[]}`, ReasonBadType, "b"},
		{"depth level bad number", `{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1","2"]],"a":[["1","x"]]}`, ReasonBadNumber, "a"},
		{"price junk", strings.Replace(trade, `"p":"1.5"`, `"p":"1.5x"`, 1), ReasonBadNumber, "p"},
		{"price empty", strings.Replace(trade, `"p":"1.5"`, `"p":""`, 1), ReasonBadNumber, "p"},
		{"price negative", strings.Replace(trade, `"p":"1.5"`, `"p":"-1.5"`, 1), ReasonBadNumber, "p"},
		{"price NaN", strings.Replace(trade, `"p":"1.5"`, `"p":"NaN"`, 1), ReasonBadNumber, "p"},
		{"price overflow", strings.Replace(trade, `"p":"1.5"`, `"p":"1e400"`, 1), ReasonBadNumber, "p"},
		{"time overflow", strings.Replace(trade, `"T":2`, `"T":18446744073709551615`, 1), ReasonBadNumber, "T"},
		{"event time overflow", `{"e":"trade","E":9223372036854776,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","m":true}`, ReasonBadNumber, "E"},
		{"event time as string", strings.Replace(trade, `"E":1`, `"E":"1"`, 1), ReasonBadType, "E"},
		{"duplicate field", strings.Replace(trade, `"p":"1.5"`, `"p":"1.5","p":"1.6"`, 1), ReasonDuplicateField, "p"},
		{"bad symbol", strings.Replace(trade, `"s":"BTCUSDT"`, `"s":"BTC USDT"`, 1), ReasonBadSymbol, "s"},
		{"empty symbol", strings.Replace(trade, `"s":"BTCUSDT"`, `"s":""`, 1), ReasonBadSymbol, "s"},
		{"invalid utf8 symbol", strings.Replace(trade, `"s":"BTCUSDT"`, "\"s\":\"BTC\xffUSDT\"", 1), ReasonBadSymbol, "s"},
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	ps := parsers(t, MarketSpot, m)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for path, p := range ps {
				before := testutil.ToFloat64(m.malformed.WithLabelValues("binance", c.reason.String()))
				prefix := []market.Tick{{ID: 1}, {ID: 2}}
				got, err := p.Parse(1, []byte(c.frame), prefix)
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("%s: err = %v, want a *ParseError", path, err)
				}
				if pe.Reason != c.reason || pe.Field != c.field || pe.Venue != "binance" {
					t.Errorf("%s: err = %v (reason %s field %q), want reason %s field %q", path, err, pe.Reason, pe.Field, c.reason, c.field)
				}
				if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 {
					t.Errorf("%s: out changed on error: %+v", path, got)
				}
				after := testutil.ToFloat64(m.malformed.WithLabelValues("binance", c.reason.String()))
				if after != before+1 {
					t.Errorf("%s: malformed counter %s went %v → %v, want +1", path, c.reason, before, after)
				}
			}
		})
	}
	if n := testutil.ToFloat64(m.frames.WithLabelValues("binance")); n != float64(len(cases)*len(ps)) {
		t.Errorf("frames_total = %v, want %d", n, len(cases)*len(ps))
	}
}

func TestBinanceIgnoredAndTickMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p, err := NewBinanceParser(BinanceConfig{Market: MarketUSDM}, m)
	if err != nil {
		t.Fatal(err)
	}
	frames := []string{
		`{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{}}}`,
		`{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1","r":"0.0001","T":2}`,
		`{"e":"somethingNew","E":1}`,
		`{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1,"T":1,"s":"FOOBAR","U":1,"u":2,"pu":0,"b":[["1","1"],["2","0"]],"a":[["3","1"]]}}`,
	}
	for _, f := range frames {
		if _, err := p.Parse(1, []byte(f), nil); err != nil {
			t.Fatal(err)
		}
	}
	for typ, want := range map[string]float64{"kline": 1, "markPriceUpdate": 1, "other": 1} {
		if got := testutil.ToFloat64(m.ignored.WithLabelValues("binance-usdm", typ)); got != want {
			t.Errorf("ignored{type=%s} = %v, want %v", typ, got, want)
		}
	}
	if got := testutil.ToFloat64(m.ticks.WithLabelValues("binance-usdm", "book_delta")); got != 3 {
		t.Errorf("ticks{kind=book_delta} = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.unnormalized.WithLabelValues("binance-usdm")); got != 1 {
		t.Errorf("unnormalized symbol frames = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.parserPath.WithLabelValues("binance-usdm", map[bool]string{true: "simdjson", false: "fallback"}[p.SIMD()])); got != 1 {
		t.Errorf("parser_info = %v, want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("gather: %d series, %v", n, err)
	}
}

func TestNewBinanceParserValidates(t *testing.T) {
	if _, err := NewBinanceParser(BinanceConfig{Market: "coinm"}, nil); err == nil || !strings.Contains(err.Error(), `"spot"`) {
		t.Errorf("err = %v, want one naming the supported markets", err)
	}
}

func TestNormalizeBinanceSymbol(t *testing.T) {
	cases := []struct {
		mkt, sym, want string
		ok             bool
	}{
		{MarketSpot, "BTCUSDT", "BTC-USDT", true},
		{MarketSpot, "ETHBTC", "ETH-BTC", true},
		{MarketSpot, "BTCFDUSD", "BTC-FDUSD", true},
		{MarketSpot, "BTCTUSD", "BTC-TUSD", true},
		{MarketSpot, "USDCUSDT", "USDC-USDT", true},
		{MarketSpot, "RUNEEUR", "RUNE-EUR", true},
		{MarketSpot, "BLZETH", "BLZ-ETH", true},
		{MarketSpot, "BNBBRL", "BNB-BRL", true},
		{MarketSpot, "WBETHETH", "WBETH-ETH", true},
		{MarketSpot, "USDT", "USDT", false},
		{MarketSpot, "FOOBAR", "FOOBAR", false},
		{MarketUSDM, "BTCUSDT", "BTC-USDT-PERP", true},
		{MarketUSDM, "1000PEPEUSDT", "1000PEPE-USDT-PERP", true},
		{MarketUSDM, "ETHUSDC", "ETH-USDC-PERP", true},
		{MarketUSDM, "BTCUSDT_240927", "BTC-USDT-240927", true},
		{MarketUSDM, "BTCUSDT_", "BTCUSDT_", false},
		{MarketUSDM, "BTCUSDT_X", "BTCUSDT_X", false},
		{MarketUSDM, "FOOBAR", "FOOBAR", false},
	}
	for _, c := range cases {
		got, ok := NormalizeBinanceSymbol(c.mkt, c.sym)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizeBinanceSymbol(%s, %s) = %q, %v; want %q, %v", c.mkt, c.sym, got, ok, c.want, c.ok)
		}
	}
}

// ---- the testdata excerpts ----

// captureFrame is one frame of a capture file, read independently of the
// replayer.
type captureFrame struct {
	file, mkt, body string
	recv            int64
	line            int
}

// testdataCaptures lists the excerpts with their market.
var testdataCaptures = map[string]string{
	"binance_spot_btcusdt_20240808_head1500.gz": MarketSpot,
	"binance_usdm_btcusdt_20240808_head1500.gz": MarketUSDM,
	"cryptofeed_BINANCE.ws.1.0":                 MarketSpot,
	"cryptofeed_BINANCE_FUTURES.ws.1.0_head400": MarketUSDM,
}

func testdataPath(name string) string {
	return filepath.Join("..", "testdata", "binance", name)
}

func readCaptureFrames(t testing.TB, name string) []captureFrame {
	t.Helper()
	raw, err := os.ReadFile(testdataPath(name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	var out []captureFrame
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "wss://") || line == "" {
			continue
		}
		var ts, body string
		var ok bool
		if strings.HasPrefix(name, "cryptofeed") {
			ts, body, ok = strings.Cut(line, ": ")
		} else {
			ts, body, ok = strings.Cut(line, " ")
		}
		if !ok {
			t.Fatalf("%s:%d: no timestamp", name, n)
		}
		out = append(out, captureFrame{file: name, mkt: testdataCaptures[name], body: body, line: n, recv: int64(n) * 1000})
		_ = ts
	}
	if len(out) == 0 {
		t.Fatalf("%s: no frames", name)
	}
	return out
}

// expectedCounts decodes a frame with encoding/json and counts the ticks the
// parser should produce, by kind.
func expectedCounts(t testing.TB, f captureFrame) (counts map[market.Kind]int, snapshot bool) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(f.body), &top); err != nil {
		t.Fatalf("%s:%d: %v", f.file, f.line, err)
	}
	ev := top
	if d, ok := top["data"]; ok {
		ev = nil
		if err := json.Unmarshal(d, &ev); err != nil {
			t.Fatalf("%s:%d: %v", f.file, f.line, err)
		}
	}
	levels := func(keys ...string) int {
		n := 0
		for _, k := range keys {
			var lv [][]string
			if err := json.Unmarshal(ev[k], &lv); err != nil {
				t.Fatalf("%s:%d: %s: %v", f.file, f.line, k, err)
			}
			n += len(lv)
		}
		return n
	}
	var e string
	_ = json.Unmarshal(ev["e"], &e)
	counts = map[market.Kind]int{}
	switch {
	case e == "trade" || e == "aggTrade":
		counts[market.KindTrade] = 1
	case e == "bookTicker" || (e == "" && ev["u"] != nil):
		counts[market.KindQuote] = 1
	case e == "depthUpdate":
		counts[market.KindBookDelta] = levels("b", "a")
	case e == "" && ev["lastUpdateId"] != nil:
		counts[market.KindSnapshot] = levels("bids", "asks")
		snapshot = true
	}
	return counts, snapshot
}

// TestBinanceTestdataBothPaths parses every frame of the excerpts with both
// JSON paths, requires identical ticks, and checks the tick counts per kind
// against an encoding/json decode of the same frames.
func TestBinanceTestdataBothPaths(t *testing.T) {
	if !simdjson.SupportedCPU() {
		t.Log("CPU lacks AVX2/CLMUL: only the fallback path is checked")
	}
	for name := range testdataCaptures {
		t.Run(name, func(t *testing.T) {
			frames := readCaptureFrames(t, name)
			ps := parsers(t, testdataCaptures[name], nil)
			got := map[market.Kind]int{}
			want := map[market.Kind]int{}
			var lastSymbol string
			bufs := map[string][]market.Tick{}
			for _, f := range frames {
				counts, snap := expectedCounts(t, f)
				for k, n := range counts {
					want[k] += n
				}
				var ref []market.Tick
				for path, p := range ps {
					var ticks []market.Tick
					var err error
					if snap {
						ticks, err = p.ParseSnapshot(f.recv, lastSymbol, []byte(f.body), bufs[path][:0])
					} else {
						ticks, err = p.Parse(f.recv, []byte(f.body), bufs[path][:0])
					}
					bufs[path] = ticks
					if err != nil {
						t.Fatalf("%s:%d %s: %v", name, f.line, path, err)
					}
					if ref == nil {
						ref = append([]market.Tick{}, ticks...)
						for _, tk := range ticks {
							got[tk.Kind]++
						}
					} else if !reflect.DeepEqual(ref, ticks) && !(len(ref) == 0 && len(ticks) == 0) {
						t.Fatalf("%s:%d: paths differ:\n%+v\n%+v", name, f.line, ref, ticks)
					}
				}
				if len(ref) > 0 {
					lastSymbol = ref[len(ref)-1].Symbol
				}
				for _, tk := range ref {
					if tk.Symbol == "" || tk.Instrument == tk.Symbol || tk.ID == 0 {
						t.Fatalf("%s:%d: badly normalized tick %+v", name, f.line, tk)
					}
					id := tk.ID
					tk.ComputeID()
					if tk.ID != id {
						t.Fatalf("%s:%d: ID is not the content hash", name, f.line)
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ticks per kind = %v, want %v", got, want)
			}
			t.Logf("%d frames, ticks per kind %v", len(frames), got)
		})
	}
}

// ---- decimal parsing ----

func TestParseDecimalMatchesStrconv(t *testing.T) {
	check := func(s string) {
		t.Helper()
		got, ok := parseDecimal([]byte(s))
		want, err := strconv.ParseFloat(s, 64)
		if ok != (err == nil) || (ok && math.Float64bits(got) != math.Float64bits(want)) {
			t.Fatalf("parseDecimal(%q) = %v, %v; strconv: %v, %v", s, got, ok, want, err)
		}
	}
	for _, s := range []string{"0", "0.0", "00", "0.00000000", "1", "1.", ".5", ".", "", "-", "+1", "-0", "-1.5",
		"61837.63000000", "0.00000001", "0.1", "0.2", "0.3", "9007199254740993", "9007199254740992",
		"9007199254740993.0", "1234567890123456789", "12345678901234567890", "0.1234567890123456789",
		"0.0000000000000000000000001", "1e5", "1E-5", "0x1p-2", "inf", "NaN", "1_0", "1..2", "1.2.3", " 1", "1 ",
		"179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000.0",
		"4.9406564584124654e-324", "2.2250738585072011e-308", "0.30000000000000004", "61800.30", "0.000", "58710.20"} {
		check(s)
	}
	// Random decimals shaped like venue prices and sizes, and random mantissas
	// near the fast path's limits.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300000; i++ {
		intDigits := rng.IntN(12)
		fracDigits := rng.IntN(20)
		var b strings.Builder
		for j := 0; j < intDigits; j++ {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if fracDigits > 0 || rng.IntN(2) == 0 {
			b.WriteByte('.')
		}
		for j := 0; j < fracDigits; j++ {
			if rng.IntN(4) == 0 {
				b.WriteByte('0')
			} else {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		check(b.String())
	}
	// Every price/size string in the excerpts.
	for name := range testdataCaptures {
		for _, f := range readCaptureFrames(t, name) {
			for _, s := range quotedNumbers(f.body) {
				check(s)
			}
		}
	}
}

// quotedNumbers returns the quoted strings of body that start with a digit.
func quotedNumbers(body string) []string {
	var out []string
	for {
		i := strings.IndexByte(body, '"')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(body[i+1:], '"')
		if j < 0 {
			return out
		}
		s := body[i+1 : i+1+j]
		if s != "" && s[0] >= '0' && s[0] <= '9' {
			out = append(out, s)
		}
		body = body[i+2+j:]
	}
}

func TestScanNumberFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := "0123456789000-+.eE"
	ends := []string{"", ",", "}", "]", " ", ":", "x", "\"", "\n"}
	for i := 0; i < 200000; i++ {
		var b []byte
		for n := 1 + rng.IntN(22); n > 0; n-- {
			if rng.IntN(5) == 0 {
				b = append(b, alphabet[rng.IntN(len(alphabet))])
			} else {
				b = append(b, byte('0'+rng.IntN(10)))
			}
		}
		b = append(b, ends[rng.IntN(len(ends))]...)
		c1, v1, n1 := scanNumber(b)
		c2, v2, n2 := scanNumberPort(b)
		if c1 != c2 || v1 != v2 || (c1 != numInvalid && n1 != n2) {
			t.Fatalf("scanNumber(%q) = %d,%d,%d; port %d,%d,%d", b, c1, v1, n1, c2, v2, n2)
		}
	}
}
