package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/ingest"
)

// venueNotes are what docs/venues.md's tables say of each venue's symbols
// and book integrity; the registry does not carry them.
var venueNotes = map[string]struct {
	symbol             string
	checksum, sequence bool
}{
	ingest.VenueBinance:     {"BTCUSDT -> BTC-USDT", false, true},
	ingest.VenueBinanceUSDM: {"BTCUSDT -> BTC-USDT-PERP", false, true},
	"bitfinex":              {"tBTCUSD -> BTC-USD", true, true},
	"bitmex":                {"BCHUSD -> BCH-USD-PERP", false, false},
	"bitstamp":              {"ethusd -> ETH-USD", false, false},
	"bybit":                 {"BTCUSDT -> BTC-USDT", false, true},
	"bybit-linear":          {"BTCUSDT -> BTC-USDT-PERP", false, true},
	"coinbase":              {"BTC-USD -> BTC-USD", false, false},
	"deribit":               {"BTC-PERPETUAL -> BTC-USD-PERP", false, true},
	"gateio":                {"OMG_USDT -> OMG-USDT", false, true},
	"gemini":                {"BTCGBP -> BTC-GBP", false, true},
	"huobi":                 {"dogeeth -> DOGE-ETH", false, false},
	"kraken":                {"XMR/USD -> XMR-USD", true, false},
	"kucoin":                {"BTC-USDT -> BTC-USDT", false, true},
	"okx":                   {"BTC-USDT -> BTC-USDT", true, true},
}

type venueRow struct {
	Name         string   `json:"name"`
	Channels     []string `json:"channels"`
	Symbol       string   `json:"symbol_example"`
	BookChecksum bool     `json:"book_checksum"`
	SequenceSync bool     `json:"sequence_sync"`
	Cryptofeed   []string `json:"cryptofeed_names,omitempty"`
}

// cmdVenues lists the registered venues.
func cmdVenues(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald venues", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON: an array of {name, channels, symbol_example, book_checksum, sequence_sync, cryptofeed_names}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (signald venues [--json])", fs.Arg(0))
	}
	var rows []venueRow
	for _, v := range ingest.Venues() {
		n := venueNotes[v.Name]
		r := venueRow{Name: v.Name, Symbol: n.symbol, BookChecksum: n.checksum, SequenceSync: n.sequence, Cryptofeed: v.Cryptofeed, Channels: []string{}}
		for _, c := range v.Channels {
			r.Channels = append(r.Channels, string(c))
		}
		rows = append(rows, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	yes := map[bool]string{true: "yes", false: "no"}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "venue\tchannels\tsymbol (venue -> instrument)\tbook checksum\tsequence sync")
	for _, r := range rows {
		sym := r.Symbol
		if sym == "" {
			sym = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Name, strings.Join(r.Channels, ","), sym, yes[r.BookChecksum], yes[r.SequenceSync])
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %d venues; details in docs/venues.md\n", len(rows))
	return nil
}

// cmdVersion prints the build and the paths this machine takes.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (signald version takes none)", fs.Arg(0))
	}
	commit := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		commit = vcsCommit(bi.Settings)
	}
	kernels := "pure Go"
	if asm.Path() == "avx2" {
		kernels = "AVX2"
	}
	bin, binWhy := autoJSONPath([]string{ingest.VenueBinance})
	other, _ := autoJSONPath([]string{"kraken"})
	fmt.Fprintf(stdout, "signald %s\n", version())
	line := func(k, v string) { fmt.Fprintf(stdout, "%-17s%s\n", k+":", v) }
	line("commit", commit)
	line("go", runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
	line("feature kernels", kernels+" (features/asm)")
	line("simdjson-go", map[bool]string{true: "supported", false: "not supported"}[simdjson.SupportedCPU()]+" on this CPU")
	line("json path auto", fmt.Sprintf("%s for Binance frames (%s); %s for other venues (no measured figures)", bin, binWhy, other))
	return nil
}

// vcsCommit is the commit the binary was built from ("unknown" when not
// built from a git checkout, or with -buildvcs=false).
func vcsCommit(settings []debug.BuildSetting) string {
	commit, modified := "unknown", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && commit != "unknown" {
		commit += " (modified)"
	}
	return commit
}
