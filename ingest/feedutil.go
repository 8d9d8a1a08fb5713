package ingest

// Code shared by the venue feeds other than Binance: field access on the
// simdjson-go tape (the same tape on both JSON paths), symbol caching,
// per-instrument books with the resync protocol of the Feed contract, and
// number and time parsing.

import (
	"bytes"
	"hash/crc32"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// feedCore is the state every feed of this file set keeps.
type feedCore struct {
	venue     string
	cfg       FeedConfig
	log       *slog.Logger
	m         *FeedMetrics
	jp        *JSONParser
	normalize func(string) (string, bool)

	syms  map[string]*symEntry
	books map[string]*bookState // by venue symbol (or book key)

	outbox [][]byte
	snaps  []SnapshotRequest

	lv   []parsedLevel // scratch: a frame's levels, parsed before any is applied
	sl   []seqLevel    // the same, for the feeds that keep no text (replaceBook, applyDelta)
	root jfield        // scratch: the frame's root (run; on the stack it would escape)

	// resnapshot asks for a fresh snapshot of b (the venue's way).
	resnapshot func(b *bookState)
}

// symEntry is a venue symbol and its normalized instrument.
type symEntry struct {
	symbol, instrument string
	normalized         bool
}

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
	// REST-snapshot venues (KuCoin, Gate.io): deltas received before the
	// snapshot, applied once it arrives.
	pend      []pendingDelta
	pendLv    []seqLevel
	requested bool
	chanID    int64 // venue channel id (Bitfinex)
}

// pendingDelta is one buffered delta frame: levels pendLv[from:to].
type pendingDelta struct {
	first, last uint64
	exch, recv  int64
	from, to    int
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

func newFeedCore(venue string, cfg FeedConfig, normalize func(string) (string, bool)) feedCore {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := feedCore{
		venue:     venue,
		cfg:       cfg,
		log:       log.With("venue", venue),
		m:         cfg.Metrics.Feed(venue),
		jp:        NewJSONParser(cfg.ForceFallback),
		normalize: normalize,
		syms:      make(map[string]*symEntry),
		books:     make(map[string]*bookState),
	}
	if cfg.Metrics != nil {
		path := "fallback"
		if c.jp.SIMD() {
			path = "simdjson"
		}
		cfg.Metrics.parserPath.WithLabelValues(venue, path).Set(1)
	}
	return c
}

func (c *feedCore) reset() {
	clear(c.books)
	c.outbox = c.outbox[:0]
	c.snaps = c.snaps[:0]
}

// Outbox and SnapshotRequests implement the Feed methods of the same names.
func (c *feedCore) Outbox(dst [][]byte) [][]byte {
	dst = append(dst, c.outbox...)
	clear(c.outbox)
	c.outbox = c.outbox[:0]
	return dst
}

func (c *feedCore) SnapshotRequests(dst []SnapshotRequest) []SnapshotRequest {
	dst = append(dst, c.snaps...)
	c.snaps = c.snaps[:0]
	return dst
}

// Normalize implements Feed.Normalize.
func (c *feedCore) Normalize(symbol string) (string, bool) { return c.normalize(symbol) }

// Venue implements Feed.Venue.
func (c *feedCore) Venue() string { return c.venue }

// finish counts a Handle call's outcome: the ticks appended since n, or the
// malformed frame (whose ticks are dropped).
func (c *feedCore) finish(out []market.Tick, n int, err *ParseError) ([]market.Tick, error) {
	if err != nil {
		err.Venue = c.venue
		c.m.Malformed(err.Reason.String())
		return out[:n], err
	}
	var counts [kindCount]int
	for i := n; i < len(out); i++ {
		if int(out[i].Kind) < kindCount {
			counts[out[i].Kind]++
		}
	}
	for k, v := range counts {
		if v > 0 {
			c.m.Ticks(market.Kind(k), v)
		}
	}
	return out, nil
}

// run counts frame, parses it and hands its root to fn, then counts the
// outcome as finish does.
func (c *feedCore) run(frame []byte, out []market.Tick, fn func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError)) ([]market.Tick, error) {
	c.m.Frame()
	n := len(out)
	var perr *ParseError
	// simdjson-go tolerates a raw NUL right after a literal; no JSON text
	// contains one, so reject it on both paths alike.
	if bytes.IndexByte(frame, 0) >= 0 {
		perr = errBadJSON()
	} else if it, typ, err := c.parseRoot(frame); err != nil {
		perr = err
	} else {
		c.root = jfield{it: it, typ: typ}
		out, perr = fn(&c.root, out)
	}
	return c.finish(out, n, perr)
}

