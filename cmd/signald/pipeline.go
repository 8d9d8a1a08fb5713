package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
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

// pipeline wires ingest → transport → {store, features → regime → signals
// stream → store}.
type pipeline struct {
	cfg     *runConfig
	log     *slog.Logger
	reg     *prometheus.Registry
	backend transport.Backend
	store   store.Store
	tm      *transport.Metrics
	im      *ingest.Metrics
	pm      *pipelineMetrics

	tickStreams  []string
	signalStream string
	dlqStream    string

	engine   *features.Engine
	detector *regime.Detectors
	macro    *macroBuilder
	hm       *httpMetrics
	dedup    *idWindow

	ready   atomic.Bool
	started time.Time
}

func newPipeline(ctx context.Context, cfg *runConfig, log *slog.Logger, reg *prometheus.Registry) (*pipeline, error) {
	p := &pipeline{cfg: cfg, log: log, reg: reg, started: time.Now()}
	p.tm = transport.NewMetrics(reg)
	p.im = ingest.NewMetrics(reg)
	p.pm = newPipelineMetrics(reg)
	p.tickStreams = transport.ShardStreams(cfg.StreamPrefix+":ticks", cfg.Shards)
	p.signalStream = cfg.StreamPrefix + ":signals:{0}"
	p.dlqStream = cfg.StreamPrefix + ":dlq"

	if cfg.Redis != "" {
		r, err := retryConnect(ctx, log, "Redis", cfg.ConnectWait, func() (*transport.Redis, error) {
			return transport.NewRedis(ctx, transport.RedisOptions{Addrs: []string{cfg.Redis}, ClusterMode: cfg.RedisCluster})
		})
		if err != nil {
			return nil, fmt.Errorf("transport: %w (is Redis running? `make services-up` starts one; leave out --redis for the in-process transport)", err)
		}
		p.backend = r
		log.Info("transport: Redis Streams", "addr", cfg.Redis, "cluster", cfg.RedisCluster)
	} else {
		p.backend = transport.NewMemory()
		log.Info("transport: in-process")
	}
	if cfg.ClickHouse != "" {
		c, err := retryConnect(ctx, log, "ClickHouse", cfg.ConnectWait, func() (*store.ClickHouse, error) {
			return store.OpenClickHouse(ctx, store.ClickHouseOptions{Addr: cfg.ClickHouse, Database: cfg.ClickHouseDB}, log, reg)
		})
		if err != nil {
			p.backend.Close()
			return nil, fmt.Errorf("store: %w (is ClickHouse running? `make services-up` starts one; leave out --clickhouse for the embedded Parquet store)", err)
		}
		p.store = c
		log.Info("store: ClickHouse", "addr", cfg.ClickHouse, "database", cfg.ClickHouseDB)
	} else {
		s, err := store.OpenParquet(store.ParquetOptions{Dir: cfg.DataDir}, log, reg)
		if err != nil {
			p.backend.Close()
			return nil, fmt.Errorf("store: %w (check --data)", err)
		}
		p.store = s
		log.Info("store: Parquet files", "dir", cfg.DataDir)
	}
	var err error
	if p.engine, err = features.NewEngine(features.Config{Step: cfg.Step}, log, reg); err != nil {
		return nil, err
	}
	if p.detector, err = newDetectors(p.engine, cfg.RegimeModel, log, reg); err != nil {
		return nil, err
	}
	p.hm = newHTTPMetrics(reg)
	p.macro = newMacroBuilder(MacroConfig{Returns: cfg.MacroReturns, RV: cfg.MacroRV, Logger: log}, p.hm)
	p.dedup = newIDWindow(1 << 16)
	return p, nil
}

