package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// OverflowPolicy says what the Ingestor does when the queue toward the
// publisher is full.
type OverflowPolicy uint8

const (
	// Block waits for room: backpressure reaches the websocket (and,
	// eventually, the venue disconnects a slow reader). Nothing is lost.
	Block OverflowPolicy = iota
	// DropOldest discards the oldest queued batch to make room.
	DropOldest
	// DropNewest discards the batch that does not fit.
	DropNewest
)

func (p OverflowPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case DropNewest:
		return "drop-newest"
	}
	return "block"
}

// ParseOverflowPolicy is the inverse of OverflowPolicy.String.
func ParseOverflowPolicy(s string) (OverflowPolicy, error) {
	for _, p := range []OverflowPolicy{Block, DropOldest, DropNewest} {
		if p.String() == s {
			return p, nil
		}
	}
	return Block, fmt.Errorf("overflow policy %q: want block, drop-oldest or drop-newest", s)
}

// IngestorConfig configures an Ingestor. Only Venue and Subscriptions are
// required; every other zero value selects the default in its comment.
type IngestorConfig struct {
	// Venue is the registered venue name ("binance", "kraken", ...).
	Venue string
	// Subscriptions are spread over as many connections as the venue's
	// Limits.MaxSubsPerConn requires, in order.
	Subscriptions []Subscription
	// NewFeed makes the Feed of one connection; default
	// NewFeed(Venue, Feed) with the Ingestor's metrics and logger.
	NewFeed func() (Feed, error)
	// Feed configures the default NewFeed (endpoints, fallback JSON path).
	Feed FeedConfig

	// QueueSize is the capacity, in batches (one per frame), of the queue
	// toward the publisher; default 4096.
	QueueSize int
	// Overflow is the policy when the queue is full; default Block. Every
	// dropped tick is counted (signald_ingest_queue_dropped_ticks_total);
	// a dropped batch with book ticks invalidates the book: a gap tick
	// follows, and feeds that implement Resyncer resnapshot it.
	Overflow OverflowPolicy

	// BackoffBase is the first reconnect delay; default 250ms. Delays
	// double per failed attempt up to BackoffMax (default 30s), with
	// jitter (each delay is drawn from [d/2, d)).
	BackoffBase, BackoffMax time.Duration
	// StableAfter: a connection that lasted this long resets the backoff;
	// default 1m.
	StableAfter time.Duration
	// DialTimeout bounds the websocket handshake; default 10s.
	DialTimeout time.Duration
	// WriteTimeout bounds each frame sent; default 10s.
	WriteTimeout time.Duration
	// Silence overrides the venue's Limits.Silence: a connection without
	// a data frame for this long is redialled; default Limits.Silence, or
	// 30s. For venues without an application ping (Feed.Ping nil, such as
	// Binance, whose quiet streams send nothing for minutes) a websocket
	// ping probes the connection first, and a pong keeps it.
	Silence time.Duration
	// MaxFrameBytes is the largest frame accepted; default 64 MiB.
	MaxFrameBytes int64

	// HTTPClient fetches REST snapshots; default a client without timeout
	// (SnapshotTimeout bounds each request).
	HTTPClient *http.Client
	// SnapshotTimeout bounds one snapshot fetch; default 10s.
	SnapshotTimeout time.Duration
	// SnapshotRate is the most snapshot fetches per second across the
	// Ingestor's connections (venues limit REST weight per IP); default 2.
	SnapshotRate float64
	// SnapshotInterval is the least time between two fetches of the same
	// instrument's snapshot (a book that keeps breaking is not allowed to
	// hammer the venue); default 1s.
	SnapshotInterval time.Duration

	// OnFrame, if set, sees every data frame as received, before Handle,
	// in order with OnSnapshot (capture uses it). frame is reused after
	// the call.
	OnFrame func(recvNS int64, frame []byte, binary bool)
	// OnSnapshot, if set, sees every REST snapshot body fetched, before
	// HandleSnapshot.
	OnSnapshot func(recvNS int64, req SnapshotRequest, body []byte)
}

