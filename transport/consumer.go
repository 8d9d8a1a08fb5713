package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// BatchError is what a handler returns to say which entries of its batch
// failed (by index in the batch). The others count as done and are
// acknowledged; the failed ones are tried again, and after MaxDeliveries
// tries, or at once if their error wraps ErrPermanent, moved to the
// dead-letter stream.
type BatchError map[int]error

func (e BatchError) Error() string {
	for i, err := range e {
		return fmt.Sprintf("%d entries failed (entry %d: %v)", len(e), i, err)
	}
	return "no entry failed"
}

// ErrPermanent marks an entry error that retrying cannot fix (an entry that
// cannot be decoded, say).
var ErrPermanent = errors.New("permanent")

// Handler processes a batch of entries. Returning nil means every entry's
// effect is done (stored, forwarded) and the batch may be acknowledged; an
// error leaves the batch pending and it is handed to the handler again.
// Entries of one stream arrive in stream order.
type Handler func(ctx context.Context, msgs []Message) error

// ConsumerConfig configures a Consumer. Group and Streams are required.
type ConsumerConfig struct {
	Group   string
	Streams []string
	// Consumer is this reader's name within the group. Keep it stable across
	// restarts: a restarted consumer first takes back its own pending entries.
	// Default "signald".
	Consumer string
	// Start is where a newly created group begins: "0" (default) for the
	// whole stream, "$" for new entries only.
	Start string
	// Count is the most entries one read returns. Default 1000.
	Count int
	// MaxBatch is the most entries one handler call gets. Default Count.
	MaxBatch int
	// Block bounds a blocking read, and with it how long a stop can wait for
	// one. Default 500ms.
	Block time.Duration
	// MinIdle is how long an entry may stay pending with another consumer
	// before this one claims it (a crashed consumer's work resumes here after
	// at most MinIdle + ClaimInterval). A consumer resets the idle time of
	// the entries it is still handling every MinIdle/3, so a slow handler or
	// a sink outage does not get its work taken over. Default 30s.
	MinIdle time.Duration
	// ClaimInterval is how often pending entries are checked. Default MinIdle/2.
	ClaimInterval time.Duration
	// RetryBackoff is the first wait after a handler error; it doubles up to
	// 5s. Default 100ms.
	RetryBackoff time.Duration
	// DrainTimeout bounds the handling of entries already read when the
	// consumer stops. Default 30s.
	DrainTimeout time.Duration
	// Linger spaces handler calls: a batch waits for more entries until
	// Linger has passed since the previous call (of the same handler
	// goroutine) started, or until it holds MaxBatch. After a quiet spell a
	// batch goes at once, so sparse traffic waits for nothing, while under
	// load there are at most 1/Linger calls per second per goroutine, each
	// larger. For a sink with a fixed cost per call (a database insert) that
	// bounds the cost. Default 0: no waiting.
	Linger time.Duration
	// LingerBytes ends the wait early once the batch's payloads add up to
	// this many bytes: a batch that large already amortizes the per-call
	// cost, and waiting would only add latency. Default 0: no limit.
	LingerBytes int
	// DeadLetterStream receives entries the handler reports as impossible
	// to process (see BatchError), with the reason. Default "": none, and
	// such entries are retried like any failure. An entry is dead-lettered
	// once however many groups give up on it, on backends that implement
	// DeadLetterBackend (Redis, Memory); the groups are recorded with it
	// for ReplayDeadLetter.
	DeadLetterStream string
	// DeadLetterTTL is how long the record of which groups gave up on an
	// entry is kept: a group failing the entry later than this adds a
	// second dead letter, and a replay later than this goes to the first
	// group only. Default 7 days.
	DeadLetterTTL time.Duration
	// MaxDeliveries is how many times an entry the handler reports as failed
	// (in a BatchError) is tried before it goes to DeadLetterStream. Errors
	// that are not a BatchError mean the sink itself fails and are retried
	// without limit: an outage must not dead-letter everything. Default 10.
	MaxDeliveries int
	// PoisonDeliveries is how many times an entry may be delivered without
	// ever being acknowledged or failed by the handler (its handling crashed
	// or hung the consumer each time) before it goes to DeadLetterStream
	// without being handed to the handler again. The count is the backend's
	// (Redis' XPENDING delivery count), so it spans restarts and consumers;
	// entries still being handled are kept from being reclaimed (see
	// MinIdle), so only crashes and stalls add to it. Default
	// 2*MaxDeliveries.
	PoisonDeliveries int
	// Concurrency is how many handler calls may run at once. Default 1,
	// which hands batches over in stream order; above 1, batches of the same
	// stream may be handled out of order (fine for idempotent sinks such as
	// the store, where it keeps one slow call from delaying the next batch).
	Concurrency int
}

