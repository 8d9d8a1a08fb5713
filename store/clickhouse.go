package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/chpool"
	"github.com/ClickHouse/ch-go/proto"
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// ClickHouseOptions configures the ClickHouse store. The zero value works
// against a local server.
type ClickHouseOptions struct {
	// Addr is host:port of the native protocol. Default 127.0.0.1:9000.
	Addr string
	// Database holds the tables; it is created if missing. Default "signald".
	Database string
	User     string // default "default"
	Password string
	// TLS, when set, connects over TLS with it (ClickHouse Cloud and
	// servers with a secure native port, usually 9440).
	TLS *tls.Config
	// DialTimeout defaults to 5s.
	DialTimeout time.Duration
	// MaxConns bounds the connection pool. Default 4.
	MaxConns int32
	// InsertTimeout bounds one insert; a server that does not acknowledge
	// in time (hung, overloaded) is an error, counted and retried by the
	// caller. Default 30s.
	InsertTimeout time.Duration
	// MaxPartitionsPerInsert is the most day partitions one insert may
	// touch: a batch that spans more is split. Default 100, the server's
	// max_partitions_per_insert_block.
	MaxPartitionsPerInsert int
}

func (o *ClickHouseOptions) setDefaults() error {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:9000"
	}
	if o.Database == "" {
		o.Database = "signald"
	}
	for _, r := range o.Database {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fmt.Errorf("clickhouse: database name %q: use letters, digits and _", o.Database)
		}
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 4
	}
	if o.InsertTimeout == 0 {
		o.InsertTimeout = 30 * time.Second
	}
	if o.MaxPartitionsPerInsert <= 0 {
		o.MaxPartitionsPerInsert = 100
	}
	return nil
}

// ErrAuth is ClickHouse refusing the user or password
// (AUTHENTICATION_FAILED, REQUIRED_PASSWORD, WRONG_PASSWORD). It is
// permanent: retrying with the same credentials does not help.
var ErrAuth = errors.New("clickhouse refused the credentials")

func dialErr(addr string, err error) error {
	if ch.IsErr(err, proto.ErrAuthenticationFailed, proto.ErrRequiredPassword, proto.ErrWrongPassword) {
		return fmt.Errorf("clickhouse %s: %w: %w", addr, ErrAuth, err)
	}
	return fmt.Errorf("clickhouse %s: %w", addr, err)
}

// ClickHouse stores ticks and signals in ClickHouse.
//
// Deduplication has two layers. Each insert carries an
// insert_deduplication_token derived from the ids it holds, so an identical
// retry (a batch redelivered after the insert succeeded but before its
// acknowledgement) is dropped by the server. Rows that reach the table twice
// in different batches (a replay after a crash) share their ReplacingMergeTree
// sorting key, which ends in the id; reads use FINAL, so they see each row
// once, and background merges remove the copies.
type ClickHouse struct {
	pool *chpool.Pool
	db   string
	opts ClickHouseOptions
	log  *slog.Logger
	m    *Metrics
	writeHealth
}

var _ Store = (*ClickHouse)(nil)

// OpenClickHouse connects, creates the database and tables if missing, and
// checks the server answers.
func OpenClickHouse(ctx context.Context, opts ClickHouseOptions, logger *slog.Logger, reg prometheus.Registerer) (*ClickHouse, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	pool, err := chpool.Dial(dctx, chpool.Options{
		ClientOptions: ch.Options{
			Address:     opts.Addr,
			User:        opts.User,
			Password:    opts.Password,
			TLS:         opts.TLS,
			DialTimeout: opts.DialTimeout,
			Compression: ch.CompressionLZ4,
		},
		MaxConns: opts.MaxConns,
	})
	if err != nil {
		return nil, dialErr(opts.Addr, err)
	}
	if err := pool.Ping(dctx); err != nil {
		pool.Close()
		return nil, dialErr(opts.Addr, err)
	}
	c := &ClickHouse{pool: pool, db: opts.Database, opts: opts, log: logger}
	if err := c.migrate(dctx); err != nil {
		pool.Close()
		return nil, err
	}
	// Registered only once open, so that a caller may retry a failed open
	// with the same registerer.
	c.m = NewMetrics(reg)
	return c, nil
}