// Ingestor keeps a venue's websocket connections up and turns their frames
// into tick batches on a bounded queue (C). It dials one connection per
// Limits.MaxSubsPerConn subscriptions, paces subscribe frames by
// Limits.SubscribeRate, sends the feed's ping every Limits.PingInterval,
// redials after errors or Limits.Silence without frames (jittered
// exponential backoff), publishes one market.KindGap tick per subscribed
// instrument after a disconnect, and fetches the REST snapshots the feed
// asks for (rate-limited, with timeout and retries).
type Ingestor struct {
	cfg   IngestorConfig
	log   *slog.Logger
	m     *Metrics
	fm    *FeedMetrics
	limit Limits
	q     chan []market.Tick
	conns []*connRunner

	open, depth               prometheus.Gauge
	frames, bytes, gapsDisc   prometheus.Counter
	gapsDrop, snapOK, snapErr prometheus.Counter
	snapStale, dropped, subs  prometheus.Counter
	pings, outbox             prometheus.Counter
	latency, snapSecs         prometheus.Observer
	snapLimiter               *rateLimiter
	bookOwner                 map[string]*connRunner
	mu                        sync.Mutex
	cancel                    context.CancelFunc
	closed                    bool
	running                   bool

	// openConns and lastTick are what Health reports.
	openConns atomic.Int32
	lastTick  atomic.Int64 // wall clock (ns) of the last ticks enqueued
	lastGauge prometheus.Gauge

	// subSent, when set (by tests, before Run), is called as each subscribe
	// frame's write starts, with its connection and the time: pacing is
	// checked where it is done, not where the frames arrive.
	subSent func(conn int, frame []byte, at time.Time)
}

