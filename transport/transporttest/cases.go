package transporttest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signald-dev/signald/transport"
)

func testNoFailures(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const shards, n = 4, 5000
	want := publishN(t, b, prefix, shards, n)
	col := newCollector()
	streams := transport.ShardStreams(prefix, shards)
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 300}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "all entries", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := col.count(); got != n {
		t.Fatalf("handled %d entries, want exactly %d", got, n)
	}
	for s, w := range want {
		got := col.seen[s]
		if len(got) != len(w) {
			t.Fatalf("%s: %d entries, want %d", s, len(got), len(w))
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("%s: entry %d is %q, want %q (order broken)", s, i, got[i], w[i])
			}
		}
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d entries pending after a clean stop", p)
	}
	for _, s := range streams {
		if lag, err := b.Lag(context.Background(), s, "g"); err != nil || lag != 0 {
			t.Fatalf("lag %d, %v after consuming everything", lag, err)
		}
	}
	// New entries show up as lag.
	if _, err := b.Add(context.Background(), streams[0], [][]byte{[]byte("x"), []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if lag, err := b.Lag(context.Background(), streams[0], "g"); err != nil || lag != 2 {
		t.Fatalf("lag %d, %v; want 2", lag, err)
	}
}

func testHandlerError(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 500
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var calls atomic.Int64
	h := func(ctx context.Context, msgs []transport.Message) error {
		if calls.Add(1)%3 == 1 { // fail the first attempt of many batches
			return errors.New("injected failure")
		}
		return col.handle(ctx, msgs)
	}
	streams := transport.ShardStreams(prefix, 1)
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 50, RetryBackoff: time.Millisecond}, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "all entries", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Failed batches are retried as a whole; successful ones are never handled again.
	if got := col.count(); got != n {
		t.Fatalf("handled %d, want %d", got, n)
	}
	seen := map[string]bool{}
	for _, p := range col.seen[streams[0]] {
		if seen[p] {
			t.Fatalf("duplicate %s", p)
		}
		seen[p] = true
	}
	if calls.Load() <= int64(n/50) {
		t.Fatalf("handler called %d times; injected failures did not happen", calls.Load())
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

// abandoned publishes n entries on one stream of group "g" and reads k of
// them as consumer, which then "dies" without acknowledging them.
func abandoned(t *testing.T, b transport.Backend, prefix string, n int, consumer string, k int) ([]string, []transport.Message) {
	t.Helper()
	publishN(t, b, prefix, 1, n)
	streams := transport.ShardStreams(prefix, 1)
	ctx := context.Background()
	if err := b.CreateGroup(ctx, streams[0], "g", "0"); err != nil {
		t.Fatal(err)
	}
	read, err := b.ReadGroup(ctx, streams[0], "g", consumer, ">", k, 0)
	if err != nil || len(read) != k {
		t.Fatalf("read %d, %v", len(read), err)
	}
	return streams, read
}

func testOwnPending(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 300
	streams, read := abandoned(t, b, prefix, n, "worker-1", 120)
	col := newCollector()
	// Restarted under the same name, with reclaim effectively off.
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Consumer: "worker-1", MinIdle: time.Hour}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "all entries", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := col.seen[streams[0]]
	if len(got) != n {
		t.Fatalf("handled %d, want %d", len(got), n)
	}
	if got[0] != string(read[0].Payload) || got[119] != string(read[119].Payload) {
		t.Fatalf("own pending entries not handled first: %q %q", got[0], got[119])
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

func testReclaim(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 200
	streams, read := abandoned(t, b, prefix, n, "crashed", 80)
	col := newCollector()
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Consumer: "survivor",
		MinIdle: 50 * time.Millisecond, ClaimInterval: 20 * time.Millisecond}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "all entries incl. reclaimed", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range col.seen[streams[0]] {
		seen[p]++
	}
	if len(seen) != n {
		t.Fatalf("distinct handled %d, want %d", len(seen), n)
	}
	for _, m := range read {
		if seen[string(m.Payload)] == 0 {
			t.Fatalf("crashed consumer's entry %s never reclaimed", m.Payload)
		}
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

func testClaimDeleted(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 1)
	ctx := context.Background()
	ids, err := b.Add(ctx, streams[0], [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateGroup(ctx, streams[0], "g", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadGroup(ctx, streams[0], "g", "c1", ">", 10, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Trim(ctx, streams[0], ids[2]); err != nil || n != 2 {
		t.Fatalf("trim removed %d, %v; want 2", n, err)
	}
	msgs, deleted, err := b.Claim(ctx, streams[0], "g", "c2", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].Payload) != "c" {
		t.Fatalf("claimed %+v, want only c", msgs)
	}
	if len(deleted) != 2 || deleted[0] != ids[0] || deleted[1] != ids[1] {
		t.Fatalf("deleted %v, want %v", deleted, ids[:2])
	}
	if p, _ := b.Pending(ctx, streams[0], "g"); p != 1 {
		t.Fatalf("pending %d, want 1 (deleted ids leave the pending list)", p)
	}
}

func testTwoGroups(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 400
	publishN(t, b, prefix, 2, n)
	streams := transport.ShardStreams(prefix, 2)
	c1, c2 := newCollector(), newCollector()
	a, _ := transport.NewConsumer(b, transport.ConsumerConfig{Group: "store", Streams: streams}, c1.handle, nil, nil)
	z, _ := transport.NewConsumer(b, transport.ConsumerConfig{Group: "features", Streams: streams}, c2.handle, nil, nil)
	s1, s2 := runConsumer(t, a), runConsumer(t, z)
	waitFor(t, "both groups", func() bool { return c1.count() >= n && c2.count() >= n })
	if err := errors.Join(s1(), s2()); err != nil {
		t.Fatal(err)
	}
	if c1.count() != n || c2.count() != n {
		t.Fatalf("groups saw %d and %d, want %d each", c1.count(), c2.count(), n)
	}
}

func testStop(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 2)
	col := newCollector()
	c, _ := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Block: 10 * time.Second}, col.handle, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // let the readers block
	cancel()
	// Liveness, not a latency target: a 10 s BLOCK must not hold up the stop.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Run did not return after cancel while blocked in a read")
	}
	c.Close()
	c.Close() // idempotent
}

func testRangeTrim(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	var payloads [][]byte
	for i := 0; i < 10; i++ {
		payloads = append(payloads, []byte{byte('0' + i)})
	}
	ids, err := b.Add(ctx, s, payloads)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Range(ctx, s, ids[3], ids[6], 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || string(got[0].Payload) != "3" || string(got[3].Payload) != "6" {
		t.Fatalf("range %v", got)
	}
	if got, _ := b.Range(ctx, s, "-", "+", 2); len(got) != 2 {
		t.Fatalf("range with count: %d", len(got))
	}
	if _, err := b.Trim(ctx, s, ids[5]); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Len(ctx, s); n != 5 {
		t.Fatalf("len after trim %d, want 5", n)
	}
}

func testConcurrent(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const shards, n = 3, 3000
	publishN(t, b, prefix, shards, n)
	streams := transport.ShardStreams(prefix, shards)
	col := newCollector()
	var inFlight, maxInFlight atomic.Int64
	h := func(ctx context.Context, msgs []transport.Message) error {
		cur := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond) // long enough for calls to overlap
		inFlight.Add(-1)
		return col.handle(ctx, msgs)
	}
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 50, MaxBatch: 50, Concurrency: 3}, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "all entries", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, ps := range col.seen {
		for _, p := range ps {
			if seen[p] {
				t.Fatalf("duplicate %s", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("handled %d distinct, want %d", len(seen), n)
	}
	if maxInFlight.Load() < 2 {
		t.Fatalf("handler calls never overlapped (max in flight %d)", maxInFlight.Load())
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

func testLinger(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 1)
	const n = 60
	col := newCollector()
	var maxBatch atomic.Int64
	h := func(ctx context.Context, msgs []transport.Message) error {
		if l := int64(len(msgs)); l > maxBatch.Load() {
			maxBatch.Store(l)
		}
		return col.handle(ctx, msgs)
	}
	// Reads return one entry each; only lingering can make larger batches.
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 1, MaxBatch: n, Linger: 300 * time.Millisecond}, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	p := transport.NewProducer(b, transport.ProducerConfig{}, nil, nil)
	for i := 0; i < n; i++ {
		if err := p.Publish(context.Background(), streams[0], []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(context.Background()); err != nil { // one entry at a time
			t.Fatal(err)
		}
	}
	p.Close()
	waitFor(t, "all entries", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if col.count() != n || maxBatch.Load() < 2 {
		t.Fatalf("handled %d, largest batch %d: lingering did not combine reads", col.count(), maxBatch.Load())
	}
	for i, p := range col.seen[streams[0]] {
		if p != strconv.Itoa(i) {
			t.Fatalf("entry %d is %s: order broken", i, p)
		}
	}
}

func testRetention(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	payloads := make([][]byte, 100)
	for i := range payloads {
		payloads[i] = []byte(strconv.Itoa(i))
	}
	ids, err := b.Add(ctx, s, payloads)
	if err != nil {
		t.Fatal(err)
	}
	cfg := transport.RetentionConfig{Streams: []string{s}, Groups: []string{"g1", "g2"}, Keep: time.Millisecond}
	r, err := transport.NewRetention(b, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every entry is old: Keep before now is past the millisecond of the last.
	time.Sleep(time.Until(idTime(t, ids[len(ids)-1]).Add(cfg.Keep + 2*time.Millisecond)))
	// g2 does not exist yet: its position is unknown, nothing may go.
	if err := b.CreateGroup(ctx, s, "g1", "0"); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Trim(ctx, s); err != nil || n != 0 {
		t.Fatalf("trimmed %d, %v with a group missing", n, err)
	}
	if err := b.CreateGroup(ctx, s, "g2", "0"); err != nil {
		t.Fatal(err)
	}
	consume := func(g string, read, ack int) {
		msgs, err := b.ReadGroup(ctx, s, g, "c", ">", read, 0)
		if err != nil || len(msgs) != read {
			t.Fatalf("%s read %d, %v", g, len(msgs), err)
		}
		var acks []string
		for _, m := range msgs[:ack] {
			acks = append(acks, m.ID)
		}
		if err := b.Ack(ctx, s, g, acks...); err != nil {
			t.Fatal(err)
		}
	}
	consume("g1", 60, 60)
	consume("g2", 40, 30) // entries 30..39 pending with g2
	if n, err := r.Trim(ctx, s); err != nil || n != 30 {
		t.Fatalf("trimmed %d, %v; want 30 (up to g2's oldest pending entry)", n, err)
	}
	left, _ := b.Range(ctx, s, "-", "+", 0)
	if len(left) != 70 || left[0].ID != ids[30] {
		t.Fatalf("%d entries left, first %v; want 70 from %s", len(left), left[0].ID, ids[30])
	}
	// g2 acknowledges its pending entries: now g2's read position limits.
	pend, _ := b.ReadGroup(ctx, s, "g2", "c", "0", 100, 0)
	for _, m := range pend {
		b.Ack(ctx, s, "g2", m.ID)
	}
	if n, err := r.Trim(ctx, s); err != nil || n != 10 {
		t.Fatalf("trimmed %d, %v; want 10", n, err)
	}
	// Nothing delivered is ever trimmed while within Keep.
	cfg.Keep = time.Hour
	if r, err = transport.NewRetention(b, cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Trim(ctx, s); err != nil || n != 0 {
		t.Fatalf("trimmed %d, %v inside the retention window", n, err)
	}
	if l, _ := b.Len(ctx, s); l != 60 {
		t.Fatalf("len %d, want 60", l)
	}
}

func testLingerBytes(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 1)
	col := newCollector()
	// An hour's linger: only the byte threshold lets batches go.
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 1, Linger: time.Hour, LingerBytes: 1}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	p := transport.NewProducer(b, transport.ProducerConfig{}, nil, nil)
	for i := 0; i < 5; i++ {
		p.Publish(context.Background(), streams[0], []byte("x"))
		if err := p.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	waitFor(t, "entries despite an hour's linger", func() bool { return col.count() >= 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func testLagMonitor(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	payloads := make([][]byte, 10)
	for i := range payloads {
		payloads[i] = []byte{byte(i)}
	}
	before := time.Now()
	ids, err := b.Add(ctx, s, payloads)
	if err != nil {
		t.Fatal(err)
	}
	// The oldest pending entry is at least wait old when sampled, and at
	// most the time since before (plus the millisecond its id truncates).
	const wait = 50 * time.Millisecond
	time.Sleep(wait)
	if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadGroup(ctx, s, "g", "c", ">", 3, 0); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := transport.NewLagMonitor(b, transport.LagConfig{Streams: []string{s}, Groups: []string{"g", "absent"}}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Sample(ctx)
	oldest := time.Since(before) + time.Millisecond
	if len(got) != 1 {
		t.Fatalf("samples %+v, want one (the absent group left out)", got)
	}
	l := got[0]
	if l.Lag != 7 || l.Pending != 3 || l.Skipped || l.OldestPendingAge < wait || l.OldestPendingAge > oldest {
		t.Fatalf("sample %+v: want lag 7, pending 3, oldest pending %v to %v old, nothing skipped", l, wait, oldest)
	}
	if v := gauge(t, reg, "signald_transport_pending_entries", s, "g"); v != 3 {
		t.Fatalf("pending gauge %v", v)
	}
	// Trimming past entries the group never read: Redis skips them
	// silently; the monitor must say so.
	if _, err := b.Trim(ctx, s, ids[6]); err != nil {
		t.Fatal(err)
	}
	l = m.Sample(ctx)[0]
	if !l.Skipped {
		t.Fatalf("sample %+v: trimmed unread entries not detected", l)
	}
	if v := gauge(t, reg, "signald_transport_trimmed_unread", s, "g"); v != 1 {
		t.Fatalf("trimmed_unread gauge %v, want 1", v)
	}
	// The loss is permanent: reading on and trimming normally does not hide it.
	if _, err := b.ReadGroup(ctx, s, "g", "c", ">", 100, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(ctx, s, [][]byte{{99}}); err != nil {
		t.Fatal(err)
	}
	head, _ := b.Range(ctx, s, "-", "+", 0)
	if _, err := b.Trim(ctx, s, head[len(head)-1].ID); err != nil {
		t.Fatal(err)
	}
	if l = m.Sample(ctx)[0]; !l.Skipped {
		t.Fatalf("sample %+v: the earlier loss is no longer reported", l)
	}
}

// A group that read everything before its entries were trimmed lost nothing,
// even though its last id is now below the stream's first one.
func testLagNoFalseSkip(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	if _, err := b.Add(ctx, s, [][]byte{{1}, {2}, {3}}); err != nil {
		t.Fatal(err)
	}
	b.CreateGroup(ctx, s, "g", "0")
	msgs, _ := b.ReadGroup(ctx, s, "g", "c", ">", 10, 0)
	for _, m := range msgs {
		b.Ack(ctx, s, "g", m.ID)
	}
	time.Sleep(2 * time.Millisecond) // the next id in a later millisecond
	ids, _ := b.Add(ctx, s, [][]byte{{4}})
	if _, err := b.Trim(ctx, s, ids[0]); err != nil {
		t.Fatal(err)
	}
	m, _ := transport.NewLagMonitor(b, transport.LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, nil)
	if l := m.Sample(ctx)[0]; l.Skipped || l.Lag != 1 {
		t.Fatalf("sample %+v: want lag 1 and nothing skipped", l)
	}
}

// XDEL of an entry the group has not read: gone from reads, and reported as
// lost for the group.
func testDelete(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	ids, err := b.Add(ctx, s, [][]byte{{1}, {2}, {3}, {4}})
	if err != nil {
		t.Fatal(err)
	}
	b.CreateGroup(ctx, s, "g", "0")
	if _, err := b.ReadGroup(ctx, s, "g", "c", ">", 1, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Delete(ctx, s, ids[2], ids[2], "99999999999999-0"); err != nil || n != 1 {
		t.Fatalf("deleted %d, %v; want 1", n, err)
	}
	left, _ := b.Range(ctx, s, "-", "+", 0)
	if len(left) != 3 || left[2].ID != ids[3] {
		t.Fatalf("left %+v", left)
	}
	gi, err := b.Group(ctx, s, "g")
	if err != nil || gi.MaxDeleted != ids[2] || !gi.SkippedUnread() {
		t.Fatalf("group %+v, %v: the deleted unread entry is not reported", gi, err)
	}
	msgs, _ := b.ReadGroup(ctx, s, "g", "c", ">", 10, 0)
	if len(msgs) != 2 || msgs[0].ID != ids[1] || msgs[1].ID != ids[3] {
		t.Fatalf("read %+v after the delete", msgs)
	}
}

func testDeadLetter(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 1)
	dlq := prefix + ":dlq"
	const n = 50
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var mu sync.Mutex
	tries := map[string]int{}
	h := func(ctx context.Context, msgs []transport.Message) error {
		be := transport.BatchError{}
		var ok []transport.Message
		mu.Lock()
		for i, m := range msgs {
			p := string(m.Payload)
			switch {
			case strings.HasSuffix(p, "/7"):
				tries[p]++
				be[i] = errors.New("flaky downstream for this entry")
			case strings.HasSuffix(p, "/13"):
				tries[p]++
				be[i] = fmt.Errorf("%w: cannot decode", transport.ErrPermanent)
			default:
				ok = append(ok, m)
			}
		}
		mu.Unlock()
		col.handle(ctx, ok)
		if len(be) > 0 {
			return be
		}
		return nil
	}
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Count: 20, RetryBackoff: time.Millisecond,
		DeadLetterStream: dlq, MaxDeliveries: 3}, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "48 handled and 2 dead letters", func() bool {
		l, _ := b.Len(context.Background(), dlq)
		return col.count() >= n-2 && l == 2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if col.count() != n-2 {
		t.Fatalf("handled %d, want %d (each once)", col.count(), n-2)
	}
	if tries["k7/7"] != 3 || tries["k13/13"] != 1 {
		t.Fatalf("tries %v: want 3 for the flaky entry, 1 for the permanent one", tries)
	}
	dls, _ := b.Range(context.Background(), dlq, "-", "+", 0)
	got := map[string]transport.DeadLetter{}
	for _, e := range dls {
		d, err := transport.ParseDeadLetter(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got[string(d.Payload)] = d
	}
	if d := got["k7/7"]; d.Deliveries != 3 || d.Group != "g" || d.Stream != streams[0] || !strings.Contains(d.Reason, "flaky") {
		t.Fatalf("dead letter of the flaky entry: %+v", d)
	}
	if d := got["k13/13"]; d.Deliveries != 1 || !strings.Contains(d.Reason, "cannot decode") {
		t.Fatalf("dead letter of the permanent failure: %+v", d)
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

func testOutageNoDeadLetter(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := transport.ShardStreams(prefix, 1)
	dlq := prefix + ":dlq"
	const n = 100
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var calls atomic.Int64
	h := func(ctx context.Context, msgs []transport.Message) error {
		if calls.Add(1) <= 6 {
			return errors.New("clickhouse: connection refused") // the sink is down
		}
		return col.handle(ctx, msgs)
	}
	c, _ := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, RetryBackoff: time.Millisecond,
		DeadLetterStream: dlq, MaxDeliveries: 2}, h, nil, nil)
	stop := runConsumer(t, c)
	waitFor(t, "all entries after the outage", func() bool { return col.count() >= n })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if l, _ := b.Len(context.Background(), dlq); l != 0 || col.count() != n {
		t.Fatalf("%d dead letters and %d handled after a sink outage; want 0 and %d", l, col.count(), n)
	}
}

func testReplay(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	var ids []string
	var times []time.Time
	for batch := 0; batch < 3; batch++ {
		times = append(times, time.Now())
		payloads := make([][]byte, 700)
		for i := range payloads {
			payloads[i] = []byte(strconv.Itoa(batch*700 + i))
		}
		got, err := b.Add(ctx, s, payloads)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
		time.Sleep(5 * time.Millisecond) // batches in distinct milliseconds
	}
	collect := func(r transport.ReplayRange) []string {
		var out []string
		n, err := transport.Replay(ctx, b, s, r, func(ctx context.Context, msgs []transport.Message) error {
			for _, m := range msgs {
				out = append(out, string(m.Payload))
			}
			return nil
		})
		if err != nil || n != len(out) {
			t.Fatalf("replay: %d, %v", n, err)
		}
		return out
	}
	all := collect(transport.ReplayRange{PageSize: 300})
	if len(all) != 2100 || all[0] != "0" || all[2099] != "2099" {
		t.Fatalf("full replay: %d entries", len(all))
	}
	for i := range all {
		if all[i] != strconv.Itoa(i) {
			t.Fatalf("entry %d is %s: paging skipped or repeated", i, all[i])
		}
	}
	byID := collect(transport.ReplayRange{FromID: ids[100], ToID: ids[1399], PageSize: 256})
	if len(byID) != 1300 || byID[0] != "100" || byID[1299] != "1399" {
		t.Fatalf("by id: %d entries, %v..%v", len(byID), byID[0], byID[len(byID)-1])
	}
	// By time: the second batch alone (ids carry the append millisecond).
	mid := collect(transport.ReplayRange{From: times[1], To: times[2]})
	if len(mid) != 700 || mid[0] != "700" || mid[699] != "1399" {
		t.Fatalf("by time: %d entries", len(mid))
	}
	// Nothing was acknowledged or changed.
	if l, _ := b.Len(ctx, s); l != 2100 {
		t.Fatalf("len %d after replays", l)
	}
}

// Delivery counts are the backend's: a claim and a re-read of pending
// entries each count one, a Touch counts none but resets the idle time.
func testDeliveryCounts(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	publishN(t, b, prefix, 1, 5)
	s := transport.ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
		t.Fatal(err)
	}
	read, err := b.ReadGroup(ctx, s, "g", "a", ">", 3, 0)
	if err != nil || len(read) != 3 || read[0].Deliveries != 1 {
		t.Fatalf("read %+v, %v", read, err)
	}
	ids := []string{read[0].ID, read[1].ID, read[2].ID}
	time.Sleep(150 * time.Millisecond)
	if err := b.Touch(ctx, s, "g", "a", ids...); err != nil {
		t.Fatal(err)
	}
	if got, _, err := b.Claim(ctx, s, "g", "b", 100*time.Millisecond, 10); err != nil || len(got) != 0 {
		t.Fatalf("claim right after a touch took %d entries (%v); the touch must reset their idle time", len(got), err)
	}
	time.Sleep(150 * time.Millisecond)
	got, _, err := b.Claim(ctx, s, "g", "b", 100*time.Millisecond, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("claim: %d entries, %v", len(got), err)
	}
	for _, m := range got {
		if m.Deliveries != 2 {
			t.Fatalf("claimed entry %s: deliveries %d, want 2 (read, claim; the touch does not count)", m.ID, m.Deliveries)
		}
	}
	again, err := b.ReadGroup(ctx, s, "g", "b", "0", 10, 0)
	if err != nil || len(again) != 3 {
		t.Fatalf("re-read: %d entries, %v", len(again), err)
	}
	for _, m := range again {
		if m.Deliveries != 3 {
			t.Fatalf("re-read entry %s: deliveries %d, want 3", m.ID, m.Deliveries)
		}
	}
}

// An entry whose handling keeps crashing the consumer (delivered again and
// again, never acknowledged nor failed) goes to the dead-letter stream
// without reaching the handler; the others are handled once.
func testPoison(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 30
	publishN(t, b, prefix, 1, n)
	streams := transport.ShardStreams(prefix, 1)
	s, dlq := streams[0], prefix+":dlq"
	ctx := context.Background()
	if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
		t.Fatal(err)
	}
	// Five crash loops of a consumer that read the first entry and died
	// while handling it: each restart re-reads its pending entry.
	first, err := b.ReadGroup(ctx, s, "g", "c", ">", 1, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("read %d, %v", len(first), err)
	}
	for range 5 {
		if _, err := b.ReadGroup(ctx, s, "g", "c", "0", 10, 0); err != nil {
			t.Fatal(err)
		}
	}
	col := newCollector()
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "g", Streams: streams, Consumer: "c", DeadLetterStream: dlq,
		MaxDeliveries: 3, PoisonDeliveries: 6}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	waitFor(t, "the others handled and one dead letter", func() bool {
		l, _ := b.Len(ctx, dlq)
		return col.count() >= n-1 && l == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range col.seen[s] {
		if p == string(first[0].Payload) {
			t.Fatalf("the poison entry %s reached the handler", p)
		}
	}
	if col.count() != n-1 {
		t.Fatalf("handled %d, want %d", col.count(), n-1)
	}
	dls, _ := b.Range(ctx, dlq, "-", "+", 0)
	d, err := transport.ParseDeadLetter(dls[0].Payload)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != first[0].ID || d.Deliveries != 7 || !strings.Contains(d.Reason, "without being acknowledged") {
		t.Fatalf("dead letter %+v: want id %s, 7 deliveries, the crash reason", d, first[0].ID)
	}
	if p := totalPending(t, b, streams, "g"); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

// A handler slower than MinIdle keeps its entries: the consumer touches
// them, so a second consumer of the group does not reclaim work in progress
// and nothing is handled twice.
func testSlowNotReclaimed(t *testing.T, f Factory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 40
	publishN(t, b, prefix, 1, n)
	streams := transport.ShardStreams(prefix, 1)
	col := newCollector()
	var slowOnce sync.Once
	slow := func(ctx context.Context, msgs []transport.Message) error {
		slowOnce.Do(func() { time.Sleep(1500 * time.Millisecond) }) // five MinIdles
		return col.handle(ctx, msgs)
	}
	cfg := transport.ConsumerConfig{Group: "g", Streams: streams, Consumer: "slow", MinIdle: 300 * time.Millisecond,
		ClaimInterval: 30 * time.Millisecond}
	a, err := transport.NewConsumer(b, cfg, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopA := runConsumer(t, a)
	waitFor(t, "the slow consumer to read", func() bool {
		p, _ := b.Pending(context.Background(), streams[0], "g")
		return p > 0
	})
	cfg.Consumer = "other"
	o, err := transport.NewConsumer(b, cfg, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopO := runConsumer(t, o)
	waitFor(t, "all handled", func() bool { return col.count() >= n })
	time.Sleep(100 * time.Millisecond)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopO(); err != nil {
		t.Fatal(err)
	}
	if col.count() != n {
		t.Fatalf("handled %d entries, want %d: work in progress was reclaimed and handled twice", col.count(), n)
	}
}
