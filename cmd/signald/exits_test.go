package main

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/minio/simdjson-go"
)

// goInternals are what a message for users never shows.
var goInternals = []string{"ReplayConfig", "*errors", "%!", "*fs.PathError", "main.", "struct {"}

// exitCode is the process's exit status (0 when err is nil).
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("running signald: %v", err)
	}
	return ee.ExitCode()
}

// TestBadInputsExitPlainly: each bad input a new user gave ends with a
// non-zero exit and a message naming the flag or file and what to do.
func TestBadInputsExitPlainly(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random.bin")
	b := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(random, b, 0o644); err != nil {
		t.Fatal(err)
	}
	noMarket := filepath.Join(dir, "capture.txt")
	os.WriteFile(noMarket, []byte(`1700000000000000000 {"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":true}`+"\n"), 0o644)
	emptyStore := filepath.Join(dir, "store")
	os.Mkdir(emptyStore, 0o755)
	out := filepath.Join(dir, "out.csv")
	http := freePort(t)

	cases := []struct {
		name   string
		args   []string
		code   int
		phrase string
	}{
		{"backtest missing --data", []string{"backtest", "--data", filepath.Join(dir, "nope")}, 1, "--data " + filepath.Join(dir, "nope") + ": no such directory"},
		{"backtest unknown instrument", []string{"backtest", "--data", emptyStore, "--instruments", "NOPE-USD"}, 1, "no ticks of --instruments NOPE-USD"},
		{"backtest step 0", []string{"backtest", "--data", emptyStore, "--step", "0s"}, 1, "--step 0s: must be at least 1ms"},
		{"features compute no ticks", []string{"features", "compute", "--in", emptyStore, "--out", out}, 1, "no ticks read"},
		{"features compute random bytes", []string{"features", "compute", "--in", random, "--out", out}, 1, "not a capture file"},
		{"features compute unknown market", []string{"features", "compute", "--in", noMarket, "--out", out}, 1, "give --market spot or usdm"},
		{"features compute bad venue", []string{"features", "compute", "--in", noMarket, "--out", out, "--venue", "nope"}, 1, "--venue \"nope\""},
		{"decode wrong venue", []string{"decode", "--venue", "kraken", spotCapture}, 1, "did not parse as --venue kraken"},
		{"decode random bytes", []string{"decode", random}, 1, random + ": not a capture file"},
		{"decode unknown market", []string{"decode", noMarket}, 1, "give --venue binance or --venue binance-usdm"},
		{"run random bytes", []string{"run", "--replay", random, "--replay-market", "spot", "--exit-when-done", "--data", dir, "--http", http}, 1, "--replay " + random + ": not a capture file"},
		{"run random bytes, no market", []string{"run", "--replay", random, "--exit-when-done", "--data", dir, "--http", http}, 1, "not a capture file"},
		{"run unknown market", []string{"run", "--replay", noMarket, "--exit-when-done", "--data", dir, "--http", http, "--speed", "0"}, 1, "give --replay-market spot or usdm"},
		{"run without a source", []string{"run", "--exit-when-done", "--data", dir, "--http", http}, 1, "--exit-when-done: there is no replay to finish"},
		{"run macro-rv", []string{"run", "--macro-rv", "nope", "--data", dir, "--http", http}, 1, "--macro-rv \"nope\": not a feature column"},
		{"run unlistenable http", []string{"run", "--http", "999.1.1.1:80", "--data", dir}, 1, "--http 999.1.1.1:80: cannot listen"},
		{"regime eval instruments", []string{"regime", "eval", "--instruments", "-1"}, 1, "--instruments -1: must be at least 1"},
		{"regime eval steps", []string{"regime", "eval", "--steps", "0"}, 1, "--steps 0: must be at least 1"},
		{"regime alone", []string{"regime"}, 2, "signald regime fit"},
		{"features alone", []string{"features"}, 2, "signald features list"},
		{"regime unknown", []string{"regime", "nope"}, 2, "unknown subcommand \"nope\""},
		{"features unknown", []string{"features", "nope"}, 2, "unknown subcommand \"nope\""},
		{"dlq unknown", []string{"dlq", "nope"}, 1, "unknown action \"nope\": want list, replay or purge"},
		{"venues argument", []string{"venues", "x"}, 2, "unexpected argument \"x\""},
		{"unknown command", []string{"nope"}, 2, "unknown command \"nope\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := runCLI(t, c.args...)
			if code := exitCode(t, err); code != c.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, c.code, tail(stderr, 2000))
			}
			if !strings.Contains(stderr, c.phrase) {
				t.Errorf("stderr lacks %q:\n%s", c.phrase, tail(stderr, 2000))
			}
			for _, g := range goInternals {
				if strings.Contains(stderr, g) {
					t.Errorf("stderr names Go internals (%q):\n%s", g, tail(stderr, 2000))
				}
			}
		})
	}
	// A failed features compute leaves no output behind.
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("features compute failed but left %s (%v)", out, err)
	}
}

