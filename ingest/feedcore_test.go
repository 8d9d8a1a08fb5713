package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/ingest/internal/jsontape"
	"github.com/signald-dev/signald/market"
)

// Test helpers shared by the feed tests of the venues built on feedCore
// (Binance's tests keep their own capture readers, independent of these).

// goldenTick completes a hand-written expected tick: IngestTS is the
// receive time, ID the content hash.
func goldenTick(t market.Tick) market.Tick {
	t.IngestTS = t.RecvTS
	t.ComputeID()
	return t
}

// frameRunner returns a function that hands a frame, received at recv, to
// f and returns its ticks; an error fails the test.
func frameRunner(t *testing.T, f Feed, recv int64) func(frame string) []market.Tick {
	return func(frame string) []market.Tick {
		t.Helper()
		out, err := f.Handle(recv, []byte(frame), nil)
		if err != nil {
			t.Fatalf("%s: %v", frame, err)
		}
		return out
	}
}

// goldenCase is a frame and the ticks it gives.
type goldenCase struct {
	name, frame string
	want        []market.Tick
}

// runGoldenCases hands each case's frame, received at recv, to one feed of
// venue per JSON path and compares the ticks.
func runGoldenCases(t *testing.T, venue string, recv int64, cases []goldenCase) {
	t.Helper()
	for path, f := range feedsPerPath(t, venue, FeedConfig{}) {
		for _, c := range cases {
			got, err := f.Handle(recv, []byte(c.frame), nil)
			if err != nil {
				t.Fatalf("%s %s: %v", path, c.name, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s %s:\n got %+v\nwant %+v", path, c.name, got, c.want)
			}
		}
	}
}

// kindCounts counts ticks by kind.
func kindCounts(ticks []market.Tick) map[market.Kind]int {
	m := map[market.Kind]int{}
	for _, t := range ticks {
		m[t.Kind]++
	}
	return m
}

// fallbackWorks reports whether the portable JSON path is built (it lands
// with the json-tape branch).
func fallbackWorks() bool {
	var pj simdjson.ParsedJson
	return jsontape.Build([]byte(`{"a":[1,"b"]}`), &pj) == nil
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

// feedUnderTest is a feed with its own Metrics and registry, for reading
// its counters.
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

// counter sums the counter (or gauge) name over the series of reg whose labels
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
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
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

// replayFeed hands every received frame of lines (not REST, connection or
// client-send lines) to f and returns the ticks; the first error fails the
// test.
func replayFeed(t testing.TB, f Feed, lines []capLine) []market.Tick {
	t.Helper()
	var out []market.Tick
	for _, l := range lines {
		if l.body == nil || l.url != "" {
			continue
		}
		var err error
		if out, err = f.Handle(l.recv, l.body, out); err != nil {
			t.Fatalf("line %d: %v\n%.300s", l.line, err, l.body)
		}
	}
	return out
}

// replayEdited hands every line of lines to f, but for the one at index
// target: dropped when edit is nil, else replaced by edit(body). It returns
// the ticks; an error fails the test.
func replayEdited(t testing.TB, f Feed, lines []capLine, target int, edit func([]byte) []byte) []market.Tick {
	t.Helper()
	var out []market.Tick
	for i, l := range lines {
		body := l.body
		if i == target {
			if edit == nil {
				continue
			}
			body = edit(body)
		}
		var err error
		if out, err = f.Handle(l.recv, body, out); err != nil {
			t.Fatalf("line %d: %v", l.line, err)
		}
	}
	return out
}

// samePaths checks that every JSON path produced the same ticks.
func samePaths(t *testing.T, got map[string][]market.Tick) {
	t.Helper()
	var ref []market.Tick
	var refName string
	for name, ticks := range got {
		if ref == nil {
			ref, refName = ticks, name
			continue
		}
		if !reflect.DeepEqual(ref, ticks) {
			t.Fatalf("%s and %s paths differ (%d vs %d ticks)", refName, name, len(ref), len(ticks))
		}
	}
}

// checkTicks asserts the invariants every tick of these feeds keeps.
func checkTicks(t *testing.T, ts []market.Tick) {
	t.Helper()
	for i, k := range ts {
		c := k
		c.ComputeID()
		if c.ID != k.ID {
			t.Fatalf("tick %d: ID is not ComputeID's: %+v", i, k)
		}
		if k.RecvTS == 0 || k.IngestTS != k.RecvTS || k.Venue == "" || k.Instrument == "" || k.Symbol == "" {
			t.Fatalf("tick %d: incomplete: %+v", i, k)
		}
		switch k.Kind {
		case market.KindBookDelta, market.KindSnapshot:
			if (k.Side != market.SideBuy && k.Side != market.SideSell) || k.Price <= 0 || k.Size < 0 {
				t.Fatalf("tick %d: bad level: %+v", i, k)
			}
		case market.KindTrade, market.KindLiquidation:
			if (k.Side != market.SideBuy && k.Side != market.SideSell) || k.Price <= 0 || k.Size <= 0 {
				t.Fatalf("tick %d: bad trade: %+v", i, k)
			}
		}
	}
}

// replayREST replays ws frames and recorded REST snapshots merged by
// receipt time. A snapshot line is handed to the feed only when the feed
// has asked for that symbol (symOf reads the symbol from the URL); requests
// are checked to name the symbol's endpoint.
func replayREST(t testing.TB, f Feed, ws, rest []capLine, symOf func(url string) string) (out []market.Tick, asked map[string]int) {
	t.Helper()
	all := append(append([]capLine{}, ws...), rest...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].recv < all[j].recv })
	pending := map[string]SnapshotRequest{}
	asked = map[string]int{}
	var reqs []SnapshotRequest
	for i, l := range all {
		if l.body == nil {
			continue
		}
		var err error
		if l.url != "" {
			sym := symOf(l.url)
			req, ok := pending[sym]
			if !ok {
				continue
			}
			delete(pending, sym)
			if out, err = f.HandleSnapshot(l.recv, req, l.body, out); err != nil {
				t.Fatalf("snapshot %s: %v", sym, err)
			}
		} else if out, err = f.Handle(l.recv, l.body, out); err != nil {
			t.Fatalf("line %d: %v (frame %.120s)", i, err, l.body)
		}
		reqs = f.SnapshotRequests(reqs[:0])
		for _, r := range reqs {
			if !strings.Contains(r.URL, r.Symbol) {
				t.Fatalf("request %+v does not name its symbol", r)
			}
			pending[r.Symbol] = r
			asked[r.Symbol]++
		}
	}
	return out, asked
}

