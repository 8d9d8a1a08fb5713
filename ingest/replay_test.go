package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

func writeCapture(t *testing.T, name string, gz bool, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	data := []byte(strings.Join(lines, "\n") + "\n")
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// collect runs r and returns copies of all emitted ticks.
func collect(t *testing.T, r *Replayer) []market.Tick {
	t.Helper()
	var all []market.Tick
	if err := r.Run(context.Background(), func(ts []market.Tick) error {
		if len(ts) == 0 {
			return errors.New("empty batch")
		}
		all = append(all, ts...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

func newReplayer(t *testing.T, cfg ReplayConfig, m *Metrics) *Replayer {
	t.Helper()
	r, err := NewReplayer(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tradeFrame(sym string, id int, exchMS int64) string {
	return fmt.Sprintf(`{"stream":"%s@trade","data":{"e":"trade","E":%d,"s":"%s","t":%d,"p":"100.5","q":"0.25","T":%d,"m":false}}`,
		strings.ToLower(sym), exchMS, sym, id, exchMS)
}

// TestReplayTestdataOrder replays each excerpt and checks, against an
// independent reading of the file, the tick count per kind and that the
// ticks come in line order with each line's receive time.
func TestReplayTestdataOrder(t *testing.T) {
	for name, mkt := range testdataCaptures {
		t.Run(name, func(t *testing.T) {
			frames := readCaptureFrames(t, name)
			var wantRecv []int64
			wantKinds := map[market.Kind]int{}
			for _, f := range frames {
				counts, _ := expectedCounts(t, f)
				ts := lineTimestamp(t, name, f.line)
				for k, n := range counts {
					wantKinds[k] += n
					for i := 0; i < n; i++ {
						wantRecv = append(wantRecv, ts)
					}
				}
			}
			ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{testdataPath(name)}}, nil))
			gotKinds := map[market.Kind]int{}
			for i, tk := range ticks {
				gotKinds[tk.Kind]++
				if i < len(wantRecv) && tk.RecvTS != wantRecv[i] {
					t.Fatalf("tick %d RecvTS %d, want %d", i, tk.RecvTS, wantRecv[i])
				}
				wantVenue := map[string]string{MarketSpot: "binance", MarketUSDM: "binance-usdm"}[mkt]
				if tk.Venue != wantVenue {
					t.Fatalf("tick %d venue %q, want %q", i, tk.Venue, wantVenue)
				}
			}
			if len(ticks) != len(wantRecv) {
				t.Fatalf("%d ticks, want %d", len(ticks), len(wantRecv))
			}
			for k, n := range wantKinds {
				if gotKinds[k] != n {
					t.Errorf("%s ticks = %d, want %d", k, gotKinds[k], n)
				}
			}
		})
	}
}

// lineTimestamp reads line n's receive time with strconv, independently of
// the replayer's parser.
func lineTimestamp(t *testing.T, name string, n int) int64 {
	t.Helper()
	lines := testdataLines(t, name)
	line := lines[n-1]
	if strings.HasPrefix(name, "cryptofeed") {
		ts, _, _ := strings.Cut(line, ": ")
		sec, frac, _ := strings.Cut(ts, ".")
		s, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		frac = (frac + "000000000")[:9]
		f, err := strconv.ParseInt(frac, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return s*1e9 + f
	}
	ts, _, _ := strings.Cut(line, " ")
	v, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var linesCache = map[string][]string{}

func testdataLines(t *testing.T, name string) []string {
	if l, ok := linesCache[name]; ok {
		return l
	}
	raw, err := os.ReadFile(testdataPath(name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(zr); err != nil {
			t.Fatal(err)
		}
		raw = b.Bytes()
	}
	l := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	linesCache[name] = l
	return l
}

func TestReplayCryptofeedTimestamps(t *testing.T) {
	before := time.Now().UnixNano()
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{testdataPath("cryptofeed_BINANCE.ws.1.0")}, Limit: 1}, nil))
	after := time.Now().UnixNano()
	// 1633998512.0633569: {"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,...,"b":[["0.35130000","6195.00000000"],...
	want := market.Tick{Venue: "binance", Instrument: "NKN-USDT", Symbol: "NKNUSDT", Kind: market.KindBookDelta, Side: market.SideBuy,
		ExchTS: 1633998512068_000000, RecvTS: 1633998512_063356900, Price: 0.3513, Size: 6195, Seq: 499869752}
	want.ComputeID()
	if len(ticks) == 1 {
		// IngestTS is the replay's wall-clock time, not part of the ID.
		if ticks[0].IngestTS < before || ticks[0].IngestTS > after {
			t.Errorf("IngestTS %d not within the replay [%d, %d]", ticks[0].IngestTS, before, after)
		}
		want.IngestTS = ticks[0].IngestTS
	}
	if len(ticks) != 1 || ticks[0] != want {
		t.Fatalf("got %+v\nwant %+v", ticks, want)
	}
}

func TestReplayDeterministic(t *testing.T) {
	var paths []string
	for name := range testdataCaptures {
		paths = append(paths, testdataPath(name))
	}
	a := collect(t, newReplayer(t, ReplayConfig{Paths: paths}, nil))
	b := collect(t, newReplayer(t, ReplayConfig{Paths: paths}, nil))
	r := newReplayer(t, ReplayConfig{Paths: paths, ForceFallback: true}, nil)
	c := collect(t, r)
	d := collect(t, r) // the same Replayer run again
	if len(a) < 10000 {
		t.Fatalf("only %d ticks", len(a))
	}
	for _, other := range [][]market.Tick{b, c, d} {
		if !bytes.Equal(encodeTicks(a), encodeTicks(other)) {
			t.Fatal("replays differ")
		}
	}
}

func TestReplayLimit(t *testing.T) {
	path := testdataPath("binance_spot_btcusdt_20240808_head1500.gz")
	all := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}}, nil))
	// Cut inside the 2000-level snapshot of line 8.
	first := -1
	for i, tk := range all {
		if tk.Kind == market.KindSnapshot {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatal("no snapshot in the excerpt")
	}
	for _, limit := range []int{1, 10, first + 5, len(all)} {
		got := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}, Limit: limit}, nil))
		if len(got) != limit || !bytes.Equal(encodeTicks(got), encodeTicks(all[:limit])) {
			t.Errorf("Limit %d: got %d ticks (or not the first ones)", limit, len(got))
		}
	}
}

