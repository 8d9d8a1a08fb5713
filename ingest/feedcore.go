package ingest

// The shared machinery of the venue feeds: feedCore holds a feed's state
// (symbol cache, books, outbox, snapshot requests, JSON parser) and runs one
// frame through the venue's parse function.

import (
	"bytes"
	"log/slog"
	"unicode/utf8"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// simdOpts are JSONParser's simdjson-go options: strings are read in place
// (valid until the next Parse), not copied.
var simdOpts = []simdjson.ParserOption{simdjson.WithCopyStrings(false)}

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

// maxPendLevels bounds the levels buffered while a REST snapshot is on its
// way; beyond it the buffer is dropped and the snapshot requested again
// (counted as a resync with reason "buffer").
const maxPendLevels = 200_000