// replayClean replays ws on a new feed of venue, answering snapshot
// requests from rest when symOf is set (replayREST); the ticks must pass
// checkTicks, have the kinds want, and come without a resync or a malformed
// frame. It returns the feed, the ticks and the snapshots asked per symbol.
func replayClean(t *testing.T, venue string, fb bool, ws, rest []capLine, symOf func(string) string, want map[market.Kind]int) (Feed, []market.Tick, map[string]int) {
	t.Helper()
	f, reg := newTestFeed(t, venue, FeedConfig{ForceFallback: fb})
	var out []market.Tick
	var asked map[string]int
	if symOf != nil {
		out, asked = replayREST(t, f, ws, rest, symOf)
	} else {
		out = replayFeed(t, f, ws)
	}
	checkTicks(t, out)
	if got := kindCounts(out); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: kinds %v, want %v", pathName(fb), got, want)
	}
	if r, m := resyncCount(reg, ""), malformedCount(reg); r != 0 || m != 0 {
		t.Fatalf("%s: resyncs %v malformed %v", pathName(fb), r, m)
	}
	return f, out, asked
}

// isMalformed reports whether err is a *ParseError wrapping ErrMalformed.
func isMalformed(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe) && errors.Is(err, ErrMalformed)
}

// wantMalformed asserts that frame is rejected as malformed and appends
// nothing.
func wantMalformed(t *testing.T, f Feed, frame string) {
	t.Helper()
	pre := []market.Tick{{Venue: "sentinel"}}
	out, err := f.Handle(1, []byte(frame), pre)
	var pe *ParseError
	if !isMalformed(err) || !errors.As(err, &pe) {
		t.Fatalf("frame %.100q: error %v, want a *ParseError wrapping ErrMalformed", frame, err)
	}
	if pe.Venue != f.Venue() {
		t.Fatalf("ParseError.Venue = %q, want %q", pe.Venue, f.Venue())
	}
	if len(out) != 1 || !reflect.DeepEqual(out[0], pre[0]) {
		t.Fatalf("frame %.100q: malformed frame appended ticks: %+v", frame, out)
	}
}

