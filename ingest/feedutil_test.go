package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Test helpers shared by the feed tests of every venue.

// goldenTick completes a hand-written expected tick: IngestTS is the
// receive time, ID the content hash.
func goldenTick(t Tick) Tick {
	t.IngestTS = t.RecvTS
	t.ComputeID()
	return t
}

// kindCounts counts ticks by kind.
func kindCounts(ticks []Tick) map[Kind]int {
	m := map[Kind]int{}
	for _, t := range ticks {
		m[t.Kind]++
	}
	return m
}

// fallbackWorks reports whether the portable JSON path is built (it lands
// with the json-tape branch).
func fallbackWorks() bool {
	var pj simdjson.ParsedJson
	return buildTape([]byte(`{"a":[1,"b"]}`), &pj) == nil
}

// pathAvailable reports whether the JSON path (ForceFallback value) can
// run here: simdjson-go where the CPU supports it, the fallback once built.
func pathAvailable(fallback bool) bool {
	if fallback {
		return fallbackWorks()
	}
	return simdjson.SupportedCPU()
}

// jsonPaths lists the JSON paths to test as ForceFallback values, skipping
// the test when neither is available.
func jsonPaths(t testing.TB) []bool {
	var out []bool
	for _, fb := range []bool{false, true} {
		if pathAvailable(fb) {
			out = append(out, fb)
		}
	}
	if !pathAvailable(true) {
		t.Logf("fallback JSON path not built yet (json-tape): testing simdjson-go only")
	}
	if len(out) == 0 {
		t.Skip("neither JSON path is available on this machine")
	}
	return out
}

// pathName names a JSON path in subtest names.
func pathName(fallback bool) string {
	if fallback {
		return "fallback"
	}
	return "simdjson"
}

type feedUnderTest struct {
	Feed
	m     *Metrics
	reg   *prometheus.Registry
	venue string
}

func (f feedUnderTest) resyncs(reason string) float64 {
	return testutil.ToFloat64(f.m.resyncs.WithLabelValues(f.venue, reason))
}

// malformedTotal sums signald_ingest_malformed_frames_total for the venue.
func (f feedUnderTest) malformedTotal() float64 {
	return counter(f.reg, "signald_ingest_malformed_frames_total", map[string]string{"venue": f.venue})
}

// resyncTotal sums signald_ingest_book_resyncs_total for the venue.
func (f feedUnderTest) resyncTotal() float64 {
	return counter(f.reg, "signald_ingest_book_resyncs_total", map[string]string{"venue": f.venue})
}

func (f feedUnderTest) ignored(typ string) float64 {
	return testutil.ToFloat64(f.m.ignored.WithLabelValues(f.venue, typ))
}

// counter sums the counter name over the series of reg whose labels
// include want (all of them for nil).
func counter(reg *prometheus.Registry, name string, want map[string]string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n := 0
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
					n++
				}
			}
			if n == len(want) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// resyncCount sums signald_ingest_book_resyncs_total in reg for reason
// ("" for every reason).
func resyncCount(reg *prometheus.Registry, reason string) float64 {
	l := map[string]string{}
	if reason != "" {
		l["reason"] = reason
	}
	return counter(reg, "signald_ingest_book_resyncs_total", l)
}

// malformedCount sums signald_ingest_malformed_frames_total in reg.
func malformedCount(reg *prometheus.Registry) float64 {
	return counter(reg, "signald_ingest_malformed_frames_total", nil)
}