// run runs every stage until ctx ends (or, with ExitAfterDrain, until the
// replay is done and every stage has caught up), then stops them in order so
// that a clean stop leaves nothing buffered, pending or half-stored.
func (p *pipeline) run(ctx context.Context) error {
	defer p.backend.Close()
	defer p.store.Close()

	tickProducer := transport.NewProducer(p.backend, transport.ProducerConfig{}, p.log, p.tm)
	sigProducer := transport.NewProducer(p.backend, transport.ProducerConfig{}, p.log, p.tm)
	defer tickProducer.Close()
	defer sigProducer.Close()

	storeC, err := transport.NewConsumer(p.backend, transport.ConsumerConfig{
		Group: groupStore, Streams: p.tickStreams, Consumer: p.cfg.Consumer, DeadLetterStream: p.dlqStream,
		// Ids make inserts idempotent, so order does not matter here.
		Concurrency: p.cfg.StoreConc, Linger: p.cfg.StoreLinger,
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

	var tickStages, sigStage errgroup.Group
	tickStages.Go(func() error { return tickRet.Run(tickCtx) })
	sigStage.Go(func() error { return sigRet.Run(sigCtx) })
	tickStages.Go(func() error { return storeC.Run(tickCtx) })
	tickStages.Go(func() error { return featC.Run(tickCtx) })
	sigStage.Go(func() error { return sigC.Run(sigCtx) })
	lagMon, err := transport.NewLagMonitor(p.backend, transport.LagConfig{
		Streams: append(append([]string(nil), p.tickStreams...), p.signalStream),
		Groups:  []string{groupStore, groupFeatures, groupSignalsStore},
	}, p.log, p.reg)
	if err != nil {
		return err
	}
	sigStage.Go(func() error { return lagMon.Run(sigCtx) })
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

	// Shutdown, in pipeline order. Each stage first catches up with what the
	// stage before it published, bounded so a broken server cannot hold the
	// stop forever.
	var errs []error
	if err := tickProducer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("tick producer: %w", err))
	}
	p.waitCaughtUp(p.tickStreams, []string{groupStore, groupFeatures})
	stopTicks()
	if err := tickStages.Wait(); err != nil {
		errs = append(errs, err)
	}
	if err := sigProducer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("signal producer: %w", err))
	}
	p.waitCaughtUp([]string{p.signalStream}, []string{groupSignalsStore})
	stopSignals()
	if err := sigStage.Wait(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, ingestErr)
	return errors.Join(errs...)
}

// ingest replays the configured captures (or runs the synthetic source)
// into the tick streams.
func (p *pipeline) ingest(ctx context.Context, prod *transport.Producer) error {
	type source interface {
		Run(context.Context, func([]market.Tick) error) error
	}
	var r source
	var err error
	switch {
	case len(p.cfg.Live.Specs) > 0:
		return p.ingestLive(ctx, prod)
	case p.cfg.Synthetic > 0:
		r, err = ingest.NewSynthetic(ingest.SyntheticConfig{Instruments: p.cfg.Synthetic, Seed: p.cfg.SyntheticSeed}, p.log, p.im)
	case len(p.cfg.Replay) == 0:
		p.log.Warn("no --replay files, no --live venues and no --synthetic source: nothing to ingest")
		<-ctx.Done()
		return ctx.Err()
	default:
		r, err = ingest.NewReplayer(ingest.ReplayConfig{
			Paths: p.cfg.Replay, Market: p.cfg.ReplayMarket, Venue: p.cfg.ReplayVenue, BookSync: p.cfg.ReplaySync,
			Speed: p.cfg.Speed, Loop: p.cfg.Loop, Limit: p.cfg.Limit, ForceFallback: p.cfg.forceFallback(),
		}, p.log, p.im)
	}
	if err != nil {
		return err
	}
	return r.Run(ctx, func(ticks []market.Tick) error { return p.publish(ctx, prod, ticks) })
}

// publish sends one frame's ticks to the tick streams.
func (p *pipeline) publish(ctx context.Context, prod *transport.Producer, ticks []market.Tick) error {
	// One entry per frame and instrument: a frame's ticks travel, get
	// stored and get acknowledged together, and one instrument's ticks
	// stay in order on its shard.
	for len(ticks) > 0 {
		n := 1
		for n < len(ticks) && ticks[n].Venue == ticks[0].Venue && ticks[n].Instrument == ticks[0].Instrument {
			n++
		}
		stream := transport.ShardStream(p.cfg.StreamPrefix+":ticks", p.cfg.Shards, ticks[0].Venue+"|"+ticks[0].Instrument)
		if err := prod.Publish(ctx, stream, market.AppendBatch(nil, ticks[:n])); err != nil {
			return err
		}
		p.pm.published.Add(float64(n))
		ticks = ticks[n:]
	}
	return nil
}

// waitCaughtUp waits until every group has read and acknowledged everything
// in streams, for at most 30 s.
func (p *pipeline) waitCaughtUp(streams, groups []string) {
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
				if lag < 0 {
					lag = 1 // unknown: keep waiting
				}
				behind += lag + pend
			}
		}
		if behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			p.log.Warn("shutdown: stages did not catch up in time; the rest stays in the streams for the next start", "entries", behind)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// decodeTicks decodes every entry; the ones that cannot be decoded are