// parseRoot parses frame and returns an iterator on its root value.
func (c *feedCore) parseRoot(frame []byte) (simdjson.Iter, simdjson.Type, *ParseError) {
	var it simdjson.Iter
	pj, err := c.jp.Parse(frame)
	if err != nil {
		return it, simdjson.TypeNone, errBadJSON()
	}
	it = pj.Iter()
	if it.AdvanceInto() != simdjson.TagRoot {
		return it, simdjson.TypeNone, errBadJSON()
	}
	typ := it.Advance()
	if typ == simdjson.TypeNone {
		return it, typ, errBadJSON()
	}
	return it, typ, nil
}

// ---- symbols ----

// sym returns the cached entry of a venue symbol, normalizing it the first
// time. A symbol that is empty, too long or not printable is malformed.
func (c *feedCore) sym(b []byte, field string) (*symEntry, *ParseError) {
	if e, ok := c.syms[string(b)]; ok {
		c.countUnnormalized(e)
		return e, nil
	}
	if len(b) == 0 || len(b) > maxSymbolLen || !utf8.Valid(b) {
		return nil, &ParseError{Reason: ReasonBadSymbol, Field: field}
	}
	for _, ch := range b {
		if ch <= ' ' || ch == 0x7f || ch == '"' || ch == '\\' {
			return nil, &ParseError{Reason: ReasonBadSymbol, Field: field}
		}
	}
	e := &symEntry{symbol: string(b)}
	inst, ok := c.normalize(e.symbol)
	if !ok {
		// Published under the venue symbol, and counted: a new listing whose
		// quote asset the table does not know yet.
		inst = e.symbol
	}
	e.instrument, e.normalized = inst, ok
	c.countUnnormalized(e)
	if len(c.syms) < maxCachedSymbols {
		c.syms[e.symbol] = e
	}
	return e, nil
}

// countUnnormalized counts a frame of a symbol left unnormalized
// (signald_ingest_unnormalized_symbol_frames_total).
func (c *feedCore) countUnnormalized(e *symEntry) {
	if !e.normalized && c.m.v != nil {
		c.m.v.unnormalized.Inc()
	}
}

func (c *feedCore) newTick(s *symEntry, kind market.Kind, recv, exch int64) market.Tick {
	return market.Tick{Venue: c.venue, Instrument: s.instrument, Symbol: s.symbol, Kind: kind, ExchTS: exch, RecvTS: recv, IngestTS: recv}
}

// ---- books ----

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

// maxPendLevels bounds the levels buffered while a REST snapshot is on its
// way; beyond it the buffer is dropped and the snapshot requested again
// (counted as a resync with reason "buffer").
const maxPendLevels = 200_000

// labelOf returns b when it is one of known, else "other": metric labels
// must not take arbitrary values from the wire.
func labelOf(b []byte, known ...string) string {
	for _, k := range known {
		if string(b) == k {
			return k
		}
	}
	return "other"
}

func perrf(r Reason, field string) *ParseError { return &ParseError{Reason: r, Field: field} }

// ---- tape access ----

// jfield is one member of an object, or one element of an array.
type jfield struct {
	it  simdjson.Iter
	typ simdjson.Type
}

// getFields walks obj once and fills dst[i] with the member named keys[i];
// absent members have typ TypeNone. A key read twice is malformed (the two
// JSON paths must never disagree on which one wins).
func getFields(obj *simdjson.Object, keys []string, dst []jfield) *ParseError {
	for i := range dst {
		dst[i].typ = simdjson.TypeNone
	}
	var el simdjson.Iter
	for {
		name, typ, err := obj.NextElementBytes(&el)
		if err != nil {
			return errBadJSON()
		}
		if typ == simdjson.TypeNone {
			return nil
		}
		for i, k := range keys {
			if k == string(name) {
				if dst[i].typ != simdjson.TypeNone {
					return &ParseError{Reason: ReasonDuplicateField, Field: k}
				}
				dst[i] = jfield{it: el, typ: typ}
				break
			}
		}
	}
}

