package ingest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/signald-dev/signald/market"
)

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueBinance,
		Cryptofeed: []string{"BINANCE"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(c FeedConfig) (Feed, error) { return NewBinanceFeed(MarketSpot, c) },
	})
	RegisterVenue(VenueInfo{
		Name:       VenueBinanceUSDM,
		Cryptofeed: []string{"BINANCE_FUTURES"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(c FeedConfig) (Feed, error) { return NewBinanceFeed(MarketUSDM, c) },
	})
}

// Public Binance endpoints (FeedConfig.Endpoint and RESTEndpoint replace
// the scheme-and-host part).
const (
	binanceSpotWS    = "wss://stream.binance.com:9443"
	binanceUSDMWS    = "wss://fstream.binance.com"
	binanceSpotREST  = "https://api.binance.com"
	binanceUSDMREST  = "https://fapi.binance.com"
	binanceMaxBuffer = 4096 // depth events buffered per book while waiting for a snapshot
	// binanceURLStreams is how many streams go into the connection URL; the
	// rest are sent as SUBSCRIBE frames (a URL of 1024 streams is ~30 KB).
	binanceURLStreams    = 100
	binanceStreamsPerSub = 200 // params per SUBSCRIBE frame
)

// BinanceFeed is the Feed of Binance spot ("binance") and USD-M futures
// ("binance-usdm"), on top of BinanceParser (both JSON paths) and the
// shared feed core and books.
//
// Books follow Binance's documented procedure ("How to manage a local order
// book correctly"): depth diffs are buffered until a REST snapshot
// (SnapshotRequests) arrives; buffered events already in the snapshot are
// dropped (spot: u <= lastUpdateId; futures: u < lastUpdateId); the first
// event applied must straddle the snapshot (spot: U <= lastUpdateId+1 <= u;
// futures: U <= lastUpdateId <= u) and every later one continue the previous
// (spot: U == previous u + 1; futures: pu == previous u). A snapshot older
// than the buffered events is fetched again. A broken sequence or a crossed
// book yields one market.KindGap tick, withholds the instrument's book ticks and
// asks for a new snapshot.
//
// Per book (bookState): synced is "snapshot applied, deltas flow"; first
// is "synced, the first event after the snapshot still to come"; seq is
// the snapshot's lastUpdateId (first) or the u of the last event applied;
// pend and pendLv buffer the events while no snapshot is applied;
// requested is "a snapshot was asked for and has not arrived"; resync is
// "a gap tick was published since the book was last in sync".
type BinanceFeed struct {
	feedCore
	market   string
	p        *BinanceParser
	ws, rest string
}

// NewBinanceFeed returns the Feed of market (MarketSpot or MarketUSDM).
func NewBinanceFeed(market string, cfg FeedConfig) (*BinanceFeed, error) {
	venue := VenueBinance
	switch market {
	case MarketSpot:
	case MarketUSDM:
		venue = VenueBinanceUSDM
	default:
		// The parser names the markets it supports.
		_, err := NewBinanceParser(BinanceConfig{Market: market}, nil)
		return nil, err
	}
	norm := func(symbol string) (string, bool) { return NormalizeBinanceSymbol(market, strings.ToUpper(symbol)) }
	f := &BinanceFeed{feedCore: newFeedCore(venue, cfg, norm), market: market}
	p, err := newBinanceParser(BinanceConfig{Market: market, ForceFallback: cfg.ForceFallback}, cfg.Metrics, f.jp)
	if err != nil {
		return nil, err
	}
	f.p = p
	f.ws, f.rest = binanceSpotWS, binanceSpotREST
	if market == MarketUSDM {
		f.ws, f.rest = binanceUSDMWS, binanceUSDMREST
	}
	if cfg.Endpoint != "" {
		f.ws = strings.TrimRight(cfg.Endpoint, "/")
	}
	if cfg.RESTEndpoint != "" {
		f.rest = strings.TrimRight(cfg.RESTEndpoint, "/")
	}
	return f, nil
}

// SIMD reports whether the feed parses with simdjson-go.
func (f *BinanceFeed) SIMD() bool { return f.p.SIMD() }