func TestReplayLoop(t *testing.T) {
	path := writeCapture(t, "binance_spot_btcusdt_loop.txt", false,
		"1000000000 "+tradeFrame("BTCUSDT", 1, 1000),
		"1500000000 "+`{"stream":"btcusdt@bookTicker","data":{"u":7,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"}}`,
		"3000000000 "+tradeFrame("BTCUSDT", 2, 2999),
	)
	got := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}, Loop: true, Limit: 3*3 + 1}, nil))
	if len(got) != 10 {
		t.Fatalf("%d ticks, want 10", len(got))
	}
	seen := map[uint64]bool{}
	for _, tk := range got {
		if seen[tk.ID] {
			t.Fatalf("duplicate id %x across passes", tk.ID)
		}
		seen[tk.ID] = true
		id := tk.ID
		tk.ComputeID()
		if tk.ID != id {
			t.Fatal("shifted tick's id was not recomputed")
		}
	}
	const shift = int64(2e9 + 1e9) // span (3s - 1s) + 1s
	for pass := 1; pass <= 2; pass++ {
		for i := 0; i < 3 && pass*3+i < len(got); i++ {
			a, b := got[i], got[pass*3+i]
			if b.RecvTS-a.RecvTS != int64(pass)*shift {
				t.Errorf("pass %d tick %d: RecvTS shifted by %d, want %d", pass, i, b.RecvTS-a.RecvTS, int64(pass)*shift)
			}
			if a.ExchTS == 0 {
				if b.ExchTS != 0 {
					t.Errorf("pass %d tick %d: ExchTS 0 became %d", pass, i, b.ExchTS)
				}
			} else if b.ExchTS-a.ExchTS != int64(pass)*shift {
				t.Errorf("pass %d tick %d: ExchTS shifted by %d", pass, i, b.ExchTS-a.ExchTS)
			}
			a.ID, b.ID, b.RecvTS, b.ExchTS, b.IngestTS = 0, 0, a.RecvTS, a.ExchTS, a.IngestTS
			if a != b {
				t.Errorf("pass %d tick %d differs beyond the shift: %+v vs %+v", pass, i, a, b)
			}
		}
	}
	// The first pass of a looping replay is the plain replay.
	plain := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}}, nil))
	if !bytes.Equal(encodeTicks(plain), encodeTicks(got[:3])) {
		t.Error("first loop pass differs from a plain replay")
	}
}