func (c *ClickHouse) exec(ctx context.Context, body string) error {
	if err := c.pool.Do(ctx, ch.Query{Body: body}); err != nil {
		return fmt.Errorf("clickhouse: %s: %w", firstLine(body), err)
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Schema. Ticks are partitioned by receive day (every tick has a receive
// time; some venues send no exchange time). The sorting key ends in the id,
// the ReplacingMergeTree deduplication key.
func (c *ClickHouse) migrate(ctx context.Context) error {
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + c.db,
		`CREATE TABLE IF NOT EXISTS ` + c.db + `.ticks (
	id UInt64,
	venue LowCardinality(String),
	instrument LowCardinality(String),
	symbol LowCardinality(String),
	kind UInt8,
	kind_name String ALIAS ['unknown','trade','quote','book_delta','snapshot','funding','liquidation','gap'][kind + 1],
	side Int8,
	exch_ts DateTime64(9, 'UTC'),
	recv_ts DateTime64(9, 'UTC'),
	ingest_ts DateTime64(9, 'UTC'),
	stored_ts DateTime64(9, 'UTC') DEFAULT now64(9),
	price Float64,
	size Float64,
	trade_id UInt64,
	bid_px Float64,
	bid_sz Float64,
	ask_px Float64,
	ask_sz Float64,
	seq UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(recv_ts)
ORDER BY (venue, instrument, recv_ts, kind, id)
SETTINGS non_replicated_deduplication_window = 1000`,
		`CREATE TABLE IF NOT EXISTS ` + c.db + `.signals (
	id UInt64,
	time DateTime64(9, 'UTC'),
	venue LowCardinality(String),
	instrument LowCardinality(String),
	type LowCardinality(String),
	state LowCardinality(String),
	score Float64,
	model_version LowCardinality(String),
	explanation String,
	signal_values Map(String, Float64),
	stored_ts DateTime64(9, 'UTC') DEFAULT now64(9)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(time)
ORDER BY (venue, instrument, time, type, id)
SETTINGS non_replicated_deduplication_window = 1000`,
		// Tables created before signals carried values get the column.
		`ALTER TABLE ` + c.db + `.signals ADD COLUMN IF NOT EXISTS signal_values Map(String, Float64) AFTER explanation`,
	}
	for _, s := range stmts {
		if err := c.exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// tickCols are reusable insert columns.
type tickCols struct {
	id, tradeID, seq                        proto.ColUInt64
	venue, instrument, symbol               *proto.ColLowCardinality[string]
	kind                                    proto.ColUInt8
	side                                    proto.ColInt8
	exchTS, recvTS, ingestTS                *proto.ColDateTime64
	price, size, bidPx, bidSz, askPx, askSz proto.ColFloat64
}

func newTickCols() *tickCols {
	return &tickCols{
		venue:      proto.NewLowCardinality[string](new(proto.ColStr)),
		instrument: proto.NewLowCardinality[string](new(proto.ColStr)),
		symbol:     proto.NewLowCardinality[string](new(proto.ColStr)),
		exchTS:     new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano),
		recvTS:     new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano),
		ingestTS:   new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano),
	}
}

func (t *tickCols) input() proto.Input {
	return proto.Input{
		{Name: "id", Data: &t.id}, {Name: "venue", Data: t.venue}, {Name: "instrument", Data: t.instrument},
		{Name: "symbol", Data: t.symbol}, {Name: "kind", Data: &t.kind}, {Name: "side", Data: &t.side},
		{Name: "exch_ts", Data: t.exchTS}, {Name: "recv_ts", Data: t.recvTS}, {Name: "ingest_ts", Data: t.ingestTS},
		{Name: "price", Data: &t.price}, {Name: "size", Data: &t.size}, {Name: "trade_id", Data: &t.tradeID},
		{Name: "bid_px", Data: &t.bidPx}, {Name: "bid_sz", Data: &t.bidSz}, {Name: "ask_px", Data: &t.askPx},
		{Name: "ask_sz", Data: &t.askSz}, {Name: "seq", Data: &t.seq},
	}
}

const tickColumns = "id, venue, instrument, symbol, kind, side, exch_ts, recv_ts, ingest_ts, price, size, trade_id, bid_px, bid_sz, ask_px, ask_sz, seq"

func (t *tickCols) append(k *market.Tick) {
	t.id.Append(k.ID)
	t.venue.Append(k.Venue)
	t.instrument.Append(k.Instrument)
	t.symbol.Append(k.Symbol)
	t.kind.Append(uint8(k.Kind))
	t.side.Append(int8(k.Side))
	t.exchTS.AppendRaw(proto.DateTime64(k.ExchTS))
	t.recvTS.AppendRaw(proto.DateTime64(k.RecvTS))
	t.ingestTS.AppendRaw(proto.DateTime64(k.IngestTS))
	t.price.Append(k.Price)
	t.size.Append(k.Size)
	t.tradeID.Append(k.TradeID)
	t.bidPx.Append(k.BidPx)
	t.bidSz.Append(k.BidSz)
	t.askPx.Append(k.AskPx)
	t.askSz.Append(k.AskSz)
	t.seq.Append(k.Seq)
}

func (t *tickCols) row(i int) market.Tick {
	return market.Tick{
		ID: t.id.Row(i), Venue: t.venue.Row(i), Instrument: t.instrument.Row(i), Symbol: t.symbol.Row(i),
		Kind: market.Kind(t.kind.Row(i)), Side: market.Side(t.side.Row(i)),
		ExchTS: int64(t.exchTS.Data[i]), RecvTS: int64(t.recvTS.Data[i]), IngestTS: int64(t.ingestTS.Data[i]),
		Price: t.price.Row(i), Size: t.size.Row(i), TradeID: t.tradeID.Row(i),
		BidPx: t.bidPx.Row(i), BidSz: t.bidSz.Row(i), AskPx: t.askPx.Row(i), AskSz: t.askSz.Row(i), Seq: t.seq.Row(i),
	}
}

// dedupToken identifies a batch by the ids it holds, in order.
func dedupToken(prefix string, ids func(yield func(uint64))) string {
	h := xxhash.New()
	var b [8]byte
	ids(func(id uint64) {
		for i := range b {
			b[i] = byte(id >> (8 * i))
		}
		h.Write(b[:])
	})
	return prefix + strconv.FormatUint(h.Sum64(), 16)
}

// InsertTicks stores ticks. A batch that spans more day partitions than
// one insert may touch is inserted in parts. Rows the server rejects for good
// are isolated (see isolate): the rest is stored and a *RejectedError names
// them. Any other failure (outage, deadline) is returned as is, for the
// caller to retry the whole batch.
func (c *ClickHouse) InsertTicks(ctx context.Context, ticks []market.Tick) error {
	if len(ticks) == 0 {
		return nil
	}
	return c.insertRows(ctx, "ticks", len(ticks), func(i int) int64 { return ticks[i].RecvTS }, func(ctx context.Context, idx []int) error {
		cols := newTickCols()
		for _, i := range idx {
			cols.append(&ticks[i])
		}
		tok := dedupToken("t-", func(y func(uint64)) {
			for _, i := range idx {
				y(ticks[i].ID)
			}
		})
		start := time.Now()
		err := c.pool.Do(ctx, ch.Query{
			Body:     "INSERT INTO " + c.db + ".ticks (" + tickColumns + ") VALUES",
			Input:    cols.input(),
			Settings: insertSettings(tok),
		})
		if err != nil {
			return err
		}
		c.m.observeInsert("ticks", len(idx), time.Since(start))
		now := time.Now().UnixNano()
		for _, i := range idx {
			if t := ticks[i].IngestTS; t > 0 {
				c.m.tickLatency.Observe(float64(now-t) / 1e9)
			}
		}
		return nil
	})
}

// insertRows inserts rows 0..n-1 of table through insert, split by
// partition, each part under the insert deadline, isolating rejected rows;
// it counts and logs every failure and keeps the store's write health.
func (c *ClickHouse) insertRows(ctx context.Context, table string, n int, ts func(int) int64, insert func(context.Context, []int) error) error {
	var rejected []Rejection
	for _, part := range byPartition(n, c.opts.MaxPartitionsPerInsert, func(i int) int64 { return dayOf(ts(i)) }) {
		rej, err := isolate(part, func(idx []int) error {
			return withDeadline(ctx, c.opts.InsertTimeout, func(ctx context.Context) error { return insert(ctx, idx) })
		})
		if err == nil && len(rej) == len(part) && len(part) > 1 {
			// Every row of a part refused alike is the table's or the
			// server's fault more likely than the data's: keep them all
			// for a retry rather than dead-letter a whole batch.
			err = fmt.Errorf("every row of a %d-row part rejected: %s", len(part), rej[0].Reason)
			rej = nil
		}
		if err != nil {
			c.m.insertErrors.WithLabelValues(table).Inc()
			if errors.Is(err, ErrInsertTimeout) {
				c.m.insertTimeouts.WithLabelValues(table).Inc()
			}
			c.writeHealth.failed(time.Now(), err)
			if ctx.Err() == nil {
				c.log.Warn("store: insert failed; the batch stays pending and is retried", "table", table, "rows", n, "err", err)
			}
			return fmt.Errorf("insert %d %s: %w", n, table, err)
		}
		rejected = append(rejected, rej...)
	}
	c.writeHealth.ok(time.Now())
	if len(rejected) == 0 {
		return nil
	}
	slices.SortFunc(rejected, func(a, b Rejection) int { return a.Index - b.Index })
	c.m.rejected.WithLabelValues(table).Add(float64(len(rejected)))
	c.log.Error("store: rows rejected by the server; the rest of the batch is stored", "table", table,
		"rejected", len(rejected), "rows", n, "first_reason", rejected[0].Reason)
	return &RejectedError{Table: table, Rows: rejected}
}

// InsertSignals stores signals, as InsertTicks stores ticks.
func (c *ClickHouse) InsertSignals(ctx context.Context, sigs []market.Signal) error {
	if len(sigs) == 0 {
		return nil
	}
	return c.insertRows(ctx, "signals", len(sigs), func(i int) int64 { return sigs[i].Time }, func(ctx context.Context, idx []int) error {
		var (
			id                           proto.ColUInt64
			tm                           = new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano)
			venue, inst, typ, state, ver = lc(), lc(), lc(), lc(), lc()
			score                        proto.ColFloat64
			expl                         proto.ColStr
			vals                         = proto.NewMap[string, float64](new(proto.ColStr), new(proto.ColFloat64))
		)
		for _, i := range idx {
			s := &sigs[i]
			id.Append(s.ID)
			tm.AppendRaw(proto.DateTime64(s.Time))
			venue.Append(s.Venue)
			inst.Append(s.Instrument)
			typ.Append(s.Type)
			state.Append(s.State)
			score.Append(s.Score)
			ver.Append(s.ModelVersion)
			expl.Append(s.Explanation)
			vals.Append(s.Values)
		}
		tok := dedupToken("s-", func(y func(uint64)) {
			for _, i := range idx {
				y(sigs[i].ID)
			}
		})
		start := time.Now()
		err := c.pool.Do(ctx, ch.Query{
			Body: "INSERT INTO " + c.db + ".signals (id, time, venue, instrument, type, state, score, model_version, explanation, signal_values) VALUES",
			Input: proto.Input{
				{Name: "id", Data: &id}, {Name: "time", Data: tm}, {Name: "venue", Data: venue}, {Name: "instrument", Data: inst},
				{Name: "type", Data: typ}, {Name: "state", Data: state}, {Name: "score", Data: &score},
				{Name: "model_version", Data: ver}, {Name: "explanation", Data: &expl}, {Name: "signal_values", Data: vals},
			},
			Settings: insertSettings(tok),
		})
		if err != nil {
			return err
		}
		c.m.observeInsert("signals", len(idx), time.Since(start))
		return nil
	})
}

