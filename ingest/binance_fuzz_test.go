package ingest

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// FuzzBinanceParse feeds arbitrary bytes to both JSON paths of both markets,
// as frames and as snapshot bodies: no panic, the same success or failure
// (with the same reason and field), and bit-identical ticks.
//
//	go test ./ingest -run '^$' -fuzz FuzzBinanceParse -fuzztime 60s
func FuzzBinanceParse(f *testing.F) {
	for name := range testdataCaptures {
		frames := readCaptureFrames(f, name)
		for i, fr := range frames {
			if i%7 == 0 || i < 20 {
				f.Add([]byte(fr.body))
			}
		}
	}
	for _, s := range []string{
		``, `{}`, `[]`, `{"data":{}}`, `{"result":null,"id":1}`, "{\"m\":true\x00}", `{"a":"\ud83d\u0041"}`,
		`{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":2,"m":true}`,
		`{"e":"trade","s":"A\u00e9USDT","t":-0,"p":"0x1p-2","q":"1e-400","m":false,"x":[1,{"y":[true,false,null]}]}`,
		`{"stream":"ethbtc@depth5@100ms","data":{"lastUpdateId":160,"bids":[["0.0024","10",[]]],"asks":[]}}`,
		`{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1","2"],{}],"a":[["1"]]}`,
		`{"lastUpdateId":1,"bids":[],"asks":[["1","2"]]}`,
	} {
		f.Add([]byte(s))
	}
	type pair struct{ simd, fb *BinanceParser }
	var ps []pair
	for _, mkt := range []string{MarketSpot, MarketUSDM} {
		fb, err := NewBinanceParser(BinanceConfig{Market: mkt, ForceFallback: true}, nil)
		if err != nil {
			f.Fatal(err)
		}
		var sp *BinanceParser
		if simdjson.SupportedCPU() {
			if sp, err = NewBinanceParser(BinanceConfig{Market: mkt}, nil); err != nil {
				f.Fatal(err)
			}
		}
		ps = append(ps, pair{sp, fb})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, p := range ps {
			for _, snapshot := range []bool{false, true} {
				run := func(bp *BinanceParser) ([]market.Tick, error) {
					if snapshot {
						return bp.ParseSnapshot(1, "BTCUSDT", data, nil)
					}
					return bp.Parse(1, data, nil)
				}
				fbTicks, fbErr := run(p.fb)
				if fbErr != nil && !errors.Is(fbErr, ErrMalformed) {
					t.Fatalf("fallback: unexpected error type %v", fbErr)
				}
				if p.simd == nil {
					continue
				}
				sTicks, sErr := run(p.simd)
				if (sErr == nil) != (fbErr == nil) {
					t.Fatalf("%s snapshot=%v: simdjson err %v, fallback err %v\ninput %q", p.fb.market, snapshot, sErr, fbErr, data)
				}
				if sErr != nil {
					var a, b *ParseError
					errors.As(sErr, &a)
					errors.As(fbErr, &b)
					if a == nil || b == nil || *a != *b {
						t.Fatalf("%s snapshot=%v: simdjson err %v, fallback err %v\ninput %q", p.fb.market, snapshot, sErr, fbErr, data)
					}
					continue
				}
				if !bytes.Equal(encodeTicks(sTicks), encodeTicks(fbTicks)) {
					t.Fatalf("%s snapshot=%v: ticks differ\nsimdjson %+v\nfallback %+v\ninput %q", p.fb.market, snapshot, sTicks, fbTicks, data)
				}
			}
		}
	})
}

// encodeTicks is the wire encoding of ts with IngestTS cleared (it is the
// replay wall-clock time, not content).
func encodeTicks(ts []market.Tick) []byte {
	var b []byte
	for _, t := range ts {
		t.IngestTS = 0
		b = t.AppendBinary(b)
	}
	return b
}