func TestReplayPacing(t *testing.T) {
	// Four frames recorded over 300 ms.
	path := writeCapture(t, "binance_spot_btcusdt_paced.txt", false,
		"1700000000000000000 "+tradeFrame("BTCUSDT", 1, 1700000000000),
		"1700000000100000000 "+tradeFrame("BTCUSDT", 2, 1700000000100),
		"1700000000200000000 "+tradeFrame("BTCUSDT", 3, 1700000000200),
		"1700000000300000000 "+tradeFrame("BTCUSDT", 4, 1700000000300),
	)
	for _, c := range []struct {
		speed float64
		min   time.Duration
	}{{1, 300 * time.Millisecond}, {3, 100 * time.Millisecond}} {
		r := newReplayer(t, ReplayConfig{Paths: []string{path}, Speed: c.speed}, nil)
		start := time.Now()
		var at []time.Duration
		if err := r.Run(context.Background(), func(ts []market.Tick) error {
			at = append(at, time.Since(start))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// Only lower bounds: the machine may be slow, never early.
		if len(at) != 4 {
			t.Fatalf("speed %v: %d batches", c.speed, len(at))
		}
		for i, d := range at {
			if want := time.Duration(float64(i) * float64(100*time.Millisecond) / c.speed); d < want-time.Millisecond {
				t.Errorf("speed %v: frame %d emitted after %v, before its offset %v", c.speed, i, d, want)
			}
		}
		if el := time.Since(start); el < c.min-time.Millisecond {
			t.Errorf("speed %v: replay took %v, want at least %v", c.speed, el, c.min)
		}
	}
}

func TestReplayCancel(t *testing.T) {
	// Frames an hour apart at recorded pace: only cancellation ends this.
	path := writeCapture(t, "binance_spot_btcusdt_slow.txt", false,
		"1700000000000000000 "+tradeFrame("BTCUSDT", 1, 1700000000000),
		"1700003600000000000 "+tradeFrame("BTCUSDT", 2, 1700003600000),
	)
	r := newReplayer(t, ReplayConfig{Paths: []string{path}, Speed: 1}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(ts []market.Tick) error { n += len(ts); return nil })
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		if n != 1 {
			t.Fatalf("%d ticks before cancel, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// A cancelled context stops a fast replay too.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	r = newReplayer(t, ReplayConfig{Paths: []string{testdataPath("binance_usdm_btcusdt_20240808_head1500.gz")}, Loop: true}, nil)
	if err := r.Run(ctx, func([]market.Tick) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestReplayEmitError(t *testing.T) {
	boom := errors.New("boom")
	r := newReplayer(t, ReplayConfig{Paths: []string{testdataPath("cryptofeed_BINANCE.ws.1.0")}}, nil)
	calls := 0
	err := r.Run(context.Background(), func([]market.Tick) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Run = %v after %d calls, want boom after 1", err, calls)
	}
}

func TestReplayMalformedLines(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	path := writeCapture(t, "capture.log", true,
		"wss://fstream.binance.com/stream?streams=btcusdt@trade <-> 1626992740.179554",
		`wss://fstream.binance.com/stream?streams=btcusdt@trade <- 1626992740.2: {"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}`,
		`1626992740.3: {"result":null,"id":1}`,
		"garbage without timestamp",
		"",
		"1626992741: "+tradeFrame("BTCUSDT", 1, 1626992741000),
		`1626992741.5: {"stream":"btcusdt@trade","data":{"e":"trade"`,
		`1626992741.6: {"e":"trade","s":"BTCUSDT","t":2,"p":"x","q":"1","m":true}`,
		"99999999999999999999 "+tradeFrame("BTCUSDT", 3, 1),
		"1626992742.25: "+tradeFrame("BTCUSDT", 4, 1626992742000),
		`https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=1000 -> 1626992743.5: {"lastUpdateId":9,"E":1,"T":2,"bids":[["1","2"]],"asks":[]}`,
	)
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}}, m))
	if len(ticks) != 3 {
		t.Fatalf("%d ticks, want 3: %+v", len(ticks), ticks)
	}
	if ticks[0].TradeID != 1 || ticks[0].RecvTS != 1626992741_000000000 || ticks[0].Venue != "binance-usdm" {
		t.Errorf("tick 0 = %+v", ticks[0])
	}
	if ticks[1].TradeID != 4 || ticks[1].RecvTS != 1626992742_250000000 {
		t.Errorf("tick 1 = %+v", ticks[1])
	}
	if s := ticks[2]; s.Kind != market.KindSnapshot || s.Symbol != "ETHUSDT" || s.Instrument != "ETH-USDT-PERP" || s.Seq != 9 || s.ExchTS != 2e6 {
		t.Errorf("REST snapshot tick = %+v", s)
	}
	for reason, want := range map[string]float64{"bad_timestamp": 2} {
		if got := testutil.ToFloat64(m.replayMalformed.WithLabelValues(reason)); got != want {
			t.Errorf("replay malformed{%s} = %v, want %v", reason, got, want)
		}
	}
	for reason, want := range map[string]float64{"bad_json": 1, "bad_number": 1} {
		if got := testutil.ToFloat64(m.malformed.WithLabelValues("binance-usdm", reason)); got != want {
			t.Errorf("frames malformed{%s} = %v, want %v", reason, got, want)
		}
	}
	for kind, want := range map[string]float64{"connection": 1, "client_send": 1, "frame": 5, "snapshot": 1, "malformed": 2} {
		if got := testutil.ToFloat64(m.replayLines.WithLabelValues(kind)); got != want {
			t.Errorf("replay lines{%s} = %v, want %v", kind, got, want)
		}
	}
	if got := testutil.ToFloat64(m.ignored.WithLabelValues("binance-usdm", "response")); got != 1 {
		t.Errorf("ignored response = %v, want 1", got)
	}
}

func TestReplayRESTLines(t *testing.T) {
	// cryptofeed's *.http.* files: the URL gives the symbol and the market.
	path := writeCapture(t, "rest.0.0", false,
		`https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000 -> 1633998512.320639: {"lastUpdateId":499869752,"bids":[["0.35210000","672.00000000"]],"asks":[]}`,
		`https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000 -> 1626992741.301402: {"lastUpdateId":600859605926,"E":1626992741297,"T":1626992741288,"bids":[],"asks":[["7.6120","297"]]}`,
	)
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}}, nil))
	if len(ticks) != 2 {
		t.Fatalf("%d ticks", len(ticks))
	}
	if a := ticks[0]; a.Venue != "binance" || a.Instrument != "NKN-USDT" || a.Seq != 499869752 || a.Side != market.SideBuy || a.RecvTS != 1633998512_320639000 || a.ExchTS != 0 {
		t.Errorf("spot REST tick %+v", a)
	}
	if b := ticks[1]; b.Venue != "binance-usdm" || b.Instrument != "SUSHI-USDT-PERP" || b.ExchTS != 1626992741288_000000 || b.Side != market.SideSell || b.Price != 7.612 {
		t.Errorf("usdm REST tick %+v", b)
	}
}