func (c *ConsumerConfig) setDefaults() error {
	if c.Group == "" {
		return errors.New("consumer: Group is required")
	}
	if len(c.Streams) == 0 {
		return errors.New("consumer: Streams is required")
	}
	if c.Consumer == "" {
		c.Consumer = "signald"
	}
	if c.Start == "" {
		c.Start = "0"
	}
	if c.Count <= 0 {
		c.Count = 1000
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = c.Count
	}
	if c.Block <= 0 {
		c.Block = 500 * time.Millisecond
	}
	if c.MinIdle <= 0 {
		c.MinIdle = 30 * time.Second
	}
	if c.ClaimInterval <= 0 {
		c.ClaimInterval = c.MinIdle / 2
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 10
	}
	if c.PoisonDeliveries <= 0 {
		c.PoisonDeliveries = 2 * c.MaxDeliveries
	}
	if c.DeadLetterTTL <= 0 {
		c.DeadLetterTTL = 7 * 24 * time.Hour
	}
	return nil
}

// Consumer reads its group's entries from every stream, hands them to the
// handler in batches, and acknowledges a batch only after the handler
// succeeded. One reader per stream keeps each stream's order and works on
// Redis Cluster; a single handler goroutine keeps batches in order.
type Consumer struct {
	b   Backend
	cfg ConsumerConfig
	h   Handler
	log *slog.Logger
	m   *Metrics

	closeOnce sync.Once
	closing   chan struct{}

	// inflight holds the ids handed to the handler and not yet acknowledged
	// (or dead-lettered), per stream, so that re-reading this consumer's
	// pending entries after a read error does not hand them over twice.
	mu       sync.Mutex
	inflight map[string]map[string]struct{}
}

// NewConsumer validates cfg. logger and m may be nil.
func NewConsumer(b Backend, cfg ConsumerConfig, h Handler, logger *slog.Logger, m *Metrics) (*Consumer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("consumer: handler is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Consumer{b: b, cfg: cfg, h: h, log: logger, m: m, closing: make(chan struct{}),
		inflight: map[string]map[string]struct{}{}}, nil
}

// Config returns the configuration with defaults applied.
func (c *Consumer) Config() ConsumerConfig { return c.cfg }

// Run consumes until ctx is cancelled or Close is called, then hands every
// entry already read to the handler and acknowledges it before returning, so
// a clean stop leaves nothing pending. It returns nil on a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	for _, s := range c.cfg.Streams {
		if err := c.b.CreateGroup(ctx, s, c.cfg.Group, c.cfg.Start); err != nil {
			return err
		}
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	go func() {
		select {
		case <-c.closing:
			stopReading()
		case <-readCtx.Done():
		}
	}()

	// Bounded in flight: readers block once two batches per stream wait.
	work := make(chan []Message, 2*len(c.cfg.Streams)+c.cfg.Concurrency)
	var readers sync.WaitGroup
	errc := make(chan error, len(c.cfg.Streams)+1)
	for _, s := range c.cfg.Streams {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if err := c.read(readCtx, s, work); err != nil {
				errc <- err
				stopReading()
			}
		}()
	}
	readers.Add(1)
	go func() {
		defer readers.Done()
		c.reclaim(readCtx, work)
	}()
	go func() {
		readers.Wait()
		close(work)
	}()

	// The handler keeps running after ctx ends, bounded by DrainTimeout, so
	// entries already read are finished and acknowledged.
	handleCtx, cancelHandle := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandle()
	go func() {
		<-readCtx.Done()
		select {
		case <-time.After(c.cfg.DrainTimeout):
			cancelHandle()
		case <-handleCtx.Done():
		}
	}()
	var (
		handlers sync.WaitGroup
		errMu    sync.Mutex
		herr     error
	)
	for range c.cfg.Concurrency {
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			var lastStart time.Time
			for batch := range work {
				batch = c.fill(batch, work, lastStart)
				lastStart = time.Now()
				if err := c.handle(handleCtx, batch); err != nil {
					errMu.Lock()
					if herr == nil {
						herr = err
					}
					errMu.Unlock()
					stopReading()
				}
			}
		}()
	}
	handlers.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	return herr
}

