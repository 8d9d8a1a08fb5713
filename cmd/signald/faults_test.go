package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signald-dev/signald/internal/faultnet"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// What ingest published (its ledger) reconciles with what the run stored;
// a corrupt data file is skipped and reported by backtest (an error with
// --strict) and shows in reconcile as missing ticks, with a non-zero exit.
func TestReconcileAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, "--replay", spotCapture, "--limit", "4000", "--speed", "0", "--exit-when-done", "--data", dir, "--http", freePort(t))
	if err := d.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("daemon: %v\n%s", err, tail(d.stderr.String(), 3000))
	}
	_, stderr, err := runCLI(t, "reconcile", "--data", dir)
	if err != nil || !strings.Contains(stderr, "4000 published, 0 missing") {
		t.Fatalf("reconcile after a clean run: %v\n%s", err, stderr)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "ticks", "*", "*.parquet"))
	if len(files) == 0 {
		t.Fatal("no tick files")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(files[0], b[:len(b)/2], 0o644) // truncated

	_, stderr, err = runCLI(t, "backtest", "--data", dir)
	if err != nil || !strings.Contains(stderr, "skipped unreadable file "+files[0]) || !strings.Contains(stderr, "1 unreadable files skipped") {
		t.Fatalf("backtest over a truncated file: %v\n%s", err, tail(stderr, 2000))
	}
	if _, err := os.Stat(files[0]); err != nil {
		t.Fatal("a read-only backtest moved the file")
	}
	if _, stderr, err = runCLI(t, "backtest", "--data", dir, "--strict"); err == nil || !strings.Contains(stderr, "corrupt data file") {
		t.Fatalf("backtest --strict over a truncated file: %v\n%s", err, tail(stderr, 2000))
	}
	stdout, stderr, err := runCLI(t, "reconcile", "--data", dir)
	if err == nil || !strings.Contains(stderr, "binance BTC-USDT:") || !strings.Contains(stderr, "above the 0.100% threshold") ||
		!strings.Contains(stdout, "missing") {
		t.Fatalf("reconcile with ticks missing: %v\n%s\n%s", err, stdout, stderr)
	}
	if _, stderr, err = runCLI(t, "reconcile", "--data", filepath.Join(dir, "nope")); err == nil || !strings.Contains(stderr, "--ledger") {
		t.Fatalf("reconcile without a ledger: %v\n%s", err, stderr)
	}
}