// present reports whether every field of fl was found.
func present(fl []jfield) bool {
	for i := range fl {
		if fl[i].typ == simdjson.TypeNone {
			return false
		}
	}
	return true
}

// objectFields reads the object f into dst.
func objectFields(f *jfield, keys []string, dst []jfield, field string) *ParseError {
	if f.typ != simdjson.TypeObject {
		return typeErr(f, field)
	}
	var obj simdjson.Object
	if _, err := f.it.Object(&obj); err != nil {
		return errBadJSON()
	}
	return getFields(&obj, keys, dst)
}

func typeErr(f *jfield, field string) *ParseError {
	if f.typ == simdjson.TypeNone {
		return &ParseError{Reason: ReasonMissingField, Field: field}
	}
	return &ParseError{Reason: ReasonBadType, Field: field}
}

// side reads a "buy"/"sell" string member; anything else is malformed and
// reported under field.
func (f *jfield) side(field string) (market.Side, *ParseError) {
	b, perr := f.str(field)
	if perr != nil {
		return 0, perr
	}
	switch string(b) {
	case "buy":
		return market.SideBuy, nil
	case "sell":
		return market.SideSell, nil
	}
	return 0, &ParseError{Reason: ReasonBadType, Field: field}
}

// str returns a string member.
func (f *jfield) str(field string) ([]byte, *ParseError) {
	if f.typ != simdjson.TypeString {
		return nil, typeErr(f, field)
	}
	b, err := f.it.StringBytes()
	if err != nil {
		return nil, errBadJSON()
	}
	return b, nil
}

// strOr returns a string member, or nil when absent or not a string.
func (f *jfield) strOr() []byte {
	if f.typ != simdjson.TypeString {
		return nil
	}
	b, _ := f.it.StringBytes()
	return b
}

// dec returns a non-negative finite decimal sent as a string.
func (f *jfield) dec(field string) (float64, []byte, *ParseError) {
	b, err := f.str(field)
	if err != nil {
		return 0, nil, err
	}
	v, err := decString(b, field)
	if err != nil {
		return 0, nil, err
	}
	return v, b, nil
}