// NewIngestor validates cfg (constructing a feed and the connection URLs,
// so a bad venue, symbol or channel fails here) and returns an Ingestor.
// logger and m may be nil.
func NewIngestor(cfg IngestorConfig, logger *slog.Logger, m *Metrics) (*Ingestor, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.Venue == "" {
		return nil, errors.New("ingestor: IngestorConfig.Venue is empty")
	}
	if len(cfg.Subscriptions) == 0 {
		return nil, fmt.Errorf("ingestor %s: no subscriptions", cfg.Venue)
	}
	if cfg.NewFeed == nil {
		fc := cfg.Feed
		if fc.Metrics == nil {
			fc.Metrics = m
		}
		if fc.Logger == nil {
			fc.Logger = logger
		}
		venue := cfg.Venue
		cfg.NewFeed = func() (Feed, error) { return NewFeed(venue, fc) }
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDefault(&cfg.BackoffBase, 250*time.Millisecond)
	setDefault(&cfg.BackoffMax, 30*time.Second)
	setDefault(&cfg.StableAfter, time.Minute)
	setDefault(&cfg.DialTimeout, 10*time.Second)
	setDefault(&cfg.WriteTimeout, 10*time.Second)
	setDefault(&cfg.SnapshotTimeout, 10*time.Second)
	setDefault(&cfg.SnapshotInterval, time.Second)
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 64 << 20
	}
	if cfg.SnapshotRate <= 0 {
		cfg.SnapshotRate = 2
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Overflow > DropNewest {
		return nil, fmt.Errorf("ingestor %s: unknown overflow policy %d", cfg.Venue, cfg.Overflow)
	}
	f, err := cfg.NewFeed()
	if err != nil {
		return nil, fmt.Errorf("ingestor %s: %w", cfg.Venue, err)
	}
	in := &Ingestor{cfg: cfg, log: logger.With("venue", cfg.Venue), m: m, fm: m.Feed(cfg.Venue), limit: f.Limits(),
		q: make(chan []market.Tick, cfg.QueueSize), bookOwner: map[string]*connRunner{}}
	if in.cfg.Silence <= 0 {
		in.cfg.Silence = in.limit.Silence
	}
	if in.cfg.Silence <= 0 {
		in.cfg.Silence = 30 * time.Second
	}
	in.snapLimiter = newRateLimiter(cfg.SnapshotRate)
	c, v := m.conn, cfg.Venue
	in.open, in.depth = c.open.WithLabelValues(v), c.queueDepth.WithLabelValues(v)
	in.lastGauge = c.lastTick.WithLabelValues(v)
	in.frames, in.bytes = c.received.WithLabelValues(v), c.receivedBytes.WithLabelValues(v)
	in.gapsDisc, in.gapsDrop = c.gaps.WithLabelValues(v, "disconnect"), c.gaps.WithLabelValues(v, "queue_drop")
	in.snapOK, in.snapErr, in.snapStale = c.snapshots.WithLabelValues(v, "ok"), c.snapshots.WithLabelValues(v, "error"), c.snapshots.WithLabelValues(v, "stale")
	in.dropped = c.queueDropped.WithLabelValues(v, cfg.Overflow.String())
	in.subs, in.pings, in.outbox = c.sent.WithLabelValues(v, "subscribe"), c.sent.WithLabelValues(v, "ping"), c.sent.WithLabelValues(v, "outbox")
	in.latency, in.snapSecs = c.enqueueLatency.WithLabelValues(v), c.snapshotSecs.WithLabelValues(v)

	per := in.limit.MaxSubsPerConn
	if per <= 0 {
		per = len(cfg.Subscriptions)
	}
	for start := 0; start < len(cfg.Subscriptions); start += per {
		subs := cfg.Subscriptions[start:min(start+per, len(cfg.Subscriptions))]
		if start > 0 {
			if f, err = cfg.NewFeed(); err != nil {
				return nil, fmt.Errorf("ingestor %s: %w", cfg.Venue, err)
			}
		}
		if _, err := f.URL(subs); err != nil {
			return nil, fmt.Errorf("ingestor %s: %w", cfg.Venue, err)
		}
		if _, err := f.SubscribeFrames(subs); err != nil {
			return nil, fmt.Errorf("ingestor %s: %w", cfg.Venue, err)
		}
		r := &connRunner{in: in, id: len(in.conns), feed: f, subs: subs}
		seen := map[string]bool{}
		for _, s := range subs {
			if !seen[s.Symbol] {
				seen[s.Symbol] = true
				inst, _ := f.Normalize(s.Symbol)
				r.insts = append(r.insts, instSym{inst, s.Symbol})
			}
			if s.Channel == ChanBook {
				in.bookOwner[s.Symbol] = r
				r.books = true
			}
		}
		in.conns = append(in.conns, r)
	}
	return in, nil
}

type instSym struct{ instrument, symbol string }

// IngestorHealth is what an Ingestor reports for readiness.
type IngestorHealth struct {
	Venue       string
	Connections int       // connections the ingestor keeps
	Open        int       // of them, open now
	LastTick    time.Time // when ticks were last queued; zero: never
}

// Health reports the ingestor's connections and its last ticks.
func (in *Ingestor) Health() IngestorHealth {
	h := IngestorHealth{Venue: in.cfg.Venue, Connections: len(in.conns), Open: int(in.openConns.Load())}
	if ns := in.lastTick.Load(); ns != 0 {
		h.LastTick = time.Unix(0, ns)
	}
	return h
}

// C is the queue of tick batches, one per frame (or snapshot, or gap set),
// in the order the venue sent them per connection. It is closed when Run
// returns.
func (in *Ingestor) C() <-chan []market.Tick { return in.q }

// Connections is the number of connections Run keeps open.
func (in *Ingestor) Connections() int { return len(in.conns) }

// Run keeps the connections up until ctx ends or Close is called, then
// closes C. It returns nil after Close, ctx.Err() when ctx ended, and may
// be called once.
func (in *Ingestor) Run(ctx context.Context) error {
	in.mu.Lock()
	if in.running {
		in.mu.Unlock()
		return errors.New("ingestor: Run called twice")
	}
	in.running = true
	if in.closed {
		in.mu.Unlock()
		close(in.q)
		return nil
	}
	ctx, in.cancel = context.WithCancel(ctx)
	in.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range in.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.run(ctx)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	close(in.q)
	in.mu.Lock()
	closed := in.closed
	in.mu.Unlock()
	if closed {
		return nil
	}
	return context.Cause(ctx)
}

// Close stops Run; it is idempotent and safe to call concurrently.
func (in *Ingestor) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	if in.cancel != nil {
		in.cancel()
	}
	return nil
}

