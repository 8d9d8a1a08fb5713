package ingest

import (
	"bytes"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/minio/simdjson-go"
)

// Shared plumbing of the Bitfinex, Gemini, Deribit, KuCoin and Gate.io feeds:
// JSON tape walking, symbol caching, tick construction, and book state with
// the resync rules of the Feed contract (one KindGap tick, book ticks
// withheld until a fresh snapshot, the resync counted and logged).

// feedBase is embedded by each venue feed of this file set.
type feedBase struct {
	venue string
	cfg   FeedConfig
	m     *FeedMetrics
	log   *slog.Logger
	jp    *JSONParser

	outbox [][]byte
	snaps  []SnapshotRequest
	syms   map[string]*symB
	books  map[string]*bookB // by venue symbol
	lv     []lvB             // scratch: decoded levels of one frame
}

func newFeedBase(venue string, cfg FeedConfig) feedBase {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	jp := NewJSONParser(cfg.ForceFallback)
	if cfg.Metrics != nil {
		path := "fallback"
		if jp.SIMD() {
			path = "simdjson"
		}
		cfg.Metrics.parserPath.WithLabelValues(venue, path).Set(1)
	}
	return feedBase{
		venue: venue, cfg: cfg, m: cfg.Metrics.Feed(venue), log: log, jp: jp,
		syms: map[string]*symB{}, books: map[string]*bookB{},
	}
}

func (f *feedBase) Venue() string { return f.venue }

func (f *feedBase) Outbox(dst [][]byte) [][]byte {
	dst = append(dst, f.outbox...)
	f.outbox = f.outbox[:0]
	return dst
}

func (f *feedBase) SnapshotRequests(dst []SnapshotRequest) []SnapshotRequest {
	dst = append(dst, f.snaps...)
	f.snaps = f.snaps[:0]
	return dst
}

// resetBase forgets books, pending sends and snapshot requests.
func (f *feedBase) resetBase() {
	f.outbox = f.outbox[:0]
	f.snaps = f.snaps[:0]
	clear(f.books)
}

// run parses frame and hands the tape to fn; it counts the frame, the ticks
// fn appended, and a malformed frame (whose ticks are dropped).
func (f *feedBase) run(frame []byte, out []Tick, fn func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError)) ([]Tick, error) {
	f.m.Frame()
	n := len(out)
	var perr *ParseError
	// simdjson-go tolerates a raw NUL right after a literal; no JSON text
	// contains one, so reject it on both paths alike.
	if bytes.IndexByte(frame, 0) >= 0 {
		perr = errBadJSON()
	} else if pj, err := f.jp.Parse(frame); err != nil {
		perr = errBadJSON()
	} else {
		out, perr = fn(pj, out)
	}
	if perr != nil {
		perr.Venue = f.venue
		f.m.Malformed(perr.Reason.String())
		return out[:n], perr
	}
	f.countTicks(out[n:])
	return out, nil
}

func (f *feedBase) countTicks(ts []Tick) {
	var c [kindCount]int
	for i := range ts {
		if int(ts[i].Kind) < kindCount {
			c[ts[i].Kind]++
		}
	}
	for k, n := range c {
		if n > 0 {
			f.m.Ticks(Kind(k), n)
		}
	}
}

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

// ---- tape helpers ----

// rootOf positions it on the root value of pj and returns its type.
func rootOf(pj *simdjson.ParsedJson, it *simdjson.Iter) simdjson.Type {
	*it = pj.Iter()
	if it.Advance() != simdjson.TypeRoot {
		return simdjson.TypeNone
	}
	t, _, err := it.Root(it)
	if err != nil {
		return simdjson.TypeNone
	}
	return t
}

func perrf(r Reason, field string) *ParseError { return &ParseError{Reason: r, Field: field} }

// jnum reads a JSON number.
func jnum(it *simdjson.Iter, field string) (float64, *ParseError) {
	switch it.Type() {
	case simdjson.TypeFloat, simdjson.TypeInt, simdjson.TypeUint:
		v, err := it.Float()
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	}
	return 0, perrf(ReasonBadType, field)
}

// jnumOrNull reads a JSON number; null gives 0, false.
func jnumOrNull(it *simdjson.Iter, field string) (float64, bool, *ParseError) {
	if it.Type() == simdjson.TypeNull {
		return 0, false, nil
	}
	v, err := jnum(it, field)
	return v, err == nil, err
}

// jint reads a JSON integer (a float with an integral value too, as some
// venues send 1.0).
func jint(it *simdjson.Iter, field string) (int64, *ParseError) {
	switch it.Type() {
	case simdjson.TypeInt, simdjson.TypeUint:
		v, err := it.Int()
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeFloat:
		v, _ := it.Float()
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, perrf(ReasonBadNumber, field)
		}
		return int64(v), nil
	}
	return 0, perrf(ReasonBadType, field)
}

