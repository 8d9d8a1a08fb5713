package ingest

// Per-instrument books and the resync protocol of the Feed contract: a break
// in the venue's sequence publishes one gap tick, withholds the book's ticks
// (counted as book_unsynced) and asks for a fresh snapshot.

import (
	"slices"
	"strings"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// bookState is one instrument's book and where it stands in the venue's
// sequence.
type bookState struct {
	Book
	sym    *symEntry
	synced bool   // a snapshot was applied and nothing broke the book since
	seq    uint64 // last applied venue sequence (meaning per venue)
	seqOK  bool   // seq holds a value
	depth  int    // levels per side the venue maintains (0: unbounded)
	v1     bool   // Kraken: the book came over websocket v1
	// resync: a gap was published and no snapshot applied since, so a
	// further break adds no gap tick (desync).
	resync bool
	// first (Binance): synced, and the first event after the snapshot is
	// still to come (it must straddle the snapshot's id).
	first bool
	// REST-snapshot venues (KuCoin, Gate.io, Binance): deltas received
	// before the snapshot, applied once it arrives.
	pend      []pendingDelta
	pendLv    []seqLevel
	requested bool
	chanID    int64 // venue channel id (Bitfinex)
}

// pendingDelta is one buffered delta frame: levels pendLv[from:to].
type pendingDelta struct {
	first, last uint64
	prev        uint64 // the previous frame's last (Binance USD-M pu), if hasPrev
	hasPrev     bool
	exch, recv  int64
	from, to    int
}

// dropOldest forgets the oldest buffered delta and its levels.
func (b *bookState) dropOldest() {
	k := b.pend[0].to
	b.pendLv = b.pendLv[:copy(b.pendLv, b.pendLv[k:])]
	b.pend = b.pend[:copy(b.pend, b.pend[1:])]
	for i := range b.pend {
		b.pend[i].from -= k
		b.pend[i].to -= k
	}
}

// parsedLevel is one level of a frame, parsed before the book is touched,
// so that a malformed level leaves the book as it was.
type parsedLevel struct {
	side           market.Side
	px, sz         float64
	pxText, szText []byte // the venue's text, kept for checksums
	ts             int64  // the level's own exchange time (Kraken v1), 0: the frame's
}

// seqLevel is a parsedLevel without the venue's text; pointer-free, so
// buffering many (KuCoin, Gate.io) costs the garbage collector nothing.
type seqLevel struct {
	side   market.Side
	px, sz float64
	seq    uint64 // the level's own sequence (KuCoin), 0: none
}

func (c *feedCore) book(s *symEntry) *bookState {
	b := c.books[s.symbol]
	if b == nil {
		b = &bookState{sym: s}
		c.books[s.symbol] = b
	}
	return b
}

// applyLevels applies c.lv to b and appends one tick of kind per level
// (market.KindSnapshot or market.KindBookDelta; bids keep market.SideBuy). keepText keeps the
// venue's text of the numbers in the book for checksums.
func (c *feedCore) applyLevels(out []market.Tick, b *bookState, kind market.Kind, seq uint64, recv, exch int64, keepText bool) []market.Tick {
	base := c.newTick(b.sym, kind, recv, exch)
	base.Seq = seq
	for i := range c.lv {
		l := &c.lv[i]
		var pt, st string
		if keepText && l.sz != 0 {
			pt, st = string(l.pxText), string(l.szText)
		}
		b.Set(l.side, l.px, l.sz, pt, st)
		t := base
		t.Side, t.Price, t.Size = l.side, l.px, l.sz
		if l.ts != 0 {
			t.ExchTS = l.ts
		}
		t.ComputeID()
		out = append(out, t)
	}
	return out
}

// outOfSync handles a book found out of sync by the frame whose ticks start
// at out[n]: the frame's book ticks are withdrawn (they may be wrong), one
// market.KindGap tick is appended, the book is marked unsynced and cleared until a
// fresh snapshot, and the resync is counted and logged. The caller asks for
// the snapshot.
func (c *feedCore) outOfSync(out []market.Tick, n int, b *bookState, reason string, recv, exch int64, seq uint64) []market.Tick {
	out = c.gapTick(out[:n], b.sym, recv, exch, seq)
	b.synced, b.seqOK = false, false
	b.Clear()
	c.m.Resync(reason)
	c.log.Warn("book out of sync; resnapshotting", "symbol", b.sym.symbol, "reason", reason)
	return out
}

// resyncCore is the feedCore of a feed that implements Resyncer (its
// resnapshot is set); the other feeds embed feedCore alone, so that the
// connection manager publishes a plain gap for them.
type resyncCore struct{ feedCore }

// Resync marks symbol's book out of sync (one market.KindGap tick appended to
// out) and asks for a fresh snapshot; the connection manager calls it when
// it had to drop book ticks of the instrument. An invalid symbol changes
// nothing.
func (c *resyncCore) Resync(recv int64, symbol, reason string, out []market.Tick) []market.Tick {
	s, perr := c.sym([]byte(symbol), "symbol")
	if perr != nil {
		return out
	}
	b := c.book(s)
	out = c.outOfSync(out, len(out), b, reason, recv, 0, 0)
	c.m.Ticks(market.KindGap, 1)
	c.resnapshot(b)
	return out
}

// withheld counts a book frame not published because its book awaits a
// snapshot.
func (c *feedCore) withheld() { c.m.Ignored("book_unsynced") }

func (c *feedCore) gapTick(out []market.Tick, s *symEntry, recv, exch int64, seq uint64) []market.Tick {
	g := c.newTick(s, market.KindGap, recv, exch)
	g.Seq = seq
	g.ComputeID()
	return append(out, g)
}

// desync is outOfSync for the feeds that publish one gap per break: the
// first time since the last snapshot it appends the market.KindGap tick; it always
// forgets the book and any buffered deltas. The caller asks for a snapshot.
func (c *feedCore) desync(b *bookState, reason string, recv int64, seq uint64, out []market.Tick) []market.Tick {
	b.Clear()
	b.pend, b.pendLv = b.pend[:0], b.pendLv[:0]
	b.requested = false
	if b.resync {
		return out
	}
	b.resync = true
	return c.outOfSync(out, len(out), b, reason, recv, 0, seq)
}

// replaceBook replaces b's book with lv and appends one market.KindSnapshot tick
// per level (bids first, best first). It reports false, and appends
// nothing, when the snapshot is crossed.
func (c *feedCore) replaceBook(b *bookState, lv []seqLevel, recv, exch int64, seq uint64, out []market.Tick) ([]market.Tick, bool) {
	b.Clear()
	for i := range lv {
		if l := &lv[i]; l.sz != 0 {
			b.Set(l.side, l.px, l.sz, "", "")
		}
	}
	if b.depth > 0 {
		b.Truncate(b.depth)
	}
	if b.Crossed() {
		b.Clear()
		return out, false
	}
	b.synced, b.resync = true, false
	b.seq = seq
	base := c.newTick(b.sym, market.KindSnapshot, recv, exch)
	base.Seq = seq
	for _, side := range [2]market.Side{market.SideBuy, market.SideSell} {
		for _, l := range b.Side(side) {
			t := base
			t.Side, t.Price, t.Size = side, l.Px, l.Sz
			t.ComputeID()
			out = append(out, t)
		}
	}
	return out, true
}

// applyDelta applies lv to b's book and appends one market.KindBookDelta tick per
// level. It reports false when the result is crossed (the caller desyncs;
// the ticks appended are to be dropped).
func (c *feedCore) applyDelta(b *bookState, lv []seqLevel, recv, exch int64, seq uint64, out []market.Tick) ([]market.Tick, bool) {
	base := c.newTick(b.sym, market.KindBookDelta, recv, exch)
	base.Seq = seq
	for i := range lv {
		l := &lv[i]
		b.Set(l.side, l.px, l.sz, "", "")
		t := base
		t.Side, t.Price, t.Size = l.side, l.px, l.sz
		t.ComputeID()
		out = append(out, t)
	}
	if b.depth > 0 {
		b.Truncate(b.depth)
	}
	b.seq = seq
	return out, !b.Crossed()
}

// sortedBooks returns the books ordered by symbol, for handling them all in
// a deterministic order.
func (c *feedCore) sortedBooks() []*bookState {
	out := make([]*bookState, 0, len(c.books))
	for _, b := range c.books {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *bookState) int { return strings.Compare(a.sym.symbol, b.sym.symbol) })
	return out
}