// fill tops batch up with batches already waiting, and with those arriving
// until Linger after lastStart, up to MaxBatch.
func (c *Consumer) fill(batch []Message, work chan []Message, lastStart time.Time) []Message {
	var deadline <-chan time.Time
	if wait := time.Until(lastStart.Add(c.cfg.Linger)); c.cfg.Linger > 0 && wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	size := 0
	for _, m := range batch {
		size += len(m.Payload)
	}
	for len(batch) < c.cfg.MaxBatch {
		select {
		case more, ok := <-work:
			if !ok {
				return batch
			}
			batch = append(batch, more...)
			for _, m := range more {
				size += len(m.Payload)
			}
			continue
		default:
		}
		if deadline == nil || (c.cfg.LingerBytes > 0 && size >= c.cfg.LingerBytes) {
			return batch
		}
		select {
		case more, ok := <-work:
			if !ok {
				return batch
			}
			batch = append(batch, more...)
			for _, m := range more {
				size += len(m.Payload)
			}
		case <-deadline:
			return batch
		}
	}
	return batch
}

// read first takes back this consumer's own pending entries (left by an
// earlier run that stopped uncleanly), then reads new ones.
func (c *Consumer) read(ctx context.Context, stream string, work chan<- []Message) error {
	start := "0"
	backoff := c.cfg.RetryBackoff
	for ctx.Err() == nil {
		msgs, err := c.b.ReadGroup(ctx, stream, c.cfg.Group, c.cfg.Consumer, start, c.cfg.Count, c.cfg.Block)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.m.readErrors.WithLabelValues(c.cfg.Group).Inc()
			c.log.Warn("transport: read failed, retrying", "stream", stream, "group", c.cfg.Group, "err", err)
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 5*time.Second)
			// The server may have delivered entries whose reply was lost
			// (a dropped connection, a restart): take back this consumer's
			// own pending entries first rather than wait for a reclaim.
			start = "0"
			continue
		}
		backoff = c.cfg.RetryBackoff
		if start != ">" {
			if len(msgs) == 0 {
				start = ">"
				continue
			}
			start = msgs[len(msgs)-1].ID
			msgs = c.notInFlight(msgs)
			c.m.redelivered.WithLabelValues(c.cfg.Group).Add(float64(len(msgs)))
			if msgs, err = c.dropPoison(ctx, msgs); err != nil {
				return err
			}
		}
		if msgs, err = c.skipOthers(ctx, msgs); err != nil {
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		c.m.delivered.WithLabelValues(c.cfg.Group).Add(float64(len(msgs)))
		c.setInFlight(msgs, true)
		select {
		case work <- msgs:
		case <-ctx.Done():
			// Not handed over: the entries stay pending and this consumer
			// takes them back first on its next start.
			return nil
		}
	}
	return nil
}

// reclaim periodically takes over entries that sat pending too long with any
// consumer of the group (one that crashed, or this one's failed batches).
func (c *Consumer) reclaim(ctx context.Context, work chan<- []Message) {
	t := time.NewTicker(c.cfg.ClaimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range c.cfg.Streams {
			msgs, deleted, err := c.b.Claim(ctx, s, c.cfg.Group, c.cfg.Consumer, c.cfg.MinIdle, c.cfg.Count)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("transport: reclaim failed", "stream", s, "group", c.cfg.Group, "err", err)
				}
				continue
			}
			if len(deleted) > 0 {
				// Trimmed before anyone acknowledged them: lost for this group.
				c.m.claimDeleted.WithLabelValues(c.cfg.Group).Add(float64(len(deleted)))
				c.log.Error("transport: pending entries were trimmed before being handled", "stream", s, "group", c.cfg.Group, "count", len(deleted))
			}
			if len(msgs) == 0 {
				continue
			}
			c.m.reclaimed.WithLabelValues(c.cfg.Group).Add(float64(len(msgs)))
			// Entries this consumer is still handling (idle past MinIdle
			// only if a Touch failed) are not handed over twice.
			msgs = c.notInFlight(msgs)
			if msgs, err = c.dropPoison(ctx, msgs); err != nil {
				c.log.Warn("transport: dead-lettering poison entries failed", "stream", s, "group", c.cfg.Group, "err", err)
				continue
			}
			if msgs, err = c.skipOthers(ctx, msgs); err != nil {
				c.log.Warn("transport: acknowledging entries replayed for other groups failed", "stream", s, "group", c.cfg.Group, "err", err)
				continue
			}
			if len(msgs) == 0 {
				continue
			}
			c.setInFlight(msgs, true)
			select {
			case work <- msgs:
			case <-ctx.Done():
				return
			}
		}
	}
}