// backoff returns the jittered delay before redial attempt n (0-based).
func (in *Ingestor) backoff(n int) time.Duration {
	d := in.cfg.BackoffBase
	for i := 0; i < n && d < in.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, in.cfg.BackoffMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// enqueue puts a copy of ticks on the queue, applying the overflow policy.
// Called with the owning runner's lock held, so per connection the queue
// keeps the venue's order.
func (in *Ingestor) enqueue(ctx context.Context, ticks []market.Tick) {
	if len(ticks) == 0 {
		return
	}
	now := time.Now()
	in.lastTick.Store(now.UnixNano())
	in.lastGauge.Set(float64(now.UnixNano()) / 1e9)
	b := append([]market.Tick(nil), ticks...)
	switch in.cfg.Overflow {
	case Block:
		select {
		case in.q <- b:
		case <-ctx.Done():
			// Shutting down: the consumer stopped reading. Counted, as
			// every drop is.
			in.drop(b)
		}
	case DropNewest:
		select {
		case in.q <- b:
		default:
			in.drop(b)
		}
	case DropOldest:
		for {
			select {
			case in.q <- b:
				in.depth.Set(float64(len(in.q)))
				return
			default:
			}
			select {
			case old := <-in.q:
				in.drop(old)
			default:
			}
		}
	}
	in.depth.Set(float64(len(in.q)))
}

// drop counts a dropped batch and marks the books it touched for a resync
// (a dropped gap tick too: the resync publishes another).
func (in *Ingestor) drop(b []market.Tick) {
	in.dropped.Add(float64(len(b)))
	var last string
	for i := range b {
		t := &b[i]
		if (t.Kind == market.KindBookDelta || t.Kind == market.KindSnapshot || t.Kind == market.KindGap) && t.Symbol != last {
			last = t.Symbol
			if r := in.bookOwner[t.Symbol]; r != nil {
				r.markResync(t.Symbol)
			}
		}
	}
}

// connRunner owns one connection's feed. mu serializes every use of the
// feed (reader, snapshot fetcher), so the feed sees one goroutine at a time
// and its output keeps the venue's order on the queue.
type connRunner struct {
	in    *Ingestor
	id    int
	feed  Feed
	subs  []Subscription
	insts []instSym
	books bool

	runCtx context.Context // enqueue blocks (Block policy) until it ends

	mu  sync.Mutex
	gen uint64 // session number, under mu: snapshots of an older session are stale
	out []market.Tick
	ob  [][]byte
	rq  []SnapshotRequest

	// enqueueing counts goroutines waiting for queue room: backpressure is
	// not venue silence, the watchdog leaves the connection alone.
	enqueueing atomic.Int32

	resyncMu  sync.Mutex
	resyncs   []string
	resyncAny atomic.Bool
}

func (r *connRunner) markResync(symbol string) {
	r.resyncMu.Lock()
	r.resyncs = append(r.resyncs, symbol)
	r.resyncMu.Unlock()
	r.resyncAny.Store(true)
}

// run dials, serves and redials until ctx ends.
func (r *connRunner) run(ctx context.Context) {
	in := r.in
	r.runCtx = ctx
	attempt := 0
	for ctx.Err() == nil {
		start := time.Now()
		connected, reason, err := r.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			r.disconnected(ctx)
		}
		in.m.conn.reconnects.WithLabelValues(in.cfg.Venue, reason).Inc()
		if time.Since(start) >= in.cfg.StableAfter {
			attempt = 0
		}
		d := in.backoff(attempt)
		attempt++
		in.log.Warn("ingest connection lost: redialling", "conn", r.id, "reason", reason, "err", err, "in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// disconnected resets the feed and publishes one gap per instrument.
func (r *connRunner) disconnected(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.feed.Reset()
	now := time.Now().UnixNano()
	gaps := make([]market.Tick, 0, len(r.insts))
	for _, is := range r.insts {
		gaps = append(gaps, GapTick(r.in.cfg.Venue, is.instrument, is.symbol, now))
		if r.in.bookOwner[is.symbol] == r {
			r.in.fm.Resync("disconnect")
		}
	}
	r.in.fm.Ticks(market.KindGap, len(gaps))
	r.in.gapsDisc.Add(float64(len(gaps)))
	r.in.enqueue(ctx, gaps)
}

var (
	errSilence = errors.New("no frame within the silence limit")
	errWrite   = errors.New("write failed")
)

// session serves one connection; it returns whether the handshake
// succeeded, a reason label and the error that ended it.
func (r *connRunner) session(ctx context.Context) (connected bool, reason string, err error) {
	in := r.in
	r.mu.Lock()
	url, err := r.feed.URL(r.subs)
	var subFrames [][]byte
	if err == nil {
		subFrames, err = r.feed.SubscribeFrames(r.subs)
	}
	ping := r.feed.Ping()
	gen := r.gen
	r.mu.Unlock()
	if err != nil {
		return false, "config", err
	}
	dctx, cancel := context.WithTimeout(ctx, in.cfg.DialTimeout)
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{HTTPClient: in.cfg.HTTPClient})
	cancel()
	if err != nil {
		return false, "dial", err
	}
	defer c.CloseNow()
	c.SetReadLimit(in.cfg.MaxFrameBytes)
	in.open.Inc()
	defer in.open.Dec()
	in.openConns.Add(1)
	defer in.openConns.Add(-1)
	in.log.Info("ingest connection open", "conn", r.id, "subscriptions", len(r.subs))

	sctx, scancel := context.WithCancelCause(ctx)
	defer scancel(nil)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	write := func(b []byte) bool {
		wctx, cancel := context.WithTimeout(sctx, in.cfg.WriteTimeout)
		defer cancel()
		if err := c.Write(wctx, websocket.MessageText, b); err != nil {
			scancel(fmt.Errorf("%w: %v", errWrite, err))
			return false
		}
		return true
	}
	snaps := newSnapshotQueue()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer scancel(nil)
	wg.Add(3)
	go func() { // subscribe frames, paced
		defer wg.Done()
		var gap time.Duration
		if in.limit.SubscribeRate > 0 {
			gap = time.Duration(float64(time.Second) / in.limit.SubscribeRate)
		}
		for i, b := range subFrames {
			if i > 0 && gap > 0 && !sleepCtx(sctx, gap) {
				return
			}
			if in.subSent != nil {
				in.subSent(r.id, b, time.Now())
			}
			if !write(b) {
				return
			}
			in.subs.Inc()
		}
	}()
	go func() { // application pings and the silence watchdog
		defer wg.Done()
		tick := in.cfg.Silence / 4
		if in.limit.PingInterval > 0 && ping != nil {
			tick = min(tick, in.limit.PingInterval)
		}
		t := time.NewTicker(max(tick, time.Millisecond))
		defer t.Stop()
		lastPing := time.Now()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				if r.enqueueing.Load() > 0 {
					last.Store(now.UnixNano())
				}
				if now.UnixNano()-last.Load() >= int64(in.cfg.Silence) {
					if ping == nil && r.probe(sctx, c) {
						// Quiet, but alive: venues without an application
						// ping (Binance) stay silent on quiet streams.
						last.Store(time.Now().UnixNano())
						continue
					}
					scancel(errSilence)
					return
				}
				if ping != nil && in.limit.PingInterval > 0 && now.Sub(lastPing) >= in.limit.PingInterval {
					lastPing = now
					if !write(ping) {
						return
					}
					in.pings.Inc()
				}
			}
		}
	}()
	go func() { // REST snapshots
		defer wg.Done()
		r.snapshotLoop(sctx, snaps, gen, write)
	}()

	var buf bytes.Buffer
	for {
		typ, rd, err := c.Reader(sctx)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			if cause := context.Cause(sctx); cause != nil && sctx.Err() != nil {
				err = cause
			}
			return true, closeReason(err), err
		}
		recv := time.Now().UnixNano()
		last.Store(recv)
		in.frames.Inc()
		in.bytes.Add(float64(buf.Len()))
		frame := buf.Bytes()
		r.mu.Lock()
		if in.cfg.OnFrame != nil {
			in.cfg.OnFrame(recv, frame, typ == websocket.MessageBinary)
		}
		var herr error
		r.out, herr = r.feed.Handle(recv, frame, r.out[:0])
		if herr != nil {
			in.log.Debug("malformed frame skipped", "conn", r.id, "err", herr)
		}
		if r.resyncAny.Load() {
			r.out = r.takeResyncs(recv, r.out)
		}
		if len(r.out) > 0 {
			r.enqueueing.Add(1)
			in.enqueue(r.runCtx, r.out)
			r.enqueueing.Add(-1)
			now := time.Now().UnixNano()
			in.latency.Observe(float64(now-recv) / 1e9)
			// Time blocked on a full queue is not venue silence.
			last.Store(now)
		}
		r.ob = r.feed.Outbox(r.ob[:0])
		r.rq = r.feed.SnapshotRequests(r.rq[:0])
		ob := r.ob
		snaps.push(r.rq)
		r.mu.Unlock()
		for _, b := range ob {
			if !write(b) {
				break
			}
			in.outbox.Inc()
		}
	}
}

