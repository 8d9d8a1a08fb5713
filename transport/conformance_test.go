package transport

import (
	"context"

	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backendFactory makes a fresh backend and a unique stream prefix for one test.
type backendFactory func(t *testing.T) Backend

func newMemory(t *testing.T) Backend {
	m := NewMemory()
	t.Cleanup(func() { m.Close() })
	return m
}

// newRedisBackend connects to the integration Redis. With
// SIGNALD_INTEGRATION unset the Redis cases are skipped; with it set, a
// server that is down fails the test.
func newRedisBackend(t *testing.T) Backend { return redisBackend(t, RedisOptions{}) }

// newRedisScript is the Redis backend appending batches with a script.
func newRedisPipeline(t *testing.T) Backend {
	return redisBackend(t, RedisOptions{PipelineAppend: true})
}

func redisBackend(t *testing.T, opts RedisOptions) Backend {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real Redis")
	}
	addr := os.Getenv("SIGNALD_REDIS_ADDR")
	if addr == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_REDIS_ADDR is empty")
	}
	opts.Addrs = []string{addr}
	r, err := NewRedis(context.Background(), opts)
	if err != nil {
		t.Fatalf("integration Redis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// uniquePrefix names this test's streams; on Redis they are deleted when the
// test ends, so test runs do not pile up in the server.
// newRedisCluster connects to the integration Redis Cluster (three masters
// that scripts/services.sh starts), under the same switch.
func newRedisCluster(t *testing.T) Backend {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against a real Redis Cluster")
	}
	addrs := os.Getenv("SIGNALD_REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_REDIS_CLUSTER_ADDRS is empty")
	}
	r, err := NewRedis(context.Background(), RedisOptions{Addrs: strings.Split(addrs, ","), ClusterMode: true})
	if err != nil {
		t.Fatalf("integration Redis Cluster: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func uniquePrefix(t *testing.T, b Backend) string {
	prefix := fmt.Sprintf("sdtest:%s:%d", t.Name(), rand.Uint64())
	if r, ok := b.(*Redis); ok {
		t.Cleanup(func() {
			if err := DeletePrefix(context.Background(), r, prefix); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	return prefix
}

// TestConformance runs the one suite every backend must pass.
func TestConformance(t *testing.T) {
	for name, f := range map[string]backendFactory{"memory": newMemory, "redis": newRedisBackend, "redis-pipeline": newRedisPipeline, "redis-cluster": newRedisCluster} {
		t.Run(name, func(t *testing.T) {
			t.Run("ExactlyOnceWithoutFailures", func(t *testing.T) { testNoFailures(t, f) })
			t.Run("HandlerErrorRedelivers", func(t *testing.T) { testHandlerError(t, f) })
			t.Run("RestartTakesBackOwnPending", func(t *testing.T) { testOwnPending(t, f) })
			t.Run("ReclaimFromCrashedConsumer", func(t *testing.T) { testReclaim(t, f) })
			t.Run("ClaimReportsTrimmedPending", func(t *testing.T) { testClaimDeleted(t, f) })
			t.Run("GroupsAreIndependent", func(t *testing.T) { testTwoGroups(t, f) })
			t.Run("StopIsPromptAndClean", func(t *testing.T) { testStop(t, f) })
			t.Run("RangeAndTrim", func(t *testing.T) { testRangeTrim(t, f) })
			t.Run("ConcurrentHandlers", func(t *testing.T) { testConcurrent(t, f) })
			t.Run("LingerBatches", func(t *testing.T) { testLinger(t, f) })
			t.Run("LingerBytesEndsTheWait", func(t *testing.T) { testLingerBytes(t, f) })
			t.Run("RetentionKeepsUnacknowledged", func(t *testing.T) { testRetention(t, f) })
			t.Run("LagMonitor", func(t *testing.T) { testLagMonitor(t, f) })
			t.Run("LagNoFalseSkip", func(t *testing.T) { testLagNoFalseSkip(t, f) })
			t.Run("DeleteUnreadIsReported", func(t *testing.T) { testDelete(t, f) })
			t.Run("DeadLetterAfterMaxDeliveries", func(t *testing.T) { testDeadLetter(t, f) })
			t.Run("SinkOutageDeadLettersNothing", func(t *testing.T) { testOutageNoDeadLetter(t, f) })
			t.Run("ReplayByIDAndTime", func(t *testing.T) { testReplay(t, f) })
			t.Run("DeliveryCountsSpanConsumers", func(t *testing.T) { testDeliveryCounts(t, f) })
			t.Run("PoisonEntryDeadLettered", func(t *testing.T) { testPoison(t, f) })
			t.Run("SlowHandlerNotReclaimed", func(t *testing.T) { testSlowNotReclaimed(t, f) })
		})
	}
}

// collector is a handler that records what it saw, per stream, in order.
type collector struct {
	mu   sync.Mutex
	seen map[string][]string // stream -> payloads
	n    atomic.Int64
}

func newCollector() *collector { return &collector{seen: map[string][]string{}} }

func (c *collector) handle(ctx context.Context, msgs []Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.seen[m.Stream] = append(c.seen[m.Stream], string(m.Payload))
	}
	c.n.Add(int64(len(msgs)))
	return nil
}

func (c *collector) count() int64 { return c.n.Load() }

// publishN publishes n entries keyed over 20 keys; payloads are "key/seq".
// It returns, per stream, the payloads in publish order.
func publishN(t *testing.T, b Backend, prefix string, shards, n int) map[string][]string {
	t.Helper()
	p := NewProducer(b, ProducerConfig{MaxBatch: 97}, nil, nil)
	want := map[string][]string{}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		key := "k" + strconv.Itoa(i%20)
		s := ShardStream(prefix, shards, key)
		payload := key + "/" + strconv.Itoa(i)
		want[s] = append(want[s], payload)
		if err := p.Publish(ctx, s, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runConsumer(t *testing.T, c *Consumer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func totalPending(t *testing.T, b Backend, streams []string, group string) int64 {
	t.Helper()
	var n int64
	for _, s := range streams {
		p, err := b.Pending(context.Background(), s, group)
		if err != nil {
			t.Fatal(err)
		}
		n += p
	}
	return n
}

func testNoFailures(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const shards, n = 4, 5000
	want := publishN(t, b, prefix, shards, n)
	col := newCollector()
	streams := ShardStreams(prefix, shards)
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 300}, col.handle, nil, nil)
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

func testHandlerError(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 500
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var calls atomic.Int64
	h := func(ctx context.Context, msgs []Message) error {
		if calls.Add(1)%3 == 1 { // fail the first attempt of many batches
			return errors.New("injected failure")
		}
		return col.handle(ctx, msgs)
	}
	streams := ShardStreams(prefix, 1)
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 50, RetryBackoff: time.Millisecond}, h, nil, nil)
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
func abandoned(t *testing.T, b Backend, prefix string, n int, consumer string, k int) ([]string, []Message) {
	t.Helper()
	publishN(t, b, prefix, 1, n)
	streams := ShardStreams(prefix, 1)
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

func testOwnPending(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 300
	streams, read := abandoned(t, b, prefix, n, "worker-1", 120)
	col := newCollector()
	// Restarted under the same name, with reclaim effectively off.
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Consumer: "worker-1", MinIdle: time.Hour}, col.handle, nil, nil)
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

func testReclaim(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 200
	streams, read := abandoned(t, b, prefix, n, "crashed", 80)
	col := newCollector()
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Consumer: "survivor",
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

func testClaimDeleted(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 1)
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

func testTwoGroups(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 400
	publishN(t, b, prefix, 2, n)
	streams := ShardStreams(prefix, 2)
	c1, c2 := newCollector(), newCollector()
	a, _ := NewConsumer(b, ConsumerConfig{Group: "store", Streams: streams}, c1.handle, nil, nil)
	z, _ := NewConsumer(b, ConsumerConfig{Group: "features", Streams: streams}, c2.handle, nil, nil)
	s1, s2 := runConsumer(t, a), runConsumer(t, z)
	waitFor(t, "both groups", func() bool { return c1.count() >= n && c2.count() >= n })
	if err := errors.Join(s1(), s2()); err != nil {
		t.Fatal(err)
	}
	if c1.count() != n || c2.count() != n {
		t.Fatalf("groups saw %d and %d, want %d each", c1.count(), c2.count(), n)
	}
}

func testStop(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 2)
	col := newCollector()
	c, _ := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Block: 10 * time.Second}, col.handle, nil, nil)
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

func testRangeTrim(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
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

func testConcurrent(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const shards, n = 3, 3000
	publishN(t, b, prefix, shards, n)
	streams := ShardStreams(prefix, shards)
	col := newCollector()
	var inFlight, maxInFlight atomic.Int64
	h := func(ctx context.Context, msgs []Message) error {
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
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 50, MaxBatch: 50, Concurrency: 3}, h, nil, nil)
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

func testLinger(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 1)
	const n = 60
	col := newCollector()
	var maxBatch atomic.Int64
	h := func(ctx context.Context, msgs []Message) error {
		if l := int64(len(msgs)); l > maxBatch.Load() {
			maxBatch.Store(l)
		}
		return col.handle(ctx, msgs)
	}
	// Reads return one entry each; only lingering can make larger batches.
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 1, MaxBatch: n, Linger: 300 * time.Millisecond}, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	p := NewProducer(b, ProducerConfig{}, nil, nil)
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

func testRetention(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	payloads := make([][]byte, 100)
	for i := range payloads {
		payloads[i] = []byte(strconv.Itoa(i))
	}
	ids, err := b.Add(ctx, s, payloads)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRetention(b, RetentionConfig{Streams: []string{s}, Groups: []string{"g1", "g2"}, Keep: time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return time.Now().Add(time.Hour) } // every entry is old
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
	r.now = time.Now
	r.cfg.Keep = time.Hour
	if n, err := r.Trim(ctx, s); err != nil || n != 0 {
		t.Fatalf("trimmed %d, %v inside the retention window", n, err)
	}
	if l, _ := b.Len(ctx, s); l != 60 {
		t.Fatalf("len %d, want 60", l)
	}
}

func testLingerBytes(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 1)
	col := newCollector()
	// An hour's linger: only the byte threshold lets batches go.
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 1, Linger: time.Hour, LingerBytes: 1}, col.handle, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runConsumer(t, c)
	p := NewProducer(b, ProducerConfig{}, nil, nil)
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

func testLagMonitor(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
	ctx := context.Background()
	payloads := make([][]byte, 10)
	for i := range payloads {
		payloads[i] = []byte{byte(i)}
	}
	ids, err := b.Add(ctx, s, payloads)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadGroup(ctx, s, "g", "c", ">", 3, 0); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g", "absent"}}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return time.Now().Add(time.Minute) }
	got := m.Sample(ctx)
	if len(got) != 1 {
		t.Fatalf("samples %+v, want one (the absent group left out)", got)
	}
	l := got[0]
	if l.Lag != 7 || l.Pending != 3 || l.Skipped || l.OldestPendingAge < 59*time.Second {
		t.Fatalf("sample %+v: want lag 7, pending 3, oldest about a minute old, nothing skipped", l)
	}
	if v := testutil.ToFloat64(m.pending.WithLabelValues(s, "g")); v != 3 {
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
	if v := testutil.ToFloat64(m.skipped.WithLabelValues(s, "g")); v != 1 {
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
func testLagNoFalseSkip(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
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
	m, _ := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, nil)
	if l := m.Sample(ctx)[0]; l.Skipped || l.Lag != 1 {
		t.Fatalf("sample %+v: want lag 1 and nothing skipped", l)
	}
}

// XDEL of an entry the group has not read: gone from reads, and reported as
// lost for the group.
func testDelete(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
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

func testDeadLetter(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 1)
	dlq := prefix + ":dlq"
	const n = 50
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var mu sync.Mutex
	tries := map[string]int{}
	h := func(ctx context.Context, msgs []Message) error {
		be := BatchError{}
		var ok []Message
		mu.Lock()
		for i, m := range msgs {
			p := string(m.Payload)
			switch {
			case strings.HasSuffix(p, "/7"):
				tries[p]++
				be[i] = errors.New("flaky downstream for this entry")
			case strings.HasSuffix(p, "/13"):
				tries[p]++
				be[i] = fmt.Errorf("%w: cannot decode", ErrPermanent)
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
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Count: 20, RetryBackoff: time.Millisecond,
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
	got := map[string]DeadLetter{}
	for _, e := range dls {
		d, err := ParseDeadLetter(e.Payload)
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

func testOutageNoDeadLetter(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	streams := ShardStreams(prefix, 1)
	dlq := prefix + ":dlq"
	const n = 100
	publishN(t, b, prefix, 1, n)
	col := newCollector()
	var calls atomic.Int64
	h := func(ctx context.Context, msgs []Message) error {
		if calls.Add(1) <= 6 {
			return errors.New("clickhouse: connection refused") // the sink is down
		}
		return col.handle(ctx, msgs)
	}
	c, _ := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, RetryBackoff: time.Millisecond,
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

func testReplay(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	s := ShardStreams(prefix, 1)[0]
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
	collect := func(r ReplayRange) []string {
		var out []string
		n, err := Replay(ctx, b, s, r, func(ctx context.Context, msgs []Message) error {
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
	all := collect(ReplayRange{PageSize: 300})
	if len(all) != 2100 || all[0] != "0" || all[2099] != "2099" {
		t.Fatalf("full replay: %d entries", len(all))
	}
	for i := range all {
		if all[i] != strconv.Itoa(i) {
			t.Fatalf("entry %d is %s: paging skipped or repeated", i, all[i])
		}
	}
	byID := collect(ReplayRange{FromID: ids[100], ToID: ids[1399], PageSize: 256})
	if len(byID) != 1300 || byID[0] != "100" || byID[1299] != "1399" {
		t.Fatalf("by id: %d entries, %v..%v", len(byID), byID[0], byID[len(byID)-1])
	}
	// By time: the second batch alone (ids carry the append millisecond).
	mid := collect(ReplayRange{From: times[1], To: times[2]})
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
func testDeliveryCounts(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	publishN(t, b, prefix, 1, 5)
	s := ShardStreams(prefix, 1)[0]
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
func testPoison(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 30
	publishN(t, b, prefix, 1, n)
	streams := ShardStreams(prefix, 1)
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
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Consumer: "c", DeadLetterStream: dlq,
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
	d, err := ParseDeadLetter(dls[0].Payload)
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
func testSlowNotReclaimed(t *testing.T, f backendFactory) {
	b := f(t)
	prefix := uniquePrefix(t, b)
	const n = 40
	publishN(t, b, prefix, 1, n)
	streams := ShardStreams(prefix, 1)
	col := newCollector()
	var slowOnce sync.Once
	slow := func(ctx context.Context, msgs []Message) error {
		slowOnce.Do(func() { time.Sleep(1500 * time.Millisecond) }) // five MinIdles
		return col.handle(ctx, msgs)
	}
	cfg := ConsumerConfig{Group: "g", Streams: streams, Consumer: "slow", MinIdle: 300 * time.Millisecond,
		ClaimInterval: 30 * time.Millisecond}
	a, err := NewConsumer(b, cfg, slow, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopA := runConsumer(t, a)
	waitFor(t, "the slow consumer to read", func() bool {
		p, _ := b.Pending(context.Background(), streams[0], "g")
		return p > 0
	})
	cfg.Consumer = "other"
	o, err := NewConsumer(b, cfg, col.handle, nil, nil)
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