// fuzzFeed is the body of the per-venue FuzzFeed targets: Handle never
// panics, fails only with a *ParseError, and the JSON paths agree.
func fuzzFeed(f *testing.F, venue string, cfg FeedConfig, seeds [][]byte) {
	fuzzFeedSnapshots(f, venue, cfg, seeds, nil)
}

// fuzzFeedSnapshots is fuzzFeed that also hands each input to
// HandleSnapshot as the body of req (venues with REST snapshots).
func fuzzFeedSnapshots(f *testing.F, venue string, cfg FeedConfig, seeds [][]byte, req *SnapshotRequest) {
	paths := fuzzPaths(f, venue, cfg, seeds, nil)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzCompare(t, paths, data, req) })
}

// fuzzPaths adds seeds (and a few generic inputs) to the corpus and returns
// one feed of venue per JSON path, each handed to prime (when not nil)
// before fuzzing.
func fuzzPaths(f *testing.F, venue string, cfg FeedConfig, seeds [][]byte, prime func(Feed)) map[string]feedUnderTest {
	for _, s := range seeds {
		f.Add(s)
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `"x"`, `{"a":"\ud83d\u0041"}`, "{\"a\":1\x00}", `[1,{"b":[true,false,null]},"c"]`} {
		f.Add([]byte(s))
	}
	paths := feedsPerPath(f, venue, cfg)
	if prime != nil {
		for _, fd := range paths {
			prime(fd.Feed)
		}
	}
	return paths
}

// fuzzCompare hands data to the feed of every JSON path (and, with req, to
// HandleSnapshot as req's body) and fails unless each fails only with a
// *ParseError and the paths agree on errors, ticks, outbox and snapshot
// requests.
func fuzzCompare(t *testing.T, paths map[string]feedUnderTest, data []byte, req *SnapshotRequest) {
	t.Helper()
	type result struct {
		err   string
		ticks []market.Tick
		sends [][]byte
		reqs  []SnapshotRequest
	}
	got := map[string]result{}
	for name, fd := range paths {
		var r result
		out, err := fd.Handle(1, data, nil)
		if err != nil && !isMalformed(err) {
			t.Fatalf("%s: error %v is not a *ParseError", name, err)
		}
		if err != nil {
			r.err = err.Error()
		}
		if req != nil {
			out, err = fd.HandleSnapshot(1, *req, data, out)
			if err != nil && !isMalformed(err) {
				t.Fatalf("%s: snapshot error %v is not a *ParseError", name, err)
			}
			if err != nil {
				r.err += "; " + err.Error()
			}
		}
		r.ticks = out
		r.sends = fd.Outbox(nil)
		r.reqs = fd.SnapshotRequests(nil)
		got[name] = r
	}
	if len(paths) == 2 {
		s, fb := got["simd"], got["fallback"]
		if s.err != fb.err {
			t.Fatalf("errors differ: simd %q, fallback %q\ninput %q", s.err, fb.err, data)
		}
		if !reflect.DeepEqual(s.ticks, fb.ticks) {
			t.Fatalf("ticks differ\ninput %q", data)
		}
		if !reflect.DeepEqual(s.sends, fb.sends) {
			t.Fatalf("outbox differs: %q vs %q\ninput %q", s.sends, fb.sends, data)
		}
		if !reflect.DeepEqual(s.reqs, fb.reqs) {
			t.Fatalf("snapshot requests differ: %+v vs %+v\ninput %q", s.reqs, fb.reqs, data)
		}
	}
}

// seedBodies picks fuzz seeds from a capture: the first 30 frames and every
// every-th after, up to 4 KiB each.
func seedBodies(lines []capLine, every int) [][]byte {
	var out [][]byte
	for i, l := range lines {
		if l.url == "" && (i%every == 0 || i < 30) && len(l.body) < 4096 {
			out = append(out, l.body)
		}
	}
	return out
}

// benchFeed is the body of the per-venue BenchmarkFeed targets: lines
// handed one per op, in order and round and round without a Reset, on each
// JSON path; every REST line is handed over as the snapshot of its URL.
func benchFeed(b *testing.B, venue string, cfg FeedConfig, lines []capLine) {
	benchFeedLines(b, venue, cfg, lines, false, nil)
}

