package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/store"
)

// fakeBinance is a local Binance spot: every websocket connection gets n
// BTCUSDT trades (ids 1..n), a depth diff that straddles the REST snapshot,
// then stays open; /api/v3/depth serves the snapshot.
func fakeBinance(t *testing.T, n int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v3/depth" {
			fmt.Fprint(w, `{"lastUpdateId":100,"bids":[["99","1"],["98","2"]],"asks":[["101","1"]]}`)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context())
		send := func(s string) bool { return c.Write(ctx, websocket.MessageText, []byte(s)) == nil }
		send(`{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT","U":99,"u":101,"b":[["99","3"]],"a":[]}}`)
		for i := 1; i <= n; i++ {
			if !send(fmt.Sprintf(`{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000%03d,"s":"BTCUSDT","t":%d,"p":"100.5","q":"0.25","T":1700000000%03d,"m":%v}}`, i, i, i, i%2 == 0)) {
				return
			}
			time.Sleep(time.Millisecond)
		}
		// Depth after the snapshot arrived (the client asks on the first diff).
		time.Sleep(200 * time.Millisecond)
		send(`{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000001000,"s":"BTCUSDT","U":102,"u":102,"b":[],"a":[["101","0"],["102","5"]]}}`)
		<-ctx.Done()
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

// TestDecodeCommand: decode prints one JSON object per tick, every field of
// the model, the same ticks the replayer gives.
func TestDecodeCommand(t *testing.T) {
	files := []string{filepath.Join("..", "..", "testdata", "binance", "cryptofeed_BINANCE.ws.1.0"),
		filepath.Join("..", "..", "testdata", "binance", "cryptofeed_BINANCE.http.0.0")}
	stdout, stderr, err := runCLI(t, append([]string{"decode", "--venue", "binance"}, files...)...)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	r, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: files, Venue: "binance", BookSync: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []market.Tick
	r.Run(context.Background(), func(ts []market.Tick) error { want = append(want, ts...); return nil })
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(want) || len(want) < 1000 {
		t.Fatalf("%d lines, %d ticks", len(lines), len(want))
	}
	kinds := map[string]int{}
	for i, l := range lines {
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(l))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		if len(m) != 17 {
			t.Fatalf("line %d has %d fields: %s", i+1, len(m), l)
		}
		w := want[i]
		num := func(k string) string { return string(m[k].(json.Number)) }
		if m["venue"] != w.Venue || m["instrument"] != w.Instrument || m["symbol"] != w.Symbol || m["kind"] != w.Kind.String() ||
			m["side"] != w.Side.String() || num("id") != strconv.FormatUint(w.ID, 10) || num("recv_ts") != strconv.FormatInt(w.RecvTS, 10) ||
			num("exch_ts") != strconv.FormatInt(w.ExchTS, 10) || num("seq") != strconv.FormatUint(w.Seq, 10) || num("ingest_ts") != num("recv_ts") {
			t.Fatalf("line %d = %s, want %+v", i+1, l, w)
		}
		if p, _ := strconv.ParseFloat(num("price"), 64); p != w.Price {
			t.Fatalf("line %d price %v, want %v", i+1, p, w.Price)
		}
		kinds[m["kind"].(string)]++
	}
	for _, k := range []string{"trade", "quote", "book_delta", "snapshot"} {
		if kinds[k] == 0 {
			t.Errorf("no %s ticks in %v", k, kinds)
		}
	}
	if _, stderr, err := runCLI(t, "decode", "--venue", "nosuch", files[0]); err == nil || !strings.Contains(stderr, "unknown venue") {
		t.Errorf("bad venue: %v %s", err, stderr)
	}
}

