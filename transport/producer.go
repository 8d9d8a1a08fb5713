package transport

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// ShardStream returns the stream that key's entries go to: prefix:{n} with n
// a hash of key modulo shards. The braces are a Redis Cluster hash tag, so
// each shard's stream lives in one slot, and one key's entries stay in order
// on one stream.
func ShardStream(prefix string, shards int, key string) string {
	if shards <= 1 {
		return prefix + ":{0}"
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return prefix + ":{" + strconv.Itoa(int(h.Sum32()%uint32(shards))) + "}"
}

// ShardStreams lists every shard stream of prefix.
func ShardStreams(prefix string, shards int) []string {
	if shards < 1 {
		shards = 1
	}
	out := make([]string, shards)
	for i := range out {
		out[i] = prefix + ":{" + strconv.Itoa(i) + "}"
	}
	return out
}

// ProducerConfig configures a Producer. The zero value works.
type ProducerConfig struct {
	// MaxBatch flushes a stream's buffer once it holds this many entries.
	// Default 1000.
	MaxBatch int
	// Linger is how long a partial batch waits for more entries before it is
	// flushed. Default 1ms.
	Linger time.Duration
	// CloseTimeout bounds the final flush in Close. Default 10s.
	CloseTimeout time.Duration
	// MaxBuffered bounds the entries held while the backend fails: past it,
	// Publish blocks (retrying) until they are appended or its context
	// ends. Default 100,000.
	MaxBuffered int
}

func (c *ProducerConfig) setDefaults() {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.Linger <= 0 {
		c.Linger = time.Millisecond
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 10 * time.Second
	}
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = 100_000
	}
}

// Producer buffers entries per stream and appends them in pipelined batches.
// Entries of one stream are appended in Publish order. A background flusher
// sends a stream's batch as soon as it is full (or Linger after its first
// entry), so the publisher fills the next batch while the last one is on the
// wire; Publish waits only once MaxBuffered entries are held. A failed flush
// keeps its entries buffered and the flusher retries them, so nothing
// published is dropped (a retry after a partly applied pipeline can append an
// entry twice: delivery is at-least-once).
type Producer struct {
	b       Backend
	cfg     ProducerConfig
	log     *slog.Logger
	m       *Metrics
	flushMu sync.Mutex // serializes flushes, preserving order

	mu     sync.Mutex
	buf    map[string][][]byte
	order  []string // streams with buffered entries, first-published first
	n      int
	closed bool
	room   chan struct{} // closed (and replaced) when a flush frees room

	kick chan struct{} // first entry since the last flush: flush after Linger
	now  chan struct{} // a batch is full: flush without lingering
	stop chan struct{}
	done chan struct{}
}

