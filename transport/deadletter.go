package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// DeadLetter is an entry moved out of its stream because it can never be
// processed (undecodable, or failing too often), with why and where from, so
// that a person can look at it and replay it once the cause is fixed.
type DeadLetter struct {
	Stream     string    `json:"stream"` // where it came from
	ID         string    `json:"id"`     // its id there
	Group      string    `json:"group"`  // the first group that gave up on it (DeadLetterGroups lists all)
	Reason     string    `json:"reason"`
	Deliveries int64     `json:"deliveries,omitempty"`
	Time       time.Time `json:"time"`
	Payload    []byte    `json:"payload"` // the original entry, base64 in JSON
	// Final is set when the entry failed again after a replay: replaying
	// it once more would only loop, so ReplayDeadLetter refuses it unless
	// forced.
	Final bool `json:"final,omitempty"`
}

// MarshalBinary encodes the dead letter as JSON, readable with redis-cli.
func (d DeadLetter) MarshalBinary() ([]byte, error) { return json.Marshal(d) }

// ParseDeadLetter decodes what MarshalBinary produced.
func ParseDeadLetter(b []byte) (DeadLetter, error) {
	var d DeadLetter
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("dead letter: %w", err)
	}
	if d.Stream == "" {
		return d, fmt.Errorf("dead letter: no original stream")
	}
	return d, nil
}

// DeadLetterBackend is implemented by backends that dead-letter an entry
// once, whatever number of groups give up on it, and that can put a dead
// letter back for the groups that failed it only. Redis and Memory do; with
// another Backend each group dead-letters on its own and a replay reaches
// every group.
type DeadLetterBackend interface {
	// AddDeadLetter appends body (d, encoded) to dlq unless it was already
	// appended for d.Stream and d.ID, and records d.Group among the groups
	// that gave up on that entry. The record expires after ttl. added
	// reports whether this call appended it.
	AddDeadLetter(ctx context.Context, dlq string, d DeadLetter, body []byte, ttl time.Duration) (added bool, err error)
	// DeadLetterGroups lists the groups that gave up on stream's entry id,
	// sorted (nil once the record expired).
	DeadLetterGroups(ctx context.Context, dlq, stream, id string) ([]string, error)
	// AddFor appends payload to stream for groups only: consumers of other
	// groups acknowledge it without handing it to their handler
	// (Message.For).
	AddFor(ctx context.Context, stream string, payload []byte, groups []string) (string, error)
}

// deadLetterKey names the record of which groups gave up on an entry. It
// shares dlq's hash slot, so one transaction covers both on Redis Cluster.
func deadLetterKey(dlq, stream, id string) string {
	tag := dlq
	if i := strings.IndexByte(dlq, '{'); i >= 0 {
		if j := strings.IndexByte(dlq[i+1:], '}'); j > 0 {
			tag = "" // dlq already has a hash tag: the key inherits it
		}
	}
	if tag != "" {
		return "{" + dlq + "}:seen:" + stream + ":" + id
	}
	return dlq + ":seen:" + stream + ":" + id
}

// ErrFinal is returned by ReplayDeadLetter for a dead letter that already
// failed again after a replay.
var ErrFinal = errors.New("failed again after a replay")

// ReplayOptions configures ReplayDeadLetter. The zero value works.
type ReplayOptions struct {
	// Force replays final dead letters too (ErrFinal otherwise).
	Force bool
	// Logger may be nil.
	Logger *slog.Logger
}

// ReplayDeadLetter puts the dead letter d (entry dlqID of dlq) back on its
// original stream for the groups that gave up on it only, marked so that a
// second failure dead-letters it as final, then removes it from dlq
// (appended first: a crash in between replays it twice, never zero times).
// It returns the groups it was replayed for (nil: every group, when the
// backend does not record them).
func ReplayDeadLetter(ctx context.Context, b Backend, dlq, dlqID string, d DeadLetter, opts ReplayOptions) ([]string, error) {
	if d.Final && !opts.Force {
		return nil, fmt.Errorf("dead letter %s (%s %s): %w; fix the cause, then replay it with force", dlqID, d.Stream, d.ID, ErrFinal)
	}
	var groups []string
	if db, ok := b.(DeadLetterBackend); ok {
		var err error
		if groups, err = db.DeadLetterGroups(ctx, dlq, d.Stream, d.ID); err != nil {
			return nil, fmt.Errorf("dead letter %s: %w", dlqID, err)
		}
		if len(groups) == 0 && d.Group != "" {
			groups = []string{d.Group} // the record expired
		}
		if _, err := db.AddFor(ctx, d.Stream, d.Payload, groups); err != nil {
			return nil, fmt.Errorf("replay dead letter %s: %w", dlqID, err)
		}
	} else if _, err := b.Add(ctx, d.Stream, [][]byte{d.Payload}); err != nil {
		return nil, fmt.Errorf("replay dead letter %s: %w", dlqID, err)
	}
	if _, err := b.Delete(ctx, dlq, dlqID); err != nil {
		return groups, fmt.Errorf("replay dead letter %s: appended, but not removed from %s: %w", dlqID, dlq, err)
	}
	if opts.Logger != nil {
		opts.Logger.Info("transport: dead letter replayed", "dlq_id", dlqID, "stream", d.Stream, "id", d.ID, "groups", groups)
	}
	return groups, nil
}

// forGroup reports whether m is to be handled by group.
func (m Message) forGroup(group string) bool {
	return len(m.For) == 0 || slices.Contains(m.For, group)
}

func splitGroups(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
