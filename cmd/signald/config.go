package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/internal/dsn"
	"github.com/signald-dev/signald/macro"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// runConfig is everything `signald run` takes from flags and environment.
// Only this package reads either; the packages take config structs.
type runConfig struct {
	Redis          string // host:port, a seed list or a URL; empty = in-process transport
	RedisCluster   bool
	RedisSecrets   secretFlags
	ClickHouse     string // host:port or a DSN; empty = Parquet files under DataDir
	ClickHouseDB   string
	ClickSecrets   secretFlags
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

	// Resolved by validate from the connection flags.
	redisOpts transport.RedisOptions
	chOpts    store.ClickHouseOptions
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
	addRedisFlags(fs, &c.Redis, &c.RedisCluster, &c.RedisSecrets, "for the transport (env SIGNALD_REDIS_ADDR); empty runs the in-process transport")
	addClickHouseFlags(fs, &c.ClickHouse, &c.ClickHouseDB, &c.ClickSecrets, "for storage (env SIGNALD_CLICKHOUSE_ADDR); empty stores Parquet files under --data")
	fs.DurationVar(&c.ConnectWait, "connect-wait", 0, "at start-up, keep retrying Redis and ClickHouse for this long (for servers started alongside signald); 0 fails at the first refusal")
	fs.StringVar(&c.JSONPath, "json-path", envOr("JSON_PATH", "auto"), "how venue frames are parsed: auto (portable for the venues measured faster through it, binance and binance-usdm; simdjson-go elsewhere where the CPU runs it), simdjson, or portable (a pure-Go scanner; identical ticks)")
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
	configFile := fs.String("config", "", "YAML `file` of settings named as these flags (docs/config-file.md); flags and SIGNALD_* variables win over it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags go before nothing else; see signald run -h)", fs.Arg(0))
	}
	if err := applyConfigFile(fs, *configFile); err != nil {
		return nil, err
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
			errs = append(errs, fmt.Errorf("--%s %q: want host:port, e.g. %s", flagName, v, map[string]string{
				"http": "127.0.0.1:8080", "redis": "127.0.0.1:6379", "clickhouse": "127.0.0.1:9000"}[flagName]))
			return
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			errs = append(errs, fmt.Errorf("--%s %q: port must be 1-65535", flagName, v))
		}
	}
	checkAddr("http", c.HTTPAddr)
	if c.Redis != "" {
		var err error
		c.redisOpts, err = redisOptions(c.Redis, c.RedisCluster, c.RedisSecrets)
		errs = append(errs, err)
	}
	if c.ClickHouse != "" {
		var err error
		c.chOpts, err = clickHouseOptions(c.ClickHouse, c.ClickHouseDB, c.ClickSecrets)
		errs = append(errs, err)
	}
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
	errs = append(errs, c.validateMore())
	return errors.Join(errs...)
}

// connectOptions gives the Redis and ClickHouse options of the pipeline
// (zero when the flag is empty), warning of any TLS verification turned off.
func (c *runConfig) connectOptions(log *slog.Logger) (transport.RedisOptions, store.ClickHouseOptions) {
	warnInsecure(log, "redis", c.RedisSecrets.TLS)
	warnInsecure(log, "clickhouse", c.ClickSecrets.TLS)
	return c.redisOpts, c.chOpts
}

func warnInsecure(log *slog.Logger, name string, t dsn.TLS) {
	if t.Insecure {
		log.Warn("--" + name + "-tls-insecure: the server's certificate is not verified; anyone on the path can read and change the traffic (for tests only)")
	}
}

// secretFlags are the credential and TLS flags of one server.
type secretFlags struct {
	PasswordFile string
	TLS          dsn.TLS
}

// urlFlag is a flag holding an address or URL. Its default (from the
// environment) is shown with the password redacted in -h; repeat makes
// repeated flags a comma-separated list (a seed list) instead of the last.
type urlFlag struct {
	v      *string
	repeat bool
	set    bool
}

func (f *urlFlag) String() string {
	if f.v == nil {
		return ""
	}
	return dsn.Redact(*f.v)
}

func (f *urlFlag) Set(s string) error {
	if f.repeat && f.set && *f.v != "" {
		*f.v += "," + s
	} else {
		*f.v = s
	}
	f.set = true
	return nil
}

// addRedisFlags registers --redis, --redis-cluster and the password and TLS
// flags of Redis; usage completes the help of --redis.
func addRedisFlags(fs *flag.FlagSet, addr *string, cluster *bool, sec *secretFlags, usage string) {
	*addr = envOr("REDIS_ADDR", "")
	fs.Var(&urlFlag{v: addr, repeat: true}, "redis", "Redis `address`: host:port, redis://[user:pass@]host:port[/db], rediss://... (TLS), a cluster seed list h1:p1,h2:p2 (or --redis repeated), or redis-sentinel://[user:pass@]h1:p1,h2:p2/master[?db=N] "+usage)
	fs.BoolVar(cluster, "redis-cluster", envOr("REDIS_CLUSTER", "") == "1", "treat --redis as a Redis Cluster seed")
	addSecretFlags(fs, "redis", "Redis", sec)
}

