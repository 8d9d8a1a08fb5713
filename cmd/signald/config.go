package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/macro"
)

// runConfig is everything `signald run` takes from flags and environment.
// Only this package reads either; the packages take config structs.
type runConfig struct {
	Redis          string // host:port; empty = in-process transport
	RedisCluster   bool
	ClickHouse     string // host:port; empty = Parquet files under DataDir
	ClickHouseDB   string
	DataDir        string
	HTTPAddr       string
	Replay         []string
	ReplayMarket   string
	ReplayVenue    string
	ReplaySync     bool
	Speed          float64
	Loop           bool
	Limit          int
	Shards         int
	Step           time.Duration
	Consumer       string
	StreamPrefix   string
	LogLevel       string
	ExitAfterDrain bool
	StoreLinger    time.Duration
	StoreConc      int
	Pprof          bool
	Retention      time.Duration
	LossDelay      time.Duration
	Live           liveConfig // --live venue connections (live.go)
	RegimeModel    string     // model file; empty = built-in
	Synthetic      int        // instruments of the synthetic source; 0 = off
	SyntheticSeed  uint64     // its seed
	MacroReturns   []string
	MacroRV        string
	ConnectWait    time.Duration // how long start-up retries Redis and ClickHouse
	JSONPath       string        // auto, simdjson or portable
}

// forceFallback reports whether venue frames go through the portable JSON
// path even where simdjson-go runs.
func (c *runConfig) forceFallback() bool { return c.JSONPath == "portable" }

// envOr lets every flag default come from SIGNALD_<NAME>.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv("SIGNALD_" + name); ok {
		return v
	}
	return def
}

func parseRunFlags(args []string, stderr io.Writer) (*runConfig, error) {
	fs := flag.NewFlagSet("signald run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &runConfig{}
	host, _ := os.Hostname()
	fs.StringVar(&c.Redis, "redis", envOr("REDIS_ADDR", ""), "Redis `host:port` for the transport (env SIGNALD_REDIS_ADDR); empty runs the in-process transport")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", envOr("REDIS_CLUSTER", "") == "1", "treat --redis as a Redis Cluster seed")
	fs.StringVar(&c.ClickHouse, "clickhouse", envOr("CLICKHOUSE_ADDR", ""), "ClickHouse native `host:port` for storage (env SIGNALD_CLICKHOUSE_ADDR); empty stores Parquet files under --data")
	fs.StringVar(&c.ClickHouseDB, "clickhouse-db", envOr("CLICKHOUSE_DB", "signald"), "ClickHouse database")
	fs.DurationVar(&c.ConnectWait, "connect-wait", 0, "at start-up, keep retrying Redis and ClickHouse for this long (for servers started alongside signald); 0 fails at the first refusal")
	fs.StringVar(&c.JSONPath, "json-path", envOr("JSON_PATH", "auto"), "how venue frames are parsed: auto (simdjson-go where the CPU has AVX2 and CLMUL, else portable), simdjson, or portable (a pure-Go scanner, faster on small frames; identical ticks)")
	fs.StringVar(&c.DataDir, "data", envOr("DATA_DIR", "./data"), "directory of the embedded Parquet store")
	fs.StringVar(&c.HTTPAddr, "http", envOr("HTTP_ADDR", "127.0.0.1:8080"), "HTTP API listen `address`")
	replay := fs.String("replay", envOr("REPLAY", ""), "comma-separated capture `files` to replay (cryptofeed or hftbacktest format, plain or gzip)")
	fs.StringVar(&c.ReplayMarket, "replay-market", "", "market of the replayed files: spot or usdm (default: inferred from each file)")
	fs.StringVar(&c.ReplayVenue, "replay-venue", "", "venue of the replayed files (binance, kraken, ...; default: from cryptofeed file names, else Binance)")
	fs.BoolVar(&c.ReplaySync, "replay-book-sync", false, "replay Binance books through the live book sync (other venues always are)")
	fs.Float64Var(&c.Speed, "speed", 1, "replay pace: 1 = as recorded, 10 = ten times faster, 0 = as fast as possible")
	fs.BoolVar(&c.Loop, "loop", false, "replay the captures again and again, shifted in time")
	fs.IntVar(&c.Limit, "limit", 0, "stop replaying after this many ticks (0 = all)")
	fs.IntVar(&c.Shards, "shards", 4, "tick stream shards (instruments are hashed onto them)")
	fs.DurationVar(&c.Step, "step", time.Second, "feature step")
	fs.StringVar(&c.Consumer, "consumer", envOr("CONSUMER", "signald-"+host), "consumer name in the groups; keep it stable across restarts")
	fs.StringVar(&c.StreamPrefix, "stream-prefix", "sd", "prefix of the stream keys")
	fs.StringVar(&c.LogLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.DurationVar(&c.StoreLinger, "store-batch-wait", 25*time.Millisecond, "minimum spacing of store inserts under load (per insert in flight): a batch waits for more ticks until this long after the previous insert started; sparse ticks wait for nothing")
	fs.IntVar(&c.StoreConc, "store-concurrency", 1, "store inserts in flight at once")
	fs.DurationVar(&c.LossDelay, "loss-delay", 30*time.Second, "how long the store stage waits for a tick missing from its sequence before counting it lost (signald_pipeline_lost_ticks_total)")
	fs.DurationVar(&c.Retention, "retention", 15*time.Minute, "how long stream entries stay after every group acknowledged them (the store keeps the history)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address")
	fs.StringVar(&c.RegimeModel, "regime-model", envOr("REGIME_MODEL", ""), "regime model `file` from `signald regime fit` (env SIGNALD_REGIME_MODEL); empty uses the built-in model")
	fs.IntVar(&c.Synthetic, "synthetic", 0, "generate random-walk ticks for this many instruments, in real time, instead of --replay (load and soak runs)")
	fs.Uint64Var(&c.SyntheticSeed, "synthetic-seed", 1, "seed of --synthetic: the same seed gives the same ticks")
	macroReturns := fs.String("macro-returns", strings.Join(macro.DefaultReturns, ","), "comma-separated return `columns` of /v1/macro's breadth and dispersion")
	fs.StringVar(&c.MacroRV, "macro-rv", macro.DefaultRV, "realized-volatility `column` of /v1/macro's rv_index")
	fs.BoolVar(&c.ExitAfterDrain, "exit-when-done", false, "exit once the replay is done and every stage has caught up (for scripts)")
	addLiveFlags(fs, &c.Live)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags go before nothing else; see signald run -h)", fs.Arg(0))
	}
	c.MacroReturns = splitList(*macroReturns)
	c.Live.ForceFallback = c.forceFallback()
	if *replay != "" {
		for _, p := range strings.Split(*replay, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Replay = append(c.Replay, p)
			}
		}
	}
	return c, c.validate()
}

