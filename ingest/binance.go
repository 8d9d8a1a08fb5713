package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Binance markets a BinanceParser can be built for.
const (
	MarketSpot = "spot"
	MarketUSDM = "usdm"
)

// BinanceConfig configures a BinanceParser.
type BinanceConfig struct {
	Market string // MarketSpot or MarketUSDM
	// ForceFallback uses the portable JSON scanner even where simdjson-go is
	// supported (AVX2 and CLMUL).
	ForceFallback bool
}

// BinanceParser turns Binance spot or USD-M futures websocket frames (combined
// stream wrappers or bare payloads) and REST depth snapshots into ticks.
//
// Two JSON paths produce identical ticks: the shared JSONParser's
// simdjson-go tape where the CPU supports it, and a dedicated scanner
// elsewhere (or with ForceFallback; see binance_fallback.go for why Binance
// keeps its own instead of the shared tape builder). The scanner accepts
// exactly the documents simdjson-go accepts, so a frame is malformed or not
// independently of the machine.
//
// A BinanceParser is not safe for concurrent use; use one per connection.
type BinanceParser struct {
	market  string
	venue   string
	useSIMD bool
	m       *venueMetrics

	jp       *JSONParser // the simdjson-go path's parser (shared with a feed's core)
	simdSub  simdjson.Object
	fb       fbScanner
	top      fields
	data     fields
	rootType jtype
	syms     map[string]*symEntry
	upper    []byte

	// diff describes the depth diff the last Parse decoded, for the feed's
	// book synchronization (an update without levels yields no ticks but
	// still moves the ids on).
	diff depthDiff
	// snapID is the lastUpdateId of the last snapshot decoded.
	snapID uint64

	batch    []byte      // ParseBatch's frames as one JSON array
	jpBatch  *JSONParser // ParseBatch's parser (simdjson-go path only)
	batchObj simdjson.Object
}

// depthDiff is the identity of one depthUpdate diff event.
type depthDiff struct {
	ok       bool
	si       *symEntry
	U, u, pu uint64
	hasPU    bool
}

// NewBinanceParser returns a parser for one market. m may be nil (metrics are
// then kept in unregistered collectors).
func NewBinanceParser(cfg BinanceConfig, m *Metrics) (*BinanceParser, error) {
	return newBinanceParser(cfg, m, NewJSONParser(cfg.ForceFallback))
}