// Limits: 1024 streams per connection; 5 incoming messages per second per
// connection on spot, 10 on futures; Binance pings at the websocket level
// (answered by the websocket library), so no application ping.
func (f *BinanceFeed) Limits() Limits {
	l := Limits{MaxSubsPerConn: 1024, SubscribeRate: 5}
	if f.market == MarketUSDM {
		l.SubscribeRate = 10
	}
	return l
}

func (f *BinanceFeed) stream(s Subscription) (string, error) {
	sym := strings.ToLower(s.Symbol)
	if sym == "" || strings.ContainsAny(sym, "/@ ") {
		return "", fmt.Errorf("binance: bad symbol %q", s.Symbol)
	}
	switch s.Channel {
	case ChanTrades:
		if f.market == MarketUSDM {
			return sym + "@aggTrade", nil
		}
		return sym + "@trade", nil
	case ChanQuotes:
		return sym + "@bookTicker", nil
	case ChanBook:
		return sym + "@depth@100ms", nil
	}
	return "", fmt.Errorf("%s: channel %q is not supported (trades, quotes, book)", f.venue, s.Channel)
}

func (f *BinanceFeed) streams(subs []Subscription) ([]string, error) {
	out := make([]string, 0, len(subs))
	for _, s := range subs {
		st, err := f.stream(s)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// URL is the combined-stream endpoint with the first streams in its query;
// SubscribeFrames sends the rest.
func (f *BinanceFeed) URL(subs []Subscription) (string, error) {
	st, err := f.streams(subs)
	if err != nil {
		return "", err
	}
	if len(st) == 0 {
		return "", fmt.Errorf("%s: no subscriptions", f.venue)
	}
	return f.ws + "/stream?streams=" + strings.Join(st[:min(len(st), binanceURLStreams)], "/"), nil
}

// SubscribeFrames are SUBSCRIBE requests for the streams beyond the URL's.
func (f *BinanceFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	st, err := f.streams(subs)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	id := 1
	for rest := st[min(len(st), binanceURLStreams):]; len(rest) > 0; id++ {
		n := min(len(rest), binanceStreamsPerSub)
		b, _ := json.Marshal(struct {
			Method string   `json:"method"`
			Params []string `json:"params"`
			ID     int      `json:"id"`
		}{"SUBSCRIBE", rest[:n], id})
		out = append(out, b)
		rest = rest[n:]
	}
	return out, nil
}

// Ping is nil: Binance pings at the websocket level.
func (f *BinanceFeed) Ping() []byte { return nil }

// SnapshotSymbol reads the symbol= parameter of a depth URL.
func (f *BinanceFeed) SnapshotSymbol(u string) (string, bool) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", false
	}
	s := pu.Query().Get("symbol")
	return strings.ToUpper(s), s != ""
}

// Reset forgets every book (Outbox stays empty: Binance resyncs books over
// REST).
func (f *BinanceFeed) Reset() { f.reset() }

// bookOf returns the book of a venue symbol; s names it when the book is
// new (nil: the symbol as given, normalized).
func (f *BinanceFeed) bookOf(symbol string, s *symEntry) *bookState {
	b := f.books[symbol]
	if b == nil {
		if s == nil {
			inst, ok := f.Normalize(symbol)
			s = &symEntry{symbol: symbol, instrument: inst, normalized: ok}
		}
		b = &bookState{sym: s}
		f.books[symbol] = b
	}
	return b
}

func (f *BinanceFeed) requestSnapshot(b *bookState) {
	if b.requested {
		return
	}
	b.requested = true
	path := "/api/v3/depth"
	if f.market == MarketUSDM {
		path = "/fapi/v1/depth"
	}
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: b.sym.symbol, URL: f.rest + path + "?symbol=" + b.sym.symbol + "&limit=1000"})
}

// buffer appends one depth event of levels lv to b's buffer.
func (f *BinanceFeed) buffer(b *bookState, d *depthDiff, lv []seqLevel, recv, exch int64) {
	from := len(b.pendLv)
	b.pendLv = append(b.pendLv, lv...)
	b.pend = append(b.pend, pendingDelta{first: d.U, last: d.u, prev: d.pu, hasPrev: d.hasPU, recv: recv, exch: exch, from: from, to: len(b.pendLv)})
}

