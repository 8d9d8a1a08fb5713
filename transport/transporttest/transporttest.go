// Package transporttest is the conformance suite of transport backends: the
// semantics that transport.Producer, Consumer, Retention, LagMonitor and
// Replay rely on (consumer groups, pending lists, claims and delivery
// counts, trimming and deletion, dead letters), checked through them on a
// real backend. The memory backend, Redis, Redis with pipelined appends and
// Redis Cluster all pass it (transport/conformance_test.go).
//
// A new backend passes it with one test:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transport.Backend {
//			b, err := mybackend.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { b.Close() })
//			return b
//		})
//	}
//
// Every case is a subtest that calls the factory once, for a backend of its
// own; the factory may t.Skip when its server is not configured. Cases name
// their streams "sdtest:<test name>:<random>", so they never see each
// other's entries on a shared server. On a *transport.Redis the suite
// deletes a case's streams when it ends; the factory of another backend
// whose streams outlive Close deletes the "sdtest:" streams in t.Cleanup.
//
// The retention and lag cases read the append time from entry ids
// ("<ms>-<seq>", as Redis makes them) and compare it with the test's clock:
// the backend's clock must agree with it to within a millisecond or so.
package transporttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signald-dev/signald/transport"
)

// Factory returns a fresh backend for one case of the suite, closed by the
// factory's own t.Cleanup.
type Factory func(t *testing.T) transport.Backend

// Run runs every case of the suite on the backends f makes, each as a
// subtest of t.
func Run(t *testing.T, f Factory) {
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
}

// uniquePrefix names this case's streams; on Redis they are deleted when the
// case ends, so test runs do not pile up in the server.
func uniquePrefix(t *testing.T, b transport.Backend) string {
	prefix := fmt.Sprintf("sdtest:%s:%d", t.Name(), rand.Uint64())
	if r, ok := b.(*transport.Redis); ok {
		t.Cleanup(func() {
			if err := transport.DeletePrefix(context.Background(), r, prefix); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	return prefix
}

// idTime is the append time an entry id carries ("<ms>-<seq>").
func idTime(t *testing.T, id string) time.Time {
	t.Helper()
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		t.Fatalf("entry id %q: not <ms>-<seq>", id)
	}
	return time.UnixMilli(n)
}

// gauge is the value of the gauge name{stream, group} that g gathers.
func gauge(t *testing.T, g prometheus.Gatherer, name, stream, group string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stream"] == stream && labels["group"] == group {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no gauge %s{stream=%q, group=%q}", name, stream, group)
	return 0
}

// collector is a handler that records what it saw, per stream, in order.
type collector struct {
	mu   sync.Mutex
	seen map[string][]string // stream -> payloads
	n    atomic.Int64
}

func newCollector() *collector { return &collector{seen: map[string][]string{}} }

func (c *collector) handle(ctx context.Context, msgs []transport.Message) error {
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
func publishN(t *testing.T, b transport.Backend, prefix string, shards, n int) map[string][]string {
	t.Helper()
	p := transport.NewProducer(b, transport.ProducerConfig{MaxBatch: 97}, nil, nil)
	want := map[string][]string{}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		key := "k" + strconv.Itoa(i%20)
		s := transport.ShardStream(prefix, shards, key)
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

func runConsumer(t *testing.T, c *transport.Consumer) (stop func() error) {
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

func totalPending(t *testing.T, b transport.Backend, streams []string, group string) int64 {
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