// handle runs the handler until it succeeds, then acknowledges the batch. A
// failing handler blocks the consumer (and through the bounded queue, its
// readers): entries are never skipped.
func (c *Consumer) handle(ctx context.Context, batch []Message) error {
	defer c.setInFlight(batch, false)
	stopTouch := c.touch(ctx, batch)
	defer stopTouch()
	backoff := c.cfg.RetryBackoff
	tries := map[string]int{} // per entry id, failures reported by the handler
	for len(batch) > 0 {
		start := time.Now()
		err := c.h(ctx, batch)
		c.m.handlerSeconds.WithLabelValues(c.cfg.Group).Observe(time.Since(start).Seconds())
		if err == nil {
			return c.ack(ctx, batch)
		}
		c.m.handlerErrors.WithLabelValues(c.cfg.Group).Inc()
		var be BatchError
		if errors.As(err, &be) && len(be) > 0 {
			// Acknowledge what succeeded; dead-letter what failed for good;
			// keep the rest for another try.
			var done, retry []Message
			for i, m := range batch {
				merr, failed := be[i]
				if !failed {
					done = append(done, m)
					continue
				}
				tries[m.ID]++
				// Tries by earlier deliveries (other consumers, a run
				// before a restart) count too.
				if m.Deliveries > 1 && tries[m.ID] == 1 {
					tries[m.ID] += int(m.Deliveries) - 1
				}
				if c.cfg.DeadLetterStream != "" && (errors.Is(merr, ErrPermanent) || tries[m.ID] >= c.cfg.MaxDeliveries) {
					if err := c.deadLetter(ctx, m, merr, tries[m.ID]); err != nil {
						return err
					}
					done = append(done, m)
					continue
				}
				retry = append(retry, m)
			}
			if err := c.ack(ctx, done); err != nil {
				return err
			}
			batch = retry
			if len(batch) == 0 {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("consumer %s: handler: %w (batch left pending)", c.cfg.Group, err)
		}
		c.log.Warn("transport: handler failed, retrying", "group", c.cfg.Group, "entries", len(batch), "err", err)
		if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("consumer %s: handler: %w (batch left pending)", c.cfg.Group, err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

// deadLetter appends m to the dead-letter stream, once per entry whatever
// number of groups give up on it; m is acknowledged by the caller only after
// this succeeded. An entry that fails again after a replay is marked final.
func (c *Consumer) deadLetter(ctx context.Context, m Message, reason error, tries int) error {
	d := DeadLetter{Stream: m.Stream, ID: m.ID, Group: c.cfg.Group, Reason: reason.Error(),
		Deliveries: int64(tries), Time: time.Now().UTC(), Payload: m.Payload, Final: len(m.For) > 0}
	body, err := d.MarshalBinary()
	if err != nil {
		return err
	}
	db, once := c.b.(DeadLetterBackend)
	backoff := c.cfg.RetryBackoff
	for {
		added := true
		if once {
			added, err = db.AddDeadLetter(ctx, c.cfg.DeadLetterStream, d, body, c.cfg.DeadLetterTTL)
		} else {
			_, err = c.b.Add(ctx, c.cfg.DeadLetterStream, [][]byte{body})
		}
		if err == nil {
			if added {
				c.m.deadLettered.WithLabelValues(c.cfg.Group).Inc()
				c.log.Warn("transport: entry dead-lettered", "stream", m.Stream, "id", m.ID, "group", c.cfg.Group, "tries", tries, "final", d.Final, "reason", reason)
			} else {
				c.m.deadLetterDeduped.WithLabelValues(c.cfg.Group).Inc()
				c.log.Warn("transport: entry already dead-lettered by another group; this group is recorded with it", "stream", m.Stream, "id", m.ID, "group", c.cfg.Group, "reason", reason)
			}
			return nil
		} else if !sleepCtx(ctx, backoff) {
			return fmt.Errorf("consumer %s: dead letter %s: %w (entry stays pending)", c.cfg.Group, m.ID, err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// skipOthers acknowledges the entries replayed for other groups only
// (Message.For) and returns the rest.
func (c *Consumer) skipOthers(ctx context.Context, msgs []Message) ([]Message, error) {
	var skip []Message
	for _, m := range msgs {
		if !m.forGroup(c.cfg.Group) {
			skip = append(skip, m)
		}
	}
	if len(skip) == 0 {
		return msgs, nil
	}
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.forGroup(c.cfg.Group) {
			out = append(out, m)
		}
	}
	if err := c.ack(ctx, skip); err != nil {
		return nil, err
	}
	c.m.replaySkipped.WithLabelValues(c.cfg.Group).Add(float64(len(skip)))
	return out, nil
}

// touch keeps batch's entries from going idle while the handler works on
// them (a slow sink, an outage), so that no other consumer reclaims work in
// progress. The returned func stops it.
func (c *Consumer) touch(ctx context.Context, batch []Message) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.cfg.MinIdle / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			byStream := map[string][]string{}
			for _, m := range batch {
				byStream[m.Stream] = append(byStream[m.Stream], m.ID)
			}
			for s, ids := range byStream {
				if err := c.b.Touch(ctx, s, c.cfg.Group, c.cfg.Consumer, ids...); err != nil && ctx.Err() == nil {
					c.log.Warn("transport: keeping entries in progress failed; they may be reclaimed", "stream", s, "group", c.cfg.Group, "err", err)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// notInFlight drops the entries this consumer is already handling.
func (c *Consumer) notInFlight(msgs []Message) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := msgs[:0:0]
	for _, m := range msgs {
		if _, busy := c.inflight[m.Stream][m.ID]; !busy {
			out = append(out, m)
		}
	}
	if skipped := len(msgs) - len(out); skipped > 0 {
		c.m.skippedInFlight.WithLabelValues(c.cfg.Group).Add(float64(skipped))
	}
	return out
}

func (c *Consumer) setInFlight(msgs []Message, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		set := c.inflight[m.Stream]
		if on {
			if set == nil {
				set = map[string]struct{}{}
				c.inflight[m.Stream] = set
			}
			set[m.ID] = struct{}{}
		} else {
			delete(set, m.ID)
		}
	}
}

// dropPoison dead-letters and acknowledges the entries delivered
// PoisonDeliveries times or more, and returns the others.
func (c *Consumer) dropPoison(ctx context.Context, msgs []Message) ([]Message, error) {
	if c.cfg.DeadLetterStream == "" {
		return msgs, nil
	}
	out := msgs[:0:0]
	var poison []Message
	for _, m := range msgs {
		if m.Deliveries >= int64(c.cfg.PoisonDeliveries) {
			poison = append(poison, m)
		} else {
			out = append(out, m)
		}
	}
	for _, m := range poison {
		reason := fmt.Errorf("delivered %d times without being acknowledged: handling it crashed or stalled the consumer each time", m.Deliveries)
		if err := c.deadLetter(ctx, m, reason, int(m.Deliveries)); err != nil {
			return nil, err
		}
		c.m.poison.WithLabelValues(c.cfg.Group).Inc()
	}
	if err := c.ack(ctx, poison); err != nil {
		return nil, err
	}
	return out, nil
}

// ack acknowledges msgs, retrying until it succeeds or ctx ends.
func (c *Consumer) ack(ctx context.Context, msgs []Message) error {
	backoff := c.cfg.RetryBackoff
	byStream := map[string][]string{}
	for _, m := range msgs {
		byStream[m.Stream] = append(byStream[m.Stream], m.ID)
	}
	for s, ids := range byStream {
		for {
			err := c.b.Ack(ctx, s, c.cfg.Group, ids...)
			if err == nil {
				c.m.acked.WithLabelValues(c.cfg.Group).Add(float64(len(ids)))
				break
			}
			c.m.ackErrors.WithLabelValues(c.cfg.Group).Inc()
			if !sleepCtx(ctx, backoff) {
				return fmt.Errorf("consumer %s: %w (entries stay pending and are redelivered)", c.cfg.Group, err)
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	return nil
}

// Close stops reading; Run then drains and returns. Safe to call more than once.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
