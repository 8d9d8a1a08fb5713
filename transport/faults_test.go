package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Tests of the faults work: nothing lost without a count. Each runs on the
// memory backend and, with SIGNALD_INTEGRATION=1, on real Redis.

// faultBackends are the backends the faults tests run on.
func faultBackends() map[string]func(t *testing.T) Backend {
	return map[string]func(t *testing.T) Backend{
		"memory": func(t *testing.T) Backend {
			m := NewMemory()
			t.Cleanup(func() { m.Close() })
			return m
		},
		"redis": func(t *testing.T) Backend { return faultRedis(t, RedisOptions{}) },
		"redis-pipeline": func(t *testing.T) Backend {
			return faultRedis(t, RedisOptions{PipelineAppend: true})
		},
		"redis-cluster": func(t *testing.T) Backend {
			addrs := os.Getenv("SIGNALD_REDIS_CLUSTER_ADDRS")
			if os.Getenv("SIGNALD_INTEGRATION") != "" && addrs == "" {
				t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_REDIS_CLUSTER_ADDRS is empty")
			}
			return faultRedis(t, RedisOptions{Addrs: strings.Split(addrs, ","), ClusterMode: true})
		},
	}
}

// faultRedis connects to the integration Redis (skipped unless
// SIGNALD_INTEGRATION is set; a server that is down then fails the test).
func faultRedis(t *testing.T, opts RedisOptions) *Redis {
	t.Helper()
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 runs them against real Redis")
	}
	addr := os.Getenv("SIGNALD_REDIS_ADDR")
	if addr == "" {
		t.Fatal("SIGNALD_INTEGRATION is set but SIGNALD_REDIS_ADDR is empty")
	}
	if len(opts.Addrs) == 0 {
		opts.Addrs = []string{addr}
	}
	r, err := NewRedis(context.Background(), opts)
	if err != nil {
		t.Fatalf("integration Redis: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// faultPrefix names a test's keys; on Redis they are deleted at the end.
func faultPrefix(t *testing.T, b Backend) string {
	prefix := fmt.Sprintf("sdfault:%s:%d", t.Name(), rand.Uint64())
	if r, ok := b.(*Redis); ok {
		t.Cleanup(func() {
			// Dead-letter records are hash-tagged with the dead-letter
			// stream's name: {<prefix>:dlq}:seen:...
			for _, p := range []string{prefix, "{" + prefix} {
				if err := DeletePrefix(context.Background(), r, p); err != nil {
					t.Logf("cleanup: %v", err)
				}
			}
		})
	}
	return prefix
}

// TestRedisCloseIdempotent: a second Close returns nil, as for Memory and
// Producer.
func TestRedisCloseIdempotent(t *testing.T) {
	r := faultRedis(t, RedisOptions{})
	if err := r.Close(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second close: %v, want nil", err)
	}
}

// TestTrimmedUnreadLatches: a trim past entries the group never read raises
// trimmed_unread and counts exactly the entries lost; the flag stays up after
// the group has read past the gap, until AckTrimmed, and a second loss
// counts only its own entries.
func TestTrimmedUnreadLatches(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			s := faultPrefix(t, b) + ":s"
			if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			mon, err := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, reg)
			if err != nil {
				t.Fatal(err)
			}
			flag := func() float64 { return testutil.ToFloat64(mon.skipped.WithLabelValues(s, "g")) }
			lost := func() float64 { return testutil.ToFloat64(mon.lostEntries.WithLabelValues(s, "g")) }
			readAck := func(n int) {
				t.Helper()
				msgs, err := b.ReadGroup(ctx, s, "g", "c", ">", n, 0)
				if err != nil || len(msgs) != n {
					t.Fatalf("read %d: got %d, %v", n, len(msgs), err)
				}
				for _, m := range msgs {
					if err := b.Ack(ctx, s, "g", m.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			add := func(n int) []string {
				t.Helper()
				ids, err := b.Add(ctx, s, fzPayloads(n))
				if err != nil {
					t.Fatal(err)
				}
				return ids
			}

			ids := add(10)
			readAck(3)
			mon.Sample(ctx)
			if flag() != 0 || lost() != 0 {
				t.Fatalf("before any trim: flag %v lost %v, want 0 0", flag(), lost())
			}
			// Keep the last two: ids[3..7] were never read.
			if n, err := b.Trim(ctx, s, ids[8]); err != nil || n != 8 {
				t.Fatalf("trim: %d, %v", n, err)
			}
			l := mon.Sample(ctx)
			if len(l) != 1 || !l[0].Skipped || l[0].Lost != 5 || flag() != 1 || lost() != 5 {
				t.Fatalf("after trim: %+v flag %v lost %v, want skipped, 5 lost", l, flag(), lost())
			}
			// The group reads past the gap: the condition is over, the flag stays.
			readAck(2)
			gi, err := b.Group(ctx, s, "g")
			if err != nil || gi.SkippedUnread() {
				t.Fatalf("after reading past the gap: %+v %v, want no longer skipping", gi, err)
			}
			for range 3 {
				mon.Sample(ctx)
			}
			if flag() != 1 || lost() != 5 {
				t.Fatalf("after catching up: flag %v lost %v, want 1 5", flag(), lost())
			}
			if got := mon.Trimmed(); len(got) != 1 || got[0].Stream != s || got[0].Lost != 5 {
				t.Fatalf("Trimmed() = %+v", got)
			}
			if !mon.AckTrimmed(s, "g") || flag() != 0 {
				t.Fatalf("AckTrimmed: flag %v, want 0", flag())
			}
			if mon.AckTrimmed(s, "g") {
				t.Fatal("second AckTrimmed reported a raised flag")
			}
			mon.Sample(ctx)
			if flag() != 0 || lost() != 5 || len(mon.Trimmed()) != 0 {
				t.Fatalf("after ack: flag %v lost %v, want 0 5", flag(), lost())
			}
			// A second loss: 10 more, 2 read, trimmed up to the 6th: 3 unread lost.
			ids = add(10)
			readAck(2)
			if _, err := b.Trim(ctx, s, ids[5]); err != nil {
				t.Fatal(err)
			}
			mon.Sample(ctx)
			if flag() != 1 || lost() != 8 {
				t.Fatalf("after a second trim: flag %v lost %v, want 1 8", flag(), lost())
			}
		})
	}
}

func fzPayloads(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("p%06d", i))
	}
	return out
}