// decString parses the text of dec.
func decString(b []byte, field string) (float64, *ParseError) {
	v, ok := parseDecimal(b)
	if !ok || math.IsInf(v, 0) || math.IsNaN(v) || math.Signbit(v) {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, nil
}

// num returns a finite number sent as a JSON number or a decimal string
// (any sign: funding rates are negative).
func (f *jfield) num(field string) (float64, *ParseError) {
	var v float64
	switch f.typ {
	case simdjson.TypeString:
		b, _ := f.it.StringBytes()
		var ok bool
		if len(b) > 0 && b[0] == '-' {
			v, ok = parseDecimal(b[1:])
			v = -v
		} else {
			v, ok = parseDecimal(b)
		}
		if !ok {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
	case simdjson.TypeFloat, simdjson.TypeInt, simdjson.TypeUint:
		var err error
		if v, err = f.it.Float(); err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
	default:
		return 0, typeErr(f, field)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, nil
}

// pos returns a non-negative finite number sent as a JSON number or a
// decimal string.
func (f *jfield) pos(field string) (float64, *ParseError) {
	v, err := f.num(field)
	if err == nil && math.Signbit(v) {
		err = &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, err
}

// uint returns a non-negative integer sent as a JSON number or a string of
// digits.
func (f *jfield) uint(field string) (uint64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Uint()
		if err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	case simdjson.TypeString:
		b, _ := f.it.StringBytes()
		v, ok := parseDigits(b)
		if !ok {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	}
	return 0, typeErr(f, field)
}

// int returns an integer (any sign) sent as a JSON number.
func (f *jfield) int(field string) (int64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt:
		v, err := f.it.Int()
		if err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	case simdjson.TypeUint:
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return 0, typeErr(f, field)
}

// msTime converts a millisecond timestamp field to ns.
func (f *jfield) msTime(field string) (int64, *ParseError) {
	v, err := f.uint(field)
	if err != nil {
		return 0, err
	}
	if v > maxMillis {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return int64(v) * 1e6, nil
}

// The accessors below keep the rules of the Bitfinex, Gemini, Deribit,
// KuCoin, Gate.io, BitMEX and HTX parsers, which differ from num, int and
// uint in what they accept.

// numJSON returns a finite number sent as a JSON number (not a string).
func (f *jfield) numJSON(field string) (float64, *ParseError) {
	switch f.typ {
	case simdjson.TypeFloat, simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Float()
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	}
	return 0, typeErr(f, field)
}

// numOrNull is numJSON that takes null as 0, false.
func (f *jfield) numOrNull(field string) (float64, bool, *ParseError) {
	if f.typ == simdjson.TypeNull {
		return 0, false, nil
	}
	v, err := f.numJSON(field)
	return v, err == nil, err
}

// nonNeg is numJSON that must not be below zero.
func (f *jfield) nonNeg(field string) (float64, *ParseError) {
	v, err := f.numJSON(field)
	if err == nil && v < 0 {
		err = perrf(ReasonBadNumber, field)
	}
	return v, err
}

// intJSON returns an integer sent as a JSON number, a float with an
// integral value too (some venues send 1.0).
func (f *jfield) intJSON(field string) (int64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Int()
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeFloat:
		v, _ := f.it.Float()
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, perrf(ReasonBadNumber, field)
		}
		return int64(v), nil
	}
	return 0, typeErr(f, field)
}

// seqNum returns a non-negative integer sent as a JSON number (as intJSON)
// or a string of up to 20 digits (KuCoin sends sequences as strings).
func (f *jfield) seqNum(field string) (uint64, *ParseError) {
	switch f.typ {
	case simdjson.TypeString:
		b, err := f.it.StringBytes()
		if err != nil {
			return 0, perrf(ReasonBadJSON, field)
		}
		v, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeUint:
		v, _ := f.it.Uint()
		return v, nil
	}
	v, err := f.intJSON(field)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return uint64(v), nil
}

// arrayIter returns an iterator over the array f.
func (f *jfield) arrayIter(field string) (simdjson.Iter, *ParseError) {
	var arr simdjson.Array
	if f.typ != simdjson.TypeArray {
		return simdjson.Iter{}, typeErr(f, field)
	}
	if _, err := f.it.Array(&arr); err != nil {
		return simdjson.Iter{}, errBadJSON()
	}
	return arr.Iter(), nil
}

// elems returns the array f as a jfield that advance moves through its
// elements in place (next copies each one out).
func (f *jfield) elems(field string) (jfield, *ParseError) {
	it, perr := f.arrayIter(field)
	return jfield{it: it}, perr
}

// advance moves an elems jfield to its next element; false past the last.
func (f *jfield) advance() bool {
	f.typ = f.it.Advance()
	return f.typ != simdjson.TypeNone
}

// next advances an array iterator to its next element.
func next(it *simdjson.Iter) (jfield, bool) {
	typ := it.Advance()
	if typ == simdjson.TypeNone {
		return jfield{}, false
	}
	return jfield{it: *it, typ: typ}, true
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

// parseDigits parses 1 to 19 plain decimal digits.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + uint64(ch-'0')
	}
	return v, true
}

// parseSecondsDecimal parses "1618678133.365913" (epoch seconds with up to
// nine fractional digits) to ns.
func parseSecondsDecimal(b []byte) (int64, bool) {
	dot := len(b)
	for i, ch := range b {
		if ch == '.' {
			dot = i
			break
		}
	}
	sec, ok := parseDigits(b[:dot])
	if !ok || sec > math.MaxInt64/1_000_000_000-1 {
		return 0, false
	}
	var frac int64
	if dot < len(b) {
		f := b[dot+1:]
		if len(f) == 0 || len(f) > 9 {
			return 0, false
		}
		v, ok := parseDigits(f)
		if !ok {
			return 0, false
		}
		frac = int64(v)
		for i := len(f); i < 9; i++ {
			frac *= 10
		}
	}
	return int64(sec)*1e9 + frac, true
}

// parseRFC3339 parses "2021-04-17T16:43:37.075687Z" to ns since the epoch:
// the UTC form the venues send, parsed without allocating; any other
// layout goes to time.Parse.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[len(b)-1] == 'Z' {
		num := func(s []byte) (int, bool) {
			v, ok := parseDigits(s)
			return int(v), ok
		}
		y, ok1 := num(b[0:4])
		mo, ok2 := num(b[5:7])
		d, ok3 := num(b[8:10])
		h, ok4 := num(b[11:13])
		mi, ok5 := num(b[14:16])
		s, ok6 := num(b[17:19])
		rest := b[19 : len(b)-1]
		var ns int64
		okf := true
		if len(rest) > 0 {
			if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
				okf = false
			} else {
				v, ok := parseDigits(rest[1:])
				okf = ok
				ns = int64(v)
				for i := len(rest) - 1; i < 9; i++ {
					ns *= 10
				}
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && okf && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 61 {
			return time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC).UnixNano() + ns, true
		}
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// msToNS converts epoch milliseconds, rejecting values out of range.
func msToNS(ms int64, field string) (int64, *ParseError) {
	if ms < 0 || ms > math.MaxInt64/1_000_000 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return ms * 1_000_000, nil
}

// appendJSNumber appends f as JavaScript's Number.prototype.toString writes
// it: the shortest round-trip digits, fixed notation for 1e-6 <= |f| < 1e21,
// exponent notation ("1e-7", "1.5e+21") otherwise (ECMA-262 Number::toString). Bitfinex computes its
// book checksums over this text.
func appendJSNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	a := math.Abs(f)
	if a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'e', -1, 64) // 1.5e-07
	e := bytes.IndexByte(dst[n:], 'e') + n
	// Drop the exponent's leading zeros: Go writes at least two digits.
	i := e + 2
	j := i
	for j < len(dst)-1 && dst[j] == '0' {
		j++
	}
	return append(dst[:i], dst[j:]...)
}

