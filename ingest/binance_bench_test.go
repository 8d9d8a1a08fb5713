package ingest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// benchFrames returns the frames of the excerpts whose stream matches.
func benchFrames(b *testing.B, match func(body string) bool) [][]byte {
	var out [][]byte
	for _, name := range []string{"binance_spot_btcusdt_20240808_head1500.gz", "binance_usdm_btcusdt_20240808_head1500.gz"} {
		for _, f := range readCaptureFrames(b, name) {
			if match(f.body) {
				out = append(out, []byte(f.body))
			}
		}
	}
	if len(out) == 0 {
		b.Fatal("no frames")
	}
	return out
}

func benchParse(b *testing.B, frames [][]byte) {
	paths := []struct {
		name     string
		fallback bool
	}{{"simdjson", false}, {"fallback", true}}
	for _, path := range paths {
		b.Run(path.name, func(b *testing.B) {
			if !path.fallback && !simdjson.SupportedCPU() {
				b.Skip("CPU lacks AVX2/CLMUL")
			}
			ps := map[string]*BinanceParser{}
			for _, mk := range []string{MarketSpot, MarketUSDM} {
				p, err := NewBinanceParser(BinanceConfig{Market: mk, ForceFallback: path.fallback}, nil)
				if err != nil {
					b.Fatal(err)
				}
				ps[mk] = p
			}
			// Frames of both markets: route by the futures-only fields.
			route := make([]*BinanceParser, len(frames))
			bytesTotal := 0
			for i, f := range frames {
				route[i] = ps[MarketSpot]
				if s := string(f); strings.Contains(s, `"X":"MARKET"`) || strings.Contains(s, `"pu":`) || strings.Contains(s, `"e":"bookTicker"`) {
					route[i] = ps[MarketUSDM]
				}
				bytesTotal += len(f)
			}
			out := make([]market.Tick, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(bytesTotal / len(frames)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(frames)
				var err error
				out, err = route[j].Parse(int64(i), frames[j], out[:0])
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkBinanceParse parses the trade frames of the excerpts (spot and
// USD-M) with each JSON path.
func BenchmarkBinanceParse(b *testing.B) {
	benchParse(b, benchFrames(b, func(s string) bool { return strings.Contains(s, "@trade") }))
}

// BenchmarkBinanceParseDepth parses the depth diff frames (one tick per level).
func BenchmarkBinanceParseDepth(b *testing.B) {
	benchParse(b, benchFrames(b, func(s string) bool { return strings.Contains(s, "@depth") }))
}

// BenchmarkBinanceParseBookTicker parses the bookTicker frames.
func BenchmarkBinanceParseBookTicker(b *testing.B) {
	benchParse(b, benchFrames(b, func(s string) bool { return strings.Contains(s, "@bookTicker") }))
}

func BenchmarkParseDecimal(b *testing.B) {
	vals := [][]byte{[]byte("61837.63000000"), []byte("0.02000000"), []byte("61800.30"), []byte("0.006"), []byte("3.78826000")}
	b.Run("parseDecimal", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok := parseDecimal(vals[i%len(vals)]); !ok {
				b.Fatal("parse")
			}
		}
	})
	b.Run("strconv", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := strconv.ParseFloat(string(vals[i%len(vals)]), 64); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBinanceParseSnapshot parses the 2000-level REST snapshot (about
// 64 KB) of the spot excerpt.
func BenchmarkBinanceParseSnapshot(b *testing.B) {
	var body []byte
	for _, f := range readCaptureFrames(b, "binance_spot_btcusdt_20240808_head1500.gz") {
		if strings.HasPrefix(f.body, `{"lastUpdateId"`) {
			body = []byte(f.body)
		}
	}
	for _, path := range []struct {
		name     string
		fallback bool
	}{{"simdjson", false}, {"fallback", true}} {
		b.Run(path.name, func(b *testing.B) {
			if !path.fallback && !simdjson.SupportedCPU() {
				b.Skip("CPU lacks AVX2/CLMUL")
			}
			p, err := NewBinanceParser(BinanceConfig{Market: MarketSpot, ForceFallback: path.fallback}, nil)
			if err != nil {
				b.Fatal(err)
			}
			out := make([]market.Tick, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i++ {
				if out, err = p.ParseSnapshot(1, "BTCUSDT", body, out[:0]); err != nil || len(out) != 2000 {
					b.Fatal(err, len(out))
				}
			}
		})
	}
}
