package ingest

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Venue benchmarks over testdata (see testdata/README.md, "Benchmark
// convention"): every registered Feed is run over the recorded lines of its
// files, on the simdjson-go path and on the fallback path in the same run.

// benchLine is one recorded frame or REST snapshot.
type benchLine struct {
	recv   int64
	body   []byte
	url    string // REST snapshot lines
	snap   bool
	binary bool // recorded as a Python bytes literal: a binary frame
}

// venueOfTestdata names the venue of a testdata file: cryptofeed names
// (KRAKEN.ws.50.0, cryptofeed_KRAKEN.ws.50.0_head300), else a
// <venue>_... prefix with '_' standing for '-' (binance_usdm_btcusdt... →
// binance-usdm), the longest registered venue winning.
func venueOfTestdata(name string) string {
	if v := VenueFromFileName(name); v != "" {
		return v
	}
	base := strings.ToLower(filepath.Base(name))
	best := ""
	for _, v := range FeedVenues() {
		p := strings.ReplaceAll(v, "-", "_") + "_"
		if strings.HasPrefix(base, p) && len(v) > len(best) {
			best = v
		}
	}
	return best
}

// benchLines reads every testdata file of venue, merged by receive time.
func benchLines(tb testing.TB, venue string) []benchLine {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "*", "*"))
	var out []benchLine
	for _, f := range files {
		if venueOfTestdata(f) != venue || strings.HasSuffix(f, ".md") {
			continue
		}
		if st, err := os.Stat(f); err != nil || st.Size() > 4<<20 {
			continue // the full-day captures are for the end-to-end tests
		}
		fh, err := os.Open(f)
		if err != nil {
			tb.Fatal(err)
		}
		rd, err := openCapture(fh)
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(rd)
		sc.Buffer(nil, 64<<20)
		var r Replayer
		for sc.Scan() {
			rec, ok := r.classify(sc.Bytes())
			if !ok || rec.kind == lineConnection || rec.kind == lineClientSend {
				continue
			}
			l := benchLine{recv: rec.recv, body: append([]byte(nil), rec.body...), url: string(rec.url), snap: rec.kind == lineSnapshot}
			if b, ok := pyBytesLiteral(l.body, nil); ok {
				l.body, l.binary = b, true
			}
			out = append(out, l)
		}
		fh.Close()
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].recv < out[j].recv })
	return out
}

// handleLine hands one line to f.
func handleLine(f Feed, l *benchLine, out []market.Tick) ([]market.Tick, error) {
	if l.snap {
		req := SnapshotRequest{URL: l.url}
		if sp, ok := f.(SnapshotSymbolParser); ok && l.url != "" {
			req.Symbol, _ = sp.SnapshotSymbol(l.url)
		} else if l.url != "" {
			req.Symbol = symbolFromURL(l.url)
		}
		return f.HandleSnapshot(l.recv, req, l.body, out)
	}
	return f.Handle(l.recv, l.body, out)
}

