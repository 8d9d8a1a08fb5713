// Command signald is the market-signal daemon: `run` serves the pipeline,
// `backtest` replays stored ticks through the same feature and detector code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/minio/simdjson-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/signald-dev/signald/api"
	"github.com/signald-dev/signald/features/asm"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/macro"
	"github.com/signald-dev/signald/pipeline"
)

const usage = `signald: an open market-signal engine

Usage:
  signald run [flags]         ingest, transport, features, regime, store and the HTTP API
  signald backtest [flags]    replay stored ticks through features and detectors; print the signals
  signald decode [--venue V] FILE...
                              print the normalized ticks of capture files as NDJSON
  signald capture --venue V --symbols A,B --out FILE [flags]
                              record a venue's raw frames (gzip, replayable)
  signald features list [--json] | compute --in TICKS --out FILE
                              the feature catalogue; compute features offline
  signald regime fit|eval [flags]
                              fit the regime model from stored ticks; score the detectors on synthetic data
  signald config check FILE | show [--config FILE] [flags]
                              validate a config file; print the effective configuration (secrets masked)
  signald reconcile [--from T --to T] [flags]
                              compare what ingest published with what is stored, per instrument and minute
  signald dlq list|replay|purge [flags]
                              inspect, replay or empty the dead-letter stream (Redis)
  signald venues [--json]     the venues ingest supports: channels, symbols, book integrity
  signald version             version, commit, Go version, kernel and JSON paths

Run 'signald <command> -h' for the flags of a command.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "backtest":
		err = cmdBacktest(ctx, args[1:], stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args[1:], stdout, stderr)
	case "decode":
		err = cmdDecode(ctx, args[1:], stdout, stderr)
	case "capture":
		err = cmdCapture(ctx, args[1:], stderr)
	case "features":
		err = cmdFeatures(ctx, args[1:], stdout, stderr)
	case "regime":
		err = cmdRegime(ctx, args[1:], stdout, stderr)
	case "reconcile":
		err = cmdReconcile(ctx, args[1:], stdout, stderr)
	case "config":
		err = cmdConfig(args[1:], stdout, stderr)
	case "version":
		err = cmdVersion(args[1:], stdout, stderr)
	case "venues":
		err = cmdVenues(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "signald: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintf(stderr, "signald %s: %s\n", args[0], ue.msg)
		}
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "signald %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a command line that cannot be run as given: the command
// printed its usage (or msg says what is wrong) and signald exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func version() string { return "0.1.0-dev" }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// redisLog adapts go-redis's Printf logging to slog, at warn: go-redis logs
// only trouble (failed dials, bad connections, cluster reloads).
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "from", "go-redis")
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// go-redis logs (dial failures, pool events) through a process-wide
	// logger; send them to ours so stderr stays one structured stream.
	redis.SetLogger(redisLog{log})
	cpu := asm.Detect()
	jsonPath, why := jsonPathInUse(cfg)
	fallback := jsonPath == "portable"
	cfg.Live.ForceFallback = fallback
	log.Info("signald starting", "version", version(), "cpu", cpu.Brand, "avx2", cpu.AVX2, "fma", cpu.FMA,
		"simdjson", simdjson.SupportedCPU(), "json_path", jsonPath, "json_path_reason", why)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cpuInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "signald_cpu_feature_info", Help: "1 when the CPU supports the feature (what parsing and feature kernels can use).",
	}, []string{"feature"})
	for name, ok := range cpu.Flags() {
		cpuInfo.WithLabelValues(name).Set(map[bool]float64{true: 1}[ok])
	}
	cpuInfo.WithLabelValues("simdjson").Set(map[bool]float64{true: 1}[simdjson.SupportedCPU()])
	reg.MustRegister(cpuInfo)

	// Everything that can fail on bad configuration fails here, before any
	// data moves.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--http %s: the address is in use (is another signald running?): choose another --http", cfg.HTTPAddr)
		}
		return fmt.Errorf("--http %s: cannot listen: %w (give a local host:port, e.g. 127.0.0.1:8080)", cfg.HTTPAddr, err)
	}
	var p *pipeline.Pipeline
	srv := api.New(api.Config{
		Macro: macro.Config{Returns: cfg.MacroReturns, RV: cfg.MacroRV},
		Ready: func() bool { return p.Ready() }, Gatherer: reg, Pprof: cfg.Pprof,
		AckTrimmed: func(stream, group string) bool { return p.AckTrimmed(stream, group) },
		Problems: func() []api.Problem {
			var out []api.Problem
			for _, pr := range p.Health() {
				out = append(out, api.Problem{Component: pr.Component, Reason: pr.Reason})
			}
			return out
		},
	}, log, reg)
	p, err = newPipeline(ctx, cfg, fallback, srv, log, reg)
	if err != nil {
		ln.Close()
		return err
	}
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	var g errgroup.Group
	g.Go(func() error { return srv.Run(httpCtx, ln) })
	err = p.Run(ctx)
	stopHTTP() // the API stays up until the pipeline has drained
	if herr := g.Wait(); herr != nil {
		err = errors.Join(err, herr)
	}
	if err == nil {
		log.Info("signald stopped cleanly")
	}
	return replayHint(err, "--replay-venue", "--replay-market")
}

// newPipeline builds the pipeline the flags describe, feeding obs.
func newPipeline(ctx context.Context, cfg *runConfig, fallback bool, obs pipeline.Observer, log *slog.Logger, reg *prometheus.Registry) (*pipeline.Pipeline, error) {
	model, err := loadModel(cfg.RegimeModel)
	if err != nil {
		return nil, err
	}
	live, err := cfg.Live.ingestors()
	if err != nil {
		return nil, err
	}
	pc := pipeline.Config{
		DataDir: cfg.DataDir, ConnectWait: cfg.ConnectWait,
		Shards: cfg.Shards, StreamPrefix: cfg.StreamPrefix, Consumer: cfg.Consumer, Step: cfg.Step, Model: model,
		StoreLinger: cfg.StoreLinger, StoreConcurrency: cfg.StoreConc, Retention: cfg.Retention, LossDelay: cfg.LossDelay, ExitAfterDrain: cfg.ExitAfterDrain, Observer: obs,
		Source: pipeline.Source{
			Live:      live,
			Synthetic: ingest.SyntheticConfig{Instruments: cfg.Synthetic, Seed: cfg.SyntheticSeed},
			Replay: ingest.ReplayConfig{
				Paths: cfg.Replay, Market: cfg.ReplayMarket, Venue: cfg.ReplayVenue, BookSync: cfg.ReplaySync,
				Speed: cfg.Speed, Loop: cfg.Loop, Limit: cfg.Limit, ForceFallback: fallback,
			},
		},
	}
	pc.Redis, pc.ClickHouse = cfg.connectOptions(log)
	p, err := pipeline.New(ctx, pc, log, reg)
	return p, explainOpenError(replayHint(err, "--replay-venue", "--replay-market"))
}

// openHints complete the errors of a transport or store that cannot be
// opened.
var openHints = map[string]string{
	"Redis":      "is Redis running? `make services-up` starts one; leave out --redis for the in-process transport",
	"ClickHouse": "is ClickHouse running? `make services-up` starts one; leave out --clickhouse for the embedded Parquet store",
	"Parquet":    "check --data",
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
