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
	// ends (or, with a SpoolDir, spills to the spool). Default 100,000.
	MaxBuffered int
	// SpoolDir is a directory for the producer's spool file (see spool.go
	// for its format): while the backend fails and MaxBuffered entries are
	// held, Publish appends to the spool instead of waiting, and Close
	// writes what it could not append before CloseTimeout there, fsynced.
	// A producer opened on the same directory appends the spooled entries
	// first, in order, before any new entry, then empties the file. One
	// producer per directory. Default "": no spool; entries left at Close
	// are dropped, counted (signald_transport_dropped_entries_total) and
	// logged.
	SpoolDir string
	// SpoolMaxBytes bounds the spool file while the producer runs; past it
	// SpoolOverflow applies. Close still spools the memory buffer (at most
	// MaxBuffered entries) past the bound rather than drop it. Default
	// 1 GiB.
	SpoolMaxBytes int64
	// SpoolOverflow is what Publish does when the spool is full.
	SpoolOverflow SpoolOverflow
}

// SpoolOverflow is the policy for entries that do not fit in a full spool.
type SpoolOverflow int

const (
	// SpoolBlock makes Publish wait until the spool has drained (or its
	// context ends), as without a spool: nothing is lost.
	SpoolBlock SpoolOverflow = iota
	// SpoolDropNewest drops the entries that do not fit, counted
	// (signald_transport_dropped_entries_total) and logged, so that
	// publishers never wait.
	SpoolDropNewest
)

func (o SpoolOverflow) String() string {
	if o == SpoolDropNewest {
		return "drop-newest"
	}
	return "block"
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
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = 1 << 30
	}
}

// Producer buffers entries per stream and appends them in pipelined batches.
// Entries of one stream are appended in Publish order. A background flusher
// sends a stream's batch as soon as it is full (or Linger after its first
// entry), so the publisher fills the next batch while the last one is on the
// wire; Publish waits only once MaxBuffered entries are held. A failed flush
// keeps its entries buffered and the flusher retries them, so nothing
// published is dropped (a retry after a partly applied pipeline can append an
// entry twice: delivery is at-least-once). With a SpoolDir, entries beyond
// the memory buffer go to a local file instead (see ProducerConfig.SpoolDir).
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

	// The spool (nil without SpoolDir) holds entries newer than every
	// buffered one: while it has any, Publish appends there, and the
	// flusher reads them back once the buffer is empty.
	sp       *spool
	spilling bool
	failing  bool // the last append failed
	dropLog  time.Time

	kick chan struct{} // first entry since the last flush: flush after Linger
	now  chan struct{} // a batch is full: flush without lingering
	stop chan struct{}
	done chan struct{}
}

// NewProducer starts a producer on b. logger and m may be nil. A spool that
// cannot be opened is logged and the producer runs without it; use
// OpenProducer to get that error instead.
func NewProducer(b Backend, cfg ProducerConfig, logger *slog.Logger, m *Metrics) *Producer {
	p, err := OpenProducer(b, cfg, logger, m)
	if err != nil {
		if logger != nil {
			logger.Error("transport: running the producer without its spool", "err", err)
		}
		cfg.SpoolDir = ""
		p, _ = OpenProducer(b, cfg, logger, m)
	}
	return p
}

// OpenProducer starts a producer on b, opening its spool when cfg.SpoolDir
// is set: entries spooled by an earlier producer are appended first. A
// damaged spool record is skipped, counted and logged; only a spool that
// cannot be read or written at all is an error.
func OpenProducer(b Backend, cfg ProducerConfig, logger *slog.Logger, m *Metrics) (*Producer, error) {
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
	if cfg.SpoolDir != "" {
		sp, corrupt, err := openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes)
		if err != nil {
			return nil, fmt.Errorf("producer: ProducerConfig.SpoolDir: %w", err)
		}
		if corrupt > 0 {
			m.spoolCorrupt.Add(float64(corrupt))
			logger.Error("transport: damaged spool records skipped; the entries they held are lost", "dir", cfg.SpoolDir, "records", corrupt)
		}
		p.sp = sp
		if sp.live > 0 {
			p.spilling = true
			m.spooled.Add(float64(sp.live))
			logger.Info("transport: spooled entries from an earlier run are appended first", "dir", cfg.SpoolDir, "entries", sp.live)
			p.signal(p.now)
		}
	}
	go p.flushLoop()
	return p, nil
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
	waited, overflowed := false, false
	for {
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		spill := p.spilling || (p.sp != nil && p.failing && p.n > 0 && p.n+len(payloads) > p.cfg.MaxBuffered)
		if spill {
			if p.sp.fits(stream, payloads) {
				err := p.spool(stream, payloads)
				p.mu.Unlock()
				p.signal(p.kick)
				return err
			}
			if !overflowed {
				overflowed = true
				p.m.spoolOverflow.WithLabelValues(p.cfg.SpoolOverflow.String()).Add(float64(len(payloads)))
			}
			if p.cfg.SpoolOverflow == SpoolDropNewest {
				p.drop(len(payloads), "spool full")
				p.mu.Unlock()
				return nil
			}
		} else if p.n == 0 || p.n+len(payloads) <= p.cfg.MaxBuffered {
			break
		}
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

// spool appends payloads to the spool file; p.mu is held. From the first
// spooled entry on, every new entry goes there until it has drained.
func (p *Producer) spool(stream string, payloads [][]byte) error {
	if err := p.sp.append(stream, payloads); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if !p.spilling {
		p.spilling = true
		p.log.Warn("transport: backend failing and the buffer is full; spooling to disk", "dir", p.cfg.SpoolDir, "buffered", p.n)
	}
	p.m.spooled.Add(float64(len(payloads)))
	p.m.spooledTotal.Add(float64(len(payloads)))
	return nil
}

// drop counts entries given up; p.mu is held. The log line is at most one
// a second, with the count since the last one in the metric.
func (p *Producer) drop(n int, why string) {
	p.m.dropped.Add(float64(n))
	if now := time.Now(); now.Sub(p.dropLog) >= time.Second {
		p.dropLog = now
		p.log.Error("transport: entries dropped", "entries", n, "why", why, "dir", p.cfg.SpoolDir,
			"hint", "see signald_transport_dropped_entries_total; raise ProducerConfig.SpoolMaxBytes or use SpoolBlock")
	}
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
	for {
		if err := p.flushBuffer(ctx); err != nil {
			return err
		}
		more, err := p.unspool()
		if err != nil || !more {
			return err
		}
	}
}

// unspool moves the next spooled entries into the empty buffer, and reports
// whether it moved any. Once the spool is empty, Publish buffers in memory
// again.
func (p *Producer) unspool() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sp == nil || !p.spilling || p.n > 0 {
		return false, nil
	}
	if err := p.sp.sync(); err != nil {
		return false, err
	}
	recs, err := p.sp.read(p.cfg.MaxBatch * 4)
	for _, r := range recs {
		if _, ok := p.buf[r.stream]; !ok {
			p.order = append(p.order, r.stream)
		}
		p.buf[r.stream] = append(p.buf[r.stream], r.payload)
	}
	p.n += len(recs)
	p.m.spooled.Sub(float64(len(recs)))
	p.m.unspooledTotal.Add(float64(len(recs)))
	if p.sp.live == 0 {
		p.spilling = false
		close(p.room) // publishers waiting for a full spool
		p.room = make(chan struct{})
	}
	return len(recs) > 0, err
}