// insertSettings makes every insert synchronous and deduplicated by token,
// whatever the server's profile says. Some servers (chDB among them) default
// to async_insert=1, which buffers inserts server-side for 50-200 ms and, with
// async_insert_deduplicate=0, ignores the token; signald batches client-side
// already and acknowledges only what is in a part.
func insertSettings(token string) []ch.Setting {
	return []ch.Setting{
		{Key: "async_insert", Value: "0"},
		{Key: "insert_deduplicate", Value: "1"},
		{Key: "insert_deduplication_token", Value: token},
	}
}

func lc() *proto.ColLowCardinality[string] { return proto.NewLowCardinality[string](new(proto.ColStr)) }

// quote renders s as a ClickHouse string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

func (c *ClickHouse) where(q Query, col string) string {
	lo, hi := q.bounds()
	w := fmt.Sprintf(" WHERE %s >= fromUnixTimestamp64Nano(toInt64(%d)) AND %s < fromUnixTimestamp64Nano(toInt64(%d))", col, lo, col, hi)
	if len(q.Instruments) > 0 {
		parts := make([]string, len(q.Instruments))
		for i, s := range q.Instruments {
			parts[i] = quote(s)
		}
		w += " AND instrument IN (" + strings.Join(parts, ", ") + ")"
	}
	return w
}