// reported in bad (ErrPermanent), for the consumer to dead-letter once the
// handler's effect for the others is done.
func (p *pipeline) decodeTicks(msgs []transport.Message, out []market.Tick) (_ []market.Tick, bad transport.BatchError) {
	for i, m := range msgs {
		n := len(out)
		var err error
		if out, err = market.DecodeBatch(m.Payload, out); err != nil {
			out = out[:n] // all or nothing per entry
			if bad == nil {
				bad = transport.BatchError{}
			}
			bad[i] = fmt.Errorf("%w: %v", transport.ErrPermanent, err)
		}
	}
	return out, bad
}

// done returns nil, or the undecodable entries once the rest is done.
func done(bad transport.BatchError) error {
	if len(bad) == 0 {
		return nil
	}
	return bad
}

func (p *pipeline) storeTicks(ctx context.Context, msgs []transport.Message) error {
	ticks, bad := p.decodeTicks(msgs, make([]market.Tick, 0, 4*len(msgs)))
	now := time.Now().UnixNano()
	for i := range ticks {
		if t := ticks[i].IngestTS; t > 0 {
			p.pm.storeWait.Observe(float64(now-t) / 1e9)
		}
	}
	if err := p.store.InsertTicks(ctx, ticks); err != nil {
		return err
	}
	return done(bad)
}

// featuresHandler feeds ticks to the feature engine and the detector, and
// publishes the resulting signals. Its effect is the signals being in their
// stream, so it flushes before returning.
func (p *pipeline) featuresHandler(sigs *transport.Producer) transport.Handler {
	var mu sync.Mutex // the engine is single-threaded; the consumer calls one batch at a time anyway
	return func(ctx context.Context, msgs []transport.Message) error {
		mu.Lock()
		defer mu.Unlock()
		ticks, bad := p.decodeTicks(msgs, make([]market.Tick, 0, 4*len(msgs)))
		for i := range ticks {
			t := &ticks[i]
			// A redelivered tick (at-least-once) must not be counted twice.
			if !p.dedup.add(t.ID) {
				p.pm.duplicates.Inc()
				continue
			}
			p.macro.seen(t)
			if err := p.engine.Apply(t, func(rec arrow.Record) error {
				return p.onStep(ctx, rec, sigs)
			}); err != nil {
				return err
			}
		}
		if err := sigs.Flush(ctx); err != nil {
			return err
		}
		return done(bad)
	}
}

func (p *pipeline) onStep(ctx context.Context, rec arrow.Record, sigs *transport.Producer) error {
	err := p.detector.Step(rec, func(s market.Signal) error {
		b, err := s.MarshalBinary()
		if err != nil {
			return err
		}
		p.macro.signal(s)
		return sigs.Publish(ctx, p.signalStream, b)
	})
	if err != nil {
		return err
	}
	p.macro.step(rec, p.engine.Market(), p.detector.States())
	return nil
}

func (p *pipeline) storeSignals(ctx context.Context, msgs []transport.Message) error {
	out := make([]market.Signal, 0, len(msgs))
	bad := transport.BatchError{}
	for i, m := range msgs {
		var s market.Signal
		if err := s.UnmarshalBinary(m.Payload); err != nil {
			bad[i] = fmt.Errorf("%w: %v", transport.ErrPermanent, err)
			continue
		}
		out = append(out, s)
	}
	if err := p.store.InsertSignals(ctx, out); err != nil {
		return err
	}
	return done(bad)
}

// idWindow remembers the last n ids, to drop redelivered ticks.
type idWindow struct {
	set  map[uint64]struct{}
	ring []uint64
	pos  int
}

func newIDWindow(n int) *idWindow {
	return &idWindow{set: make(map[uint64]struct{}, n), ring: make([]uint64, 0, n)}
}

// add reports whether id is new.
func (w *idWindow) add(id uint64) bool {
	if _, ok := w.set[id]; ok {
		return false
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, id)
	} else {
		delete(w.set, w.ring[w.pos])
		w.ring[w.pos] = id
		w.pos = (w.pos + 1) % len(w.ring)
	}
	w.set[id] = struct{}{}
	return true
}

type pipelineMetrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	storeWait  prometheus.Histogram
}

func newPipelineMetrics(reg prometheus.Registerer) *pipelineMetrics {
	m := &pipelineMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_pipeline_ticks_published_total", Help: "Ticks handed to the transport by ingest.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_pipeline_duplicate_ticks_total", Help: "Redelivered ticks the feature stage dropped (already applied).",
		}),
	}
	m.storeWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "signald_pipeline_store_wait_seconds",
		Help: "Per tick: from ingest to the start of its store insert (publish, stream, read, batching); the rest of signald_store_tick_to_storage_seconds is the insert.",
		Buckets: []float64{0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
			0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10},
	})
	reg.MustRegister(m.published, m.duplicates, m.storeWait)
	return m
}
