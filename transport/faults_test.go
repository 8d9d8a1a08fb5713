package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

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
	opts.Addrs = []string{addr}
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
			if err := DeletePrefix(context.Background(), r, prefix); err != nil {
				t.Logf("cleanup: %v", err)
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