func (c *ClickHouse) ReadTicks(ctx context.Context, q Query, fn func([]market.Tick) error) error {
	cols := newTickCols()
	res := proto.Results{
		{Name: "id", Data: &cols.id}, {Name: "venue", Data: cols.venue}, {Name: "instrument", Data: cols.instrument},
		{Name: "symbol", Data: cols.symbol}, {Name: "kind", Data: &cols.kind}, {Name: "side", Data: &cols.side},
		{Name: "exch_ts", Data: cols.exchTS}, {Name: "recv_ts", Data: cols.recvTS}, {Name: "ingest_ts", Data: cols.ingestTS},
		{Name: "price", Data: &cols.price}, {Name: "size", Data: &cols.size}, {Name: "trade_id", Data: &cols.tradeID},
		{Name: "bid_px", Data: &cols.bidPx}, {Name: "bid_sz", Data: &cols.bidSz}, {Name: "ask_px", Data: &cols.askPx},
		{Name: "ask_sz", Data: &cols.askSz}, {Name: "seq", Data: &cols.seq},
	}
	var batch []market.Tick
	err := c.pool.Do(ctx, ch.Query{
		Body:   "SELECT " + tickColumns + " FROM " + c.db + ".ticks FINAL" + c.where(q, "recv_ts") + " ORDER BY recv_ts, venue, instrument, kind, id",
		Result: res,
		OnResult: func(ctx context.Context, b proto.Block) error {
			batch = batch[:0]
			for i := 0; i < b.Rows; i++ {
				batch = append(batch, cols.row(i))
			}
			if len(batch) == 0 {
				return nil
			}
			return fn(batch)
		},
	})
	if err != nil {
		return fmt.Errorf("read ticks: %w", err)
	}
	return nil
}

