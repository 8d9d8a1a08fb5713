// Package pipeline is signald's engine as a library: ingest → transport →
// {store, features → detectors → signals stream → store}, with the ordered
// shutdown that leaves nothing buffered, pending or half-stored. Stepper is
// the feature-and-detector loop on its own, for offline use.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/internal/ledger"
	"github.com/signald-dev/signald/internal/seqgap"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/regime"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// Consumer groups, one per downstream stage.
const (
	groupStore        = "store"
	groupFeatures     = "features"
	groupSignalsStore = "signals-store"
)

// Config configures a Pipeline. The zero value ingests nothing, through an
// in-process transport, into Parquet files under ./data.
type Config struct {
	// Backend carries the tick and signal streams; nil: Redis Streams when
	// Redis.Addrs is set, else an in-process transport.
	Backend transport.Backend
	Redis   transport.RedisOptions
	// Store keeps ticks and signals; nil: ClickHouse when ClickHouse.Addr
	// is set, else Parquet files under DataDir (default "./data").
	Store      store.Store
	ClickHouse store.ClickHouseOptions
	DataDir    string
	// ConnectWait is how long New keeps retrying Redis and ClickHouse (for
	// servers started alongside); 0 fails at the first refusal.
	ConnectWait time.Duration
	// Source is what is ingested.
	Source Source
	// Shards is the number of tick streams (instruments are hashed onto
	// them); default 4.
	Shards int
	// StreamPrefix prefixes the stream keys; default "sd".
	StreamPrefix string
	// Consumer names this process in the consumer groups (keep it stable
	// across restarts); default "signald".
	Consumer string
	// Step is the feature step; default 1s.
	Step time.Duration
	// Model is the detectors' regime model; nil: the built-in model.
	Model *regime.Model
	// StoreLinger is the minimum spacing of store inserts under load (per
	// insert in flight); 0 inserts at once.
	StoreLinger time.Duration
	// StoreConcurrency is the store inserts in flight at once; default 1.
	StoreConcurrency int
	// Retention is how long stream entries stay once every group
	// acknowledged them; default 15m.
	Retention time.Duration
	// ExitAfterDrain makes Run return once the source is done and every
	// stage has caught up; otherwise Run serves until its context ends.
	ExitAfterDrain bool
	// Observer, when set, sees the feature stage's ticks, signals and steps
	// (the HTTP API's state).
	Observer Observer
	// LedgerDir holds ingest's per-minute counts of what it published
	// (internal/ledger; `signald reconcile` reads them); default
	// DataDir/ledger.
	LedgerDir string
	// StoreGrace is how long the store may fail to write before Health
	// reports it; default 30s.
	StoreGrace time.Duration
	// VenueGrace is how long a live venue may have no connection open
	// (at start, or after losing it) before Health reports it; default 60s.
	VenueGrace time.Duration
	// SpoolDir holds the producers' spools (what could not be published
	// before a stop or during an outage, published first at the next
	// start); default DataDir/spool.
	SpoolDir string
	// LossDelay is how long the store stage waits for a missing tick
	// sequence number before it counts the tick lost
	// (signald_pipeline_lost_ticks_total); default 30s.
	LossDelay time.Duration
}

// Source is what a pipeline ingests: Live venues, else a Synthetic stream
// (Instruments > 0), else the Replay of capture files (Paths); with none of
// them the pipeline ingests nothing until it is stopped.
type Source struct {
	Live      []ingest.IngestorConfig
	Synthetic ingest.SyntheticConfig
	Replay    ingest.ReplayConfig
}

// Observer sees what the feature stage does, on its goroutine.
type Observer interface {
	// Tick sees each new tick before it is applied.
	Tick(*market.Tick)
	// Signal sees each signal the detectors emit.
	Signal(market.Signal)
	// Step sees each step's feature record (after the detectors), the
	// engine's market aggregates and the detectors' states.
	Step(rec arrow.Record, mkt features.Market, states []market.InstrumentState)
}

func (c *Config) setDefaults() {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Shards <= 0 {
		c.Shards = 4
	}
	if c.StreamPrefix == "" {
		c.StreamPrefix = "sd"
	}
	if c.Consumer == "" {
		c.Consumer = "signald"
	}
	if c.Step <= 0 {
		c.Step = time.Second
	}
	if c.StoreConcurrency <= 0 {
		c.StoreConcurrency = 1
	}
	if c.Retention <= 0 {
		c.Retention = 15 * time.Minute
	}
	if c.LedgerDir == "" {
		c.LedgerDir = filepath.Join(c.DataDir, "ledger")
	}
	if c.StoreGrace <= 0 {
		c.StoreGrace = 30 * time.Second
	}
	if c.VenueGrace <= 0 {
		c.VenueGrace = time.Minute
	}
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join(c.DataDir, "spool")
	}
	if c.LossDelay <= 0 {
		c.LossDelay = 30 * time.Second
	}
}