// NewProducer starts a producer on b. logger and m may be nil.
func NewProducer(b Backend, cfg ProducerConfig, logger *slog.Logger, m *Metrics) *Producer {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	p := &Producer{
		b: b, cfg: cfg, log: logger, m: m,
		buf:  map[string][][]byte{},
		room: make(chan struct{}),
		kick: make(chan struct{}, 1),
		now:  make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go p.flushLoop()
	return p
}

// Publish buffers payload for stream. It returns at once unless MaxBuffered
// entries are already held (the backend is slower than the publisher, or
// failing); then it waits until a flush makes room or ctx ends, and returns
// ctx's error with payload not buffered.
func (p *Producer) Publish(ctx context.Context, stream string, payload []byte) error {
	return p.PublishBatch(ctx, stream, [][]byte{payload})
}

// PublishBatch buffers payloads for stream, in order, under one lock; it
// behaves as that many Publish calls, except that the batch is buffered
// whole or not at all.
func (p *Producer) PublishBatch(ctx context.Context, stream string, payloads [][]byte) error {
	if len(payloads) == 0 {
		return nil
	}
	p.mu.Lock()
	waited := false
	for !p.closed && p.n > 0 && p.n+len(payloads) > p.cfg.MaxBuffered {
		room := p.room
		p.mu.Unlock()
		if !waited {
			waited = true
			p.m.publishWaits.Inc()
		}
		p.signal(p.now)
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	q, ok := p.buf[stream]
	if !ok {
		p.order = append(p.order, stream)
	}
	p.buf[stream] = append(q, payloads...)
	first := p.n == 0
	p.n += len(payloads)
	full := len(p.buf[stream]) >= p.cfg.MaxBatch
	p.mu.Unlock()
	switch {
	case full:
		p.signal(p.now)
	case first:
		p.signal(p.kick)
	}
	return nil
}

func (p *Producer) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Flush appends everything buffered so far, in batches of at most MaxBatch.
// Streams are appended concurrently (order matters only within a stream), so
// with several shard streams more than one batch is on the wire at a time.
func (p *Producer) Flush(ctx context.Context) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	buf, order := p.buf, p.order
	p.buf, p.order = map[string][][]byte{}, nil
	p.mu.Unlock()
	if len(order) == 1 {
		s := order[0]
		rest, err := p.flushStream(ctx, s, buf[s])
		if err != nil {
			buf[s] = rest
			p.requeue(buf, order)
		}
		return err
	}
	errs := make([]error, len(order))
	rest := make([][][]byte, len(order))
	var wg sync.WaitGroup
	for i, s := range order {
		payloads := buf[s]
		wg.Go(func() {
			rest[i], errs[i] = p.flushStream(ctx, s, payloads)
		})
	}
	wg.Wait()
	var failed []string
	for i, s := range order {
		buf[s] = rest[i]
		if len(rest[i]) > 0 {
			failed = append(failed, s)
		} else {
			errs[i] = nil
		}
	}
	if len(failed) > 0 {
		p.requeue(buf, failed)
	}
	return errors.Join(errs...)
}

// flushStream appends payloads to s in batches and returns what it could not
// append.
func (p *Producer) flushStream(ctx context.Context, s string, payloads [][]byte) ([][]byte, error) {
	for len(payloads) > 0 {
		chunk := payloads[:min(len(payloads), p.cfg.MaxBatch)]
		start := time.Now()
		if _, err := p.b.Add(ctx, s, chunk); err != nil {
			p.m.publishErrors.Inc()
			p.signal(p.kick) // the flusher retries
			return payloads, fmt.Errorf("publish %d entries: %w", len(chunk), err)
		}
		p.m.publishBatch.Observe(time.Since(start).Seconds())
		p.m.published.WithLabelValues(s).Add(float64(len(chunk)))
		payloads = payloads[len(chunk):]
		p.freed(len(chunk))
	}
	return nil, nil
}

// freed counts appended entries out of the buffer and wakes waiting
// publishers.
func (p *Producer) freed(k int) {
	p.mu.Lock()
	p.n -= k
	close(p.room)
	p.room = make(chan struct{})
	p.mu.Unlock()
}

// requeue puts unsent entries back ahead of anything published meanwhile.
// p.n already counts them: it drops only as entries are appended.
func (p *Producer) requeue(buf map[string][][]byte, order []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	newer, newOrder := p.buf, p.order
	p.buf, p.order = map[string][][]byte{}, nil
	for _, s := range order {
		p.buf[s] = buf[s]
		p.order = append(p.order, s)
	}
	for _, s := range newOrder {
		if _, ok := p.buf[s]; !ok {
			p.order = append(p.order, s)
		}
		p.buf[s] = append(p.buf[s], newer[s]...)
	}
}

// Buffered is the number of entries not yet appended.
func (p *Producer) Buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// flushLoop is the background flusher: a full batch goes at once, a partial
// one after Linger, and a failed flush is retried with backoff.
func (p *Producer) flushLoop() {
	defer close(p.done)
	backoff := p.cfg.Linger
	for {
		select {
		case <-p.stop:
			return
		case <-p.now:
		case <-p.kick:
			t := time.NewTimer(p.cfg.Linger)
			select {
			case <-p.stop:
				t.Stop()
				return
			case <-p.now:
				t.Stop()
			case <-t.C:
			}
		}
		if err := p.Flush(context.Background()); err != nil {
			p.log.Warn("transport: flush failed; entries stay buffered and are retried", "buffered", p.Buffered(), "err", err)
			select {
			case <-p.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			p.signal(p.now)
			continue
		}
		backoff = p.cfg.Linger
		if p.Buffered() > 0 {
			// Entries published during the flush: a full batch has
			// already signalled now; otherwise they linger.
			p.signal(p.kick)
		}
	}
}

// Close flushes what is buffered (bounded by CloseTimeout) and stops the
// producer. It is safe to call more than once.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.room) // publishers waiting for room return ErrClosed
	p.room = make(chan struct{})
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CloseTimeout)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		lost := p.Buffered()
		p.m.dropped.Add(float64(lost))
		return fmt.Errorf("close: %d entries not published: %w", lost, err)
	}
	return nil
}
