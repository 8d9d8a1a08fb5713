package transport

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Memory is an in-process backend with the semantics of Redis Streams
// consumer groups: ids, pending lists per consumer, delivery counts, claims.
// It is for embedded use and tests; nothing survives the process.
type Memory struct {
	mu      sync.Mutex
	streams map[string]*memStream
	closed  bool
	now     func() time.Time
	marks   map[string]*memMark // dead-letter records, by deadLetterKey
}

type memEntry struct {
	id      entryID
	payload []byte
	groups  []string // AddFor's groups
}

type memMark struct {
	groups  map[string]bool
	expires time.Time
}

type memPending struct {
	consumer   string
	delivered  time.Time
	deliveries int64
}

type memGroup struct {
	lastDelivered entryID
	read          int64
	pending       map[entryID]*memPending
}

type memStream struct {
	entries    []memEntry // ascending ids
	lastID     entryID
	maxDeleted entryID // highest id removed; like Redis' XDEL-only counter it stays 0 for trims
	added      int64
	groups     map[string]*memGroup
	// notify is closed and replaced whenever entries are added, waking
	// blocked readers.
	notify chan struct{}
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty in-process backend.
func NewMemory() *Memory {
	return &Memory{streams: map[string]*memStream{}, now: time.Now, marks: map[string]*memMark{}}
}

func (m *Memory) stream(name string) *memStream {
	s := m.streams[name]
	if s == nil {
		s = &memStream{groups: map[string]*memGroup{}, notify: make(chan struct{})}
		m.streams[name] = s
	}
	return s
}

func (m *Memory) Add(ctx context.Context, stream string, payloads [][]byte) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	ids := make([]string, len(payloads))
	for i, p := range payloads {
		ids[i] = m.appendLocked(stream, p, nil)
	}
	if len(payloads) > 0 {
		m.wakeLocked(stream)
	}
	return ids, nil
}

// addLocked appends one entry and wakes blocked readers; m.mu is held.
func (m *Memory) addLocked(stream string, payload []byte, groups []string) string {
	id := m.appendLocked(stream, payload, groups)
	m.wakeLocked(stream)
	return id
}

func (m *Memory) wakeLocked(stream string) {
	s := m.stream(stream)
	close(s.notify)
	s.notify = make(chan struct{})
}

func (m *Memory) appendLocked(stream string, payload []byte, groups []string) string {
	s := m.stream(stream)
	ms := uint64(m.now().UnixMilli())
	id := entryID{ms: ms}
	if ms <= s.lastID.ms {
		id = entryID{ms: s.lastID.ms, seq: s.lastID.seq + 1}
	}
	s.lastID = id
	s.entries = append(s.entries, memEntry{id: id, payload: append([]byte(nil), payload...), groups: groups})
	s.added++
	return id.String()
}

var _ DeadLetterBackend = (*Memory)(nil)

func (m *Memory) AddDeadLetter(ctx context.Context, dlq string, d DeadLetter, body []byte, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	key := deadLetterKey(dlq, d.Stream, d.ID)
	now := m.now()
	mk := m.marks[key]
	if mk != nil && !now.Before(mk.expires) {
		mk = nil
	}
	added := mk == nil
	if added {
		mk = &memMark{groups: map[string]bool{}}
		m.marks[key] = mk
		m.addLocked(dlq, body, nil)
	}
	mk.groups[d.Group] = true
	mk.expires = now.Add(ttl)
	return added, nil
}

