package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures the Redis Streams backend.
type RedisOptions struct {
	// Addrs are host:port pairs. One address is a standalone server; several
	// (or ClusterMode) make a cluster client. Default 127.0.0.1:6379.
	Addrs []string
	// ClusterMode forces a cluster client even for one seed address.
	ClusterMode bool
	// Username is the ACL user of AUTH; empty: the default user.
	Username string
	// Password for AUTH, if any.
	Password string
	// DB is the database number of a standalone or Sentinel-managed server;
	// Redis Cluster has only 0.
	DB int
	// TLS, when set, connects over TLS with it (servers and sentinels).
	TLS *tls.Config
	// SentinelMaster, when set, makes Addrs the Sentinel addresses and
	// follows the master of this name through failovers.
	SentinelMaster string
	// DialTimeout defaults to 5s.
	DialTimeout time.Duration
	// PoolSize defaults to go-redis' default (10 per CPU). Each blocking read
	// holds one connection for its duration.
	PoolSize int
	// PipelineAppend makes Add send a batch as a pipeline of one XADD per
	// entry instead of the default: one EVALSHA of a script that runs the
	// XADDs inside the server. The script is faster (the client encodes and
	// parses one command per batch, not one per entry: 0.78 of
	// redis-benchmark against 0.62 in bench/transport with 4 shards) and
	// appends a batch atomically, so a retried batch is never half there
	// twice. A batch of MaxBatch entries holds the server for its duration
	// either way (about 1 µs per entry). Set this where scripts are not
	// allowed (some managed Redis services).
	PipelineAppend bool
}

// Redis is the Redis Streams backend.
type Redis struct {
	c      redis.UniversalClient
	script bool

	closeOnce sync.Once
	closeErr  error
}

// addScript appends ARGV to KEYS[1], one entry per value, and returns the
// ids. The stream is the script's only key, so it works on Redis Cluster.
var addScript = redis.NewScript(`
local ids = {}
for i = 1, #ARGV do
  ids[i] = redis.call('XADD', KEYS[1], '*', 'd', ARGV[i])
end
return ids`)

var _ Backend = (*Redis)(nil)

// NewRedis connects to Redis and checks that it answers.
func NewRedis(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if len(opts.Addrs) == 0 {
		opts.Addrs = []string{"127.0.0.1:6379"}
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	cluster := opts.SentinelMaster == "" && (opts.ClusterMode || len(opts.Addrs) > 1)
	if cluster && opts.DB != 0 {
		return nil, fmt.Errorf("redis: database %d: Redis Cluster has only database 0", opts.DB)
	}
	uo := &redis.UniversalOptions{
		Addrs:       opts.Addrs,
		Username:    opts.Username,
		Password:    opts.Password,
		DB:          opts.DB,
		TLSConfig:   opts.TLS,
		MasterName:  opts.SentinelMaster,
		DialTimeout: opts.DialTimeout,
		PoolSize:    opts.PoolSize,
		// A blocking XREADGROUP may take as long as its BLOCK; the read
		// timeout applies on top of it (go-redis adds BLOCK to it).
		ReadTimeout: 5 * time.Second,
	}
	var c redis.UniversalClient
	switch {
	case opts.SentinelMaster != "":
		c = redis.NewFailoverClient(uo.Failover())
	case cluster:
		c = redis.NewClusterClient(uo.Cluster())
	default:
		c = redis.NewClient(uo.Simple())
	}
	pctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		where := strings.Join(opts.Addrs, ",")
		if opts.SentinelMaster != "" {
			where = "sentinel " + where + " master " + opts.SentinelMaster
		}
		if isAuthErr(err) {
			return nil, fmt.Errorf("redis %s: %w: %w", where, ErrAuth, err)
		}
		return nil, fmt.Errorf("redis %s: %w", where, err)
	}
	return &Redis{c: c, script: !opts.PipelineAppend}, nil
}

// ErrAuth is Redis refusing the user or password (NOAUTH, WRONGPASS). It
// is permanent: retrying
// with the same credentials does not help.
var ErrAuth = errors.New("redis refused the credentials")