func fzRun(t *testing.T, c *Consumer) (stop func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			c.Close()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// An entry both groups fail is dead-lettered once, with both groups
// recorded; a replay goes back to the groups that failed it only, and an
// entry failing again after the replay is dead-lettered as final and not
// replayed again: the dead-letter stream does not grow with each replay.
func TestDeadLetterOncePerEntry(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			prefix := faultPrefix(t, b)
			s, dlq := prefix+":s", prefix+":dlq"
			var payloads [][]byte
			for i := range 20 {
				switch i {
				case 4:
					payloads = append(payloads, []byte("bad-store"))
				case 9, 15:
					payloads = append(payloads, []byte(fmt.Sprintf("bad-both-%d", i)))
				default:
					payloads = append(payloads, []byte(fmt.Sprintf("ok-%d", i)))
				}
			}
			if _, err := b.Add(ctx, s, payloads); err != nil {
				t.Fatal(err)
			}
			m := NewMetrics(nil)
			var mu sync.Mutex
			seen := map[string][]string{} // group -> payloads handed over
			handled := atomic.Int64{}
			handler := func(group string) Handler {
				return func(ctx context.Context, msgs []Message) error {
					be := BatchError{}
					mu.Lock()
					defer mu.Unlock()
					for i, msg := range msgs {
						p := string(msg.Payload)
						seen[group] = append(seen[group], p)
						if strings.HasPrefix(p, "bad-both") || (p == "bad-store" && group == "store") {
							be[i] = fmt.Errorf("%w: cannot decode %q", ErrPermanent, p)
						}
					}
					handled.Add(int64(len(msgs)))
					if len(be) > 0 {
						return be
					}
					return nil
				}
			}
			run := func() {
				t.Helper()
				var stops []func() error
				for _, g := range []string{"store", "features"} {
					c, err := NewConsumer(b, ConsumerConfig{Group: g, Streams: []string{s}, DeadLetterStream: dlq,
						Block: 20 * time.Millisecond, RetryBackoff: time.Millisecond}, handler(g), nil, m)
					if err != nil {
						t.Fatal(err)
					}
					stops = append(stops, fzRun(t, c))
				}
				fzWaitFor(t, "both groups caught up", func() bool {
					for _, g := range []string{"store", "features"} {
						gi, err := b.Group(ctx, s, g)
						if err != nil || gi.Lag != 0 || gi.Pending != 0 {
							return false
						}
					}
					return true
				})
				for _, stop := range stops {
					if err := stop(); err != nil {
						t.Fatal(err)
					}
				}
			}
			counts := func(v *prometheus.CounterVec) float64 {
				return testutil.ToFloat64(v.WithLabelValues("store")) + testutil.ToFloat64(v.WithLabelValues("features"))
			}
			run()
			dls, err := b.Range(ctx, dlq, "-", "+", 0)
			if err != nil || len(dls) != 3 {
				t.Fatalf("%d dead letters (%v), want 3: one per bad entry", len(dls), err)
			}
			if a, d := counts(m.deadLettered), counts(m.deadLetterDeduped); a != 3 || d != 2 {
				t.Fatalf("dead-lettered %v deduplicated %v, want 3 and 2", a, d)
			}
			db := b.(DeadLetterBackend)
			for _, e := range dls {
				d, err := ParseDeadLetter(e.Payload)
				if err != nil || d.Final {
					t.Fatalf("dead letter %+v, %v", d, err)
				}
				groups, err := db.DeadLetterGroups(ctx, dlq, d.Stream, d.ID)
				want := "features,store"
				if string(d.Payload) == "bad-store" {
					want = "store"
				}
				if err != nil || strings.Join(groups, ",") != want {
					t.Fatalf("groups of %q: %v %v, want %s", d.Payload, groups, err, want)
				}
				if _, err := ReplayDeadLetter(ctx, b, dlq, e.ID, d, ReplayOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := b.Len(ctx, dlq); n != 0 {
				t.Fatalf("%d dead letters left after the replay, want 0", n)
			}
			mu.Lock()
			featuresBefore := len(seen["features"])
			mu.Unlock()
			run() // the replayed entries are still bad
			mu.Lock()
			if got := seen["features"][featuresBefore:]; len(got) != 2 || !strings.HasPrefix(got[0], "bad-both") || !strings.HasPrefix(got[1], "bad-both") {
				t.Fatalf("features handled %v after the replay, want the two bad-both entries only", got)
			}
			mu.Unlock()
			if got := testutil.ToFloat64(m.replaySkipped.WithLabelValues("features")); got != 1 {
				t.Fatalf("features skipped %v replayed entries, want 1 (bad-store was not its failure)", got)
			}
			dls, _ = b.Range(ctx, dlq, "-", "+", 0)
			if len(dls) != 3 {
				t.Fatalf("%d dead letters after the replay failed again, want 3", len(dls))
			}
			for _, e := range dls {
				d, _ := ParseDeadLetter(e.Payload)
				if !d.Final {
					t.Fatalf("dead letter %+v after a replay is not final", d)
				}
				if _, err := ReplayDeadLetter(ctx, b, dlq, e.ID, d, ReplayOptions{}); !errors.Is(err, ErrFinal) {
					t.Fatalf("replaying a final dead letter: %v, want ErrFinal", err)
				}
			}
			if a, d := counts(m.deadLettered), counts(m.deadLetterDeduped); a != 6 || d != 4 {
				t.Fatalf("dead-lettered %v deduplicated %v in all, want 6 and 4", a, d)
			}
		})
	}
}