func (m *Memory) DeadLetterGroups(ctx context.Context, dlq, stream, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mk := m.marks[deadLetterKey(dlq, stream, id)]
	if mk == nil || !m.now().Before(mk.expires) {
		return nil, nil
	}
	var out []string
	for g := range mk.groups {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, nil
}

func (m *Memory) AddFor(ctx context.Context, stream string, payload []byte, groups []string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	return m.addLocked(stream, payload, append([]string(nil), groups...)), nil
}

// TrimMaxLen keeps the newest maxLen entries of stream, as XTRIM MAXLEN does.
func (m *Memory) TrimMaxLen(ctx context.Context, stream string, maxLen int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil || int64(len(s.entries)) <= maxLen {
		return 0, nil
	}
	n := int64(len(s.entries)) - maxLen
	s.entries = append([]memEntry(nil), s.entries[n:]...)
	return n, nil
}

func (m *Memory) CreateGroup(ctx context.Context, stream, group, start string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s := m.stream(stream)
	if _, ok := s.groups[group]; ok {
		return nil
	}
	g := &memGroup{pending: map[entryID]*memPending{}}
	switch start {
	case "$":
		g.lastDelivered = s.lastID
	case "0", "0-0", "":
	default:
		id, err := parseID(start)
		if err != nil {
			return fmt.Errorf("xgroup create %s %s: %w", stream, group, err)
		}
		g.lastDelivered = id
	}
	// Entries before the start, trimmed ones included, count as read, as
	// Redis estimates for a new group.
	g.read = s.added - int64(len(s.entries)-s.search(g.lastDelivered))
	s.groups[group] = g
	return nil
}

// search returns the index of the first entry with id > after.
func (s *memStream) search(after entryID) int {
	return sort.Search(len(s.entries), func(i int) bool { return after.less(s.entries[i].id) })
}

func (s *memStream) lookup(id entryID) (memEntry, bool) {
	i := sort.Search(len(s.entries), func(i int) bool { return !s.entries[i].id.less(id) })
	if i < len(s.entries) && s.entries[i].id == id {
		return s.entries[i], true
	}
	return memEntry{}, false
}

func (m *Memory) ReadGroup(ctx context.Context, stream, group, consumer, start string, count int, block time.Duration) ([]Message, error) {
	if count <= 0 {
		count = 1
	}
	var deadline <-chan time.Time
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		s := m.streams[stream]
		var g *memGroup
		if s != nil {
			g = s.groups[group]
		}
		if g == nil {
			m.mu.Unlock()
			return nil, fmt.Errorf("xreadgroup %s %s: NOGROUP no such group", stream, group)
		}
		now := m.now()
		if start != ">" {
			after, err := parseID(start)
			if err != nil {
				m.mu.Unlock()
				return nil, fmt.Errorf("xreadgroup %s %s: %w", stream, group, err)
			}
			out := m.ownPending(s, g, stream, consumer, after, count, now)
			m.mu.Unlock()
			return out, nil
		}
		i := s.search(g.lastDelivered)
		if i < len(s.entries) {
			var out []Message
			for ; i < len(s.entries) && len(out) < count; i++ {
				e := s.entries[i]
				g.pending[e.id] = &memPending{consumer: consumer, delivered: now, deliveries: 1}
				g.lastDelivered = e.id
				g.read++
				out = append(out, Message{Stream: stream, ID: e.id.String(), Payload: e.payload, Deliveries: 1, For: e.groups})
			}
			m.mu.Unlock()
			return out, nil
		}
		if block <= 0 {
			m.mu.Unlock()
			return nil, nil
		}
		wait := s.notify
		m.mu.Unlock()
		if deadline == nil {
			t := time.NewTimer(block)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-wait:
		case <-deadline:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ownPending re-delivers consumer's pending entries with id > after, as
// XREADGROUP with an explicit id does. Entries trimmed from the stream come
// back with a nil payload, as in Redis.
func (m *Memory) ownPending(s *memStream, g *memGroup, stream, consumer string, after entryID, count int, now time.Time) []Message {
	ids := make([]entryID, 0, len(g.pending))
	for id, p := range g.pending {
		if p.consumer == consumer && after.less(id) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].less(ids[j]) })
	if len(ids) > count {
		ids = ids[:count]
	}
	out := make([]Message, 0, len(ids))
	for _, id := range ids {
		p := g.pending[id]
		p.deliveries++
		p.delivered = now
		e, _ := s.lookup(id)
		out = append(out, Message{Stream: stream, ID: id.String(), Payload: e.payload, Deliveries: p.deliveries, For: e.groups})
	}
	return out
}

func (m *Memory) Ack(ctx context.Context, stream, group string, ids ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return nil // as XACK: unknown group acknowledges nothing
	}
	g := s.groups[group]
	for _, v := range ids {
		id, err := parseID(v)
		if err != nil {
			return fmt.Errorf("xack %s %s: %w", stream, group, err)
		}
		delete(g.pending, id)
	}
	return nil
}

func (m *Memory) Claim(ctx context.Context, stream, group, consumer string, minIdle time.Duration, count int) ([]Message, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, ErrClosed
	}
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return nil, nil, fmt.Errorf("xautoclaim %s %s: NOGROUP no such group", stream, group)
	}
	g := s.groups[group]
	now := m.now()
	ids := make([]entryID, 0)
	for id, p := range g.pending {
		if now.Sub(p.delivered) >= minIdle {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].less(ids[j]) })
	if count > 0 && len(ids) > count {
		ids = ids[:count]
	}
	var msgs []Message
	var deleted []string
	for _, id := range ids {
		e, ok := s.lookup(id)
		if !ok {
			delete(g.pending, id)
			deleted = append(deleted, id.String())
			continue
		}
		p := g.pending[id]
		p.consumer = consumer
		p.delivered = now
		p.deliveries++
		msgs = append(msgs, Message{Stream: stream, ID: id.String(), Payload: e.payload, Deliveries: p.deliveries, For: e.groups})
	}
	return msgs, deleted, nil
}

