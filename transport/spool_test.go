package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/signald-dev/signald/internal/gold"
)

// fzDown fails Add while down is set, like a Redis that is unreachable.
type fzDown struct {
	Backend
	down atomic.Bool
}

func (f *fzDown) Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error) {
	if f.down.Load() {
		return nil, errors.New("connection refused")
	}
	return f.Backend.Add(ctx, stream, payloads)
}

func seqPayloads(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("e%06d", from+i))
	}
	return out
}

// streamSeq asserts that stream holds exactly e<0>..e<n-1>, in order.
func streamSeq(t *testing.T, b Backend, stream string, n int) {
	t.Helper()
	msgs, err := b.Range(context.Background(), stream, "-", "+", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("%s holds %d entries, want %d", stream, len(msgs), n)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("e%06d", i); string(m.Payload) != want {
			t.Fatalf("%s entry %d is %q, want %q", stream, i, m.Payload, want)
		}
	}
}

// TestSpoolFormatGolden pins the spool file's bytes (header, then length,
// CRC32C and body per record).
func TestSpoolFormatGolden(t *testing.T) {
	dir := t.TempDir()
	sp, corrupt, err := openSpool(dir, 0)
	if err != nil || corrupt != 0 {
		t.Fatal(err, corrupt)
	}
	if err := sp.append("sd:ticks:{0}", [][]byte{[]byte("hello"), {}}); err != nil {
		t.Fatal(err)
	}
	if err := sp.append("s", [][]byte{{0, 1, 2, 0xff}}); err != nil {
		t.Fatal(err)
	}
	if err := sp.sync(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, spoolFile))
	if err != nil {
		t.Fatal(err)
	}
	gold.Bytes(t, data, "spool")
	recs, err := sp.read(10)
	if err != nil || len(recs) != 3 || recs[0].stream != "sd:ticks:{0}" || string(recs[0].payload) != "hello" ||
		len(recs[1].payload) != 0 || recs[2].stream != "s" || string(recs[2].payload) != "\x00\x01\x02\xff" {
		t.Fatalf("read back %+v, %v", recs, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, spoolFile)); err != nil || fi.Size() != spoolHeader {
		t.Fatalf("after reading everything the file is %v bytes (%v), want the header only", fi.Size(), err)
	}
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, spoolFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty spool not removed at close: %v", err)
	}
}