// addClickHouseFlags registers --clickhouse, --clickhouse-db and the
// password and TLS flags of ClickHouse.
func addClickHouseFlags(fs *flag.FlagSet, addr, db *string, sec *secretFlags, usage string) {
	*addr = envOr("CLICKHOUSE_ADDR", "")
	fs.Var(&urlFlag{v: addr}, "clickhouse", "ClickHouse native `address`: host:port or clickhouse://[user:pass@]host:port[/db][?secure=true] "+usage)
	fs.StringVar(db, "clickhouse-db", envOr("CLICKHOUSE_DB", "signald"), "ClickHouse database (a /db in the --clickhouse DSN overrides it)")
	addSecretFlags(fs, "clickhouse", "ClickHouse", sec)
}

func addSecretFlags(fs *flag.FlagSet, name, title string, sec *secretFlags) {
	env := "SIGNALD_" + strings.ToUpper(name) + "_PASSWORD"
	fs.StringVar(&sec.PasswordFile, name+"-password-file", "", "`file` holding the "+title+" password (else env "+env+", or a password in the URL)")
	fs.StringVar(&sec.TLS.CA, name+"-tls-ca", "", "PEM `file` of the CA that signed the "+title+" server's certificate (turns on TLS; default: the system's CAs)")
	fs.StringVar(&sec.TLS.Cert, name+"-tls-cert", "", "PEM `file` of a client certificate for "+title+" (with --"+name+"-tls-key)")
	fs.StringVar(&sec.TLS.Key, name+"-tls-key", "", "PEM `file` of the key of --"+name+"-tls-cert")
	fs.BoolVar(&sec.TLS.Insecure, name+"-tls-insecure", false, "TLS to "+title+" without verifying its certificate (tests only; logged as a warning)")
}

// redisOptions resolves the Redis flags into the transport's options.
func redisOptions(addr string, cluster bool, sec secretFlags) (transport.RedisOptions, error) {
	r, err := dsn.ParseRedis("redis", addr)
	if err != nil {
		return transport.RedisOptions{}, err
	}
	o := transport.RedisOptions{Addrs: r.Addrs, Username: r.Username, DB: r.DB, SentinelMaster: r.SentinelMaster}
	if r.SentinelMaster != "" && cluster {
		return o, errors.New("--redis-cluster and a redis-sentinel:// --redis: give one of them")
	}
	o.ClusterMode = cluster || (r.SentinelMaster == "" && len(r.Addrs) > 1)
	if o.ClusterMode && r.DB != 0 {
		return o, fmt.Errorf("--redis %s: Redis Cluster has only database 0; leave out the /db", dsn.Redact(addr))
	}
	if o.Password, err = dsn.Password(r.Password, sec.PasswordFile, "redis-password-file", os.Getenv("SIGNALD_REDIS_PASSWORD")); err != nil {
		return o, err
	}
	if r.Scheme == "redis" && sec.TLS.Set() {
		return o, errors.New("--redis-tls-*: --redis says redis://, which is without TLS; use rediss:// (or host:port)")
	}
	if r.TLS || sec.TLS.Set() {
		if o.TLS, err = sec.TLS.Config("redis"); err != nil {
			return o, err
		}
	}
	return o, nil
}

// clickHouseOptions resolves the ClickHouse flags into the store's options.
func clickHouseOptions(addr, db string, sec secretFlags) (store.ClickHouseOptions, error) {
	c, err := dsn.ParseClickHouse("clickhouse", addr)
	if err != nil {
		return store.ClickHouseOptions{}, err
	}
	o := store.ClickHouseOptions{Addr: c.Addr, User: c.User, Database: db}
	if c.Database != "" {
		o.Database = c.Database
	}
	if o.Password, err = dsn.Password(c.Password, sec.PasswordFile, "clickhouse-password-file", os.Getenv("SIGNALD_CLICKHOUSE_PASSWORD")); err != nil {
		return o, err
	}
	if c.SecureSet && !c.Secure && sec.TLS.Set() {
		return o, errors.New("--clickhouse-tls-*: --clickhouse says secure=false; drop it or the TLS flags")
	}
	if c.Secure || sec.TLS.Set() {
		if o.TLS, err = sec.TLS.Config("clickhouse"); err != nil {
			return o, err
		}
	}
	return o, nil
}

// explainOpenError completes the error of a transport or store that cannot
// be opened with what to do about it.
func explainOpenError(err error) error {
	var oe *pipeline.OpenError
	if !errors.As(err, &oe) {
		return err
	}
	if e := explainConnectError(oe.Kind, err); e != err {
		return e
	}
	return fmt.Errorf("%w (%s)", err, openHints[oe.Kind])
}

// explainConnectError says plainly what to do about refused credentials or
// a certificate that does not verify (kind is Redis or ClickHouse); other
// errors come back as they are.
func explainConnectError(kind string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, transport.ErrAuth):
		//lint:ignore ST1005 the message starts with the product's name
		return fmt.Errorf("Redis refused the credentials: check the user and password in --redis, --redis-password-file or SIGNALD_REDIS_PASSWORD (%w)", err)
	case errors.Is(err, store.ErrAuth):
		return fmt.Errorf("ClickHouse refused the credentials: check the user and password in --clickhouse, --clickhouse-password-file or SIGNALD_CLICKHOUSE_PASSWORD (%w)", err)
	case dsn.IsTLSVerify(err):
		name := strings.ToLower(kind)
		return fmt.Errorf("the %s server's certificate did not verify: give the CA that signed it with --%s-tls-ca (%w)", kind, name, err)
	}
	return err
}
