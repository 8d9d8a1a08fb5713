package main

import (
	"sort"
	"strings"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/ingest"
)

// portableFaster are the venues whose frames were measured through both
// JSON paths (docs/performance.md, "JSON parsing": BenchmarkFeeds'
// speedup and BenchmarkJSONPaths) with the portable path faster: 2.6-2.9x
// on Binance's 150-300-byte frames, 3x on a 42 KB REST snapshot.
var portableFaster = map[string]bool{ingest.VenueBinance: true, ingest.VenueBinanceUSDM: true}

// autoJSONPath is the path `--json-path auto` picks for venues, and why:
// portable when every venue's frames were measured faster through it
// (or no venue frames are parsed), otherwise simdjson-go where the CPU
// runs it.
func autoJSONPath(venues []string) (path, why string) {
	if !simdjson.SupportedCPU() {
		return "portable", "auto: this CPU lacks AVX2 or CLMUL, which simdjson-go needs"
	}
	if len(venues) == 0 {
		return "portable", "auto: no venue frames are parsed"
	}
	var unmeasured []string
	for _, v := range venues {
		if !portableFaster[v] {
			unmeasured = append(unmeasured, v)
		}
	}
	if len(unmeasured) == 0 {
		return "portable", "auto: faster on this venue's frames"
	}
	return "simdjson", "auto: no measured figures for " + strings.Join(unmeasured, ", ") + "'s frames"
}

// runVenues are the venues whose frames cfg's sources parse: the --live
// venues, or the replayed files' (--replay-venue, the cryptofeed file
// name, else Binance).
func runVenues(cfg *runConfig) []string {
	set := map[string]bool{}
	for _, s := range cfg.Live.Specs {
		set[s.Venue] = true
	}
	for _, p := range cfg.Replay {
		v := cfg.ReplayVenue
		if v == "" {
			v = ingest.VenueFromFileName(p)
		}
		if v == "" {
			v = ingest.VenueBinance
			if cfg.ReplayMarket == ingest.MarketUSDM {
				v = ingest.VenueBinanceUSDM
			}
		}
		set[v] = true
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// jsonPathInUse is the JSON path venue frames go through and why:
// --json-path, with auto resolved for the run's venues.
func jsonPathInUse(cfg *runConfig) (path, why string) {
	switch cfg.JSONPath {
	case "simdjson", "portable":
		return cfg.JSONPath, "--json-path " + cfg.JSONPath
	}
	return autoJSONPath(runVenues(cfg))
}
