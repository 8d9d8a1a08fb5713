package ingest

import (
	"testing"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
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