// The dead-letter stream is bounded by count and by age, and what its
// retention removes is counted.
func TestDeadLetterRetention(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			dlq := faultPrefix(t, b) + ":dlq"
			if _, err := b.Add(ctx, dlq, fzPayloads(30)); err != nil {
				t.Fatal(err)
			}
			m := NewMetrics(nil)
			r, err := NewDeadLetterRetention(b, DeadLetterRetentionConfig{Stream: dlq, MaxLen: 10}, nil, m)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := r.Trim(ctx); err != nil || n != 20 {
				t.Fatalf("trim by length: %d, %v; want 20", n, err)
			}
			left, _ := b.Range(ctx, dlq, "-", "+", 0)
			if len(left) != 10 || string(left[0].Payload) != "p000020" {
				t.Fatalf("left %d, first %q; want the newest 10", len(left), left[0].Payload)
			}
			r.now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
			if n, err := r.Trim(ctx); err != nil || n != 10 {
				t.Fatalf("trim by age: %d, %v; want 10", n, err)
			}
			if got := testutil.ToFloat64(m.deadLetterTrimmed.WithLabelValues(dlq)); got != 30 {
				t.Fatalf("dead_letter_trimmed %v, want 30", got)
			}
		})
	}
}

// A store stall while the stream is trimmed by length: every entry is
// either handled or counted as lost (handled + trimmed_unread_entries ==
// published), and the flag is still up after the consumer caught up.
func TestTrimDuringStallIsCounted(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			s := faultPrefix(t, b) + ":s"
			const n, count, keep = 1000, 100, 50
			if _, err := b.Add(ctx, s, fzPayloads(n)); err != nil {
				t.Fatal(err)
			}
			stall := make(chan struct{})
			var handled atomic.Int64
			first := true
			h := func(ctx context.Context, msgs []Message) error {
				if first {
					first = false
					<-stall
				}
				handled.Add(int64(len(msgs)))
				return nil
			}
			c, err := NewConsumer(b, ConsumerConfig{Group: "store", Streams: []string{s}, Count: count, Block: 20 * time.Millisecond}, h, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			stop := fzRun(t, c)
			fzWaitFor(t, "the first batch pending", func() bool { p, _ := b.Pending(ctx, s, "store"); return p >= count })
			// The readers have run a few batches ahead of the stalled
			// handler (those are pending, their payloads in hand); the
			// rest is unread when the stream is trimmed.
			trimmed, err := b.(maxLenTrimmer).TrimMaxLen(ctx, s, keep)
			if err != nil {
				t.Fatal(err)
			}
			mon, err := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"store"}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			mon.Sample(ctx)
			close(stall)
			fzWaitFor(t, "caught up", func() bool {
				gi, err := b.Group(ctx, s, "store")
				return err == nil && gi.Pending == 0 && !gi.SkippedUnread()
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			mon.Sample(ctx)
			lost := int64(testutil.ToFloat64(mon.lostEntries.WithLabelValues(s, "store")))
			if handled.Load()+lost != n || testutil.ToFloat64(mon.skipped.WithLabelValues(s, "store")) != 1 {
				t.Fatalf("handled %d + lost %d != %d published (trimmed %d), flag %v", handled.Load(), lost, n, trimmed,
					testutil.ToFloat64(mon.skipped.WithLabelValues(s, "store")))
			}
			if lost == 0 {
				t.Fatal("nothing counted as lost")
			}
			t.Logf("published %d, trimmed %d, handled %d, counted lost %d", n, trimmed, handled.Load(), lost)
		})
	}
}