// juint reads a non-negative integer, as a JSON number or a string of
// digits (KuCoin sends sequences as strings).
func juint(it *simdjson.Iter, field string) (uint64, *ParseError) {
	switch it.Type() {
	case simdjson.TypeString:
		b, err := it.StringBytes()
		if err != nil {
			return 0, perrf(ReasonBadJSON, field)
		}
		v, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeUint:
		v, _ := it.Uint()
		return v, nil
	}
	v, err := jint(it, field)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return uint64(v), nil
}

// jstr reads a JSON string; the bytes are valid until the next Parse.
func jstr(it *simdjson.Iter, field string) ([]byte, *ParseError) {
	if it.Type() != simdjson.TypeString {
		return nil, perrf(ReasonBadType, field)
	}
	b, err := it.StringBytes()
	if err != nil {
		return nil, perrf(ReasonBadJSON, field)
	}
	return b, nil
}

// jdec reads a decimal sent as a string ("0.001"), finite and not negative.
func jdec(it *simdjson.Iter, field string) (float64, *ParseError) {
	b, err := jstr(it, field)
	if err != nil {
		return 0, err
	}
	return decString(b, field)
}

func decString(b []byte, field string) (float64, *ParseError) {
	v, ok := parseDecimal(b)
	if !ok || math.IsInf(v, 0) || math.IsNaN(v) || math.Signbit(v) {
		return 0, perrf(ReasonBadNumber, field)
	}
	return v, nil
}

// jnonneg reads a JSON number that must be finite and not negative.
func jnonneg(it *simdjson.Iter, field string) (float64, *ParseError) {
	v, err := jnum(it, field)
	if err == nil && v < 0 {
		err = perrf(ReasonBadNumber, field)
	}
	return v, err
}

// arrayIter returns an iterator over the elements of the array at it.
func arrayIter(it *simdjson.Iter, field string) (simdjson.Iter, *ParseError) {
	var a simdjson.Array
	if it.Type() != simdjson.TypeArray {
		return simdjson.Iter{}, perrf(ReasonBadType, field)
	}
	if _, err := it.Array(&a); err != nil {
		return simdjson.Iter{}, perrf(ReasonBadJSON, field)
	}
	return a.Iter(), nil
}

// objectOf returns the object at it.
func objectOf(it *simdjson.Iter, obj *simdjson.Object, field string) *ParseError {
	if it.Type() != simdjson.TypeObject {
		return perrf(ReasonBadType, field)
	}
	if _, err := it.Object(obj); err != nil {
		return perrf(ReasonBadJSON, field)
	}
	return nil
}

// msToNS converts epoch milliseconds, rejecting values out of range.
func msToNS(ms int64, field string) (int64, *ParseError) {
	if ms < 0 || ms > math.MaxInt64/1_000_000 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return ms * 1_000_000, nil
}

// ---- symbols ----

type symB struct {
	sym, inst string
	ok        bool
}

// symbol interns a venue symbol and its normalized instrument; a symbol
// that is empty, too long or not printable UTF-8 is malformed.
func (f *feedBase) symbol(b []byte, field string, norm func(string) (string, bool)) (*symB, *ParseError) {
	if s, ok := f.syms[string(b)]; ok {
		return s, nil
	}
	if len(b) == 0 || len(b) > maxSymbolLen || !utf8.Valid(b) {
		return nil, perrf(ReasonBadSymbol, field)
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return nil, perrf(ReasonBadSymbol, field)
		}
	}
	s := &symB{sym: string(b)}
	s.inst, s.ok = norm(s.sym)
	if !s.ok {
		s.inst = s.sym
	}
	if len(f.syms) < maxCachedSymbols {
		f.syms[s.sym] = s
	}
	return s, nil
}

func (f *feedBase) tick(s *symB, kind Kind, recv, exch int64) Tick {
	return Tick{Venue: f.venue, Instrument: s.inst, Symbol: s.sym, Kind: kind, ExchTS: exch, RecvTS: recv, IngestTS: recv}
}

// ---- books ----

// Book states.
const (
	bookNew    = iota // waiting for the first snapshot (nothing published yet)
	bookLive          // snapshot applied, in sync
	bookResync        // found out of sync: gap published, waiting for a snapshot
)

type bookB struct {
	s     *symB
	book  Book
	state int
	seq   uint64 // last applied venue sequence
	depth int    // levels kept per side; 0: all
	// REST-snapshot venues (KuCoin, Gate.io): deltas received before the
	// snapshot, applied once it arrives.
	pend      []pendB
	pendLv    []lvB
	requested bool
	chanID    int64 // venue channel id (Bitfinex)
}