// Pipeline runs the stages. Build it with New, run it once with Run.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	reg     prometheus.Registerer
	backend transport.Backend
	store   store.Store
	tm      *transport.Metrics
	im      *ingest.Metrics
	pm      *metrics

	tickStreams  []string
	signalStream string
	dlqStream    string

	stepper *Stepper

	// Sequencing of what ingest publishes, and loss detection at the store.
	origin    uint64
	seqMu     sync.Mutex
	seqs      map[instKey]uint64
	ledger    *ledger.Ledger
	lostTicks *lossCounter
	lostSigs  *lossCounter
	sigSeqMu  sync.Mutex
	sigSeqs   map[instKey]uint64

	ready  atomic.Bool
	lagMon atomic.Pointer[transport.LagMonitor]
	// Wall clock (ns) of the feature stage's first and last ticks and its
	// last step, for Health.
	firstTickAt, lastTickAt, lastStepAt atomic.Int64
	// The transport's reachability, probed at most every 2 s by Health.
	probeMu   sync.Mutex
	probedAt  time.Time
	probeErr  error
	started   time.Time
	liveMu    sync.Mutex
	live      []*liveHealth
	closeOnce sync.Once
	closeErr  error
}

// New builds a pipeline: the transport, the store and the feature engine
// and detectors; nothing moves until Run. The pipeline owns cfg.Backend and
// cfg.Store from here on: Close (or the end of Run) closes them, and so does
// New when it fails. Metrics go to reg (nil: not registered).
func New(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer) (_ *Pipeline, err error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{cfg: cfg, log: log, reg: reg, backend: cfg.Backend, store: cfg.Store}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.open(ctx); err != nil {
		return nil, err
	}
	p.tm = transport.NewMetrics(reg)
	p.im = ingest.NewMetrics(reg)
	p.pm = newMetrics(reg)
	p.tickStreams = transport.ShardStreams(cfg.StreamPrefix+":ticks", cfg.Shards)
	p.signalStream = cfg.StreamPrefix + ":signals:{0}"
	p.dlqStream = cfg.StreamPrefix + ":dlq"

	p.origin = rand.Uint64() | 1 // never 0, which means "not sequenced"
	p.seqs = make(map[instKey]uint64)
	p.sigSeqs = make(map[instKey]uint64)
	p.lostTicks = &lossCounter{what: "ticks", gaps: seqgap.New(seqgap.Config{Delay: cfg.LossDelay}), metric: p.pm.lost, log: log}
	p.lostSigs = &lossCounter{what: "signals", gaps: seqgap.New(seqgap.Config{Delay: cfg.LossDelay}), metric: p.pm.lostSignals, log: log}
	if p.ledger, err = ledger.Open(cfg.LedgerDir); err != nil {
		return nil, fmt.Errorf("%w (check --data)", err)
	}

	sc := StepperConfig{Features: features.Config{Step: cfg.Step}, Detect: true, Model: cfg.Model, Dedup: 1 << 16}
	if cfg.Observer != nil {
		sc.OnTick = cfg.Observer.Tick
	}
	if p.stepper, err = NewStepper(sc, log, reg); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenError is a failure to open the transport or the store that New was
// asked to open.
type OpenError struct {
	Kind string // Redis, ClickHouse or Parquet
	Err  error
}

func (e *OpenError) Error() string {
	if e.Kind == "Redis" {
		return "transport: " + e.Err.Error()
	}
	return "store: " + e.Err.Error()
}

func (e *OpenError) Unwrap() error { return e.Err }

// open opens the backend and the store that the config describes but does
// not give.
func (p *Pipeline) open(ctx context.Context) error {
	cfg, log := &p.cfg, p.log
	switch {
	case p.backend != nil:
	case len(cfg.Redis.Addrs) > 0:
		r, err := retryConnect(ctx, log, "Redis", cfg.ConnectWait, permanentConnectErr, func() (*transport.Redis, error) {
			return transport.NewRedis(ctx, cfg.Redis)
		})
		if err != nil {
			return &OpenError{"Redis", err}
		}
		p.backend = r
		log.Info("transport: Redis Streams", "addr", strings.Join(cfg.Redis.Addrs, ","), "cluster", cfg.Redis.ClusterMode)
	default:
		p.backend = transport.NewMemory()
		log.Info("transport: in-process")
	}
	switch {
	case p.store != nil:
	case cfg.ClickHouse.Addr != "":
		c, err := retryConnect(ctx, log, "ClickHouse", cfg.ConnectWait, permanentConnectErr, func() (*store.ClickHouse, error) {
			return store.OpenClickHouse(ctx, cfg.ClickHouse, log, p.reg)
		})
		if err != nil {
			return &OpenError{"ClickHouse", err}
		}
		p.store = c
		log.Info("store: ClickHouse", "addr", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database)
	default:
		s, err := store.OpenParquet(store.ParquetOptions{Dir: cfg.DataDir}, log, p.reg)
		if err != nil {
			return &OpenError{"Parquet", err}
		}
		p.store = s
		log.Info("store: Parquet files", "dir", cfg.DataDir)
	}
	return nil
}

// Ready reports whether every stage is running (and not yet stopping).
func (p *Pipeline) Ready() bool { return p.ready.Load() }

// AckTrimmed acknowledges that group lost unread entries of stream to a
// trim (signald_transport_trimmed_unread back to 0; the loss stays counted).
// It reports whether the flag was up.
func (p *Pipeline) AckTrimmed(stream, group string) bool {
	if m := p.lagMon.Load(); m != nil {
		return m.AckTrimmed(stream, group)
	}
	return false
}

// Problem is something that keeps the pipeline from doing its job.
type Problem struct {
	Component string // "store", "venue <name>"
	Reason    string
}

// liveHealth follows one live ingestor's connections for Health.
type liveHealth struct {
	in        *ingest.Ingestor
	seenOpen  bool      // a connection was open at some look
	downSince time.Time // zero: some connection open at the last look
}

// Health lists what is failing: the transport not answering, the feature
// stage closing no step while ticks arrive (for 10 steps, at least 30 s),
// the store unable to write for longer than StoreGrace, a live venue with
// no connection open for longer than VenueGrace. Empty when all is well.
func (p *Pipeline) Health() []Problem {
	now := time.Now()
	var out []Problem
	if hr, ok := p.store.(store.HealthReporter); ok {
		h := hr.WriteHealth()
		if !h.FailingSince.IsZero() && now.Sub(h.FailingSince) >= p.cfg.StoreGrace {
			out = append(out, Problem{"store", fmt.Sprintf("cannot write for %s: %s", now.Sub(h.FailingSince).Round(time.Second), h.LastError)})
		}
	}
	if err := p.probeTransport(now); err != nil {
		out = append(out, Problem{"transport", "unreachable: " + err.Error()})
	}
	// Ticks keep coming but no step closes: the feature stage is stuck.
	if first, last := p.firstTickAt.Load(), p.lastTickAt.Load(); first != 0 {
		since := max(p.lastStepAt.Load(), first)
		stuck := max(10*p.cfg.Step, 30*time.Second)
		if time.Duration(last-since) > stuck {
			out = append(out, Problem{"features", fmt.Sprintf("no step closed for %s while ticks arrive (step %s)",
				time.Duration(now.UnixNano()-since).Round(time.Second), p.cfg.Step)})
		}
	}
	p.liveMu.Lock()
	defer p.liveMu.Unlock()
	for _, l := range p.live {
		h := l.in.Health()
		if h.Open > 0 {
			l.seenOpen, l.downSince = true, time.Time{}
			continue
		}
		if l.downSince.IsZero() {
			l.downSince = now
			if !l.seenOpen && !p.started.IsZero() {
				l.downSince = p.started // never connected since the start
			}
		}
		if now.Sub(l.downSince) >= p.cfg.VenueGrace {
			reason := fmt.Sprintf("no connection open for %s (%d configured)", now.Sub(l.downSince).Round(time.Second), h.Connections)
			if !h.LastTick.IsZero() {
				reason += fmt.Sprintf("; last ticks %s ago", now.Sub(h.LastTick).Round(time.Second))
			}
			out = append(out, Problem{"venue " + h.Venue, reason})
		}
	}
	return out
}

// probeTransport checks, at most every 2 s and for at most 1 s, that the
// transport answers; a failed probe stands until the next one.
func (p *Pipeline) probeTransport(now time.Time) error {
	p.probeMu.Lock()
	defer p.probeMu.Unlock()
	if now.Sub(p.probedAt) < 2*time.Second {
		return p.probeErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := p.backend.Len(ctx, p.tickStreams[0])
	p.probedAt, p.probeErr = now, err
	return err
}

// Close closes the store and the transport; it is safe to call more than
// once, and Run calls it when it returns.
func (p *Pipeline) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.store != nil {
			errs = append(errs, p.store.Close())
		}
		if p.backend != nil {
			errs = append(errs, p.backend.Close())
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// Run runs every stage until ctx ends (or, with ExitAfterDrain, until the
// source is done and every stage has caught up), then stops them in order so
// that a clean stop leaves nothing buffered, pending or half-stored.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.Close()

	tickProducer, err := transport.OpenProducer(p.backend, transport.ProducerConfig{SpoolDir: p.spoolDir("ticks")}, p.log, p.tm)
	if err != nil {
		return err
	}
	defer tickProducer.Close()
	sigProducer, err := transport.OpenProducer(p.backend, transport.ProducerConfig{SpoolDir: p.spoolDir("signals")}, p.log, p.tm)
	if err != nil {
		return err
	}
	defer sigProducer.Close()

	storeC, err := transport.NewConsumer(p.backend, transport.ConsumerConfig{
		Group: groupStore, Streams: p.tickStreams, Consumer: p.cfg.Consumer, DeadLetterStream: p.dlqStream,
		// Ids make inserts idempotent, so order does not matter here.
		Concurrency: p.cfg.StoreConcurrency, Linger: p.cfg.StoreLinger,
		LingerBytes: 64 << 10, // ~600 ticks: enough to amortize an insert
	}, p.storeTicks, p.log, p.tm)
	if err != nil {
		return err
	}
	featC, err := transport.NewConsumer(p.backend, transport.ConsumerConfig{
		Group: groupFeatures, Streams: p.tickStreams, Consumer: p.cfg.Consumer, DeadLetterStream: p.dlqStream,
	}, p.featuresHandler(sigProducer), p.log, p.tm)
	if err != nil {
		return err
	}
	sigC, err := transport.NewConsumer(p.backend, transport.ConsumerConfig{
		Group: groupSignalsStore, Streams: []string{p.signalStream}, Consumer: p.cfg.Consumer, DeadLetterStream: p.dlqStream,
	}, p.storeSignals, p.log, p.tm)
	if err != nil {
		return err
	}

	// Stage contexts end one after another during shutdown.
	ingestCtx, stopIngest := context.WithCancel(ctx)
	defer stopIngest()
	tickCtx, stopTicks := context.WithCancel(context.WithoutCancel(ctx))
	defer stopTicks()
	sigCtx, stopSignals := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSignals()

	tickRet, err := transport.NewRetention(p.backend, transport.RetentionConfig{
		Streams: p.tickStreams, Groups: []string{groupStore, groupFeatures}, Keep: p.cfg.Retention,
	}, p.log, p.tm)
	if err != nil {
		return err
	}
	sigRet, err := transport.NewRetention(p.backend, transport.RetentionConfig{
		Streams: []string{p.signalStream}, Groups: []string{groupSignalsStore}, Keep: p.cfg.Retention,
	}, p.log, p.tm)
	if err != nil {
		return err
	}

	dlqRet, err := transport.NewDeadLetterRetention(p.backend, transport.DeadLetterRetentionConfig{Stream: p.dlqStream}, p.log, p.tm)
	if err != nil {
		return err
	}

	var tickStages, sigStage errgroup.Group
	tickStages.Go(func() error { return tickRet.Run(tickCtx) })
	sigStage.Go(func() error { return dlqRet.Run(sigCtx) })
	sigStage.Go(func() error { return sigRet.Run(sigCtx) })
	tickStages.Go(func() error { return storeC.Run(tickCtx) })
	tickStages.Go(func() error {
		// Holes age out even when no more ticks arrive to sweep them.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-tickCtx.Done():
				return nil
			case now := <-t.C:
				p.lostTicks.sweep(now)
				p.lostSigs.sweep(now)
			}
		}
	})
	tickStages.Go(func() error { return featC.Run(tickCtx) })
	sigStage.Go(func() error { return sigC.Run(sigCtx) })
	lagMon, err := transport.NewLagMonitor(p.backend, transport.LagConfig{
		Streams: append(append([]string(nil), p.tickStreams...), p.signalStream),
		Groups:  []string{groupStore, groupFeatures, groupSignalsStore},
	}, p.log, p.reg)
	if err != nil {
		return err
	}
	p.lagMon.Store(lagMon)
	sigStage.Go(func() error { return lagMon.Run(sigCtx) })
	ledgerDone := make(chan struct{})
	go func() {
		defer close(ledgerDone)
		p.flushLedger(ingestCtx)
	}()
	p.started = time.Now()
	p.ready.Store(true)

	ingestErr := p.ingest(ingestCtx, tickProducer)
	if ingestErr != nil && !errors.Is(ingestErr, context.Canceled) {
		p.log.Error("ingest failed", "err", ingestErr)
	} else {
		ingestErr = nil
		p.log.Info("ingest done")
	}
	if p.cfg.ExitAfterDrain || ingestErr != nil {
		stopIngest()
	} else {
		<-ctx.Done() // keep serving the HTTP API until told to stop
	}
	p.ready.Store(false)
	<-ledgerDone

	// Shutdown, in pipeline order. Each stage first catches up with what the
	// stage before it published, bounded so a broken server cannot hold the
	// stop forever.
	var errs []error
	tickErr := tickProducer.Close()
	if tickErr != nil {
		errs = append(errs, fmt.Errorf("tick producer: %w", tickErr))
	}
	drained := p.waitCaughtUp(p.tickStreams, []string{groupStore, groupFeatures})
	stopTicks()
	if err := tickStages.Wait(); err != nil {
		errs = append(errs, err)
	}
	if drained && tickErr == nil {
		// Everything ingest published was handled and nothing waits in a
		// spool: a hole still open can no longer fill.
		p.seqMu.Lock()
		p.lostTicks.finish(p.origin, p.seqs)
		p.seqMu.Unlock()
	}
	sigErr := sigProducer.Close()
	if sigErr != nil {
		errs = append(errs, fmt.Errorf("signal producer: %w", sigErr))
	}
	if p.waitCaughtUp([]string{p.signalStream}, []string{groupSignalsStore}) && sigErr == nil {
		p.sigSeqMu.Lock()
		p.lostSigs.finish(p.origin, p.sigSeqs)
		p.sigSeqMu.Unlock()
	}
	stopSignals()
	if err := sigStage.Wait(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, ingestErr)
	return errors.Join(errs...)
}