// A loss is seen even when the group has read past the gap before the
// monitor's first sample: caught up, or part way through what is left.
func TestTrimmedUnreadSeenAfterTheGap(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			s := faultPrefix(t, b) + ":s"
			if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
				t.Fatal(err)
			}
			ids, err := b.Add(ctx, s, fzPayloads(100))
			if err != nil {
				t.Fatal(err)
			}
			read := func(n int) {
				t.Helper()
				if msgs, err := b.ReadGroup(ctx, s, "g", "c", ">", n, 0); err != nil || len(msgs) != n {
					t.Fatalf("read %d: %d, %v", n, len(msgs), err)
				}
			}
			read(10)
			if _, err := b.Trim(ctx, s, ids[60]); err != nil { // 50 unread lost, 40 left
				t.Fatal(err)
			}
			read(15) // part way through what is left
			mon, err := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if l := mon.Sample(ctx); !l[0].Skipped || l[0].Lost != 50 {
				t.Fatalf("part way: %+v, want skipped with 50 lost", l[0])
			}
			read(25) // caught up
			mon2, _ := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, nil)
			if l := mon2.Sample(ctx); !l[0].Skipped || l[0].Lost != 50 {
				t.Fatalf("caught up: %+v, want skipped with 50 lost", l[0])
			}
			if got := testutil.ToFloat64(mon2.lostEntries.WithLabelValues(s, "g")); got != 50 {
				t.Fatalf("lost counter %v, want 50", got)
			}
		})
	}
}

// A group created on a stream whose head was trimmed before it existed has
// lost nothing.
func TestTrimmedBeforeGroupIsNoLoss(t *testing.T) {
	for name, f := range faultBackends() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := f(t)
			s := faultPrefix(t, b) + ":s"
			ids, err := b.Add(ctx, s, fzPayloads(5))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Trim(ctx, s, ids[3]); err != nil {
				t.Fatal(err)
			}
			if err := b.CreateGroup(ctx, s, "g", "0"); err != nil {
				t.Fatal(err)
			}
			mon, _ := NewLagMonitor(b, LagConfig{Streams: []string{s}, Groups: []string{"g"}}, nil, nil)
			if l := mon.Sample(ctx); l[0].Skipped || l[0].Lost != 0 {
				t.Fatalf("new group: %+v, want no loss", l[0])
			}
			if msgs, err := b.ReadGroup(ctx, s, "g", "c", ">", 10, 0); err != nil || len(msgs) != 2 {
				t.Fatalf("read %d, %v", len(msgs), err)
			}
			if l := mon.Sample(ctx); l[0].Skipped || l[0].Lost != 0 {
				t.Fatalf("after reading: %+v, want no loss", l[0])
			}
		})
	}
}