// newBinanceParser is NewBinanceParser on jp (a feed shares its core's).
func newBinanceParser(cfg BinanceConfig, m *Metrics, jp *JSONParser) (*BinanceParser, error) {
	var venue string
	switch cfg.Market {
	case MarketSpot:
		venue = VenueBinance
	case MarketUSDM:
		venue = VenueBinanceUSDM
	default:
		return nil, fmt.Errorf("binance parser: market %q is not supported: use %q or %q", cfg.Market, MarketSpot, MarketUSDM)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	p := &BinanceParser{
		market:  cfg.Market,
		venue:   venue,
		useSIMD: jp.SIMD(),
		m:       m.forVenue(venue),
		jp:      jp,
		syms:    make(map[string]*symEntry),
	}
	p.top.reset()
	p.data.reset()
	path := "fallback"
	if p.useSIMD {
		path = "simdjson"
	}
	m.parserPath.WithLabelValues(venue, path).Set(1)
	return p, nil
}

// Venue is the venue name the parser stamps on its ticks.
func (p *BinanceParser) Venue() string { return p.venue }

// Market is the market the parser was built for.
func (p *BinanceParser) Market() string { return p.market }

// SIMD reports whether the parser uses simdjson-go.
func (p *BinanceParser) SIMD() bool { return p.useSIMD }

// Parse appends the ticks of one websocket frame to out. recvNS is the local
// receive time (ns since the epoch); it becomes both RecvTS and IngestTS
// (the replayer overwrites IngestTS with the replay time). Frames of event
// types that carry no ticks (kline, tickers, subscription responses, ...)
// return out unchanged and a nil error. A malformed frame returns out
// unchanged and a *ParseError (wrapping ErrMalformed).
//
// trade and aggTrade give one market.KindTrade tick (market.Side is the taker's: m=true,
// buyer is maker, is market.SideSell); a USD-M trade with X=INSURANCE_FUND is a
// market.KindLiquidation, other non-MARKET fills (ADL, NA) are ignored. bookTicker
// gives one market.KindQuote (Seq u). depthUpdate gives one market.KindBookDelta per level,
// bids first, Seq u (an empty update gives none). ExchTS is T, else E, else
// 0.
//
// A partial book depth frame (stream <symbol>@depth<N>..., spot payload
// {"lastUpdateId",...} or futures depthUpdate) yields market.KindSnapshot ticks, the
// symbol taken from the stream name. A bare REST snapshot body carries no
// symbol: pass it to ParseSnapshot.
func (p *BinanceParser) Parse(recvNS int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return p.parse(recvNS, frame, out, "", false)
}

// ParseSnapshot appends one market.KindSnapshot tick per level of a REST depth
// snapshot body {"lastUpdateId":N,"bids":[...],"asks":[...]} (futures bodies
// also carry E and T) for symbol, the venue symbol the snapshot was requested
// for (e.g. "BTCUSDT"). The ticks of one snapshot share Seq = lastUpdateId.
func (p *BinanceParser) ParseSnapshot(recvNS int64, symbol string, body []byte, out []market.Tick) ([]market.Tick, error) {
	return p.parse(recvNS, body, out, symbol, true)
}

func (p *BinanceParser) parse(recvNS int64, frame []byte, out []market.Tick, symbol string, snapshot bool) ([]market.Tick, error) {
	p.m.frames.Inc()
	p.diff.ok = false
	n := len(out)
	var perr *ParseError
	if err := p.extract(frame); err != nil {
		perr = err
	} else {
		out, perr = p.build(recvNS, out, symbol, snapshot)
	}
	if perr != nil {
		perr.Venue = p.venue
		p.m.malformed[perr.Reason].Inc()
		return out[:n], perr
	}
	return out, nil
}

// extract fills p.top (and p.data for a combined stream wrapper) from frame.
func (p *BinanceParser) extract(frame []byte) *ParseError {
	p.top.reset()
	p.data.reset()
	p.rootType = jNone
	// A raw NUL is never valid JSON, but simdjson-go tolerates it right after
	// a literal (true\x00...). Reject it up front on both paths.
	if bytes.IndexByte(frame, 0) >= 0 {
		return errBadJSON()
	}
	if p.useSIMD {
		return p.extractSIMD(frame)
	}
	return p.extractFallback(frame)
}

// ---- errors ----

// Reason classifies a malformed frame; it is the reason label of
// signald_ingest_malformed_frames_total.
type Reason uint8

const (
	ReasonBadJSON        Reason = iota // not a JSON document simdjson-go accepts
	ReasonBadType                      // a field (or the root) has the wrong JSON type
	ReasonMissingField                 // a field the event type requires is absent
	ReasonBadNumber                    // a price/size/time does not parse or is out of range
	ReasonBadSymbol                    // the symbol is empty, too long or not printable UTF-8
	ReasonDuplicateField               // a field the parser reads occurs twice in one object
	ReasonMissingSymbol                // a depth snapshot with no symbol (bare REST body given to Parse)
	ReasonNotSnapshot                  // ParseSnapshot was given something else
	reasonCount
)

var reasonNames = [...]string{"bad_json", "bad_type", "missing_field", "bad_number", "bad_symbol",
	"duplicate_field", "missing_symbol", "not_snapshot"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// ErrMalformed is wrapped by every *ParseError.
var ErrMalformed = errors.New("malformed frame")

// ParseError describes a malformed frame.
type ParseError struct {
	Venue  string
	Reason Reason
	Field  string // the offending field, "" when not about one field
}

func (e *ParseError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %v: %s (field %q)", e.Venue, ErrMalformed, e.Reason, e.Field)
	}
	return fmt.Sprintf("%s: %v: %s", e.Venue, ErrMalformed, e.Reason)
}

func (e *ParseError) Unwrap() error { return ErrMalformed }

func errBadJSON() *ParseError { return &ParseError{Reason: ReasonBadJSON} }

func fieldErr(r Reason, k int) *ParseError { return &ParseError{Reason: r, Field: keyNames[k]} }

// ---- extracted fields ----

// jtype is the JSON type of an extracted value.
type jtype uint8

const (
	jNone   jtype = iota // absent
	jString              // str holds the (unescaped) bytes
	jUint                // non-negative integer in u
	jNegInt
	jFloat
	jBool // value in b
	jNull
	jObject
	jArray // for level keys: lv holds the levels unless lvBad
)

// Keys the parser reads. Any other key is validated and skipped.
const (
	kEvent        = iota // e
	kEventTime           // E
	kTxTime              // T
	kSymbol              // s
	kTradeID             // t
	kPrice               // p
	kQty                 // q
	kMaker               // m
	kExecType            // X
	kA                   // a: aggTrade id, best ask price or ask levels
	kB                   // b: best bid price or bid levels
	kAskQty              // A
	kBidQty              // B
	kFinalID             // u
	kFirstID             // U
	kPrevID              // pu
	kLastUpdateID        // lastUpdateId
	kBids                // bids
	kAsks                // asks
	kStream              // stream
	kData                // data
	kID                  // id
	kResult              // result
	nKeys
)

var keyNames = [nKeys]string{"e", "E", "T", "s", "t", "p", "q", "m", "X", "a", "b", "A", "B", "u", "U", "pu",
	"lastUpdateId", "bids", "asks", "stream", "data", "id", "result"}

func keyIndex(name []byte) int {
	switch string(name) {
	case "e":
		return kEvent
	case "E":
		return kEventTime
	case "T":
		return kTxTime
	case "s":
		return kSymbol
	case "t":
		return kTradeID
	case "p":
		return kPrice
	case "q":
		return kQty
	case "m":
		return kMaker
	case "X":
		return kExecType
	case "a":
		return kA
	case "b":
		return kB
	case "A":
		return kAskQty
	case "B":
		return kBidQty
	case "u":
		return kFinalID
	case "U":
		return kFirstID
	case "pu":
		return kPrevID
	case "lastUpdateId":
		return kLastUpdateID
	case "bids":
		return kBids
	case "asks":
		return kAsks
	case "stream":
		return kStream
	case "data":
		return kData
	case "id":
		return kID
	case "result":
		return kResult
	}
	return -1
}

func isLevelKey(k int) bool { return k == kA || k == kB || k == kBids || k == kAsks }

type rawLevel struct{ px, sz []byte }

type slot struct {
	t     jtype
	str   []byte
	u     uint64
	b     bool
	lv    []rawLevel
	lvBad bool // the array is not a list of [price, size, ...] string pairs
}

type fields struct {
	s    [nKeys]slot
	used uint32 // bit k: slot k was set since the last reset
	dup  int    // first key seen twice, -1 if none
}

func (f *fields) reset() {
	for u := f.used; u != 0; u &= u - 1 {
		i := bits.TrailingZeros32(u)
		f.s[i] = slot{lv: f.s[i].lv[:0]}
	}
	f.used = 0
	f.dup = -1
}

// set returns key k's slot, cleared, noting a duplicate key.
func (f *fields) set(k int) *slot {
	s := &f.s[k]
	if f.used&(1<<k) != 0 {
		if f.dup < 0 {
			f.dup = k
		}
		*s = slot{lv: s.lv[:0]}
	}
	f.used |= 1 << k
	return s
}

// ---- ticks ----

// Event types that are well-formed but carry no ticks; the type label of
// signald_ingest_ignored_frames_total.
var ignoredNames = [...]string{"other", "response", "trade_non_market", "kline", "continuous_kline",
	"24hrTicker", "24hrMiniTicker", "rolling_ticker", "avgPrice", "markPriceUpdate", "forceOrder",
	"compositeIndex", "contractInfo", "assetIndexUpdate"}

const (
	ignOther = iota
	ignResponse
	ignTradeNonMarket
	ignoredCount = len(ignoredNames)
)

func ignoredIndex(e []byte) int {
	switch string(e) {
	case "1hTicker", "4hTicker", "1dTicker":
		return 7
	}
	for i := 3; i < len(ignoredNames); i++ {
		if ignoredNames[i] == string(e) {
			return i
		}
	}
	return ignOther
}

func (p *BinanceParser) build(recv int64, out []market.Tick, symbol string, snapshot bool) ([]market.Tick, *ParseError) {
	if p.rootType != jObject {
		return out, &ParseError{Reason: ReasonBadType, Field: "root"}
	}
	top := &p.top
	if top.dup >= 0 {
		return out, fieldErr(ReasonDuplicateField, top.dup)
	}
	var stream []byte
	switch top.s[kStream].t {
	case jNone:
	case jString:
		stream = top.s[kStream].str
	default:
		return out, fieldErr(ReasonBadType, kStream)
	}
	ev := top
	if d := top.s[kData].t; d != jNone {
		if d != jObject {
			return out, fieldErr(ReasonBadType, kData)
		}
		ev = &p.data
		if ev.dup >= 0 {
			return out, fieldErr(ReasonDuplicateField, ev.dup)
		}
	}
	if snapshot {
		if ev.s[kLastUpdateID].t == jNone || ev.s[kEvent].t != jNone {
			return out, &ParseError{Reason: ReasonNotSnapshot}
		}
		si, err := p.lookupString(symbol)
		if err != nil {
			return out, err
		}
		return p.restSnapshot(recv, ev, si, out)
	}

	e := &ev.s[kEvent]
	switch e.t {
	case jString:
	case jNone:
		switch {
		case hasSuffix(stream, "@bookTicker") || ev.s[kFinalID].t != jNone:
			return p.bookTicker(recv, ev, out)
		case ev.s[kLastUpdateID].t != jNone:
			sym, ok := p.streamSymbol(stream)
			if !ok {
				return out, &ParseError{Reason: ReasonMissingSymbol}
			}
			si, err := p.lookup(sym)
			if err != nil {
				return out, err
			}
			return p.restSnapshot(recv, ev, si, out)
		case ev.s[kID].t != jNone || ev.s[kResult].t != jNone:
			p.m.ignored[ignResponse].Inc()
			return out, nil
		}
		return out, fieldErr(ReasonMissingField, kEvent)
	default:
		return out, fieldErr(ReasonBadType, kEvent)
	}
	switch string(e.str) {
	case "trade":
		return p.trade(recv, ev, out, kTradeID)
	case "aggTrade":
		return p.trade(recv, ev, out, kA)
	case "bookTicker":
		return p.bookTicker(recv, ev, out)
	case "depthUpdate":
		return p.depth(recv, ev, out, isPartialDepth(stream))
	}
	p.m.ignored[ignoredIndex(e.str)].Inc()
	return out, nil
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

// isPartialDepth reports whether stream is a partial book depth stream
// (<symbol>@depth5, @depth10@100ms, @depth20@500ms, ...), whose frames are
// top-N snapshots rather than diffs.
func isPartialDepth(stream []byte) bool {
	for i := 0; i+6 < len(stream); i++ {
		if stream[i] == '@' && string(stream[i+1:i+6]) == "depth" {
			c := stream[i+6]
			return c >= '0' && c <= '9'
		}
	}
	return false
}

// streamSymbol returns the upper-cased symbol part of a stream name
// ("btcusdt@depth20" → "BTCUSDT"), in a reused buffer.
func (p *BinanceParser) streamSymbol(stream []byte) ([]byte, bool) {
	at := -1
	for i, c := range stream {
		if c == '@' {
			at = i
			break
		}
	}
	if at <= 0 {
		return nil, false
	}
	p.upper = p.upper[:0]
	for _, c := range stream[:at] {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		p.upper = append(p.upper, c)
	}
	return p.upper, true
}

const maxMillis = math.MaxInt64 / 1_000_000

// exchTS is T (transaction time) when present, else E, else 0; ms → ns.
func exchTS(ev *fields) (int64, *ParseError) {
	if t := ev.s[kEventTime].t; t != jNone && t != jUint {
		return 0, fieldErr(ReasonBadType, kEventTime)
	}
	k := kTxTime
	switch {
	case ev.s[kTxTime].t != jNone:
	case ev.s[kEventTime].t != jNone:
		k = kEventTime
	default:
		return 0, nil
	}
	ms, err := reqUint(ev, k)
	if err != nil {
		return 0, err
	}
	if ms > maxMillis {
		return 0, fieldErr(ReasonBadNumber, k)
	}
	return int64(ms) * 1e6, nil
}

func reqUint(ev *fields, k int) (uint64, *ParseError) {
	switch ev.s[k].t {
	case jUint:
		return ev.s[k].u, nil
	case jNone:
		return 0, fieldErr(ReasonMissingField, k)
	}
	return 0, fieldErr(ReasonBadType, k)
}

func reqString(ev *fields, k int) ([]byte, *ParseError) {
	switch ev.s[k].t {
	case jString:
		return ev.s[k].str, nil
	case jNone:
		return nil, fieldErr(ReasonMissingField, k)
	}
	return nil, fieldErr(ReasonBadType, k)
}

// reqDecimal parses a price or size string; it must be finite and not
// negative.
func reqDecimal(ev *fields, k int) (float64, *ParseError) {
	b, err := reqString(ev, k)
	if err != nil {
		return 0, err
	}
	return decimalField(b, k)
}

func decimalField(b []byte, k int) (float64, *ParseError) {
	f, ok := parseDecimal(b)
	if !ok || math.IsInf(f, 0) || math.IsNaN(f) || math.Signbit(f) {
		return 0, fieldErr(ReasonBadNumber, k)
	}
	return f, nil
}

func reqLevels(ev *fields, k int) ([]rawLevel, *ParseError) {
	switch ev.s[k].t {
	case jArray:
		if ev.s[k].lvBad {
			return nil, fieldErr(ReasonBadType, k)
		}
		return ev.s[k].lv, nil
	case jNone:
		return nil, fieldErr(ReasonMissingField, k)
	}
	return nil, fieldErr(ReasonBadType, k)
}

func (p *BinanceParser) symbol(ev *fields) (*symEntry, *ParseError) {
	b, err := reqString(ev, kSymbol)
	if err != nil {
		return nil, err
	}
	return p.lookup(b)
}

func (p *BinanceParser) newTick(si *symEntry, kind market.Kind, recv, exch int64) market.Tick {
	if !si.normalized {
		p.m.unnormalized.Inc()
	}
	return market.Tick{Venue: p.venue, Instrument: si.instrument, Symbol: si.symbol, Kind: kind, ExchTS: exch, RecvTS: recv, IngestTS: recv}
}

// trade handles trade (id in t) and aggTrade (id in a).
func (p *BinanceParser) trade(recv int64, ev *fields, out []market.Tick, idKey int) ([]market.Tick, *ParseError) {
	si, err := p.symbol(ev)
	if err != nil {
		return out, err
	}
	id, err := reqUint(ev, idKey)
	if err != nil {
		return out, err
	}
	px, err := reqDecimal(ev, kPrice)
	if err != nil {
		return out, err
	}
	sz, err := reqDecimal(ev, kQty)
	if err != nil {
		return out, err
	}
	m := &ev.s[kMaker]
	switch m.t {
	case jBool:
	case jNone:
		return out, fieldErr(ReasonMissingField, kMaker)
	default:
		return out, fieldErr(ReasonBadType, kMaker)
	}
	ts, err := exchTS(ev)
	if err != nil {
		return out, err
	}
	kind := market.KindTrade
	switch x := &ev.s[kExecType]; x.t {
	case jNone:
	case jString:
		// Futures trades carry the order type: MARKET for ordinary trades,
		// INSURANCE_FUND for liquidations filled by the insurance fund; ADL
		// and NA fills are not market trades and are left out.
		switch string(x.str) {
		case "MARKET":
		case "INSURANCE_FUND":
			kind = market.KindLiquidation
		default:
			p.m.ignored[ignTradeNonMarket].Inc()
			return out, nil
		}
	default:
		return out, fieldErr(ReasonBadType, kExecType)
	}
	t := p.newTick(si, kind, recv, ts)
	t.Side = market.SideBuy
	if m.b { // buyer is the maker: the taker sold
		t.Side = market.SideSell
	}
	t.Price, t.Size, t.TradeID = px, sz, id
	t.ComputeID()
	p.m.ticks[kind].Inc()
	return append(out, t), nil
}

func (p *BinanceParser) bookTicker(recv int64, ev *fields, out []market.Tick) ([]market.Tick, *ParseError) {
	si, err := p.symbol(ev)
	if err != nil {
		return out, err
	}
	u, err := reqUint(ev, kFinalID)
	if err != nil {
		return out, err
	}
	var v [4]float64
	for i, k := range [...]int{kB, kBidQty, kA, kAskQty} {
		if v[i], err = reqDecimal(ev, k); err != nil {
			return out, err
		}
	}
	ts, err := exchTS(ev)
	if err != nil {
		return out, err
	}
	t := p.newTick(si, market.KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz = v[0], v[1], v[2], v[3]
	t.Seq = u
	t.ComputeID()
	p.m.ticks[market.KindQuote].Inc()
	return append(out, t), nil
}

// depth handles depthUpdate: one market.KindBookDelta tick per level (bids first),
// or market.KindSnapshot ticks for a futures partial depth stream.
func (p *BinanceParser) depth(recv int64, ev *fields, out []market.Tick, partial bool) ([]market.Tick, *ParseError) {
	si, err := p.symbol(ev)
	if err != nil {
		return out, err
	}
	first, err := reqUint(ev, kFirstID)
	if err != nil {
		return out, err
	}
	u, err := reqUint(ev, kFinalID)
	if err != nil {
		return out, err
	}
	if ev.s[kPrevID].t != jNone && ev.s[kPrevID].t != jUint {
		return out, fieldErr(ReasonBadType, kPrevID)
	}
	bids, err := reqLevels(ev, kB)
	if err != nil {
		return out, err
	}
	asks, err := reqLevels(ev, kA)
	if err != nil {
		return out, err
	}
	ts, err := exchTS(ev)
	if err != nil {
		return out, err
	}
	kind := market.KindBookDelta
	if partial {
		kind = market.KindSnapshot
	}
	out, perr := p.levels(recv, ts, si, kind, u, bids, asks, kB, kA, out)
	if perr == nil && !partial {
		p.diff = depthDiff{ok: true, si: si, U: first, u: u, pu: ev.s[kPrevID].u, hasPU: ev.s[kPrevID].t == jUint}
	}
	return out, perr
}

func (p *BinanceParser) restSnapshot(recv int64, ev *fields, si *symEntry, out []market.Tick) ([]market.Tick, *ParseError) {
	id, err := reqUint(ev, kLastUpdateID)
	if err != nil {
		return out, err
	}
	p.snapID = id
	bk, ak := kBids, kAsks
	bids, err := reqLevels(ev, bk)
	if err != nil {
		return out, err
	}
	asks, err := reqLevels(ev, ak)
	if err != nil {
		return out, err
	}
	ts, err := exchTS(ev)
	if err != nil {
		return out, err
	}
	return p.levels(recv, ts, si, market.KindSnapshot, id, bids, asks, bk, ak, out)
}

func (p *BinanceParser) levels(recv, ts int64, si *symEntry, kind market.Kind, seq uint64, bids, asks []rawLevel, bk, ak int, out []market.Tick) ([]market.Tick, *ParseError) {
	n := len(out)
	base := p.newTick(si, kind, recv, ts)
	base.Seq = seq
	for side, lvs := range [2][]rawLevel{bids, asks} {
		k := bk
		base.Side = market.SideBuy
		if side == 1 {
			k = ak
			base.Side = market.SideSell
		}
		for _, l := range lvs {
			px, err := decimalField(l.px, k)
			if err != nil {
				return out[:n], err
			}
			sz, err := decimalField(l.sz, k)
			if err != nil {
				return out[:n], err
			}
			t := base
			t.Price, t.Size = px, sz
			t.ComputeID()
			out = append(out, t)
		}
	}
	if c := len(out) - n; c > 0 {
		p.m.ticks[kind].Add(float64(c))
	}
	return out, nil
}

// ---- symbols ----

const (
	maxSymbolLen     = 64
	maxCachedSymbols = 8192
)

func (p *BinanceParser) lookupString(s string) (*symEntry, *ParseError) {
	if si, ok := p.syms[s]; ok {
		return si, nil
	}
	return p.lookup([]byte(s))
}

func (p *BinanceParser) lookup(b []byte) (*symEntry, *ParseError) {
	if si, ok := p.syms[string(b)]; ok {
		return si, nil
	}
	if len(b) == 0 || len(b) > maxSymbolLen || !utf8.Valid(b) {
		return nil, fieldErr(ReasonBadSymbol, kSymbol)
	}
	for _, c := range b {
		if c <= ' ' || c == 0x7f {
			return nil, fieldErr(ReasonBadSymbol, kSymbol)
		}
	}
	si := &symEntry{symbol: string(b)}
	si.instrument, si.normalized = NormalizeBinanceSymbol(p.market, si.symbol)
	if len(p.syms) < maxCachedSymbols {
		p.syms[si.symbol] = si
	}
	return si, nil
}

// binanceQuotes are the quote assets a Binance symbol may end with; they are
// matched longest first.
var binanceQuotes = func() []string {
	q := []string{"USDT", "FDUSD", "USDC", "BUSD", "TUSD", "USDP", "USDS", "UST", "DAI", "VAI", "PAX",
		"BTC", "ETH", "BNB", "XRP", "TRX", "DOGE",
		"EUR", "TRY", "BRL", "GBP", "AUD", "RUB", "UAH", "NGN", "ZAR", "PLN", "RON", "ARS", "JPY",
		"MXN", "COP", "CZK", "IDR", "BIDR", "IDRT", "BKRW", "BVND", "USD"}
	sort.SliceStable(q, func(i, j int) bool { return len(q[i]) > len(q[j]) })
	return q
}()

// NormalizeBinanceSymbol maps a Binance symbol to the normalized instrument:
// spot BTCUSDT → BTC-USDT; USD-M perpetual BTCUSDT → BTC-USDT-PERP; USD-M
// delivery BTCUSDT_240927 → BTC-USDT-240927. ok is false (and the symbol is
// returned unchanged) when no known quote asset ends the symbol.
func NormalizeBinanceSymbol(market, symbol string) (instrument string, ok bool) {
	pair, expiry := symbol, ""
	if market == MarketUSDM {
		if i := strings.IndexByte(symbol, '_'); i >= 0 {
			pair, expiry = symbol[:i], symbol[i+1:]
			if expiry == "" || strings.Trim(expiry, "0123456789") != "" {
				return symbol, false
			}
		}
	}
	for _, q := range binanceQuotes {
		if len(pair) > len(q) && strings.HasSuffix(pair, q) {
			base := pair[:len(pair)-len(q)]
			if strings.IndexByte(base, '_') >= 0 {
				return symbol, false
			}
			switch {
			case market != MarketUSDM:
				return base + "-" + q, true
			case expiry == "":
				return base + "-" + q + "-PERP", true
			default:
				return base + "-" + q + "-" + expiry, true
			}
		}
	}
	return symbol, false
}