// probe sends a websocket ping and reports whether the pong came back in
// time (the lesser of Silence and 5s).
func (r *connRunner) probe(ctx context.Context, c *websocket.Conn) bool {
	ctx, cancel := context.WithTimeout(ctx, min(r.in.cfg.Silence, 5*time.Second))
	defer cancel()
	ok := c.Ping(ctx) == nil
	res := "pong"
	if !ok {
		res = "timeout"
	}
	r.in.m.conn.probes.WithLabelValues(r.in.cfg.Venue, res).Inc()
	return ok
}

// takeResyncs resynchronizes the books whose ticks the queue dropped: the
// feed's own Resync when it has one, a gap tick otherwise. Called under mu.
func (r *connRunner) takeResyncs(recv int64, out []market.Tick) []market.Tick {
	r.resyncAny.Store(false)
	r.resyncMu.Lock()
	syms := r.resyncs
	r.resyncs = nil
	r.resyncMu.Unlock()
	seen := map[string]bool{}
	for _, s := range syms {
		if seen[s] {
			continue
		}
		seen[s] = true
		n := len(out)
		if rs, ok := r.feed.(Resyncer); ok {
			out = rs.Resync(recv, s, "queue_drop", out)
		} else {
			inst, _ := r.feed.Normalize(s)
			out = append(out, GapTick(r.in.cfg.Venue, inst, s, recv))
			r.in.fm.Ticks(market.KindGap, 1)
		}
		r.in.gapsDrop.Add(float64(len(out) - n))
	}
	return out
}