// benchReplay measures venue's feed over recorded lines, ws and rest merged
// by receipt time, with the feed Reset at the start of each lap, so sequence
// checks pass and books are really applied; a REST snapshot line is handed
// over only when the feed has asked for its symbol (symOf reads it from the
// URL).
func benchReplay(b *testing.B, venue string, ws, rest []capLine, symOf func(string) string) {
	all := append(append([]capLine{}, ws...), rest...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].recv < all[j].recv })
	benchFeedLines(b, venue, FeedConfig{}, all, true, symOf)
}

// benchFeedLines runs the received frames and REST lines of lines, one per op,
// on each JSON path, reporting messages/s, ticks/s and allocs/op; reset
// Resets the feed at the start of each lap; with symOf a REST line is handed
// over only when the feed has asked for its symbol, without it always.
func benchFeedLines(b *testing.B, venue string, cfg FeedConfig, all []capLine, reset bool, symOf func(string) string) {
	var lines []capLine
	size := 0
	for _, l := range all {
		if l.body != nil {
			lines = append(lines, l)
			size += len(l.body)
		}
	}
	for _, fallback := range []bool{false, true} {
		name := "simd"
		if fallback {
			name = "fallback"
		}
		b.Run(name, func(b *testing.B) {
			if !pathAvailable(fallback) {
				b.Skipf("%s JSON path not available here", name)
			}
			c := cfg
			c.ForceFallback = fallback
			f, err := NewFeed(venue, c)
			if err != nil {
				b.Fatal(err)
			}
			out := make([]market.Tick, 0, 8192)
			var reqs []SnapshotRequest
			pending := map[string]SnapshotRequest{}
			ticks := 0
			b.SetBytes(int64(size / len(lines)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(lines)
				if j == 0 && reset {
					f.Reset()
					clear(pending)
				}
				l := &lines[j]
				switch {
				case l.url != "" && symOf == nil:
					out, _ = f.HandleSnapshot(l.recv, SnapshotRequest{URL: l.url}, l.body, out[:0])
				case l.url != "":
					out = out[:0]
					if r, ok := pending[symOf(l.url)]; ok {
						delete(pending, r.Symbol)
						out, _ = f.HandleSnapshot(l.recv, r, l.body, out)
					}
				default:
					if out, err = f.Handle(l.recv, l.body, out[:0]); err != nil {
						b.Fatal(err)
					}
				}
				ticks += len(out)
				f.Outbox(nil)
				reqs = f.SnapshotRequests(reqs[:0])
				for _, r := range reqs {
					pending[r.Symbol] = r
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(ticks)/b.Elapsed().Seconds(), "ticks/s")
		})
	}
}

// ---- tests over several venues ----

// TestVenuesAResync: the manager-driven Resync of every venues-a feed gives
// one gap tick, counts the reason, withholds the book and asks for the
// snapshot the venue's way.
func TestVenuesAResync(t *testing.T) {
	cases := []struct {
		venue, symbol, snapshot, delta string
		wantOutbox                     string // the resubscribe frame, or "" for a REST request
	}{
		{VenueCoinbase, "BTC-USD", `{"type":"snapshot","product_id":"BTC-USD","bids":[["1","1"]],"asks":[["2","1"]]}`,
			`{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1.5","1"]],"time":"2021-04-17T16:43:37Z"}`,
			`{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2_batch"]}`},
		{VenueKraken, "XBT/USD", krakenDocBook(), `[0,{"b":[["0.04990","0.00000700","1582905487.000003"]]},"book-10","XBT/USD"]`,
			`{"event":"subscribe","pair":["XBT/USD"],"subscription":{"name":"book","depth":10}}`},
		{VenueOKX, "BTC-USDT", `{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["2","1","0","1"]],"bids":[["1","1","0","1"]],"ts":"1"}]}`,
			`{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[["1.5","1","0","1"]],"ts":"2"}]}`,
			`{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}`},
		{VenueBybitLinear, "BTCUSDT", `{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["1","1"]],"a":[["2","1"]],"u":1,"seq":1}}`,
			`{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":2,"data":{"s":"BTCUSDT","b":[["1.5","1"]],"a":[],"u":2,"seq":2}}`,
			`{"op":"subscribe","args":["orderbook.50.BTCUSDT"]}`},
		{VenueBitstamp, "btcusd", "", `{"data":{"microtimestamp":"1641343700000002","bids":[["1.5","1"]],"asks":[]},"channel":"diff_order_book_btcusd","event":"data"}`, ""},
	}
	for _, c := range cases {
		for name, f := range feedsPerPath(t, c.venue, FeedConfig{}) {
			if c.snapshot != "" {
				if _, err := f.Handle(1, []byte(c.snapshot), nil); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.HandleSnapshot(1, SnapshotRequest{Symbol: c.symbol}, []byte(`{"microtimestamp":"1641343699000000","bids":[["1","1"]],"asks":[["2","1"]]}`), nil); err != nil {
				t.Fatal(err)
			}
			r, ok := f.Feed.(interface {
				Resync(int64, string, string, []market.Tick) []market.Tick
			})
			if !ok {
				t.Fatalf("%s: no Resync", c.venue)
			}
			out := r.Resync(5, c.symbol, "overflow", nil)
			if len(out) != 1 || out[0].Kind != market.KindGap || out[0].Symbol != c.symbol || f.resyncs("overflow") != 1 {
				t.Fatalf("%s %s: %+v", c.venue, name, out)
			}
			if c.wantOutbox != "" {
				ob := f.Outbox(nil)
				if len(ob) != 2 || string(ob[1]) != c.wantOutbox {
					t.Fatalf("%s %s: outbox %q", c.venue, name, ob)
				}
			} else if reqs := f.SnapshotRequests(nil); len(reqs) != 1 || reqs[0].Symbol != c.symbol {
				t.Fatalf("%s %s: requests %+v", c.venue, name, reqs)
			}
			if out, err := f.Handle(6, []byte(c.delta), nil); err != nil || len(out) != 0 {
				t.Fatalf("%s %s: delta after Resync: %+v %v", c.venue, name, out, err)
			}
		}
	}
}

// TestFeedsBResetForgets: after Reset a feed has no book, no sequence and
// nothing pending: a delta that would continue the old book is not
// published, and a new sequence start is no gap.
func TestFeedsBResetForgets(t *testing.T) {
	cases := map[string]struct{ prime, after []string }{
		"bitfinex": {
			prime: []string{`{"event":"subscribed","channel":"book","chanId":10,"symbol":"tBTCUSD"}`, `[10,[[7254.7,1,0.3],[7255.2,1,-0.5]],1]`},
			after: []string{`[10,[7254.5,1,1],500]`},
		},
		"deribit": {prime: []string{deribitSnapB}, after: []string{deribitChangeB(100, 101, "bids", `["new",4999,1]`)}},
		"gemini": {
			prime: []string{`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","100","1"],["sell","101","1"]],"trades":[]}`},
			after: []string{`{"type":"l2_updates","symbol":"BTCUSD","changes":[["buy","99","1"]]}`},
		},
		"gateio": {prime: []string{string(gateUpd(10, 10, `["99","1"]`))}, after: []string{string(gateUpd(11, 11, `["98","1"]`))}},
		"bitmex": {prime: []string{bitmexPartialB}, after: []string{`{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":1,"side":"Buy","size":3}]}`}},
	}
	for venue, c := range cases {
		f, reg := newTestFeed(t, venue, FeedConfig{})
		for _, fr := range c.prime {
			if _, err := f.Handle(1, []byte(fr), nil); err != nil {
				t.Fatalf("%s: %v", venue, err)
			}
		}
		f.Reset()
		if len(f.Outbox(nil)) != 0 || len(f.SnapshotRequests(nil)) != 0 {
			t.Fatalf("%s: pending sends after Reset", venue)
		}
		for _, fr := range c.after {
			out, err := f.Handle(2, []byte(fr), nil)
			if err != nil || len(out) != 0 {
				t.Fatalf("%s: after Reset: %v %+v", venue, err, out)
			}
		}
		if r := resyncCount(reg, ""); r != 0 {
			t.Fatalf("%s: %v resyncs after Reset", venue, r)
		}
	}
}

// A member read twice is malformed (ReasonDuplicateField naming it), where
// the hand-written member loops used to take the last one; the frames after
// it still parse.
func TestFeedsBDuplicateKey(t *testing.T) {
	kucoinTrade := `{"data":{"symbol":"BTC-USDT","sequence":"7","side":"buy","size":"1","price":"2","time":"1619378327739050725"},"subject":"trade.l3match","topic":"/market/match:BTC-USDT","type":"message"}`
	gateTrade := `{"time":1619093543,"channel":"spot.trades","event":"update","result":{"id":816995772,"create_time_ms":"1619093543708.2642","side":"sell","currency_pair":"DIS_USDT","amount":"0.201","price":"121.58"}}`
	deribitTrade := `{"params":{"data":[{"trade_seq":30289432,"trade_id":"48079254","timestamp":1590484156350,"price":8950.0,"instrument_name":"BTC-PERPETUAL","direction":"sell","amount":10.0}],"channel":"trades.BTC-PERPETUAL.raw"},"method":"subscription","jsonrpc":"2.0"}`
	for _, c := range []struct {
		venue, dup, field, good string
	}{
		{"kucoin", strings.Replace(kucoinTrade, `"price":"2"`, `"price":"2","price":"3"`, 1), "price", kucoinTrade},
		{"kucoin", strings.Replace(kucoinTrade, `"type":"message"`, `"type":"message","type":"ack"`, 1), "type", kucoinTrade},
		{"gateio", strings.Replace(gateTrade, `"side":"sell"`, `"side":"sell","side":"buy"`, 1), "side", gateTrade},
		{"gateio", strings.Replace(gateTrade, `"event":"update"`, `"event":"update","event":"update"`, 1), "event", gateTrade},
		{"deribit", strings.Replace(deribitTrade, `"amount":10.0`, `"amount":10.0,"amount":11.0`, 1), "amount", deribitTrade},
	} {
		for _, fb := range jsonPaths(t) {
			t.Run(c.venue+"/"+c.field+"/"+pathName(fb), func(t *testing.T) {
				f, reg := newTestFeed(t, c.venue, FeedConfig{ForceFallback: fb})
				wantMalformed(t, f, c.dup)
				_, err := f.Handle(1, []byte(c.dup), nil)
				var pe *ParseError
				if !errors.As(err, &pe) || pe.Reason != ReasonDuplicateField || pe.Field != c.field {
					t.Fatalf("error %v, want a duplicate %q", err, c.field)
				}
				if got := counter(reg, "signald_ingest_malformed_frames_total", map[string]string{"reason": ReasonDuplicateField.String()}); got != 2 {
					t.Fatalf("%v duplicate-field frames counted, want 2", got)
				}
				out, err := f.Handle(1, []byte(c.good), nil)
				if err != nil || len(out) != 1 {
					t.Fatalf("frame after the duplicate: %v, %+v", err, out)
				}
			})
		}
	}
}

// These feeds do not implement Resyncer (the connection manager publishes a
// plain gap for them); sharing feedCore must not give them its Resync.
func TestFeedsBNotResyncers(t *testing.T) {
	for _, v := range []string{"bitfinex", "gemini", "deribit", "kucoin", "gateio", "bitmex", "huobi"} {
		f, _ := newTestFeed(t, v, FeedConfig{})
		if _, ok := f.(Resyncer); ok {
			t.Errorf("%s implements Resyncer", v)
		}
	}
}

// TestFeedsReportParserPath: every registered venue's feed reports the JSON
// path it uses, one series set to 1, as the operator's dashboard expects.
func TestFeedsReportParserPath(t *testing.T) {
	for _, venue := range FeedVenues() {
		if venue == "replaytest" {
			continue // the replay tests' stand-in, registered by a test
		}
		for _, fallback := range []bool{false, true} {
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			if _, err := NewFeed(venue, FeedConfig{Metrics: m, ForceFallback: fallback}); err != nil {
				t.Fatalf("%s: %v", venue, err)
			}
			want := "fallback"
			if !fallback && simdjson.SupportedCPU() {
				want = "simdjson"
			}
			if got := counter(reg, "signald_ingest_parser_info", map[string]string{"venue": venue, "path": want}); got != 1 {
				t.Errorf("%s (fallback forced: %v): signald_ingest_parser_info{path=%q} = %v, want 1", venue, fallback, want, got)
			}
		}
	}
}