// ingest runs the source into the tick streams.
func (p *Pipeline) ingest(ctx context.Context, prod *transport.Producer) error {
	type source interface {
		Run(context.Context, func([]market.Tick) error) error
	}
	var r source
	var err error
	src := p.cfg.Source
	switch {
	case len(src.Live) > 0:
		return p.ingestLive(ctx, prod)
	case src.Synthetic.Instruments > 0:
		r, err = ingest.NewSynthetic(src.Synthetic, p.log, p.im)
	case len(src.Replay.Paths) == 0:
		p.log.Warn("no --replay files, no --live venues and no --synthetic source: nothing to ingest")
		<-ctx.Done()
		return ctx.Err()
	default:
		r, err = ingest.NewReplayer(src.Replay, p.log, p.im)
	}
	if err != nil {
		return err
	}
	return r.Run(ctx, func(ticks []market.Tick) error { return p.publish(ctx, prod, ticks) })
}

// ingestLive runs the live ingestors into the tick streams until ctx
// ends; each queue is drained before returning.
func (p *Pipeline) ingestLive(ctx context.Context, prod *transport.Producer) error {
	var ins []*ingest.Ingestor
	for _, c := range p.cfg.Source.Live {
		in, err := ingest.NewIngestor(c, p.log, p.im)
		if err != nil {
			return fmt.Errorf("live %s: %w", c.Venue, err)
		}
		ins = append(ins, in)
	}
	p.liveMu.Lock()
	for _, in := range ins {
		p.live = append(p.live, &liveHealth{in: in})
	}
	p.liveMu.Unlock()
	var g errgroup.Group
	for _, in := range ins {
		g.Go(func() error {
			err := in.Run(ctx)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		})
		g.Go(func() error {
			// Publish with a context that outlives ctx: what is queued
			// when ingest stops still goes out (the queue closes when
			// Run returns).
			pctx := context.WithoutCancel(ctx)
			var perr error
			for ticks := range in.C() {
				if perr == nil {
					perr = p.publish(pctx, prod, ticks)
					if perr != nil {
						in.Close()
					}
				}
			}
			return perr
		})
	}
	for _, c := range p.cfg.Source.Live {
		symbols, channels := subscribed(c.Subscriptions)
		p.log.Info("ingest: live", "venue", c.Venue, "symbols", symbols, "channels", channels)
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// subscribed lists the symbols and channels of subs, each once, in order.
func subscribed(subs []ingest.Subscription) (symbols, channels []string) {
	for _, s := range subs {
		if !slices.Contains(symbols, s.Symbol) {
			symbols = append(symbols, s.Symbol)
		}
		if c := string(s.Channel); !slices.Contains(channels, c) {
			channels = append(channels, c)
		}
	}
	return symbols, channels
}

// publish sends one frame's ticks to the tick streams.
func (p *Pipeline) publish(ctx context.Context, prod *transport.Producer, ticks []market.Tick) error {
	// One entry per frame and instrument: a frame's ticks travel, get
	// stored and get acknowledged together, and one instrument's ticks
	// stay in order on its shard.
	for len(ticks) > 0 {
		n := 1
		for n < len(ticks) && ticks[n].Venue == ticks[0].Venue && ticks[n].Instrument == ticks[0].Instrument {
			n++
		}
		stream := transport.ShardStream(p.cfg.StreamPrefix+":ticks", p.cfg.Shards, ticks[0].Venue+"|"+ticks[0].Instrument)
		p.sequence(ticks[:n])
		if err := prod.Publish(ctx, stream, market.AppendBatch(nil, ticks[:n])); err != nil {
			return err
		}
		p.pm.published.Add(float64(n))
		for i := 0; i < n; {
			j := i + 1
			for j < n && ticks[j].RecvTS/60e9 == ticks[i].RecvTS/60e9 {
				j++
			}
			p.ledger.Add(ticks[i].Venue, ticks[i].Instrument, ticks[i].RecvTS, j-i)
			i = j
		}
		ticks = ticks[n:]
	}
	return nil
}

// spoolDir is where a producer keeps what it could not publish (a Redis
// outage, a stop while Redis is down), for the next start: under the data
// directory, one per producer. The in-process transport needs none: it
// never fails, and its streams end with the process anyway.
func (p *Pipeline) spoolDir(name string) string {
	if _, ok := p.backend.(*transport.Memory); ok {
		return ""
	}
	return filepath.Join(p.cfg.SpoolDir, name)
}

// instKey is a venue and instrument.
type instKey struct{ venue, instrument string }

// sequence stamps one instrument's ticks with this run's origin and the
// next sequence numbers, so that the store stage can count what never
// reached it.
func (p *Pipeline) sequence(ticks []market.Tick) {
	k := instKey{ticks[0].Venue, ticks[0].Instrument}
	p.seqMu.Lock()
	n := p.seqs[k]
	for i := range ticks {
		n++
		ticks[i].Origin, ticks[i].OriginSeq = p.origin, n
	}
	p.seqs[k] = n
	p.seqMu.Unlock()
}

// sequenceSignal stamps a signal with this run's origin and the next number
// of its instrument, as sequence does for ticks.
func (p *Pipeline) sequenceSignal(s *market.Signal) {
	k := instKey{s.Venue, s.Instrument}
	p.sigSeqMu.Lock()
	p.sigSeqs[k]++
	s.Origin, s.OriginSeq = p.origin, p.sigSeqs[k]
	p.sigSeqMu.Unlock()
}

// flushLedger appends the ledger's counts every few seconds until ctx ends,
// and once more after.
func (p *Pipeline) flushLedger(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := p.ledger.Flush(); err != nil {
				p.log.Error("ledger: the last counts could not be written; reconcile will show them as stored but not published", "err", err)
			}
			return
		case <-t.C:
			if err := p.ledger.Flush(); err != nil {
				p.log.Warn("ledger: flush failed; the counts stay buffered for the next try", "err", err)
			}
		}
	}
}