// Entries the store group has not read are trimmed away by hand while the
// store is stalled (a hung ClickHouse): the ticks that never reach the store
// are counted exactly (published - stored = the lost-tick log lines'
// total), nothing is stored twice after FINAL, and reconcile reports the
// same loss from ingest's ledger.
func TestExternalTrimLossIsCounted(t *testing.T) {
	redisAddr, chAddr := integration(t)
	px, err := faultnet.Listen(chAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	prefix := fmt.Sprintf("sdtrim%d", rand.Uint32())
	dropStreams(t, redisAddr, prefix)
	db := fmt.Sprintf("sdtrim_%d", rand.Uint32())
	const limit = 20000
	want := expectedTicks(t, spotCapture, limit)
	data := t.TempDir()
	// --speed 10: the replay lasts seconds, so the stall starts before
	// most ticks are stored, whatever the machine's speed.
	d := startDaemon(t, "--replay", spotCapture, "--limit", fmt.Sprint(limit), "--speed", "10", "--exit-when-done",
		"--http", freePort(t), "--redis", redisAddr, "--stream-prefix", prefix, "--shards", "1",
		"--clickhouse", px.Addr(), "--clickhouse-db", db, "--loss-delay", "2s", "--data", data)
	d.waitLog(t, "store: ClickHouse", time.Minute)
	px.Freeze() // the store stalls; ingest and the feature stage go on
	d.waitLog(t, "ingest done", time.Minute)
	r, err := transport.NewRedis(context.Background(), transport.RedisOptions{Addrs: []string{redisAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// What `XTRIM <stream> MAXLEN 100` does by hand.
	if _, err := r.TrimMaxLen(context.Background(), prefix+":ticks:{0}", 100); err != nil {
		t.Fatal(err)
	}
	px.Thaw()
	assertLossCounted(t, d, want, chAddr, db, data, "the store came back")
}

// Redis is SIGKILLed while the store is stalled and its AOF is cut back, as
// an OS crash with appendfsync everysec can: the ticks that never reach the
// store are counted exactly (published - stored = the lost-tick log lines),
// nothing is stored twice after FINAL, and reconcile agrees.
func TestRedisAOFTailLostIsCounted(t *testing.T) {
	_, chAddr := integration(t)
	px, err := faultnet.Listen(chAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	_, port, _ := net.SplitHostPort(freePort(t))
	dir := t.TempDir()
	rds := startRedis(t, port, dir)
	db := fmt.Sprintf("sdaof_%d", rand.Uint32())
	const limit = 20000
	want := expectedTicks(t, spotCapture, limit)
	data := t.TempDir()
	d := startDaemon(t, "--replay", spotCapture, "--limit", fmt.Sprint(limit), "--speed", "10", "--exit-when-done",
		"--http", freePort(t), "--redis", "127.0.0.1:"+port, "--shards", "1", "--clickhouse", px.Addr(), "--clickhouse-db", db,
		"--loss-delay", "2s", "--data", data)
	d.waitLog(t, "store: ClickHouse", time.Minute)
	px.Freeze() // the store falls behind: what Redis loses now was never stored
	d.waitLog(t, "ingest done", time.Minute)
	rds.Process.Signal(syscall.SIGKILL)
	rds.Wait()
	aofs, _ := filepath.Glob(filepath.Join(dir, "appendonlydir", "*.incr.aof"))
	if len(aofs) != 1 {
		t.Fatalf("AOF files %v", aofs)
	}
	st, err := os.Stat(aofs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(aofs[0], st.Size()*3/4); err != nil { // the unsynced tail
		t.Fatal(err)
	}
	startRedis(t, port, dir)
	px.Thaw()
	assertLossCounted(t, d, want, chAddr, db, data, "Redis and the store came back")
}

// assertLossCounted waits for the daemon to finish, then checks that every
// tick of want missing from the store was counted lost (the log lines),
// that nothing is stored twice after FINAL, and that reconcile reports the
// same loss from ingest's ledger; it logs the figures.
func assertLossCounted(t *testing.T, d *daemon, want map[uint64]bool, chAddr, db, data, event string) {
	t.Helper()
	start := time.Now()
	if err := d.wait(t, 3*time.Minute); err != nil {
		t.Fatalf("daemon: %v\n%s", err, tail(d.stderr.String(), 3000))
	}
	recovery := time.Since(start)
	ch := openCH(t, chAddr, db)
	stored := storedIDs(t, ch)
	missing := 0
	for id := range want {
		if stored[id] == 0 {
			missing++
		}
	}
	counted := sumLogField(d.stderr.String(), "ticks lost between ingest and the store", "ticks=")
	if missing == 0 {
		t.Fatalf("nothing was lost: the test did not test it\n%s", tail(d.stderr.String(), 2000))
	}
	if counted != missing {
		t.Fatalf("%d ticks missing from the store, %d counted lost\n%s", missing, counted, tail(d.stderr.String(), 3000))
	}
	rows, err := ch.CountTickRows(context.Background(), store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	distinct, err := ch.CountTicks(context.Background(), store.Query{})
	if err != nil || distinct != int64(len(want)-missing) {
		t.Fatalf("%d distinct ticks after FINAL (%v), want %d", distinct, err, len(want)-missing)
	}
	sigs := sumLogField(d.stderr.String(), "signals lost between ingest and the store", "signals=")
	t.Logf("lost %d of %d ticks, all counted; %d signals counted lost; rows before FINAL %d, after %d; the run ended %v after %s",
		missing, len(want), sigs, rows, distinct, recovery.Round(time.Second), event)
	_, stderr, err := runCLI(t, "reconcile", "--clickhouse", chAddr, "--clickhouse-db", db, "--data", data)
	if err == nil || !strings.Contains(stderr, fmt.Sprintf("%d missing from the store", missing)) {
		t.Fatalf("reconcile: %v\n%s", err, stderr)
	}
}

// sumLogField adds up field=N over the log lines that contain msg.
func sumLogField(log, msg, field string) int {
	total := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, field); ok {
				var n int
				fmt.Sscan(v, &n)
				total += n
			}
		}
	}
	return total
}
