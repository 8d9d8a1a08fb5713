package transport

import (
	"context"
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
// Entries of one stream are appended in Publish order. A failed flush keeps
// its entries buffered and returns the error; the next flush retries them, so
// nothing published is dropped (a retry after a partly applied pipeline can
// append an entry twice: delivery is at-least-once).
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

	kick chan struct{}
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
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go p.lingerLoop()
	return p
}

// Publish buffers payload for stream. It flushes synchronously when the
// stream's batch is full, so a slow backend slows the publisher. When the
// backend fails, entries stay buffered and are retried in the background;
// only once MaxBuffered entries wait does Publish block, retrying, until they
// are appended or ctx ends (then it returns ctx's error, the entry buffered).
func (p *Producer) Publish(ctx context.Context, stream string, payload []byte) error {
	return p.PublishBatch(ctx, stream, [][]byte{payload})
}

// PublishBatch buffers payloads for stream, in order, under one lock; it
// behaves as that many Publish calls.
func (p *Producer) PublishBatch(ctx context.Context, stream string, payloads [][]byte) error {
	if len(payloads) == 0 {
		return nil
	}
	p.mu.Lock()
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
	if full {
		backoff := p.cfg.Linger
		for {
			err := p.Flush(ctx)
			if err == nil || p.Buffered() < p.cfg.MaxBuffered {
				// On failure below the bound the linger loop keeps retrying.
				return nil
			}
			p.log.Warn("transport: publish blocked: backend failing and buffer full", "buffered", p.Buffered(), "err", err)
			if !sleepCtx(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(backoff*2, time.Second)
		}
	}
	if first {
		p.kickLinger()
	}
	return nil
}

func (p *Producer) kickLinger() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Flush appends everything buffered so far.
func (p *Producer) Flush(ctx context.Context) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	buf, order := p.buf, p.order
	p.buf, p.order, p.n = map[string][][]byte{}, nil, 0
	p.mu.Unlock()
	for i, s := range order {
		payloads := buf[s]
		start := time.Now()
		_, err := p.b.Add(ctx, s, payloads)
		if err != nil {
			p.m.publishErrors.Inc()
			p.requeue(buf, order[i:])
			p.kickLinger() // the background loop retries
			return fmt.Errorf("publish %d entries: %w", len(payloads), err)
		}
		p.m.publishBatch.Observe(time.Since(start).Seconds())
		p.m.published.WithLabelValues(s).Add(float64(len(payloads)))
	}
	return nil
}

// requeue puts unsent entries back ahead of anything published meanwhile.
func (p *Producer) requeue(buf map[string][][]byte, order []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	newer, newOrder := p.buf, p.order
	p.buf, p.order, p.n = map[string][][]byte{}, nil, 0
	for _, s := range order {
		p.buf[s] = buf[s]
		p.order = append(p.order, s)
		p.n += len(buf[s])
	}
	for _, s := range newOrder {
		if _, ok := p.buf[s]; !ok {
			p.order = append(p.order, s)
		}
		p.buf[s] = append(p.buf[s], newer[s]...)
		p.n += len(newer[s])
	}
}

// Buffered is the number of entries not yet appended.
func (p *Producer) Buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *Producer) lingerLoop() {
	defer close(p.done)
	backoff := p.cfg.Linger
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		t := time.NewTimer(p.cfg.Linger)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := p.Flush(context.Background()); err != nil {
			p.log.Warn("transport: flush failed; entries stay buffered and are retried", "buffered", p.Buffered(), "err", err)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			p.kickLinger()
			continue
		}
		backoff = p.cfg.Linger
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
