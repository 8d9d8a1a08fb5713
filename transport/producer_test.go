package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// flaky fails Add while down is set, like a Redis that restarts.
type flaky struct {
	Backend
	down  atomic.Bool
	fails atomic.Int64
}

func (f *flaky) Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error) {
	if f.down.Load() {
		f.fails.Add(1)
		return nil, errors.New("connection refused")
	}
	return f.Backend.Add(ctx, stream, payloads)
}

// A backend outage neither fails Publish (below MaxBuffered) nor loses or
// reorders entries: they are appended once it is back.
func TestProducerRidesOutBackendOutage(t *testing.T) {
	mem := NewMemory()
	f := &flaky{Backend: mem}
	p := NewProducer(f, ProducerConfig{MaxBatch: 10, MaxBuffered: 1000}, nil, nil)
	ctx := context.Background()
	f.down.Store(true)
	for i := 0; i < 300; i++ {
		if err := p.Publish(ctx, "s", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("publish %d during the outage: %v", i, err)
		}
	}
	// Flushes run in the background: wait until one has failed.
	waitFor(t, "a failed append", func() bool { return f.fails.Load() > 0 })
	if p.Buffered() != 300 {
		t.Fatalf("outage not exercised: %d failed appends, %d buffered", f.fails.Load(), p.Buffered())
	}
	f.down.Store(false)
	waitFor(t, "the background retry", func() bool { return p.Buffered() == 0 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	assertSequence(t, mem, "s", 300)
}

// At MaxBuffered, Publish blocks until the backend is back, or until its
// context ends, and never drops what it buffered.
func TestProducerBlocksAtMaxBuffered(t *testing.T) {
	mem := NewMemory()
	f := &flaky{Backend: mem}
	p := NewProducer(f, ProducerConfig{MaxBatch: 10, MaxBuffered: 50}, nil, nil)
	f.down.Store(true)
	for i := 0; i < 49; i++ {
		if err := p.Publish(context.Background(), "s", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = p.Publish(ctx, "s", []byte("x"))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish at the bound: %v, want the context's error", err)
	}
	n := p.Buffered()
	f.down.Store(false)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if l, _ := mem.Len(context.Background(), "s"); l != int64(n) {
		t.Fatalf("%d appended, want all %d buffered", l, n)
	}
}

func TestPublishBatchKeepsOrder(t *testing.T) {
	b := NewMemory()
	p := NewProducer(b, ProducerConfig{MaxBatch: 97}, nil, nil)
	ctx := context.Background()
	var want []string
	for round := range 3 {
		var ps [][]byte
		for i := range 83 {
			s := fmt.Sprintf("%d/%d", round, i)
			want = append(want, s)
			ps = append(ps, []byte(s))
		}
		if err := p.PublishBatch(ctx, "s", ps); err != nil {
			t.Fatal(err)
		}
		if err := p.Publish(ctx, "s", []byte(fmt.Sprintf("%d/single", round))); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%d/single", round))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := b.Range(ctx, "s", "-", "+", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if string(got[i].Payload) != want[i] {
			t.Fatalf("entry %d: %q, want %q", i, got[i].Payload, want[i])
		}
	}
}

// gated holds every Add until release is closed, like a slow server.
type gated struct {
	Backend
	release chan struct{}
	calls   atomic.Int64
	largest atomic.Int64
}

func (g *gated) Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error) {
	g.calls.Add(1)
	if n := int64(len(payloads)); n > g.largest.Load() {
		g.largest.Store(n)
	}
	<-g.release
	return g.Backend.Add(ctx, stream, payloads)
}

// The publisher fills the next batches while a full one is on the wire: a
// slow append does not block Publish below MaxBuffered, and no flush sends
// more than MaxBatch entries.
func TestProducerPublishesWhileBatchInFlight(t *testing.T) {
	mem := NewMemory()
	g := &gated{Backend: mem, release: make(chan struct{})}
	p := NewProducer(g, ProducerConfig{MaxBatch: 10, MaxBuffered: 1000, Linger: time.Hour}, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 95 {
		if err := p.Publish(ctx, "s", []byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("publish %d with a batch in flight: %v", i, err)
		}
	}
	waitFor(t, "the first full batch on the wire", func() bool { return g.calls.Load() == 1 })
	if p.Buffered() != 95 {
		t.Fatalf("%d buffered, want 95", p.Buffered())
	}
	close(g.release)
	// The full batches go without waiting for Linger (an hour); a partial
	// one may go with them or with Close.
	waitFor(t, "the full batches", func() bool { return p.Buffered() <= 5 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := g.largest.Load(); n > 10 {
		t.Fatalf("an append of %d entries, want at most MaxBatch (10)", n)
	}
	assertSequence(t, mem, "s", 95)
}

// assertSequence checks that stream holds exactly the payloads "0".."n-1",
// in order.
func assertSequence(t *testing.T, mem *Memory, stream string, n int) {
	t.Helper()
	got, err := mem.Range(context.Background(), stream, "-", "+", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d entries appended, want %d", len(got), n)
	}
	for i, m := range got {
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("entry %d is %s: order broken", i, m.Payload)
		}
	}
}

// Several streams flush concurrently; an outage requeues each stream's
// unsent entries, and every stream keeps its order.
func TestProducerOutageManyStreams(t *testing.T) {
	mem := NewMemory()
	f := &flaky{Backend: mem}
	p := NewProducer(f, ProducerConfig{MaxBatch: 7, MaxBuffered: 10_000}, nil, nil)
	ctx := context.Background()
	streams := []string{"a", "b", "c", "d"}
	for i := range 400 {
		if i == 100 {
			f.down.Store(true)
		}
		if i == 300 {
			waitFor(t, "failed appends", func() bool { return f.fails.Load() > 0 })
			f.down.Store(false)
		}
		if err := p.Publish(ctx, streams[i%4], []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for k, s := range streams {
		got, _ := mem.Range(ctx, s, "-", "+", 0)
		if len(got) != 100 {
			t.Fatalf("stream %s: %d entries, want 100", s, len(got))
		}
		for j, m := range got {
			if want := strconv.Itoa(j*4 + k); string(m.Payload) != want {
				t.Fatalf("stream %s entry %d is %s, want %s", s, j, m.Payload, want)
			}
		}
	}
}
