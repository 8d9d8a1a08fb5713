package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"os"
	"slices"
	"testing"

	"github.com/minio/simdjson-go"
)

// TestJSONParserFallbackMatchesSIMD checks that both paths of JSONParser
// give the same tape, and the same verdict on a truncated frame, on Binance
// frames of every size (jsontape's own tests compare Build with simdjson-go
// on many more inputs).
func TestJSONParserFallbackMatchesSIMD(t *testing.T) {
	if !simdjson.SupportedCPU() {
		t.Skip("simdjson-go needs AVX2 and CLMUL")
	}
	simd, fb := NewJSONParser(false), NewJSONParser(true)
	if !simd.SIMD() || fb.SIMD() {
		t.Fatalf("SIMD() = %v, %v", simd.SIMD(), fb.SIMD())
	}
	f, err := os.Open("../testdata/binance/binance_usdm_btcusdt_20240808_head1500.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if _, fr, ok := bytes.Cut(sc.Bytes(), []byte(" ")); ok { // "<ns> <frame>"
			frames = append(frames, slices.Clone(fr))
		}
	}
	if err := sc.Err(); err != nil || len(frames) < 1000 {
		t.Fatalf("%d frames, %v", len(frames), err)
	}
	for _, fr := range append(frames, []byte(`{"a":`)) {
		a, aerr := simd.Parse(fr)
		b, berr := fb.Parse(fr)
		if (aerr == nil) != (berr == nil) {
			t.Fatalf("%.100q: errors %v / %v", fr, aerr, berr)
		}
		if aerr != nil {
			continue
		}
		if !slices.Equal(a.Tape, b.Tape) {
			t.Fatalf("%.100q: tapes differ", fr)
		}
	}
}