// newFeedUnderTest builds venue's feed with its own registry and Metrics.
func newFeedUnderTest(t testing.TB, venue string, cfg FeedConfig) feedUnderTest {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = NewMetrics(reg)
	f, err := NewFeed(venue, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return feedUnderTest{Feed: f, m: cfg.Metrics, reg: reg, venue: venue}
}

// newTestFeed builds venue's feed with its own registry.
func newTestFeed(t testing.TB, venue string, cfg FeedConfig) (Feed, *prometheus.Registry) {
	t.Helper()
	f := newFeedUnderTest(t, venue, cfg)
	return f.Feed, f.reg
}

// feedsPerPath returns one feed per available JSON path ("simd", "fallback"),
// each with its own Metrics; no path available fails the test.
func feedsPerPath(t testing.TB, venue string, cfg FeedConfig) map[string]feedUnderTest {
	t.Helper()
	out := map[string]feedUnderTest{}
	for _, fb := range []bool{false, true} {
		if !pathAvailable(fb) {
			continue
		}
		c := cfg
		c.ForceFallback = fb
		name := "simd"
		if fb {
			name = "fallback"
		}
		out[name] = newFeedUnderTest(t, venue, c)
	}
	if len(out) == 0 {
		t.Fatal("no JSON path available")
	}
	return out
}

// capLine is one line of a cryptofeed capture: a received frame, a REST
// snapshot (url set), a connection line (conn) or a frame the client sent
// (sent); body is nil for the last two.
type capLine struct {
	line int    // line number in the file
	recv int64  // receipt time, ns
	url  string // REST captures: the URL requested
	body []byte // the frame received, or the REST body
	sent []byte // a frame the client sent
	conn bool   // a connection line
}

const sharedCaptures = "/work/shared/captures/cryptofeed"

// readCaptureAll reads a cryptofeed capture (plain or gzip): "<ts>: <frame>",
// "wss://... <-> <ts>", "wss://... <- <ts>: <sent>", and REST lines
// "<url> -> <ts>: <body>". Every line is kept, connection and client-send
// lines included.
func readCaptureAll(t testing.TB, path string) []capLine {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	ts := func(n int, s []byte) int64 {
		sec, err := strconv.ParseFloat(string(s), 64)
		if err != nil {
			t.Fatalf("%s:%d: timestamp: %v", path, n, err)
		}
		return int64(sec * 1e9)
	}
	// split cuts "<ts>: <rest>".
	split := func(n int, s []byte) (int64, []byte) {
		i := bytes.Index(s, []byte(": "))
		if i <= 0 {
			t.Fatalf("%s:%d: no timestamp in %.80q", path, n, s)
		}
		return ts(n, s[:i]), bytes.Clone(s[i+2:])
	}
	var out []capLine
	frames := 0
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		l := capLine{line: n}
		switch {
		case bytes.Contains(line, []byte(" <-> ")):
			l.conn = true
			l.recv = ts(n, line[bytes.LastIndexByte(line, ' ')+1:])
		case bytes.Contains(line, []byte(" <- ")):
			l.recv, l.sent = split(n, line[bytes.Index(line, []byte(" <- "))+4:])
		case bytes.HasPrefix(line, []byte("http")) && bytes.Contains(line, []byte(" -> ")):
			i := bytes.Index(line, []byte(" -> "))
			l.url = string(line[:i])
			l.recv, l.body = split(n, line[i+4:])
		default:
			l.recv, l.body = split(n, line)
		}
		if l.body != nil {
			frames++
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if frames == 0 {
		t.Fatalf("%s: no frames", path)
	}
	return out
}

// readCapture is readCaptureAll without the connection and client-send
// lines: the received frames and REST snapshots.
func readCapture(t testing.TB, path string) []capLine {
	t.Helper()
	var out []capLine
	for _, l := range readCaptureAll(t, path) {
		if l.body != nil {
			out = append(out, l)
		}
	}
	return out
}

// sharedCapture returns the path of a file of the shared corpus, skipping
// the test when the corpus is not on this machine.
func sharedCapture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(sharedCaptures, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared capture %s not present (full-file replay needs /work/shared/captures): %v", p, err)
	}
	return p
}

// venueTestdata is the path of an excerpt under testdata/.
func venueTestdata(venue, name string) string {
	return filepath.Join("..", "testdata", venue, name)
}