func closeReason(err error) string {
	switch {
	case errors.Is(err, errSilence):
		return "silence"
	case errors.Is(err, errWrite):
		return "write"
	case websocket.CloseStatus(err) != -1:
		return "closed"
	}
	return "read"
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// snapshotQueue is the unbounded list of snapshot requests of one session
// (a feed asks at most once per book until the snapshot arrives).
type snapshotQueue struct {
	mu     sync.Mutex
	reqs   []SnapshotRequest
	notify chan struct{}
}

func newSnapshotQueue() *snapshotQueue { return &snapshotQueue{notify: make(chan struct{}, 1)} }

func (q *snapshotQueue) push(reqs []SnapshotRequest) {
	if len(reqs) == 0 {
		return
	}
	q.mu.Lock()
	q.reqs = append(q.reqs, reqs...)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *snapshotQueue) pop(ctx context.Context) (SnapshotRequest, bool) {
	for {
		q.mu.Lock()
		if len(q.reqs) > 0 {
			r := q.reqs[0]
			q.reqs = q.reqs[1:]
			q.mu.Unlock()
			return r, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return SnapshotRequest{}, false
		case <-q.notify:
		}
	}
}

// snapshotLoop fetches the session's snapshot requests one at a time,
// rate-limited across the Ingestor and per instrument, retrying failures
// with backoff, and hands each body to the feed.
func (r *connRunner) snapshotLoop(ctx context.Context, q *snapshotQueue, gen uint64, write func([]byte) bool) {
	in := r.in
	lastFetch := map[string]time.Time{}
	for {
		req, ok := q.pop(ctx)
		if !ok {
			return
		}
		for attempt := 0; ; attempt++ {
			if t, ok := lastFetch[req.URL]; ok {
				if wait := in.cfg.SnapshotInterval - time.Since(t); wait > 0 && !sleepCtx(ctx, wait) {
					return
				}
			}
			if !in.snapLimiter.wait(ctx) {
				return
			}
			lastFetch[req.URL] = time.Now()
			body, err := in.fetch(ctx, req.URL)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				in.snapErr.Inc()
				d := in.backoff(attempt)
				var se *httpStatusError
				if errors.As(err, &se) && se.retryAfter > 0 {
					// Rate-limited: every connection of the Ingestor
					// waits, not only this request.
					in.snapLimiter.holdOff(se.retryAfter)
					d = 0
				}
				in.log.Warn("snapshot fetch failed: retrying", "symbol", req.Symbol, "url", req.URL, "err", err, "in", d)
				if d > 0 && !sleepCtx(ctx, d) {
					return
				}
				continue
			}
			recv := time.Now().UnixNano()
			r.mu.Lock()
			if r.gen != gen {
				r.mu.Unlock()
				in.snapStale.Inc()
				return
			}
			in.snapOK.Inc()
			if in.cfg.OnSnapshot != nil {
				in.cfg.OnSnapshot(recv, req, body)
			}
			var herr error
			r.out, herr = r.feed.HandleSnapshot(recv, req, body, r.out[:0])
			if herr != nil {
				in.log.Warn("malformed snapshot skipped", "symbol", req.Symbol, "err", herr)
			}
			r.enqueueing.Add(1)
			in.enqueue(r.runCtx, r.out)
			r.enqueueing.Add(-1)
			r.ob = r.feed.Outbox(r.ob[:0])
			r.rq = r.feed.SnapshotRequests(r.rq[:0])
			ob := r.ob
			q.push(r.rq)
			r.mu.Unlock()
			for _, b := range ob {
				if !write(b) {
					break
				}
				in.outbox.Inc()
			}
			break
		}
	}
}

