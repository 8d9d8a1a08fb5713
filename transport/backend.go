// Package transport is signald's embeddable stream runtime: producers append
// to streams, consumer groups read them with at-least-once delivery, and an
// entry is acknowledged only after the handler that consumed it returned
// success.
//
// Two backends share one set of semantics (pending lists, claims, delivery
// counts): Redis Streams through go-redis, and an in-process memory backend for
// embedded use and tests. The conformance tests in this package run against
// both.
package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Message is one stream entry as delivered to a consumer.
type Message struct {
	Stream  string
	ID      string // entry id, "<ms>-<seq>"
	Payload []byte
	// Deliveries is how many times the entry has been delivered to the group,
	// this delivery included, where the backend reports it (0 = unknown).
	Deliveries int64
	// For lists the only groups that handle the entry: it is a dead
	// letter replayed for the groups that failed it (ReplayDeadLetter).
	// Other groups acknowledge it unseen; a handler failing it again
	// dead-letters it as final. Empty for every other entry.
	For []string
}

// Backend is the storage a Producer and Consumer run on. Each call concerns
// one stream, so every backend works on Redis Cluster, where one command may
// only touch one hash slot.
type Backend interface {
	// Add appends payloads to stream in order and returns their ids.
	Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error)
	// CreateGroup creates group on stream (and the stream if missing), reading
	// from start ("0" = everything, "$" = only new entries). It is not an error
	// if the group exists.
	CreateGroup(ctx context.Context, stream, group, start string) error
	// ReadGroup reads up to count entries for consumer. start ">" reads new
	// entries (blocking up to block when there are none; block <= 0 does not
	// block); any other id reads the consumer's own pending entries after it.
	ReadGroup(ctx context.Context, stream, group, consumer, start string, count int, block time.Duration) ([]Message, error)
	// Ack acknowledges ids, removing them from the group's pending list.
	Ack(ctx context.Context, stream, group string, ids ...string) error
	// Claim transfers up to count entries idle for at least minIdle to
	// consumer and returns them, plus the ids of pending entries that no longer
	// exist in the stream (trimmed or deleted), which it removes from the
	// pending list.
	Claim(ctx context.Context, stream, group, consumer string, minIdle time.Duration, count int) (msgs []Message, deleted []string, err error)
	// Touch resets the idle time of consumer's pending entries ids without
	// counting a delivery (XCLAIM ... JUSTID), so that work still in progress
	// is not reclaimed by another consumer. Entries no longer pending are
	// ignored.
	Touch(ctx context.Context, stream, group, consumer string, ids ...string) error
	// Pending returns the number of entries delivered to group and not yet
	// acknowledged.
	Pending(ctx context.Context, stream, group string) (int64, error)
	// Lag returns how many entries of stream group has not been delivered
	// yet, or -1 when the backend cannot tell (Redis reports NULL after
	// deletions in the unread range).
	Lag(ctx context.Context, stream, group string) (int64, error)
	// Group describes group's position on stream.
	Group(ctx context.Context, stream, group string) (GroupInfo, error)
	// Len returns the number of entries in the stream.
	Len(ctx context.Context, stream string) (int64, error)
	// Range reads entries with start <= id <= end ("-" and "+" are the ends).
	Range(ctx context.Context, stream, start, end string, count int) ([]Message, error)
	// Delete removes the entries with the given ids (XDEL) and returns how
	// many existed.
	Delete(ctx context.Context, stream string, ids ...string) (int64, error)
	// Trim removes entries with ids below minID (XTRIM MINID) and returns how
	// many it removed.
	Trim(ctx context.Context, stream, minID string) (int64, error)
	Close() error
}

// GroupInfo is a consumer group's position on a stream.
type GroupInfo struct {
	LastDelivered string // id of the last entry delivered to the group ("0-0": none)
	Pending       int64  // delivered, not yet acknowledged
	OldestPending string // lowest pending id; "" when nothing is pending
	Lag           int64  // not yet delivered; -1 when the backend cannot tell
	// Stream-wide counters, for telling whether entries the group never
	// read were removed: MaxDeleted is the highest id deleted with XDEL
	// ("0-0": none; Redis does not count XTRIM there), FirstID the first
	// entry ("" when empty), Length the entries left, EntriesAdded all ever
	// added, and EntriesRead how many of them the group has read (-1
	// unknown).
	MaxDeleted   string
	FirstID      string
	Length       int64
	EntriesAdded int64
	EntriesRead  int64
}

// SkippedUnread reports whether entries the group never read were removed
// from the stream: deleted above its position, or trimmed so that fewer
// entries remain after it than it has yet to read.
func (gi GroupInfo) SkippedUnread() bool {
	last, err := parseID(gi.LastDelivered)
	if err != nil {
		return false
	}
	if md, err := parseID(gi.MaxDeleted); err == nil && last.less(md) {
		return true
	}
	first, err := parseID(gi.FirstID)
	if err != nil || gi.EntriesRead < 0 || !last.less(first) {
		return false // trimming only removes from the head, up to the group's position
	}
	return gi.Length < gi.EntriesAdded-gi.EntriesRead
}

// ErrClosed is returned by operations on a closed backend, producer or consumer.
var ErrClosed = errors.New("transport: closed")

// entryID is a parsed stream id.
type entryID struct{ ms, seq uint64 }

func parseID(s string) (entryID, error) {
	ms, seq, found := strings.Cut(s, "-")
	a, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return entryID{}, fmt.Errorf("bad stream id %q", s)
	}
	var b uint64
	if found {
		if b, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return entryID{}, fmt.Errorf("bad stream id %q", s)
		}
	}
	return entryID{a, b}, nil
}

func (e entryID) String() string {
	return strconv.FormatUint(e.ms, 10) + "-" + strconv.FormatUint(e.seq, 10)
}

func (e entryID) less(o entryID) bool { return e.ms < o.ms || (e.ms == o.ms && e.seq < o.seq) }