// levelsOf puts the levels of an event's ticks in f.sl and returns them
// with the ticks' receive and exchange times.
func (f *BinanceFeed) levelsOf(ticks []market.Tick) ([]seqLevel, int64, int64) {
	f.sl = f.sl[:0]
	for i := range ticks {
		t := &ticks[i]
		f.sl = append(f.sl, seqLevel{side: t.Side, px: t.Price, sz: t.Size})
	}
	if len(ticks) == 0 {
		return f.sl, 0, 0
	}
	return f.sl, ticks[0].RecvTS, ticks[0].ExchTS
}

// Handle decodes one frame. Depth diffs go through the book: buffered until
// the book is in sync, checked against the sequence, applied.
func (f *BinanceFeed) Handle(recvNS int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	n := len(out)
	out, err := f.p.Parse(recvNS, frame, out)
	if err != nil || !f.p.diff.ok {
		return out, err
	}
	d := &f.p.diff
	b := f.bookOf(d.si.symbol, d.si)
	if !b.synced {
		if len(b.pend) >= binanceMaxBuffer {
			// The oldest events go; if the snapshot needed them, the
			// straddle check fails and a newer snapshot is fetched.
			b.dropOldest()
			f.m.Dropped("depth_buffer", 1)
		}
		lv, recv, exch := f.levelsOf(out[n:])
		f.buffer(b, d, lv, recv, exch)
		f.requestSnapshot(b)
		return out[:n], nil
	}
	switch f.order(b, d.U, d.u, d.pu, d.hasPU) {
	case evStale:
		f.m.Dropped("depth_in_snapshot", 1)
		return out[:n], nil
	case evBroken:
		return f.fail(b, recvNS, "gap", d, out, n), nil
	}
	for i := n; i < len(out); i++ {
		t := &out[i]
		b.Set(t.Side, t.Price, t.Size, "", "")
	}
	if b.Crossed() {
		return f.fail(b, recvNS, "crossed", d, out, n), nil
	}
	b.seq = d.u
	return out, nil
}

// Where an event stands against a synced book.
const (
	evNext   = iota // it continues the book
	evStale         // the snapshot already contains it
	evBroken        // events are missing before it
)

// order places the event U..u (pu: the previous event's u, USD-M) against
// b's sequence; the first event that continues a snapshot clears b.first.
func (f *BinanceFeed) order(b *bookState, U, u, pu uint64, hasPU bool) int {
	usdm := f.market == MarketUSDM
	if b.first {
		L := b.seq
		switch {
		case !usdm && u <= L, usdm && u < L:
			return evStale
		case !usdm && U <= L+1, usdm && U <= L:
			b.first = false
		case usdm && hasPU && pu == L:
			// Not in Binance's text, but exact: the previous event ended
			// at the snapshot.
			b.first = false
		default:
			return evBroken
		}
		return evNext
	}
	cont := U == b.seq+1
	if usdm && hasPU {
		cont = pu == b.seq
	}
	if !cont {
		return evBroken
	}
	return evNext
}

// fail resyncs b after the live event d, whose ticks are out[n:], broke
// it. The event starts the new buffer: the next snapshot may be the one
// that ends with it (a futures snapshot whose lastUpdateId is d's u needs
// d as its straddling event).
func (f *BinanceFeed) fail(b *bookState, recv int64, reason string, d *depthDiff, out []market.Tick, n int) []market.Tick {
	// The levels are copied first: the gap tick reuses out[n].
	lv, evRecv, exch := f.levelsOf(out[n:])
	out = f.resync(b, recv, reason, out[:n])
	f.buffer(b, d, lv, evRecv, exch)
	return out
}