func TestReplaySnapshotSymbolFromName(t *testing.T) {
	path := writeCapture(t, "binance_spot_ethbtc_20240808.gz", true,
		`1700000000000000000 {"lastUpdateId":5,"bids":[["0.05","1"]],"asks":[["0.06","2"]]}`,
		"1700000000000000001 "+tradeFrame("BNBETH", 1, 1700000000000),
		`1700000000000000002 {"lastUpdateId":6,"bids":[],"asks":[["0.06","3"]]}`,
	)
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{path}}, nil))
	if len(ticks) != 4 {
		t.Fatalf("%d ticks", len(ticks))
	}
	// The first snapshot precedes any frame: the file name names it; the
	// second follows a BNBETH frame: the last seen symbol wins.
	if ticks[0].Symbol != "ETHBTC" || ticks[1].Symbol != "ETHBTC" || ticks[3].Symbol != "BNBETH" || ticks[3].Seq != 6 {
		t.Errorf("ticks = %+v", ticks)
	}
}

func TestNewReplayerValidation(t *testing.T) {
	good := testdataPath("cryptofeed_BINANCE.ws.1.0")
	noMarket := writeCapture(t, "capture.txt", false, "1700000000000000000 "+tradeFrame("BTCUSDT", 1, 1))
	fromContent := writeCapture(t, "capture2.txt", false,
		"wss://fstream.binance.com/stream?streams=btcusdt@trade <-> 1626992740.179554",
		"1626992741: "+tradeFrame("BTCUSDT", 1, 1626992741000))
	coinM := writeCapture(t, "binance_cm_btcusd_perp_20240808.gz", true, "1700000000000000000 {}")
	coinMConn := writeCapture(t, "capture3.txt", false, "wss://dstream.binance.com/stream?streams=btcusd_perp@trade <-> 1626992740.1")
	cases := []struct {
		name string
		cfg  ReplayConfig
		want string
	}{
		{"no paths", ReplayConfig{}, "no capture files"},
		{"missing file", ReplayConfig{Paths: []string{good, "/nonexistent/x.gz"}}, "/nonexistent/x.gz"},
		{"directory", ReplayConfig{Paths: []string{t.TempDir()}}, "not a regular file"},
		{"negative speed", ReplayConfig{Paths: []string{good}, Speed: -1}, "speed"},
		{"NaN speed", ReplayConfig{Paths: []string{good}, Speed: nan()}, "speed"},
		{"negative limit", ReplayConfig{Paths: []string{good}, Limit: -1}, "limit"},
		{"bad market", ReplayConfig{Paths: []string{good}, Market: "coinm"}, "market"},
		{"uninferable market", ReplayConfig{Paths: []string{noMarket}}, "Binance market"},
		{"coin-m", ReplayConfig{Paths: []string{coinM}}, "COIN-M"},
		{"coin-m connection", ReplayConfig{Paths: []string{coinMConn}}, "COIN-M"},
	}
	for _, c := range cases {
		if _, err := NewReplayer(c.cfg, nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	ticks := collect(t, newReplayer(t, ReplayConfig{Paths: []string{fromContent}}, nil))
	if len(ticks) != 1 || ticks[0].Venue != "binance-usdm" {
		t.Errorf("market from connection line: %+v", ticks)
	}
	ticks = collect(t, newReplayer(t, ReplayConfig{Paths: []string{noMarket}, Market: MarketUSDM}, nil))
	if len(ticks) != 1 || ticks[0].Instrument != "BTC-USDT-PERP" {
		t.Errorf("explicit market: %+v", ticks)
	}
}

func nan() float64 { z := 0.0; return z / z }

// Files recorded over the same period come out merged by receive time, as
// they were received, whatever their order in Paths.
func TestReplayMergesFilesByReceiveTime(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, startNS int64, stepNS int64, n int, sym string) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			recv := startNS + int64(i)*stepNS
			fmt.Fprintf(&b, `%d {"stream":"%s@trade","data":{"e":"trade","E":%d,"s":"%s","t":%d,"p":"100.5","q":"1","T":%d,"m":true}}`+"\n",
				recv, strings.ToLower(sym), recv/1e6, sym, i+1, recv/1e6)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const base = int64(1723161253_000_000_000)
	// b starts earlier and is listed second; their times interleave.
	a := write("a_spot.txt", base+5e6, 10e6, 50, "BTCUSDT")
	b := write("b_spot.txt", base, 7e6, 70, "ETHUSDT")
	r, err := NewReplayer(ReplayConfig{Paths: []string{a, b}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recvs []int64
	count := map[string]int{}
	if err := r.Run(context.Background(), func(ticks []market.Tick) error {
		for _, k := range ticks {
			recvs = append(recvs, k.RecvTS)
			count[k.Instrument]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if count["BTC-USDT"] != 50 || count["ETH-USDT"] != 70 {
		t.Fatalf("ticks per instrument %v, want 50 and 70", count)
	}
	if !sort.SliceIsSorted(recvs, func(i, j int) bool { return recvs[i] < recvs[j] }) {
		t.Fatalf("ticks not in receive-time order across files: %v", recvs[:20])
	}
	if recvs[0] != base {
		t.Fatalf("first tick at %d, want the earlier file's first frame %d", recvs[0], base)
	}
}