// A stop with the backend down spools what is buffered; the next producer on
// the directory appends it first, in order, before its own entries.
func TestSpoolCloseThenNextStart(t *testing.T) {
	mem := NewMemory()
	defer mem.Close()
	b := &fzDown{Backend: mem}
	dir := t.TempDir()
	m := NewMetrics(nil)
	p, err := OpenProducer(b, ProducerConfig{SpoolDir: dir, CloseTimeout: 50 * time.Millisecond}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.PublishBatch(ctx, "s", seqPayloads(0, 300)); err != nil {
		t.Fatal(err)
	}
	fzWaitFor(t, "300 appended", func() bool { n, _ := mem.Len(ctx, "s"); return n == 300 })
	b.down.Store(true)
	if err := p.PublishBatch(ctx, "s", seqPayloads(300, 700)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close with a spool: %v, want nil (entries spooled)", err)
	}
	if got := testutil.ToFloat64(m.spooledTotal); got != 700 {
		t.Fatalf("spooled_total %v, want 700", got)
	}
	if got := testutil.ToFloat64(m.spooled); got != 700 {
		t.Fatalf("spooled gauge %v, want 700", got)
	}
	if got := testutil.ToFloat64(m.dropped); got != 0 {
		t.Fatalf("dropped %v, want 0", got)
	}
	b.down.Store(false)
	m2 := NewMetrics(nil)
	p2, err := OpenProducer(b, ProducerConfig{SpoolDir: dir}, nil, m2)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.PublishBatch(ctx, "s", seqPayloads(1000, 50)); err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	streamSeq(t, mem, "s", 1050)
	// The 50 new entries go through the spool too when the flusher has not
	// emptied it yet: either way, everything spooled was read back.
	un, sp := testutil.ToFloat64(m2.unspooledTotal), testutil.ToFloat64(m2.spooledTotal)
	if un != 700+sp || (sp != 0 && sp != 50) {
		t.Fatalf("unspooled_total %v spooled_total %v, want 700 + spooled_total (0 or 50)", un, sp)
	}
	if got := testutil.ToFloat64(m2.spooled); got != 0 {
		t.Fatalf("spooled gauge %v after draining, want 0", got)
	}
	if _, err := os.Stat(filepath.Join(dir, spoolFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("drained spool still there: %v", err)
	}
}

// Without a spool, entries left at Close are dropped, counted and reported.
func TestNoSpoolCloseCountsDropped(t *testing.T) {
	mem := NewMemory()
	defer mem.Close()
	b := &fzDown{Backend: mem}
	b.down.Store(true)
	m := NewMetrics(nil)
	p := NewProducer(b, ProducerConfig{CloseTimeout: 50 * time.Millisecond}, nil, m)
	if err := p.PublishBatch(context.Background(), "s", seqPayloads(0, 123)); err != nil {
		t.Fatal(err)
	}
	err := p.Close()
	if err == nil || !strings.Contains(err.Error(), "123 entries not published") {
		t.Fatalf("close: %v, want 123 entries not published", err)
	}
	if got := testutil.ToFloat64(m.dropped); got != 123 {
		t.Fatalf("dropped %v, want 123", got)
	}
}

// An outage longer than MaxBuffered allows: Publish does not wait, the
// overflow goes to the spool, and everything is appended in order once the
// backend is back.
func TestSpoolRidesOutLongOutage(t *testing.T) {
	mem := NewMemory()
	defer mem.Close()
	b := &fzDown{Backend: mem}
	b.down.Store(true)
	m := NewMetrics(nil)
	p, err := OpenProducer(b, ProducerConfig{SpoolDir: t.TempDir(), MaxBuffered: 100, MaxBatch: 50}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The first batch fills memory; publishing more must not block once
	// the producer knows the backend fails.
	if err := p.PublishBatch(ctx, "s", seqPayloads(0, 100)); err != nil {
		t.Fatal(err)
	}
	fzWaitFor(t, "a failed append", func() bool { return testutil.ToFloat64(m.publishErrors) > 0 })
	for i := 100; i < 5000; i += 10 {
		if err := p.PublishBatch(ctx, "s", seqPayloads(i, 10)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if got, sp := p.Buffered(), p.Spooled(); got != 100 || sp != 4900 {
		t.Fatalf("buffered %d spooled %d, want 100 and 4900", got, sp)
	}
	if got := testutil.ToFloat64(m.publishWaits); got != 0 {
		t.Fatalf("publish waited %v times, want 0", got)
	}
	b.down.Store(false)
	// New entries during the drain queue behind the spooled ones.
	if err := p.PublishBatch(ctx, "s", seqPayloads(5000, 10)); err != nil {
		t.Fatal(err)
	}
	fzWaitFor(t, "5010 appended", func() bool { n, _ := mem.Len(ctx, "s"); return n == 5010 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	streamSeq(t, mem, "s", 5010)
	st, un := testutil.ToFloat64(m.spooledTotal), testutil.ToFloat64(m.unspooledTotal)
	if st < 4900 || st != un || testutil.ToFloat64(m.spooled) != 0 || testutil.ToFloat64(m.dropped) != 0 {
		t.Fatalf("spooled_total %v unspooled_total %v gauge %v dropped %v", st, un, testutil.ToFloat64(m.spooled), testutil.ToFloat64(m.dropped))
	}
}

// A full spool with SpoolDropNewest drops what does not fit, counted.
func TestSpoolFullDropNewest(t *testing.T) {
	mem := NewMemory()
	defer mem.Close()
	b := &fzDown{Backend: mem}
	b.down.Store(true)
	m := NewMetrics(nil)
	rec := recSize("s", []byte("e000000"))
	p, err := OpenProducer(b, ProducerConfig{SpoolDir: t.TempDir(), MaxBuffered: 10, SpoolMaxBytes: spoolHeader + 20*rec,
		SpoolOverflow: SpoolDropNewest, CloseTimeout: 50 * time.Millisecond}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.PublishBatch(ctx, "s", seqPayloads(0, 10)); err != nil {
		t.Fatal(err)
	}
	fzWaitFor(t, "a failed append", func() bool { return testutil.ToFloat64(m.publishErrors) > 0 })
	for i := 10; i < 50; i++ {
		if err := p.Publish(ctx, "s", seqPayloads(i, 1)[0]); err != nil {
			t.Fatal(err)
		}
	}
	if sp := p.Spooled(); sp != 20 {
		t.Fatalf("spooled %d, want 20", sp)
	}
	if got := testutil.ToFloat64(m.dropped); got != 20 {
		t.Fatalf("dropped %v, want 20", got)
	}
	if got := testutil.ToFloat64(m.spoolOverflow.WithLabelValues("drop-newest")); got != 20 {
		t.Fatalf("overflow %v, want 20", got)
	}
	p.Close()
	// Close spools the 10 buffered ahead of the 20: 30 kept, in order.
	b.down.Store(false)
	dir := p.cfg.SpoolDir
	p2, err := OpenProducer(b, ProducerConfig{SpoolDir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	streamSeq(t, mem, "s", 30)
}

// A record with a bad checksum is skipped and counted; a record cut short
// ends the file; the good ones are appended, in order.
func TestSpoolCorruptRecords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte, rec int) []byte
		want   []int
	}{
		{"bad-checksum", func(d []byte, rec int) []byte { d[int(spoolHeader)+rec+recHeader+5] ^= 0xff; return d }, []int{0, 2, 3}},
		{"cut-short", func(d []byte, rec int) []byte { return d[:len(d)-3] }, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, _, err := openSpool(dir, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.append("s", seqPayloads(0, 4)); err != nil {
				t.Fatal(err)
			}
			if err := sp.sync(); err != nil {
				t.Fatal(err)
			}
			sp.f.Close()
			sp.unlock()
			path := filepath.Join(dir, spoolFile)
			data, _ := os.ReadFile(path)
			data = tc.damage(data, int(recSize("s", []byte("e000000"))))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			mem := NewMemory()
			defer mem.Close()
			m := NewMetrics(nil)
			p, err := OpenProducer(mem, ProducerConfig{SpoolDir: dir}, nil, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(m.spoolCorrupt); got != 1 {
				t.Fatalf("corrupt %v, want 1", got)
			}
			msgs, _ := mem.Range(context.Background(), "s", "-", "+", 0)
			var got []string
			for _, m := range msgs {
				got = append(got, string(m.Payload))
			}
			var want []string
			for _, i := range tc.want {
				want = append(want, fmt.Sprintf("e%06d", i))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("appended %v, want %v", got, want)
			}
		})
	}
}

// startRedis runs a private redis-server on a free loopback port, so a
// test can stop and restart it without touching the shared one.
func startRedis(t *testing.T, port int) (stop func()) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("redis-server on %s did not start", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The spool on real Redis: the server dies mid-run, the producer spools
// what it cannot append and stops; after a restart of the server the next
// producer appends everything, in order, exactly once.
func TestSpoolRedisOutage(t *testing.T) {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 runs them against a private redis-server")
	}
	port := freePort(t)
	stop := startRedis(t, port)
	ctx := context.Background()
	opts := RedisOptions{Addrs: []string{"127.0.0.1:" + strconv.Itoa(port)}, DialTimeout: time.Second}
	r, err := NewRedis(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := NewMetrics(nil)
	p, err := OpenProducer(r, ProducerConfig{SpoolDir: dir, MaxBuffered: 1000, CloseTimeout: 500 * time.Millisecond}, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	const first, total = 20_000, 50_000
	for i := 0; i < first; i += 100 {
		if err := p.PublishBatch(ctx, "s", seqPayloads(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	fzWaitFor(t, "the first entries appended", func() bool { n, _ := r.Len(ctx, "s"); return n == first })
	stop()
	for i := first; i < total; i += 100 {
		if err := p.PublishBatch(ctx, "s", seqPayloads(i, 100)); err != nil {
			t.Fatalf("publish %d with Redis down: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	r.Close()
	if got := testutil.ToFloat64(m.dropped); got != 0 {
		t.Fatalf("dropped %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.spooled); got != total-first {
		t.Fatalf("spooled gauge %v, want %d", got, total-first)
	}
	// The server comes back empty (no persistence): put the first part
	// back as it was, then let the next producer append the spool.
	startRedis(t, port)
	r2, err := NewRedis(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.Add(ctx, "s", seqPayloads(0, first)); err != nil {
		t.Fatal(err)
	}
	m2 := NewMetrics(nil)
	p2, err := OpenProducer(r2, ProducerConfig{SpoolDir: dir}, nil, m2)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Close(); err != nil {
		t.Fatal(err)
	}
	streamSeq(t, r2, "s", total)
	if got := testutil.ToFloat64(m2.unspooledTotal); got != total-first {
		t.Fatalf("unspooled_total %v, want %d", got, total-first)
	}
}

// fzWaitFor polls cond for up to 20s (a bound on a hang, not a timing
// assertion).
func fzWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Two producers never share a spool directory.
func TestSpoolDirLocked(t *testing.T) {
	mem := NewMemory()
	defer mem.Close()
	dir := t.TempDir()
	p, err := OpenProducer(mem, ProducerConfig{SpoolDir: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenProducer(mem, ProducerConfig{SpoolDir: dir}, nil, nil); err == nil || !strings.Contains(err.Error(), "ProducerConfig.SpoolDir") {
		t.Fatalf("second producer on %s: %v, want an error naming ProducerConfig.SpoolDir", dir, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := OpenProducer(mem, ProducerConfig{SpoolDir: dir}, nil, nil)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	p2.Close()
}