// observeStored feeds the handled ticks' sequence numbers to the loss
// counter: stored, or dead-lettered (counted there), they reached the store
// stage.
func (p *Pipeline) observeStored(ticks []market.Tick) {
	p.lostTicks.observe(len(ticks), func(i int) (seqgap.Key, uint64, bool) {
		t := &ticks[i]
		return seqgap.Key{Origin: t.Origin, Venue: t.Venue, Instrument: t.Instrument}, t.OriginSeq, true
	})
}

// lossCounter counts (metric and a log line each run) the sequence numbers
// of one kind of entry that never arrived.
type lossCounter struct {
	what   string
	metric *prometheus.CounterVec
	log    *slog.Logger

	mu    sync.Mutex
	gaps  *seqgap.Tracker
	swept time.Time
	buf   []seqgap.Loss
}

// observe feeds n arrivals (key, number, whether it counts) and sweeps at
// most once a second.
func (c *lossCounter) observe(n int, at func(int) (seqgap.Key, uint64, bool)) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	lost := c.buf[:0]
	for i := 0; i < n; i++ {
		if k, seq, ok := at(i); ok {
			lost = c.gaps.Observe(k, seq, now, lost)
		}
	}
	if now.Sub(c.swept) >= time.Second {
		lost = c.gaps.Sweep(now, lost)
		c.swept = now
	}
	c.count(lost)
}