// TestHTTPInUseHint: only an address in use is blamed on another signald.
func TestHTTPInUseHint(t *testing.T) {
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	defer ln.Close()
	_, stderr, err := runCLI(t, "run", "--http", ln.Addr().String(), "--data", t.TempDir())
	if code := exitCode(t, err); code != 1 || !strings.Contains(stderr, "in use (is another signald running?)") {
		t.Errorf("exit %d, stderr:\n%s", code, tail(stderr, 2000))
	}
}

// TestVenuesCommand: the list comes from the registry, as a table and as
// JSON.
func TestVenuesCommand(t *testing.T) {
	stdout, stderr, err := runCLI(t, "venues", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rows []venueRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("venues --json: %v\n%s", err, stdout)
	}
	byName := map[string]venueRow{}
	for _, r := range rows {
		byName[r.Name] = r
		if len(r.Channels) == 0 || r.Symbol == "" {
			t.Errorf("venue %s: channels %v, symbol example %q", r.Name, r.Channels, r.Symbol)
		}
	}
	if len(rows) < 14 {
		t.Errorf("%d venues, want the 14 or more registered", len(rows))
	}
	if k := byName["kraken"]; !k.BookChecksum || k.SequenceSync {
		t.Errorf("kraken: %+v, want checksums and no sequence", k)
	}
	if b := byName["binance"]; b.BookChecksum || !b.SequenceSync || b.Symbol != "BTCUSDT -> BTC-USDT" {
		t.Errorf("binance: %+v", b)
	}
	table, _, err := runCLI(t, "venues")
	if err != nil || !strings.Contains(table, "book checksum") || !strings.Contains(table, "\nokx ") {
		t.Errorf("venues: %v\n%s", err, table)
	}
}

// TestVersionCommand: version, commit, Go, kernel and JSON paths.
func TestVersionCommand(t *testing.T) {
	stdout, stderr, err := runCLI(t, "version")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"signald " + version(), "commit:", "go:              go1.", "feature kernels:", "json path auto:  portable for Binance frames"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("version lacks %q:\n%s", want, stdout)
		}
	}
}

func TestVCSCommit(t *testing.T) {
	if c := vcsCommit(nil); c != "unknown" {
		t.Errorf("no VCS settings: %q", c)
	}
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "4f1f270"}, {Key: "vcs.modified", Value: "true"}}
	if c := vcsCommit(rev); c != "4f1f270 (modified)" {
		t.Errorf("modified checkout: %q", c)
	}
}

// TestAutoJSONPath: auto picks portable for the venues measured faster
// through it.
func TestAutoJSONPath(t *testing.T) {
	if p, why := jsonPathInUse(&runConfig{JSONPath: "auto", Replay: []string{spotCapture}}); p != "portable" || simdjson.SupportedCPU() && why != "auto: faster on this venue's frames" {
		t.Errorf("auto on a Binance replay: %s (%s)", p, why)
	}
	if p, _ := jsonPathInUse(&runConfig{JSONPath: "auto", Live: liveConfig{Specs: []liveSpec{{Venue: "kraken"}}}}); simdjson.SupportedCPU() && p != "simdjson" {
		t.Errorf("auto on an unmeasured venue: %s, want simdjson-go (no figures)", p)
	}
	if p, _ := jsonPathInUse(&runConfig{JSONPath: "simdjson", Replay: []string{spotCapture}}); p != "simdjson" {
		t.Errorf("--json-path simdjson: %s", p)
	}
	if p, _ := jsonPathInUse(&runConfig{JSONPath: "portable", Live: liveConfig{Specs: []liveSpec{{Venue: "kraken"}}}}); p != "portable" {
		t.Errorf("--json-path portable: %s", p)
	}
}