func isAuthErr(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS") || strings.Contains(msg, "invalid password")
}

// Client exposes the underlying client, for tools and tests.
func (r *Redis) Client() redis.UniversalClient { return r.c }

func (r *Redis) Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error) {
	if len(payloads) == 0 {
		return nil, nil
	}
	if r.script {
		args := make([]any, len(payloads))
		for i, p := range payloads {
			args[i] = p
		}
		ids, err := addScript.Run(ctx, r.c, []string{stream}, args...).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("xadd %s (script): %w", stream, err)
		}
		return ids, nil
	}
	pipe := r.c.Pipeline()
	cmds := make([]*redis.StringCmd, len(payloads))
	for i, p := range payloads {
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"d", p}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("xadd %s: %w", stream, err)
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids, nil
}

func (r *Redis) CreateGroup(ctx context.Context, stream, group, start string) error {
	err := r.c.XGroupCreateMkStream(ctx, stream, group, start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("xgroup create %s %s: %w", stream, group, err)
	}
	return nil
}

// maxBlockSlice bounds one blocking XREADGROUP. go-redis does not abort a
// blocking read when its context is cancelled (only deadlines reach the
// socket), so a long Block is served as a loop of short ones and a stop is
// never held up for longer than this.
const maxBlockSlice = 250 * time.Millisecond

func (r *Redis) ReadGroup(ctx context.Context, stream, group, consumer, start string, count int, block time.Duration) ([]Message, error) {
	args := &redis.XReadGroupArgs{
		Group:    group,
		Consumer: consumer,
		Streams:  []string{stream, start},
		Count:    int64(count),
		Block:    -1, // negative omits BLOCK; 0 would block forever
	}
	var deadline time.Time
	if start == ">" && block > 0 {
		deadline = time.Now().Add(block)
	}
	for {
		if !deadline.IsZero() {
			args.Block = min(time.Until(deadline), maxBlockSlice)
			if args.Block < time.Millisecond {
				return nil, nil
			}
		}
		res, err := r.c.XReadGroup(ctx, args).Result()
		if errors.Is(err, redis.Nil) {
			if deadline.IsZero() || ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("xreadgroup %s %s: %w", stream, group, err)
		}
		var out []Message
		for _, s := range res {
			for _, m := range s.Messages {
				msg := toMessage(stream, m)
				if start == ">" {
					msg.Deliveries = 1
				}
				out = append(out, msg)
			}
		}
		if start != ">" {
			// Re-reading pending entries counts a delivery; learn the
			// count so poison entries can be recognized across restarts.
			if err := r.deliveries(ctx, stream, group, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

func toMessage(stream string, m redis.XMessage) Message {
	msg := Message{Stream: stream, ID: m.ID}
	// Pending entries whose body was trimmed come back with no values.
	if v, ok := m.Values["d"].(string); ok {
		msg.Payload = []byte(v)
	}
	if v, ok := m.Values["g"].(string); ok {
		msg.For = splitGroups(v)
	}
	return msg
}

var _ DeadLetterBackend = (*Redis)(nil)

// AddDeadLetter appends body to dlq and records the group in a hash next to
// it (deadLetterKey: field "dl" once appended, "g:<group>" per group), in
// one optimistic transaction, so that two groups failing the same entry at
// once append it once.
func (r *Redis) AddDeadLetter(ctx context.Context, dlq string, d DeadLetter, body []byte, ttl time.Duration) (bool, error) {
	key := deadLetterKey(dlq, d.Stream, d.ID)
	for range 50 {
		added := false
		err := r.c.Watch(ctx, func(tx *redis.Tx) error {
			n, err := tx.HExists(ctx, key, "dl").Result()
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if !n {
					p.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{"d", body}})
					added = true
				}
				p.HSet(ctx, key, "dl", 1, "g:"+d.Group, 1)
				p.PExpire(ctx, key, ttl)
				return nil
			})
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue // another group got there first: look again
		}
		if err != nil {
			return false, fmt.Errorf("dead letter %s %s to %s: %w", d.Stream, d.ID, dlq, err)
		}
		return added, nil
	}
	return false, fmt.Errorf("dead letter %s %s to %s: too much contention", d.Stream, d.ID, dlq)
}

func (r *Redis) DeadLetterGroups(ctx context.Context, dlq, stream, id string) ([]string, error) {
	fields, err := r.c.HKeys(ctx, deadLetterKey(dlq, stream, id)).Result()
	if err != nil {
		return nil, fmt.Errorf("hkeys %s: %w", deadLetterKey(dlq, stream, id), err)
	}
	var groups []string
	for _, f := range fields {
		if g, ok := strings.CutPrefix(f, "g:"); ok {
			groups = append(groups, g)
		}
	}
	slices.Sort(groups)
	return groups, nil
}

func (r *Redis) AddFor(ctx context.Context, stream string, payload []byte, groups []string) (string, error) {
	values := []any{"d", payload}
	if len(groups) > 0 {
		values = append(values, "g", strings.Join(groups, ","))
	}
	id, err := r.c.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Result()
	if err != nil {
		return "", fmt.Errorf("xadd %s: %w", stream, err)
	}
	return id, nil
}

// TrimMaxLen trims stream to its newest maxLen entries (XTRIM MAXLEN, exact)
// and returns how many it removed.
func (r *Redis) TrimMaxLen(ctx context.Context, stream string, maxLen int64) (int64, error) {
	n, err := r.c.XTrimMaxLen(ctx, stream, maxLen).Result()
	if err != nil {
		return 0, fmt.Errorf("xtrim %s maxlen: %w", stream, err)
	}
	return n, nil
}

func (r *Redis) Ack(ctx context.Context, stream, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := r.c.XAck(ctx, stream, group, ids...).Err(); err != nil {
		return fmt.Errorf("xack %s %s: %w", stream, group, err)
	}
	return nil
}

func (r *Redis) Claim(ctx context.Context, stream, group, consumer string, minIdle time.Duration, count int) ([]Message, []string, error) {
	msgs, _, deleted, err := r.c.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
		Stream: stream, Group: group, Consumer: consumer, MinIdle: minIdle, Start: "0-0", Count: int64(count),
	}).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("xautoclaim %s %s: %w", stream, group, err)
	}
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toMessage(stream, m))
	}
	if err := r.deliveries(ctx, stream, group, out); err != nil {
		return nil, nil, err
	}
	return out, deleted, nil
}