// TestBinancePathsAgreeOnMutations is a deterministic, JSON-aware version of
// the fuzz target that runs with every go test: it mutates real and
// hand-written frames with bytes from the JSON alphabet and requires both
// paths to agree on each result.
func TestBinancePathsAgreeOnMutations(t *testing.T) {
	if !simdjson.SupportedCPU() {
		t.Skip("CPU lacks AVX2/CLMUL: no simdjson path to compare with")
	}
	seeds := []string{
		`{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":2,"m":true}`,
		`{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1.5","q":"2","T":2,"m":true,"X":"MARKET"}}`,
		`{"u":1,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}`,
		`{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1","2"],["3","4"]],"a":[["5","0"]]}`,
		`{"stream":"ethbtc@depth5","data":{"lastUpdateId":160,"bids":[["0.0024","10"]],"asks":[["0.0026","100"]]}}`,
		`{"e":"kline","E":1,"k":{"a":[1,-2.5e3,true,false,null,"\u00e9\ud83d\ude00\n"]}}`,
	}
	for name := range testdataCaptures {
		for i, fr := range readCaptureFrames(t, name) {
			if i%50 == 0 && len(fr.body) < 4096 {
				seeds = append(seeds, fr.body)
			}
		}
	}
	alphabet := []byte("{}[]\",:\\ \t\n.-+eE0123456789truefalsnupbaABsdxX/\x01\x7f\xff\xc2\xa0")
	tokens := []string{`\u`, `\ud83d`, `\ude00`, `\u0041`, `true`, `null`, `false`, `"e":"trade"`, `"p":`, `"data":`,
		`[["1","2"]]`, `{}`, `[]`, `1e400`, `-0`, `01`, `"\"`, `18446744073709551616`, `-9223372036854775809`, `1.`, `.5`}
	ps := parsers(t, MarketSpot, nil)
	simd, fb := ps["simdjson"], ps["fallback"]
	rng := rand.New(rand.NewPCG(7, 11))
	n := 0
	iters := 200000
	if v, err := strconv.Atoi(os.Getenv("SIGNALD_MUTATIONS")); err == nil && v > 0 {
		iters = v
	}
	for iter := 0; iter < iters; iter++ {
		b := []byte(seeds[rng.IntN(len(seeds))])
		for k := 1 + rng.IntN(3); k > 0; k-- {
			pos := rng.IntN(len(b) + 1)
			switch rng.IntN(5) {
			case 0: // insert a byte
				b = append(b[:pos], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[pos:]...)...)
			case 1: // delete
				if pos < len(b) {
					b = append(b[:pos], b[pos+1:]...)
				}
			case 2: // replace
				if pos < len(b) {
					b[pos] = alphabet[rng.IntN(len(alphabet))]
				}
			case 3: // insert a token
				b = append(b[:pos], append([]byte(tokens[rng.IntN(len(tokens))]), b[pos:]...)...)
			case 4: // truncate
				b = b[:pos]
			}
		}
		for _, snapshot := range []bool{false, true} {
			var st, ft []market.Tick
			var se, fe error
			if snapshot {
				st, se = simd.ParseSnapshot(1, "BTCUSDT", b, nil)
				ft, fe = fb.ParseSnapshot(1, "BTCUSDT", b, nil)
			} else {
				st, se = simd.Parse(1, b, nil)
				ft, fe = fb.Parse(1, b, nil)
			}
			var sp, fp *ParseError
			errors.As(se, &sp)
			errors.As(fe, &fp)
			if (se == nil) != (fe == nil) || (sp != nil && (fp == nil || *sp != *fp)) {
				t.Fatalf("paths disagree on %q (snapshot=%v): simdjson %v, fallback %v", b, snapshot, se, fe)
			}
			if !bytes.Equal(encodeTicks(st), encodeTicks(ft)) {
				t.Fatalf("ticks differ on %q: %+v vs %+v", b, st, ft)
			}
			if se == nil {
				n++
			}
		}
	}
	t.Logf("%d of %d mutated inputs parsed", n, 2*iters)
}