// TestCaptureThenReplay records the fake venue, stops with SIGINT, and
// replays the file: every frame sent comes back with its ticks, and the
// REST snapshot as a snapshot line.
func TestCaptureThenReplay(t *testing.T) {
	const n = 50
	srv := fakeBinance(t, n)
	out := filepath.Join(t.TempDir(), "cap", "binance.gz")
	cmd := execCapture(t, "--venue", "binance", "--symbols", "BTCUSDT", "--channels", "trades,book", "--out", out,
		"--endpoint", wsURL(srv), "--rest-endpoint", srv.URL)
	time.Sleep(1500 * time.Millisecond)
	cmd.cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.wait(t, 10*time.Second); err != nil {
		t.Fatalf("capture: %v\n%s", err, cmd.stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip stream incomplete: %v", err)
	}
	var frames, snaps int
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, srv.URL+"/api/v3/depth?symbol=BTCUSDT&limit=1000 -> ") {
			snaps++
			continue
		}
		ts, body, ok := strings.Cut(l, " ")
		if ns, err := strconv.ParseInt(ts, 10, 64); !ok || err != nil || ns < time.Now().Add(-time.Minute).UnixNano() || !strings.HasPrefix(body, `{"stream":`) {
			t.Fatalf("bad line %q", l)
		}
		frames++
	}
	if frames != n+2 || snaps != 1 {
		t.Fatalf("%d frames, %d snapshots; want %d and 1", frames, snaps, n+2)
	}
	r, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: []string{out}, Venue: "binance", BookSync: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[market.Kind]int{}
	if err := r.Run(context.Background(), func(ts []market.Tick) error {
		for _, k := range ts {
			kinds[k.Kind]++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 50 trades; the 3-level snapshot; the straddling diff (1 level) and
	// the later one (2 levels).
	if kinds[market.KindTrade] != n || kinds[market.KindSnapshot] != 3 || kinds[market.KindBookDelta] != 3 || kinds[market.KindGap] != 0 {
		t.Errorf("replayed kinds %v", kinds)
	}
	// An existing file is never overwritten.
	if _, stderr, err := runCLI(t, "capture", "--venue", "binance", "--symbols", "BTCUSDT", "--out", out, "--endpoint", wsURL(srv)); err == nil || !strings.Contains(stderr, "never overwritten") {
		t.Errorf("overwrite: %v %s", err, stderr)
	}
}

func execCapture(t *testing.T, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(binPath, append([]string{"capture"}, args...)...), stderr: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd.Stderr = d.stderr
	d.cmd.Env = cleanEnv()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
	return d
}

// TestRunLive: `signald run --live` against the fake venue stores the
// trades and the book, and stops cleanly on SIGTERM.
func TestRunLive(t *testing.T) {
	const n = 30
	srv := fakeBinance(t, n)
	dir := t.TempDir()
	addr := freePort(t)
	d := startDaemon(t, "--live", "binance:BTCUSDT", "--live-channels", "trades,book",
		"--live-endpoint", "binance="+wsURL(srv), "--live-rest-endpoint", "binance="+srv.URL,
		"--data", dir, "--http", addr)
	d.waitMetrics(t, addr, "the live ticks", 15*time.Second, func(m string) bool {
		return strings.Contains(m, `signald_ingest_connections_open{venue="binance"} 1`) &&
			strings.Contains(m, fmt.Sprintf("signald_pipeline_ticks_published_total %d", n+6))
	})
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.wait(t, 20*time.Second); err != nil {
		t.Fatalf("daemon: %v", err)
	}
	st, err := store.OpenParquet(store.ParquetOptions{Dir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kinds := map[market.Kind]int{}
	st.ReadTicks(context.Background(), store.Query{}, func(b []market.Tick) error {
		for _, k := range b {
			if k.Venue != "binance" || k.Instrument != "BTC-USDT" {
				t.Errorf("stored %+v", k)
			}
			kinds[k.Kind]++
		}
		return nil
	})
	if kinds[market.KindTrade] != n || kinds[market.KindSnapshot] != 3 || kinds[market.KindBookDelta] != 3 {
		t.Errorf("stored kinds %v", kinds)
	}
}

func TestLiveFlagsValidate(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--live", "binance"}, "venue:SYMBOL"},
		{[]string{"--live", "nosuch:X"}, "unknown venue"},
		{[]string{"--live", "binance:BTCUSDT", "--live-channels", "candles"}, "candles"},
		{[]string{"--live", "binance:BTCUSDT", "--live-overflow", "maybe"}, "--live-overflow"},
		{[]string{"--live", "binance:BTCUSDT", "--replay", spotCapture}, "choose one"},
		{[]string{"--live-endpoint", "binance=ws://x"}, "without --live"},
		{[]string{"--replay-venue", "nosuch"}, "--replay-venue"},
		{[]string{"--live", "binance:BTCUSDT", "--live-endpoint", "kraken=ws://x"}, "no --live kraken"},
	} {
		_, err := parseRunFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	cfg, err := parseRunFlags([]string{"--live", "binance:BTCUSDT,ETHUSDT", "--live", "binance-usdm:BTCUSDT"}, io.Discard)
	if err != nil || len(cfg.Live.Specs) != 2 || len(cfg.Live.Specs[0].Symbols) != 2 || len(cfg.Live.Channels) != 3 {
		t.Errorf("%+v %v", cfg, err)
	}
}

// TestCaptureWriterRotates: with a rotation period every file is a
// complete gzip stream, and the lines are split between them in order.
func TestCaptureWriterRotates(t *testing.T) {
	dir := t.TempDir()
	w := &captureWriter{base: filepath.Join(dir, "x.gz"), rotate: time.Second}
	if err := w.open(time.Now()); err != nil {
		t.Fatal(err)
	}
	w.frame(1, []byte(`{"a":1}`), false)
	w.frame(2, []byte("bin\x00\n'"), true)
	w.opened = w.opened.Add(-2 * time.Second) // due
	w.snapshot(3_500000000, ingest.SnapshotRequest{URL: "https://h/depth?symbol=X"}, []byte(`{"b":2}`))
	w.frame(4, []byte("two\nlines"), false)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "x-*.gz"))
	if len(files) != 2 || w.files != 2 {
		t.Fatalf("files %v", files)
	}
	// x-<time>.gz, then x-<time>-1.gz (the same second)
	sort.Slice(files, func(i, j int) bool {
		return len(files[i]) < len(files[j]) || len(files[i]) == len(files[j]) && files[i] < files[j]
	})
	var lines []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		fh.Close()
		lines = append(lines, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	want := []string{`1 {"a":1}`, `2 b'bin\x00\x0a\''`, `https://h/depth?symbol=X -> 3.500000000: {"b":2}`, `4 b'two\x0alines'`}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines\n%q\nwant\n%q", lines, want)
	}
}