// pendB is one buffered delta frame: levels pendLv[from:to].
type pendB struct {
	first, last uint64
	exch, recv  int64
	from, to    int
}

// lvB is one decoded level; seq is the level's own sequence where the venue
// sends one (KuCoin).
type lvB struct {
	side   Side
	px, sz float64
	seq    uint64
}

func (f *feedBase) book(s *symB) *bookB {
	bk := f.books[s.sym]
	if bk == nil {
		bk = &bookB{s: s}
		f.books[s.sym] = bk
	}
	return bk
}

// sortedBooks returns the books ordered by symbol, for handling them all in
// a deterministic order.
func (f *feedBase) sortedBooks() []*bookB {
	out := make([]*bookB, 0, len(f.books))
	for _, bk := range f.books {
		out = append(out, bk)
	}
	slices.SortFunc(out, func(a, b *bookB) int { return strings.Compare(a.s.sym, b.s.sym) })
	return out
}

// snapshotFailed asks again for a REST snapshot whose body was unusable.
func (f *feedBase) snapshotFailed(req SnapshotRequest, err error, request func(*bookB)) {
	if err == nil {
		return
	}
	if bk := f.books[req.Symbol]; bk != nil && bk.state != bookLive {
		bk.requested = false
		request(bk)
	}
}

// maxPendLevels bounds the levels buffered while a REST snapshot is on its
// way; beyond it the buffer is dropped and the snapshot requested again
// (counted as a resync with reason "buffer").
const maxPendLevels = 200_000

// desync marks bk out of sync for reason: the first time since the last
// snapshot it appends one KindGap tick, counts and logs the resync, and
// forgets the book. The caller then asks for a snapshot.
func (f *feedBase) desync(bk *bookB, reason string, recv int64, seq uint64, out []Tick) []Tick {
	bk.book.Clear()
	bk.pend, bk.pendLv = bk.pend[:0], bk.pendLv[:0]
	bk.requested = false
	if bk.state == bookResync {
		return out
	}
	bk.state = bookResync
	f.m.Resync(reason)
	f.log.Warn("book out of sync, resnapshotting", "venue", f.venue, "symbol", bk.s.sym, "reason", reason, "seq", seq, "last_seq", bk.seq)
	return f.gapTick(bk.s, recv, seq, out)
}

func (f *feedBase) gapTick(s *symB, recv int64, seq uint64, out []Tick) []Tick {
	t := f.tick(s, KindGap, recv, 0)
	t.Seq = seq
	t.ComputeID()
	return append(out, t)
}

// applySnapshot replaces bk's book with f.lv and appends one KindSnapshot
// tick per level (bids first, best first). It reports false, and appends
// nothing, when the snapshot is crossed.
func (f *feedBase) applySnapshot(bk *bookB, lv []lvB, recv, exch int64, seq uint64, out []Tick) ([]Tick, bool) {
	bk.book.Clear()
	for _, l := range lv {
		if l.sz != 0 {
			bk.book.Set(l.side, l.px, l.sz, "", "")
		}
	}
	if bk.depth > 0 {
		bk.book.Truncate(bk.depth)
	}
	if bk.book.Crossed() {
		bk.book.Clear()
		return out, false
	}
	bk.state = bookLive
	bk.seq = seq
	base := f.tick(bk.s, KindSnapshot, recv, exch)
	base.Seq = seq
	for _, side := range [2]Side{SideBuy, SideSell} {
		for _, l := range bk.book.Side(side) {
			t := base
			t.Side, t.Price, t.Size = side, l.Px, l.Sz
			t.ComputeID()
			out = append(out, t)
		}
	}
	return out, true
}

// applyDelta applies lv to bk's book and, unless withheld, appends one
// KindBookDelta tick per level. It reports false when the result is
// crossed (the caller desyncs; the ticks appended are to be dropped).
func (f *feedBase) applyDelta(bk *bookB, lv []lvB, recv, exch int64, seq uint64, out []Tick) ([]Tick, bool) {
	base := f.tick(bk.s, KindBookDelta, recv, exch)
	base.Seq = seq
	for _, l := range lv {
		bk.book.Set(l.side, l.px, l.sz, "", "")
		t := base
		t.Side, t.Price, t.Size = l.side, l.px, l.sz
		t.ComputeID()
		out = append(out, t)
	}
	if bk.depth > 0 {
		bk.book.Truncate(bk.depth)
	}
	bk.seq = seq
	return out, !bk.book.Crossed()
}

// ---- number text ----

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
func sideWord(b []byte) (Side, *ParseError) {
	switch string(b) {
	case "buy", "bid":
		return SideBuy, nil
	case "sell", "ask":
		return SideSell, nil
	case "":
		return 0, perrf(ReasonMissingField, "side")
	}
	return 0, perrf(ReasonBadType, "side")
}