// sweep counts every hole that arrived numbers left open before at.
func (c *lossCounter) sweep(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count(c.gaps.Sweep(at, c.buf[:0]))
}

// finish, at a stop once everything published was handled, counts every
// open hole and every lost tail: last holds this run's last number per
// instrument.
func (c *lossCounter) finish(origin uint64, last map[instKey]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lost := c.gaps.Sweep(time.Unix(1<<40, 0), c.buf[:0])
	for k, n := range last {
		lost = c.gaps.Finish(seqgap.Key{Origin: origin, Venue: k.venue, Instrument: k.instrument}, n, lost)
	}
	c.count(lost)
}

// count records lost runs; mu held.
func (c *lossCounter) count(lost []seqgap.Loss) {
	for _, l := range lost {
		c.metric.WithLabelValues(l.Key.Venue, l.Key.Instrument).Add(float64(l.Count()))
		c.log.Error(c.what+" lost between ingest and the store", "venue", l.Key.Venue, "instrument", l.Key.Instrument,
			c.what, l.Count(), "origin", fmt.Sprintf("%016x", l.Key.Origin), "seq_from", l.From, "seq_to", l.To)
	}
	c.buf = lost[:0]
}

// waitCaughtUp waits until every group has read and acknowledged everything
// in streams, for at most 30 s, and reports whether they did.
func (p *Pipeline) waitCaughtUp(streams, groups []string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		behind := int64(0)
		for _, s := range streams {
			for _, g := range groups {
				lag, err := p.backend.Lag(ctx, s, g)
				if err != nil {
					continue // no group yet: nothing was read or published
				}
				pend, _ := p.backend.Pending(ctx, s, g)
				if lag != 0 && !p.entriesAfter(ctx, s, g) {
					lag = 0 // Redis' counter is stale (a trim, a lost AOF tail): nothing is left to read
				}
				if lag < 0 {
					lag = 1 // unknown: keep waiting
				}
				behind += lag + pend
			}
		}
		if behind == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			p.log.Warn("shutdown: stages did not catch up in time; the rest stays in the streams for the next start", "entries", behind)
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// entriesAfter reports whether stream holds an entry after group's
// position. Redis' lag counter stays wrong after entries the group never
// read were trimmed or lost with an AOF tail, which would hold a stop for
// its whole deadline; the stream itself tells.
func (p *Pipeline) entriesAfter(ctx context.Context, stream, group string) bool {
	gi, err := p.backend.Group(ctx, stream, group)
	if err != nil {
		return true // cannot tell: keep waiting
	}
	msgs, err := p.backend.Range(ctx, stream, gi.LastDelivered, "+", 2)
	if err != nil {
		return true
	}
	for _, m := range msgs {
		if m.ID != gi.LastDelivered {
			return true
		}
	}
	return false
}

// decodeTicks decodes every entry; the ones that cannot be decoded are
// reported in bad (ErrPermanent), for the consumer to dead-letter once the
// handler's effect for the others is done.
func (p *Pipeline) decodeTicks(msgs []transport.Message, out []market.Tick) (_ []market.Tick, bad transport.BatchError) {
	out, _, bad = p.decodeTicksOwned(msgs, out, nil)
	return out, bad
}

// decodeTicksOwned is decodeTicks that also gives, for each tick, the index
// of the entry it came from.
func (p *Pipeline) decodeTicksOwned(msgs []transport.Message, out []market.Tick, owner []int) (_ []market.Tick, _ []int, bad transport.BatchError) {
	for i, m := range msgs {
		n := len(out)
		var err error
		if out, err = market.DecodeBatch(m.Payload, out); err != nil {
			out = out[:n] // all or nothing per entry
			if bad == nil {
				bad = transport.BatchError{}
			}
			bad[i] = fmt.Errorf("%w: %v", transport.ErrPermanent, err)
			continue
		}
		for range len(out) - n {
			owner = append(owner, i)
		}
	}
	return out, owner, bad
}

// done returns nil, or the undecodable entries once the rest is done.
func done(bad transport.BatchError) error {
	if len(bad) == 0 {
		return nil
	}
	return bad
}

func (p *Pipeline) storeTicks(ctx context.Context, msgs []transport.Message) error {
	ticks, owner, bad := p.decodeTicksOwned(msgs, make([]market.Tick, 0, 4*len(msgs)), make([]int, 0, 4*len(msgs)))
	now := time.Now().UnixNano()
	for i := range ticks {
		if t := ticks[i].IngestTS; t > 0 {
			p.pm.storeWait.Observe(float64(now-t) / 1e9)
		}
	}
	if err := p.store.InsertTicks(ctx, ticks); err != nil {
		rej, ok := store.AsRejected(err)
		if !ok {
			return err
		}
		// The rest is stored; the entries holding a refused tick go to
		// the dead letters with the server's reason (their other ticks
		// are stored already and deduplicate on a replay).
		if bad == nil {
			bad = transport.BatchError{}
		}
		for _, r := range rej.Rows {
			if _, seen := bad[owner[r.Index]]; !seen {
				bad[owner[r.Index]] = fmt.Errorf("%w: store rejected tick %d of the entry: %s", transport.ErrPermanent, ticks[r.Index].ID, r.Reason)
			}
		}
	}
	p.observeStored(ticks)
	return done(bad)
}

// featuresHandler feeds ticks to the feature engine and the detector, and
// publishes the resulting signals. Its effect is the signals being in their
// stream, so it flushes before returning.
func (p *Pipeline) featuresHandler(sigs *transport.Producer) transport.Handler {
	var mu sync.Mutex // the engine is single-threaded; the consumer calls one batch at a time anyway
	obs := p.cfg.Observer
	return func(ctx context.Context, msgs []transport.Message) error {
		mu.Lock()
		defer mu.Unlock()
		ticks, bad := p.decodeTicks(msgs, make([]market.Tick, 0, 4*len(msgs)))
		if len(ticks) > 0 {
			p.lastTickAt.Store(time.Now().UnixNano())
			p.firstTickAt.CompareAndSwap(0, time.Now().UnixNano())
		}
		err := p.stepper.Feed(ticks, func(rec arrow.Record) error {
			p.lastStepAt.Store(time.Now().UnixNano())
			if obs != nil {
				obs.Step(rec, p.stepper.Engine().Market(), p.stepper.Detectors().States())
			}
			return nil
		}, func(s market.Signal) error {
			if obs != nil {
				obs.Signal(s)
			}
			p.sequenceSignal(&s)
			b, err := s.MarshalBinary()
			if err != nil {
				return err
			}
			return sigs.Publish(ctx, p.signalStream, b)
		})
		if err != nil {
			return err
		}
		if err := sigs.Flush(ctx); err != nil {
			return err
		}
		return done(bad)
	}
}

func (p *Pipeline) storeSignals(ctx context.Context, msgs []transport.Message) error {
	out := make([]market.Signal, 0, len(msgs))
	bad := transport.BatchError{}
	var owner []int
	for i, m := range msgs {
		var s market.Signal
		if err := s.UnmarshalBinary(m.Payload); err != nil {
			bad[i] = fmt.Errorf("%w: %v", transport.ErrPermanent, err)
			continue
		}
		if err := s.Validate(); err != nil {
			bad[i] = fmt.Errorf("%w: %v", transport.ErrPermanent, err)
			continue
		}
		out = append(out, s)
		owner = append(owner, i)
	}
	if err := p.store.InsertSignals(ctx, out); err != nil {
		rej, ok := store.AsRejected(err)
		if !ok {
			return err
		}
		for _, r := range rej.Rows {
			bad[owner[r.Index]] = fmt.Errorf("%w: store rejected the signal: %s", transport.ErrPermanent, r.Reason)
		}
	}
	p.lostSigs.observe(len(out), func(i int) (seqgap.Key, uint64, bool) {
		s := &out[i]
		return seqgap.Key{Origin: s.Origin, Venue: s.Venue, Instrument: s.Instrument}, s.OriginSeq, true // stored or dead-lettered
	})
	return done(bad)
}