func (m *Memory) Touch(ctx context.Context, stream, group, consumer string, ids ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return fmt.Errorf("xclaim %s %s: NOGROUP no such group", stream, group)
	}
	g := s.groups[group]
	now := m.now()
	for _, v := range ids {
		id, err := parseID(v)
		if err != nil {
			return fmt.Errorf("xclaim %s %s: %w", stream, group, err)
		}
		if p := g.pending[id]; p != nil {
			p.consumer = consumer
			p.delivered = now
		}
	}
	return nil
}

func (m *Memory) Pending(ctx context.Context, stream, group string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return 0, fmt.Errorf("xpending %s %s: NOGROUP no such group", stream, group)
	}
	return int64(len(s.groups[group].pending)), nil
}

func (m *Memory) Lag(ctx context.Context, stream, group string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return 0, fmt.Errorf("xinfo groups %s: no group %s", stream, group)
	}
	return int64(len(s.entries) - s.search(s.groups[group].lastDelivered)), nil
}

func (m *Memory) Group(ctx context.Context, stream, group string) (GroupInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil || s.groups[group] == nil {
		return GroupInfo{}, fmt.Errorf("xinfo groups %s: no group %s", stream, group)
	}
	g := s.groups[group]
	gi := GroupInfo{LastDelivered: g.lastDelivered.String(), Pending: int64(len(g.pending)),
		Lag: int64(len(s.entries) - s.search(g.lastDelivered)), MaxDeleted: s.maxDeleted.String(),
		Length: int64(len(s.entries)), EntriesAdded: s.added, EntriesRead: g.read}
	if len(s.entries) > 0 {
		gi.FirstID = s.entries[0].id.String()
	}
	var oldest *entryID
	for id := range g.pending {
		if oldest == nil || id.less(*oldest) {
			oldest = &id
		}
	}
	if oldest != nil {
		gi.OldestPending = oldest.String()
	}
	return gi, nil
}

func (m *Memory) Len(ctx context.Context, stream string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[stream]; s != nil {
		return int64(len(s.entries)), nil
	}
	return 0, nil
}

func (m *Memory) Range(ctx context.Context, stream, start, end string, count int) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil {
		return nil, nil
	}
	lo, hi := entryID{}, entryID{ms: ^uint64(0), seq: ^uint64(0)}
	var err error
	if start != "-" {
		if lo, err = parseID(start); err != nil {
			return nil, fmt.Errorf("xrange %s: %w", stream, err)
		}
	}
	if end != "+" {
		if hi, err = parseID(end); err != nil {
			return nil, fmt.Errorf("xrange %s: %w", stream, err)
		}
		if !stringsHasSeq(end) {
			hi.seq = ^uint64(0) // "ms" alone means the whole millisecond, as in Redis
		}
	}
	var out []Message
	for i := sort.Search(len(s.entries), func(i int) bool { return !s.entries[i].id.less(lo) }); i < len(s.entries); i++ {
		e := s.entries[i]
		if hi.less(e.id) || (count > 0 && len(out) >= count) {
			break
		}
		out = append(out, Message{Stream: stream, ID: e.id.String(), Payload: e.payload, For: e.groups})
	}
	return out, nil
}

func stringsHasSeq(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '-' {
			return true
		}
	}
	return false
}

// Delete removes entries by id, as XDEL does (which, unlike a trim, raises
// the stream's max deleted id).
func (m *Memory) Delete(ctx context.Context, stream string, ids ...string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil {
		return 0, nil
	}
	var n int64
	for _, v := range ids {
		id, err := parseID(v)
		if err != nil {
			return n, fmt.Errorf("xdel %s: %w", stream, err)
		}
		if _, ok := s.lookup(id); !ok {
			continue
		}
		i := sort.Search(len(s.entries), func(i int) bool { return !s.entries[i].id.less(id) })
		s.entries = append(s.entries[:i:i], s.entries[i+1:]...)
		if s.maxDeleted.less(id) {
			s.maxDeleted = id
		}
		n++
	}
	return n, nil
}

// Trim removes entries with ids below minID, as XTRIM MINID does.
func (m *Memory) Trim(ctx context.Context, stream, minID string) (int64, error) {
	id, err := parseID(minID)
	if err != nil {
		return 0, fmt.Errorf("xtrim %s: %w", stream, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.streams[stream]
	if s == nil {
		return 0, nil
	}
	i := sort.Search(len(s.entries), func(i int) bool { return !s.entries[i].id.less(id) })
	s.entries = append([]memEntry(nil), s.entries[i:]...)
	return int64(i), nil
}

func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		for _, s := range m.streams {
			close(s.notify)
			s.notify = make(chan struct{})
		}
	}
	return nil
}
