package api

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/signald-dev/signald/market"
)

// signalRing keeps the latest signals for /v1/signals, in arrival order.
// When full, the oldest is evicted; the ring remembers how many were and
// the newest event time among them, so a query can tell that it no longer
// reaches back far enough.
type signalRing struct {
	buf     []ringEntry
	start   int    // index of the oldest
	n       int    // entries held
	next    uint64 // sequence number of the next signal (first is 1)
	evicted uint64
	// evictedMaxTime is the largest Time among evicted signals.
	evictedMaxTime int64
}

type ringEntry struct {
	seq uint64
	sig market.Signal
}

func newSignalRing(capacity int) *signalRing {
	return &signalRing{buf: make([]ringEntry, capacity), next: 1, evictedMaxTime: math.MinInt64}
}

// add appends s and reports whether an older signal was evicted for it.
func (r *signalRing) add(s market.Signal) (evicted bool) {
	e := ringEntry{r.next, s}
	r.next++
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = e
		r.n++
		return false
	}
	old := &r.buf[r.start]
	r.evicted++
	r.evictedMaxTime = max(r.evictedMaxTime, old.sig.Time)
	*old = e
	r.start = (r.start + 1) % len(r.buf)
	return true
}

func (r *signalRing) at(i int) *ringEntry { return &r.buf[(r.start+i)%len(r.buf)] }

// signalQuery is a parsed /v1/signals request.
type signalQuery struct {
	since    int64 // ns; valid when hasSince
	hasSince bool
	after    uint64 // sequence number; valid when hasAfter
	hasAfter bool
	limit    int
}

const defaultSignalLimit = 100

func parseSignalQuery(q url.Values, capacity int) (signalQuery, error) {
	sq := signalQuery{limit: defaultSignalLimit}
	if s := q.Get("since"); s != "" {
		t, err := ParseTime(s)
		if err != nil {
			return sq, fmt.Errorf("since: %w", err)
		}
		sq.since, sq.hasSince = t.UnixNano(), true
	}
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return sq, fmt.Errorf("after %q: want the seq of a signal (an integer), as in a previous response's last_seq", s)
		}
		sq.after, sq.hasAfter = n, true
	}
	if sq.hasSince && sq.hasAfter {
		return sq, fmt.Errorf("since and after: give one of them")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > capacity {
			return sq, fmt.Errorf("limit %q: want 1-%d", s, capacity)
		}
		sq.limit = n
	}
	return sq, nil
}

// signalsResponse is the body of /v1/signals.
type signalsResponse struct {
	// Signals in arrival order (oldest first), each with its seq.
	Signals []seqSignal `json:"signals"`
	// Complete is false when the ring no longer reaches back to since (or
	// after): signals the query asks for were evicted. Evicted and
	// EvictedThrough then say how many signals were evicted in all and the
	// newest event time among them.
	Complete       bool   `json:"complete"`
	Evicted        uint64 `json:"evicted"`
	EvictedThrough *int64 `json:"evicted_through,omitempty"`
	// More is true when more signals match than limit allowed: older ones
	// without since/after, newer ones with (ask again with after=last_seq).
	More     bool   `json:"more"`
	LastSeq  uint64 `json:"last_seq"`              // seq of the last signal returned; 0 if none
	Capacity int    `json:"capacity"`              // of the ring
	Oldest   *int64 `json:"oldest_time,omitempty"` // event time of the oldest signal held
}

type seqSignal struct {
	Seq uint64 `json:"seq"`
	market.Signal
}

// query answers q. Without since or after: the newest limit signals. With
// since: the first limit signals whose event time is at or after since.
// With after: the first limit signals whose seq is greater.
func (r *signalRing) query(q signalQuery) signalsResponse {
	resp := signalsResponse{Signals: []seqSignal{}, Complete: true, Evicted: r.evicted, Capacity: len(r.buf)}
	if r.evicted > 0 {
		t := r.evictedMaxTime
		resp.EvictedThrough = &t
	}
	if r.n > 0 {
		t := r.at(0).sig.Time
		resp.Oldest = &t
	}
	var match []int
	for i := range r.n {
		e := r.at(i)
		switch {
		case q.hasSince && e.sig.Time < q.since:
		case q.hasAfter && e.seq <= q.after:
		default:
			match = append(match, i)
		}
	}
	switch {
	case q.hasSince:
		resp.Complete = r.evicted == 0 || r.evictedMaxTime < q.since
	case q.hasAfter:
		// The first signal after `after` is seq after+1; it must still be held.
		resp.Complete = r.evicted == 0 || (r.n > 0 && r.at(0).seq <= q.after+1) || (r.n == 0 && r.next <= q.after+1)
	}
	if len(match) > q.limit {
		resp.More = true
		if q.hasSince || q.hasAfter {
			match = match[:q.limit]
		} else {
			match = match[len(match)-q.limit:]
		}
	}
	for _, i := range match {
		e := r.at(i)
		resp.Signals = append(resp.Signals, seqSignal{e.seq, e.sig})
		resp.LastSeq = e.seq
	}
	return resp
}

// ParseTime parses a time as the API and the command line take it: RFC
// 3339, or integer nanoseconds since the epoch; "" is the zero time.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(0, n).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2024-08-08T23:54:00Z) or nanoseconds since the epoch", s)
	}
	return t, nil
}