// resync marks b out of sync: one gap tick (per loss of sync), the book
// cleared, a new snapshot asked for.
func (f *BinanceFeed) resync(b *bookState, recv int64, reason string, out []market.Tick) []market.Tick {
	f.m.Resync(reason)
	f.log.Warn("book out of sync: resnapshotting", "symbol", b.sym.symbol, "reason", reason, "last_u", b.seq)
	b.synced, b.first = false, false
	b.Clear()
	if len(b.pend) > 0 {
		f.m.Dropped("depth_resync", len(b.pend))
	}
	b.pend, b.pendLv = b.pend[:0], b.pendLv[:0]
	if !b.resync {
		b.resync = true
		out = f.gapTick(out, b.sym, recv, 0, 0)
		f.m.Ticks(market.KindGap, 1)
	}
	f.requestSnapshot(b)
	return out
}

// Resync implements Resyncer.
func (f *BinanceFeed) Resync(recvNS int64, symbol, reason string, out []market.Tick) []market.Tick {
	b := f.bookOf(strings.ToUpper(symbol), nil)
	b.resync = false // the caller's data loss is a new one
	return f.resync(b, recvNS, reason, out)
}

// HandleSnapshot applies a REST depth snapshot, then the buffered events
// that follow it. A snapshot older than the buffered events is not used: a
// newer one is asked for.
func (f *BinanceFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	n := len(out)
	sym := strings.ToUpper(req.Symbol)
	if sym == "" {
		sym, _ = f.SnapshotSymbol(req.URL)
	}
	out, err := f.p.ParseSnapshot(recvNS, sym, body, out)
	if err != nil {
		return out, err
	}
	L := f.p.snapID
	b := f.bookOf(sym, nil)
	b.requested = false
	if b.synced && L <= b.seq {
		// Older than the book already in sync (replays hold periodic
		// snapshots): publishing it would take the book back in time.
		f.m.Ignored("stale_snapshot")
		return out[:n], nil
	}
	usdm := f.market == MarketUSDM
	// Buffered events the snapshot contains go.
	i := 0
	for i < len(b.pend) && (!usdm && b.pend[i].last <= L || usdm && b.pend[i].last < L) {
		i++
	}
	if i < len(b.pend) {
		if e := b.pend[i]; !usdm && e.first > L+1 || usdm && e.first > L {
			if i == 0 {
				// The snapshot predates everything buffered: fetch again.
				f.m.Resync("stale_snapshot")
				f.requestSnapshot(b)
				return out[:n], nil
			}
			// Events between the snapshot and the buffer are missing.
			return f.resync(b, recvNS, "gap", out[:n]), nil
		}
	}
	if i > 0 {
		f.m.Dropped("depth_in_snapshot", i)
	}
	b.Clear()
	for j := n; j < len(out); j++ {
		t := &out[j]
		b.Set(t.Side, t.Price, t.Size, "", "")
	}
	if b.Crossed() {
		return f.resync(b, recvNS, "crossed", out[:n]), nil
	}
	b.synced, b.first, b.seq = true, true, L
	// The events are applied from pend; the book's buffer is empty
	// meanwhile, so a resync drops (and counts) none of them.
	pend, pendLv := b.pend[i:], b.pendLv
	b.pend, b.pendLv = nil, nil
	for j := range pend {
		ev := &pend[j]
		m := len(out)
		switch f.order(b, ev.first, ev.last, ev.prev, ev.hasPrev) {
		case evStale:
			f.m.Dropped("depth_in_snapshot", 1)
			continue
		case evNext:
			prev := b.seq
			var ok bool
			if out, ok = f.applyDelta(b, pendLv[ev.from:ev.to], ev.recv, ev.exch, ev.last, out); ok {
				continue
			}
			b.seq = prev
			out = f.resync(b, recvNS, "crossed", out[:m])
		case evBroken:
			out = f.resync(b, recvNS, "gap", out)
		}
		// The failing event and those after it start the new buffer;
		// the whole rebuild is withheld, only the gap tick stays.
		b.pend = append(b.pend[:0], pend[j:]...)
		b.pendLv = pendLv
		if len(out) > n && out[len(out)-1].Kind == market.KindGap {
			return append(out[:n], out[len(out)-1]), nil
		}
		return out[:n], nil
	}
	b.pend, b.pendLv = pend[:0], pendLv[:0]
	b.resync = false
	return out, nil
}