// deliveries fills msgs' delivery counts from XPENDING: one round trip over
// their id range. Used on the rare paths (claims and re-reads of pending
// entries), never for new entries, whose count is 1.
func (r *Redis) deliveries(ctx context.Context, stream, group string, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	pend, err := r.c.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: stream, Group: group, Start: msgs[0].ID, End: msgs[len(msgs)-1].ID, Count: int64(len(msgs)),
	}).Result()
	if err != nil {
		return fmt.Errorf("xpending %s %s: %w", stream, group, err)
	}
	count := make(map[string]int64, len(pend))
	for _, p := range pend {
		count[p.ID] = p.RetryCount
	}
	for i := range msgs {
		msgs[i].Deliveries = count[msgs[i].ID]
	}
	return nil
}

func (r *Redis) Touch(ctx context.Context, stream, group, consumer string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	err := r.c.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: group, Consumer: consumer, MinIdle: 0, Messages: ids}).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("xclaim %s %s justid: %w", stream, group, err)
	}
	return nil
}

func (r *Redis) Pending(ctx context.Context, stream, group string) (int64, error) {
	p, err := r.c.XPending(ctx, stream, group).Result()
	if err != nil {
		return 0, fmt.Errorf("xpending %s %s: %w", stream, group, err)
	}
	return p.Count, nil
}

func (r *Redis) Lag(ctx context.Context, stream, group string) (int64, error) {
	groups, err := r.c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return 0, fmt.Errorf("xinfo groups %s: %w", stream, err)
	}
	for _, g := range groups {
		if g.Name == group {
			return g.Lag, nil // go-redis maps a NULL lag to -1
		}
	}
	return 0, fmt.Errorf("xinfo groups %s: no group %s", stream, group)
}