// sideWord reads a taker or level side written "buy"/"bid" or "sell"/"ask"
// (Gemini, KuCoin, Gate.io, Huobi, Deribit).
func sideWord(b []byte) (market.Side, *ParseError) {
	switch string(b) {
	case "buy", "bid":
		return market.SideBuy, nil
	case "sell", "ask":
		return market.SideSell, nil
	case "":
		return 0, perrf(ReasonMissingField, "side")
	}
	return 0, perrf(ReasonBadType, "side")
}

// checksumText appends a Kraken-style checksum term: the decimal text
// without its point and without leading zeros.
func checksumText(dst []byte, s string) []byte {
	lead := true
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '.' {
			continue
		}
		if lead && ch == '0' {
			continue
		}
		lead = false
		dst = append(dst, ch)
	}
	return dst
}

// crc32IEEE is the checksum Kraken and OKX use.
func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// formatFixed formats v with prec decimals (Kraken v2 books send numbers;
// the checksum is over their text at the pair's precision).
func formatFixed(dst []byte, v float64, prec int) []byte {
	return strconv.AppendFloat(dst, v, 'f', prec, 64)
}

// splitQuote splits a concatenated pair ("btcusd", "BTCUSDT") with the
// longest quote asset of quotes that ends it, upper-cased.
func splitQuote(pair string, quotes []string) (base, quote string, ok bool) {
	up := []byte(pair)
	for i, ch := range up {
		if ch >= 'a' && ch <= 'z' {
			up[i] = ch - 'a' + 'A'
		}
	}
	s := string(up)
	for _, q := range quotes {
		if len(s) > len(q) && s[len(s)-len(q):] == q {
			return s[:len(s)-len(q)], q, true
		}
	}
	return "", "", false
}

// monthIndex maps "JAN".."DEC" to 1..12.
func monthIndex(s string) int {
	for i, m := range [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"} {
		if s == m {
			return i + 1
		}
	}
	return 0
}
