package transport

// Helpers of this package's internal tests (the fault and producer tests),
// and the integration Redis backends, exported for conformance_test.go: the
// conformance suite is transporttest, which imports this package, so only
// the external test package can run it.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backendFactory makes a fresh backend for one test.
type backendFactory func(t *testing.T) Backend

func newMemory(t *testing.T) Backend {
	m := NewMemory()
	t.Cleanup(func() { m.Close() })
	return m
}

// newRedisBackend connects to the integration Redis with default options.
func newRedisBackend(t *testing.T) Backend { return NewIntegrationRedis(t, RedisOptions{}) }

// NewIntegrationRedis connects to the integration Redis with opts (its
// address is set here). With SIGNALD_INTEGRATION unset the test is skipped;
// with it set, a server that is down fails the test.
func NewIntegrationRedis(t *testing.T, opts RedisOptions) Backend {
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

// NewIntegrationRedisCluster connects to the integration Redis Cluster
// (three masters that scripts/services.sh starts), under the same switch.
func NewIntegrationRedisCluster(t *testing.T) Backend {
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

// uniquePrefix names this test's streams; on Redis they are deleted when the
// test ends, so test runs do not pile up in the server.
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