func (r *Redis) Group(ctx context.Context, stream, group string) (GroupInfo, error) {
	groups, err := r.c.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return GroupInfo{}, fmt.Errorf("xinfo groups %s: %w", stream, err)
	}
	for _, g := range groups {
		if g.Name != group {
			continue
		}
		gi := GroupInfo{LastDelivered: g.LastDeliveredID, Pending: g.Pending, Lag: g.Lag}
		st, err := r.c.XInfoStream(ctx, stream).Result()
		if err != nil {
			return GroupInfo{}, fmt.Errorf("xinfo stream %s: %w", stream, err)
		}
		gi.MaxDeleted, gi.FirstID, gi.Length, gi.EntriesAdded = st.MaxDeletedEntryID, st.FirstEntry.ID, st.Length, st.EntriesAdded
		// Redis' lag is EntriesAdded - entries-read where entries-read is
		// known, and its own estimate where it is not (a group created at
		// "0" on a stream trimmed before: go-redis reads that NULL as 0,
		// which would look like entries lost). Derive entries-read from
		// the lag; NULL lag (-1) leaves it unknown.
		gi.EntriesRead = -1
		if g.Lag >= 0 {
			gi.EntriesRead = st.EntriesAdded - g.Lag
		}
		if g.Pending > 0 {
			p, err := r.c.XPending(ctx, stream, group).Result()
			if err != nil {
				return GroupInfo{}, fmt.Errorf("xpending %s %s: %w", stream, group, err)
			}
			gi.Pending, gi.OldestPending = p.Count, p.Lower
		}
		return gi, nil
	}
	return GroupInfo{}, fmt.Errorf("xinfo groups %s: no group %s", stream, group)
}

func (r *Redis) Len(ctx context.Context, stream string) (int64, error) {
	n, err := r.c.XLen(ctx, stream).Result()
	if err != nil {
		return 0, fmt.Errorf("xlen %s: %w", stream, err)
	}
	return n, nil
}

func (r *Redis) Range(ctx context.Context, stream, start, end string, count int) ([]Message, error) {
	var res []redis.XMessage
	var err error
	if count > 0 {
		res, err = r.c.XRangeN(ctx, stream, start, end, int64(count)).Result()
	} else {
		res, err = r.c.XRange(ctx, stream, start, end).Result()
	}
	if err != nil {
		return nil, fmt.Errorf("xrange %s: %w", stream, err)
	}
	out := make([]Message, 0, len(res))
	for _, m := range res {
		out = append(out, toMessage(stream, m))
	}
	return out, nil
}

func (r *Redis) Delete(ctx context.Context, stream string, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	n, err := r.c.XDel(ctx, stream, ids...).Result()
	if err != nil {
		return 0, fmt.Errorf("xdel %s: %w", stream, err)
	}
	return n, nil
}

func (r *Redis) Trim(ctx context.Context, stream, minID string) (int64, error) {
	n, err := r.c.XTrimMinID(ctx, stream, minID).Result()
	if err != nil {
		return 0, fmt.Errorf("xtrim %s: %w", stream, err)
	}
	return n, nil
}

// DeletePrefix deletes every key that starts with prefix (on a cluster, on
// every master). For tests and tools: it scans the whole keyspace.
func DeletePrefix(ctx context.Context, r *Redis, prefix string) error {
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s*: %w", prefix, err)
		}
		for _, k := range keys { // one by one: keys of a cluster sit in different slots
			if err := c.Del(ctx, k).Err(); err != nil {
				return fmt.Errorf("del %s: %w", k, err)
			}
		}
		return nil
	}
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, del)
	case *redis.Client:
		return del(ctx, c)
	}
	return fmt.Errorf("delete prefix: unsupported client %T", r.c)
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close closes the client. It is safe to call more than once: later calls
// return nil, as Producer.Close and Memory.Close do, so a deferred Close
// after an explicit one does not report a spurious error.
func (r *Redis) Close() error {
	first := false
	r.closeOnce.Do(func() {
		first = true
		r.closeErr = r.c.Close()
	})
	if !first {
		return nil
	}
	return r.closeErr
}