func (c *ClickHouse) CountTicks(ctx context.Context, q Query) (int64, error) {
	var n proto.ColUInt64
	err := c.pool.Do(ctx, ch.Query{
		Body:   "SELECT count() FROM " + c.db + ".ticks FINAL" + c.where(q, "recv_ts"),
		Result: proto.Results{{Name: "count()", Data: &n}},
	})
	if err != nil {
		return 0, fmt.Errorf("count ticks: %w", err)
	}
	if n.Rows() != 1 {
		return 0, errors.New("count ticks: no result")
	}
	return int64(n.Row(0)), nil
}

func (c *ClickHouse) CountTicksByMinute(ctx context.Context, q Query) ([]MinuteCount, error) {
	venue, inst := lc(), lc()
	var m proto.ColInt64
	var n proto.ColUInt64
	var out []MinuteCount
	err := c.pool.Do(ctx, ch.Query{
		Body: "SELECT venue, instrument, toInt64(intDiv(toUnixTimestamp64Nano(recv_ts), 60000000000) * 60) AS m, count() AS n FROM " +
			c.db + ".ticks FINAL" + c.where(q, "recv_ts") + " GROUP BY venue, instrument, m ORDER BY venue, instrument, m",
		Result: proto.Results{{Name: "venue", Data: venue}, {Name: "instrument", Data: inst}, {Name: "m", Data: &m}, {Name: "n", Data: &n}},
		OnResult: func(ctx context.Context, b proto.Block) error {
			for i := 0; i < b.Rows; i++ {
				out = append(out, MinuteCount{Venue: venue.Row(i), Instrument: inst.Row(i), Minute: m.Row(i), N: int64(n.Row(i))})
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("count ticks by minute: %w", err)
	}
	return out, nil
}

// CountTickRows returns the number of physical rows, duplicates included
// (for checking deduplication; ReadTicks and CountTicks never see duplicates).
func (c *ClickHouse) CountTickRows(ctx context.Context, q Query) (int64, error) {
	var n proto.ColUInt64
	err := c.pool.Do(ctx, ch.Query{
		Body:   "SELECT count() FROM " + c.db + ".ticks" + c.where(q, "recv_ts"),
		Result: proto.Results{{Name: "count()", Data: &n}},
	})
	if err != nil || n.Rows() != 1 {
		return 0, fmt.Errorf("count tick rows: %w", err)
	}
	return int64(n.Row(0)), nil
}

func (c *ClickHouse) ReadSignals(ctx context.Context, q Query) ([]market.Signal, error) {
	var (
		id                           proto.ColUInt64
		tm                           = new(proto.ColDateTime64).WithPrecision(proto.PrecisionNano)
		venue, inst, typ, state, ver = lc(), lc(), lc(), lc(), lc()
		score                        proto.ColFloat64
		expl                         proto.ColStr
		vals                         = proto.NewMap[string, float64](new(proto.ColStr), new(proto.ColFloat64))
	)
	res := proto.Results{
		{Name: "id", Data: &id}, {Name: "time", Data: tm}, {Name: "venue", Data: venue}, {Name: "instrument", Data: inst},
		{Name: "type", Data: typ}, {Name: "state", Data: state}, {Name: "score", Data: &score},
		{Name: "model_version", Data: ver}, {Name: "explanation", Data: &expl}, {Name: "signal_values", Data: vals},
	}
	var out []market.Signal
	err := c.pool.Do(ctx, ch.Query{
		Body: "SELECT id, time, venue, instrument, type, state, score, model_version, explanation, signal_values FROM " + c.db +
			".signals FINAL" + c.where(q, "time") + " ORDER BY time, venue, instrument, type",
		Result: res,
		OnResult: func(ctx context.Context, b proto.Block) error {
			for i := 0; i < b.Rows; i++ {
				sig := market.Signal{
					ID: id.Row(i), Time: int64(tm.Data[i]), Venue: venue.Row(i), Instrument: inst.Row(i),
					Type: typ.Row(i), State: state.Row(i), Score: score.Row(i), ModelVersion: ver.Row(i), Explanation: expl.Row(i),
				}
				if m := vals.Row(i); len(m) > 0 {
					sig.Values = m
				}
				out = append(out, sig)
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("read signals: %w", err)
	}
	return out, nil
}

// Exec runs a statement (for tools and tests).
func (c *ClickHouse) Exec(ctx context.Context, body string) error { return c.exec(ctx, body) }

// Database is the database holding the tables.
func (c *ClickHouse) Database() string { return c.db }

func (c *ClickHouse) Close() error {
	c.pool.Close()
	return nil
}
