package ingest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// TestBinanceParseBatch: ParseBatch gives, frame by frame, exactly the
// ticks Parse gives, on the excerpts and with malformed frames mixed in.
func TestBinanceParseBatch(t *testing.T) {
	if !simdjson.SupportedCPU() {
		t.Skip("CPU lacks AVX2/CLMUL: ParseBatch is Parse frame by frame")
	}
	for name, mkt := range testdataCaptures {
		frames := readCaptureFrames(t, name)
		var bodies [][]byte
		var recvs []int64
		for i, f := range frames {
			bodies = append(bodies, []byte(f.body))
			recvs = append(recvs, f.recv)
			if i%97 == 5 {
				// malformed ones in between
				bodies = append(bodies, []byte(`{"e":"trade","s":"BTCUSDT","t":1,"p":"x","q":"1","m":true}`), []byte(`{"e":`))
				recvs = append(recvs, f.recv, f.recv)
			}
		}
		one, _ := NewBinanceParser(BinanceConfig{Market: mkt}, nil)
		batch, _ := NewBinanceParser(BinanceConfig{Market: mkt}, nil)
		var want []market.Tick
		var wantEnds []int
		for i := range bodies {
			want, _ = one.Parse(recvs[i], bodies[i], want)
			wantEnds = append(wantEnds, len(want))
		}
		var got []market.Tick
		var ends []int
		for start := 0; start < len(bodies); start += 64 {
			end := min(start+64, len(bodies))
			var e []int
			got, e = batch.ParseBatch(recvs[start:end], bodies[start:end], got, e[:0])
			ends = append(ends, e...)
		}
		if len(ends) == len(wantEnds) {
			for i := range ends {
				if ends[i] != wantEnds[i] {
					t.Fatalf("frame %d ends at %d, want %d: %.300s", i, ends[i], wantEnds[i], bodies[i])
				}
			}
		}
		if !bytes.Equal(encodeTicks(got), encodeTicks(want)) || len(ends) != len(wantEnds) {
			t.Fatalf("%s: batch gives %d ticks, %d ends; want %d, %d", name, len(got), len(ends), len(want), len(wantEnds))
		}
		if batch.jpBatch == nil || batch.jpBatch.pj == nil {
			t.Fatalf("%s: no batch went through one simdjson-go call", name)
		}
	}
}

// BenchmarkBinanceParseBatch compares per-frame simdjson-go parsing with
// batches of 64 frames in one ParseND call, and the fallback scanner, on
// the trade frames of the excerpts (one op = one frame).
func BenchmarkBinanceParseBatch(b *testing.B) {
	frames := benchFrames(b, func(s string) bool { return strings.Contains(s, "@trade") })
	recvs := make([]int64, len(frames))
	for _, c := range []struct {
		name     string
		batch    int
		fallback bool
	}{{"simdjson-frame", 1, false}, {"simdjson-batch16", 16, false}, {"simdjson-batch32", 32, false}, {"simdjson-batch64", 64, false}, {"simdjson-batch256", 256, false}, {"fallback-frame", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			p, _ := NewBinanceParser(BinanceConfig{Market: MarketSpot, ForceFallback: c.fallback}, nil)
			out := make([]market.Tick, 0, 4096)
			ends := make([]int, 0, 4096)
			b.ReportAllocs()
			j := 0
			for i := 0; i < b.N; i += c.batch {
				n := min(c.batch, b.N-i, len(frames)-j)
				if n == 1 {
					out, _ = p.Parse(0, frames[j], out[:0])
				} else {
					out, ends = p.ParseBatch(recvs[j:j+n], frames[j:j+n], out[:0], ends[:0])
				}
				if j += n; j == len(frames) {
					j = 0
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