// BenchmarkFeeds runs every registered Feed over its testdata: "all" hands
// every recorded line in order (books synced; the feed is Reset at each
// wrap-around, off the clock), "trades" only the frames that yield a trade.
// One op is one message; msgs/s and allocs/op are per message.
func BenchmarkFeeds(b *testing.B) {
	for _, venue := range FeedVenues() {
		if venue == "replaytest" {
			continue
		}
		lines := benchLines(b, venue)
		if len(lines) == 0 {
			continue // no testdata yet
		}
		b.Run(venue, func(b *testing.B) {
			b.Run("speedup", func(b *testing.B) { benchSpeedup(b, venue, lines) })
			for _, path := range []struct {
				name     string
				fallback bool
			}{{"simdjson", false}, {"fallback", true}} {
				b.Run(path.name, func(b *testing.B) {
					if !path.fallback && !simdjson.SupportedCPU() {
						b.Skip("CPU lacks AVX2/CLMUL")
					}
					newFeed := func() Feed {
						f, err := NewFeed(venue, FeedConfig{ForceFallback: path.fallback})
						if err != nil {
							b.Fatal(err)
						}
						return f
					}
					// Pre-pass: which frames are trades.
					f := newFeed()
					var trades []benchLine
					var out []market.Tick
					for i := range lines {
						out, _ = handleLine(f, &lines[i], out[:0])
						for _, t := range out {
							if t.Kind == market.KindTrade && !lines[i].snap {
								trades = append(trades, lines[i])
								break
							}
						}
						f.SnapshotRequests(nil)
						f.Outbox(nil)
					}
					for _, set := range []struct {
						name  string
						lines []benchLine
					}{{"all", lines}, {"trades", trades}} {
						if len(set.lines) == 0 {
							continue
						}
						b.Run(set.name, func(b *testing.B) {
							f := newFeed()
							out := make([]market.Tick, 0, 4096)
							var reqs []SnapshotRequest
							var obox [][]byte
							bytesTotal := 0
							for _, l := range set.lines {
								bytesTotal += len(l.body)
							}
							b.SetBytes(int64(bytesTotal / len(set.lines)))
							b.ReportAllocs()
							b.ResetTimer()
							j := 0
							for i := 0; i < b.N; i++ {
								if j == len(set.lines) {
									b.StopTimer()
									f.Reset()
									j = 0
									b.StartTimer()
								}
								out, _ = handleLine(f, &set.lines[j], out[:0])
								reqs = f.SnapshotRequests(reqs[:0])
								obox = f.Outbox(obox[:0])
								j++
							}
							b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
						})
					}
				})
			}
		})
	}
}

// TestBenchConvention checks the testdata naming convention the benchmark
// relies on.
func TestBenchConvention(t *testing.T) {
	for name, want := range map[string]string{
		"binance_spot_btcusdt_20240808_head1500.gz": "binance",
		"binance_usdm_btcusdt_20240808_head1500.gz": "binance-usdm",
		"cryptofeed_BINANCE_FUTURES.http.0.0":       "binance-usdm",
		"kraken/KRAKEN.ws.50.0_head200":             "kraken",
		"README.md":                                 "",
	} {
		if got := venueOfTestdata(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if lines := benchLines(t, "binance"); len(lines) < 1000 || !bytes.HasPrefix(lines[0].body, []byte("{")) {
		t.Errorf("binance bench lines: %d", len(lines))
	}
}

// benchSpeedup runs both JSON paths over the same trade frames in the same
// benchmark, alternating in blocks, and reports simdjson's speed-up over the
// fallback (above 1: simdjson is faster) next to each path's ns per message.
func benchSpeedup(b *testing.B, venue string, lines []benchLine) {
	if !simdjson.SupportedCPU() {
		b.Skip("CPU lacks AVX2/CLMUL")
	}
	var feeds [2]Feed
	for i, fb := range []bool{false, true} {
		f, err := NewFeed(venue, FeedConfig{ForceFallback: fb})
		if err != nil {
			b.Fatal(err)
		}
		feeds[i] = f
	}
	var trades []benchLine
	var out []market.Tick
	for i := range lines {
		out, _ = handleLine(feeds[1], &lines[i], out[:0])
		for _, t := range out {
			if t.Kind == market.KindTrade && !lines[i].snap {
				trades = append(trades, lines[i])
				break
			}
		}
	}
	if len(trades) == 0 {
		b.Skip("no trade frames")
	}
	var spent [2]time.Duration
	const block = 256
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for p := range feeds {
			start := time.Now()
			for i := 0; i < n; i++ {
				out, _ = feeds[p].Handle(0, trades[(done+i)%len(trades)].body, out[:0])
			}
			spent[p] += time.Since(start)
		}
	}
	simd, fb := float64(spent[0])/float64(b.N), float64(spent[1])/float64(b.N)
	b.ReportMetric(simd, "simd-ns/msg")
	b.ReportMetric(fb, "fallback-ns/msg")
	b.ReportMetric(fb/simd, "speedup")
}