// flushBuffer appends what the memory buffer holds.
func (p *Producer) flushBuffer(ctx context.Context) error {
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
			p.setFailing(true)
			p.m.publishErrors.Inc()
			p.signal(p.kick) // the flusher retries
			return payloads, fmt.Errorf("publish %d entries: %w", len(chunk), err)
		}
		p.setFailing(false)
		p.m.publishBatch.Observe(time.Since(start).Seconds())
		p.m.published.WithLabelValues(s).Add(float64(len(chunk)))
		payloads = payloads[len(chunk):]
		p.freed(len(chunk))
	}
	return nil, nil
}

func (p *Producer) setFailing(v bool) {
	p.mu.Lock()
	if v && !p.failing && p.sp != nil {
		// Publishers waiting for room may spill to the spool now.
		close(p.room)
		p.room = make(chan struct{})
	}
	p.failing = v
	p.mu.Unlock()
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

// Buffered is the number of entries held in memory, not yet appended.
func (p *Producer) Buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// Spooled is the number of entries in the spool, not yet appended.
func (p *Producer) Spooled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sp == nil {
		return 0
	}
	return p.sp.live
}

// syncSpool makes spooled entries durable; the flusher calls it on every
// round, so an entry spills to the page cache at once and to the disk within
// one Linger or retry backoff.
func (p *Producer) syncSpool() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sp == nil {
		return
	}
	if err := p.sp.sync(); err != nil {
		p.log.Error("transport: spool fsync failed", "dir", p.cfg.SpoolDir, "err", err)
	}
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
		p.syncSpool()
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

// Close flushes what is buffered (bounded by CloseTimeout, retrying while
// the backend fails) and stops the producer. What it could not append goes
// to the spool, or without one is dropped, counted and logged. It is safe to
// call more than once.
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
	err := p.Flush(ctx)
	for backoff := p.cfg.Linger; err != nil && sleepCtx(ctx, backoff); backoff = min(backoff*2, time.Second) {
		err = p.Flush(ctx)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if p.sp != nil {
			return p.sp.close()
		}
		return nil
	}
	lost := p.n
	if p.sp != nil {
		// Buffered entries are older than the spooled ones: they go ahead.
		var head []spoolRec
		for _, s := range p.order {
			for _, pl := range p.buf[s] {
				head = append(head, spoolRec{stream: s, payload: pl})
			}
		}
		serr := p.sp.prepend(head)
		if cerr := p.sp.close(); serr == nil {
			serr = cerr
		}
		if serr == nil {
			p.m.spooled.Add(float64(len(head)))
			p.m.spooledTotal.Add(float64(len(head)))
			p.log.Warn("transport: producer closed with entries not appended; they are spooled and appended first at the next start",
				"dir", p.cfg.SpoolDir, "spooled", p.sp.live, "err", err)
			return nil
		}
		p.m.dropped.Add(float64(lost))
		p.log.Error("transport: producer closed with entries not appended and the spool failed; they are dropped",
			"entries", lost, "dir", p.cfg.SpoolDir, "err", serr)
		return fmt.Errorf("close: %d entries not published: %w", lost, errors.Join(err, serr))
	}
	p.m.dropped.Add(float64(lost))
	p.log.Error("transport: producer closed with entries not appended; they are dropped",
		"entries", lost, "err", err, "hint", "set ProducerConfig.SpoolDir to keep them for the next start")
	return fmt.Errorf("close: %d entries not published: %w", lost, err)
}