// snapshotFailed asks again for a REST snapshot whose body was unusable.
func (c *feedCore) snapshotFailed(req SnapshotRequest, err error, request func(*bookState)) {
	if err == nil {
		return
	}
	if b := c.books[req.Symbol]; b != nil && !b.synced {
		b.requested = false
		request(b)
	}
}

// levelArray parses [[price, size, ...], ...] (strings) into c.lv with
// side; extra elements are ignored.
func (c *feedCore) levelArray(f *jfield, side market.Side, field string) *ParseError {
	return c.levelRows(f, side, field, false)
}

// levelRows is levelArray; withTime also requires each level's third
// element, a decimal seconds string (Kraken v1), kept as the level's time.
func (c *feedCore) levelRows(f *jfield, side market.Side, field string, withTime bool) *ParseError {
	if f.typ == simdjson.TypeNone {
		return nil
	}
	it, perr := f.arrayIter(field)
	if perr != nil {
		return perr
	}
	for {
		el, ok := next(&it)
		if !ok {
			return nil
		}
		li, perr := el.arrayIter(field)
		if perr != nil {
			return perr
		}
		pf, ok1 := next(&li)
		sf, ok2 := next(&li)
		var tf jfield
		ok3 := true
		if withTime {
			tf, ok3 = next(&li)
		}
		if !ok1 || !ok2 || !ok3 {
			return &ParseError{Reason: ReasonBadType, Field: field}
		}
		px, pt, perr := pf.dec(field)
		if perr != nil {
			return perr
		}
		sz, st, perr := sf.dec(field)
		if perr != nil {
			return perr
		}
		var ts int64
		if withTime {
			tb, perr := tf.str(field)
			if perr != nil {
				return perr
			}
			if ts, ok = parseSecondsDecimal(tb); !ok {
				return &ParseError{Reason: ReasonBadNumber, Field: field}
			}
		}
		c.lv = append(c.lv, parsedLevel{side: side, px: px, sz: sz, pxText: pt, szText: st, ts: ts})
	}
}

// ---- numbers and times ----