const maxSnapshotBytes = 256 << 20

func (in *Ingestor) fetch(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.SnapshotTimeout)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := in.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSnapshotBytes))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		err := &httpStatusError{status: resp.Status, body: body}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == 418 { // 418: Binance's IP ban
			if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
				err.retryAfter = time.Duration(s) * time.Second
			} else {
				err.retryAfter = time.Minute
			}
		}
		return nil, err
	}
	in.snapSecs.Observe(time.Since(start).Seconds())
	return body, nil
}

// httpStatusError is a snapshot fetch answered with an error status;
// retryAfter is set when the venue says to back off (429, 418).
type httpStatusError struct {
	status     string
	body       []byte
	retryAfter time.Duration
}

func (e *httpStatusError) Error() string { return fmt.Sprintf("status %s: %.200s", e.status, e.body) }

// rateLimiter spaces events at least 1/rate apart.
type rateLimiter struct {
	mu   sync.Mutex
	gap  time.Duration
	next time.Time
}

func newRateLimiter(rate float64) *rateLimiter {
	return &rateLimiter{gap: time.Duration(float64(time.Second) / rate)}
}

// holdOff delays every later event until at least d from now (the venue
// asked the whole IP to back off).
func (l *rateLimiter) holdOff(d time.Duration) {
	l.mu.Lock()
	if t := time.Now().Add(d); t.After(l.next) {
		l.next = t
	}
	l.mu.Unlock()
}

func (l *rateLimiter) wait(ctx context.Context) bool {
	l.mu.Lock()
	now := time.Now()
	at := l.next
	if at.Before(now) {
		at = now
	}
	l.next = at.Add(l.gap)
	l.mu.Unlock()
	if d := time.Until(at); d > 0 {
		return sleepCtx(ctx, d)
	}
	return ctx.Err() == nil
}