func (c *runConfig) validate() error {
	var errs []error
	checkAddr := func(flagName, v string) {
		if v == "" {
			return
		}
		host, port, err := net.SplitHostPort(v)
		if err != nil || host == "" {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port, e.g. 127.0.0.1:6379", flagName, v))
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("--%s %q: port must be 1-65535", flagName, v))
		}
	}
	checkAddr("redis", c.Redis)
	checkAddr("clickhouse", c.ClickHouse)
	checkAddr("http", c.HTTPAddr)
	if c.Speed < 0 {
		errs = append(errs, fmt.Errorf("--speed %v: must be >= 0 (0 = as fast as possible)", c.Speed))
	}
	if c.Shards < 1 || c.Shards > 1024 {
		errs = append(errs, fmt.Errorf("--shards %d: must be 1-1024", c.Shards))
	}
	if c.StoreLinger < 0 || c.StoreLinger > time.Minute {
		errs = append(errs, fmt.Errorf("--store-batch-wait %v: must be between 0 and 1m", c.StoreLinger))
	}
	if c.StoreConc < 1 || c.StoreConc > 64 {
		errs = append(errs, fmt.Errorf("--store-concurrency %d: must be 1-64", c.StoreConc))
	}
	switch c.JSONPath {
	case "auto", "portable":
	case "simdjson":
		if !simdjson.SupportedCPU() {
			errs = append(errs, errors.New("--json-path simdjson: this CPU lacks AVX2 or CLMUL, which simdjson-go needs; use auto or portable"))
		}
	default:
		errs = append(errs, fmt.Errorf("--json-path %q: want auto, simdjson or portable", c.JSONPath))
	}
	if c.ConnectWait < 0 || c.ConnectWait > time.Hour {
		errs = append(errs, fmt.Errorf("--connect-wait %v: must be between 0 and 1h", c.ConnectWait))
	}
	if c.Retention < time.Second {
		errs = append(errs, fmt.Errorf("--retention %v: must be at least 1s", c.Retention))
	}
	if c.Step < time.Millisecond {
		errs = append(errs, fmt.Errorf("--step %v: must be at least 1ms", c.Step))
	}
	switch c.ReplayMarket {
	case "", "spot", "usdm":
	default:
		errs = append(errs, fmt.Errorf("--replay-market %q: want spot or usdm", c.ReplayMarket))
	}
	for _, p := range c.Replay {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("--replay: %w", err))
		}
	}
	if c.Synthetic < 0 || c.Synthetic > 1_000_000 {
		errs = append(errs, fmt.Errorf("--synthetic %d: must be 0 (off) to 1000000", c.Synthetic))
	}
	if c.Synthetic > 0 && len(c.Replay) > 0 {
		errs = append(errs, errors.New("--synthetic and --replay: give one of them"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.RedisCluster && c.Redis == "" {
		errs = append(errs, errors.New("--redis-cluster needs --redis"))
	}
	if c.Consumer == "" {
		errs = append(errs, errors.New("--consumer: must not be empty"))
	}
	errs = append(errs, c.Live.validate(), validateReplayVenue(c.ReplayVenue))
	if len(c.Live.Specs) > 0 && len(c.Replay) > 0 {
		errs = append(errs, errors.New("--live and --replay: choose one"))
	}
	return errors.Join(errs...)
}
