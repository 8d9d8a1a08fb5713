package ingest

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/signald-dev/signald/market"
)

func init() {
	RegisterVenue(VenueInfo{Name: VenueBinance, Cryptofeed: []string{"BINANCE"}, Channels: []Channel{ChanTrades, ChanQuotes, ChanBook}, New: func(c FeedConfig) (Feed, error) { return NewBinanceFeed(MarketSpot, c) }})
	RegisterVenue(VenueInfo{Name: VenueBinanceUSDM, Cryptofeed: []string{"BINANCE_FUTURES"}, Channels: []Channel{ChanTrades, ChanQuotes, ChanBook}, New: func(c FeedConfig) (Feed, error) { return NewBinanceFeed(MarketUSDM, c) }})
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
// ("binance-usdm"), on top of BinanceParser (both JSON paths).
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
type BinanceFeed struct {
	market, venue string
	p             *BinanceParser
	fm            *FeedMetrics
	log           *slog.Logger
	ws, rest      string
	books         map[string]*binanceBook
	reqs          []SnapshotRequest
}

type binanceBook struct {
	symbol, instrument string
	book               Book
	synced             bool   // snapshot applied; deltas flow
	first              bool   // synced, and the first event after the snapshot is still to come
	lastU              uint64 // synced: lastUpdateId of the snapshot (first) or u of the last event applied
	buf                []binanceEvent
	pending            bool // a snapshot was asked for and has not arrived
	gapSent            bool // a market.KindGap tick was published since the book was last in sync
}

type binanceEvent struct {
	U, u, pu uint64
	hasPU    bool
	ticks    []market.Tick
}

// NewBinanceFeed returns the Feed of market (MarketSpot or MarketUSDM).
func NewBinanceFeed(market string, cfg FeedConfig) (*BinanceFeed, error) {
	p, err := NewBinanceParser(BinanceConfig{Market: market, ForceFallback: cfg.ForceFallback}, cfg.Metrics)
	if err != nil {
		return nil, err
	}
	f := &BinanceFeed{market: market, venue: p.Venue(), p: p, fm: cfg.Metrics.Feed(p.Venue()),
		log: cfg.Logger, books: map[string]*binanceBook{}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
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

// Venue is "binance" or "binance-usdm".
func (f *BinanceFeed) Venue() string { return f.venue }

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

// Normalize maps BTCUSDT to BTC-USDT (spot) or BTC-USDT-PERP (USD-M).
func (f *BinanceFeed) Normalize(symbol string) (string, bool) {
	return NormalizeBinanceSymbol(f.market, strings.ToUpper(symbol))
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

// Outbox appends nothing: Binance resyncs books over REST.
func (f *BinanceFeed) Outbox(dst [][]byte) [][]byte { return dst }

// SnapshotRequests appends the REST depth snapshots the books need.
func (f *BinanceFeed) SnapshotRequests(dst []SnapshotRequest) []SnapshotRequest {
	dst = append(dst, f.reqs...)
	f.reqs = f.reqs[:0]
	return dst
}

// SnapshotSymbol reads the symbol= parameter of a depth URL.
func (f *BinanceFeed) SnapshotSymbol(u string) (string, bool) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", false
	}
	s := pu.Query().Get("symbol")
	return strings.ToUpper(s), s != ""
}

// Reset forgets every book.
func (f *BinanceFeed) Reset() {
	clear(f.books)
	f.reqs = f.reqs[:0]
}

func (f *BinanceFeed) bookOf(symbol, instrument string) *binanceBook {
	bk := f.books[symbol]
	if bk == nil {
		bk = &binanceBook{symbol: symbol, instrument: instrument}
		f.books[symbol] = bk
	}
	return bk
}

func (f *BinanceFeed) requestSnapshot(bk *binanceBook) {
	if bk.pending {
		return
	}
	bk.pending = true
	path := "/api/v3/depth"
	if f.market == MarketUSDM {
		path = "/fapi/v1/depth"
	}
	f.reqs = append(f.reqs, SnapshotRequest{Symbol: bk.symbol, URL: f.rest + path + "?symbol=" + bk.symbol + "&limit=1000"})
}

// Handle decodes one frame. Depth diffs go through the book: buffered until
// the book is in sync, checked against the sequence, applied.
func (f *BinanceFeed) Handle(recvNS int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	n := len(out)
	out, err := f.p.Parse(recvNS, frame, out)
	if err != nil || !f.p.diff.ok {
		return out, err
	}
	d := f.p.diff
	bk := f.bookOf(d.si.symbol, d.si.instrument)
	ev := binanceEvent{U: d.U, u: d.u, pu: d.pu, hasPU: d.hasPU}
	if !bk.synced {
		ev.ticks = append([]market.Tick(nil), out[n:]...)
		if len(bk.buf) >= binanceMaxBuffer {
			// The oldest events go; if the snapshot needed them, the
			// straddle check fails and a newer snapshot is fetched.
			copy(bk.buf, bk.buf[1:])
			bk.buf = bk.buf[:len(bk.buf)-1]
			f.fm.Dropped("depth_buffer", 1)
		}
		bk.buf = append(bk.buf, ev)
		f.requestSnapshot(bk)
		return out[:n], nil
	}
	ev.ticks = out[n:]
	out, _ = f.apply(bk, recvNS, ev, out[:n], true)
	return out, nil
}

// apply applies one event to a synced book. It appends the event's ticks to
// out when the event continues the book, nothing when the snapshot already
// contains it, and a gap tick (resyncing) when it breaks the sequence or
// crosses the book. ok is false after a resync.
func (f *BinanceFeed) apply(bk *binanceBook, recv int64, ev binanceEvent, out []market.Tick, live bool) ([]market.Tick, bool) {
	usdm := f.market == MarketUSDM
	if bk.first {
		L := bk.lastU
		switch {
		case !usdm && ev.u <= L, usdm && ev.u < L:
			f.fm.Dropped("depth_in_snapshot", 1)
			return out, true // already in the snapshot
		case !usdm && ev.U <= L+1, usdm && ev.U <= L:
			bk.first = false
		case usdm && ev.hasPU && ev.pu == L:
			// Not in Binance's text, but exact: the previous event ended
			// at the snapshot.
			bk.first = false
		default:
			return f.fail(bk, recv, "gap", ev, out, live), false
		}
	} else {
		cont := ev.U == bk.lastU+1
		if usdm && ev.hasPU {
			cont = ev.pu == bk.lastU
		}
		if !cont {
			return f.fail(bk, recv, "gap", ev, out, live), false
		}
	}
	for i := range ev.ticks {
		t := &ev.ticks[i]
		bk.book.Set(t.Side, t.Price, t.Size, "", "")
	}
	if bk.book.Crossed() {
		return f.fail(bk, recv, "crossed", ev, out, live), false
	}
	bk.lastU = ev.u
	if live {
		// ev.ticks already sit at the end of out.
		return out[:len(out)+len(ev.ticks)], true
	}
	return append(out, ev.ticks...), true
}

// fail resyncs bk after ev broke it. A live event starts the new buffer:
// the next snapshot may be the one that ends with it (a futures snapshot
// whose lastUpdateId is ev's u needs ev as its straddling event).
func (f *BinanceFeed) fail(bk *binanceBook, recv int64, reason string, ev binanceEvent, out []market.Tick, live bool) []market.Tick {
	if live {
		// ev.ticks alias out's spare capacity, which the gap tick reuses.
		ev.ticks = append([]market.Tick(nil), ev.ticks...)
	}
	out = f.resync(bk, recv, reason, out)
	if live {
		bk.buf = append(bk.buf, ev)
	}
	return out
}

// resync marks bk out of sync: one gap tick (per loss of sync), the book
// cleared, a new snapshot asked for.
func (f *BinanceFeed) resync(bk *binanceBook, recv int64, reason string, out []market.Tick) []market.Tick {
	f.fm.Resync(reason)
	f.log.Warn("book out of sync: resnapshotting", "venue", f.venue, "symbol", bk.symbol, "reason", reason, "last_u", bk.lastU)
	bk.synced, bk.first = false, false
	bk.book.Clear()
	if len(bk.buf) > 0 {
		f.fm.Dropped("depth_resync", len(bk.buf))
	}
	bk.buf = bk.buf[:0]
	if !bk.gapSent {
		bk.gapSent = true
		out = append(out, GapTick(f.venue, bk.instrument, bk.symbol, recv))
		f.fm.Ticks(market.KindGap, 1)
	}
	f.requestSnapshot(bk)
	return out
}

// Resync implements Resyncer.
func (f *BinanceFeed) Resync(recvNS int64, symbol, reason string, out []market.Tick) []market.Tick {
	symbol = strings.ToUpper(symbol)
	inst, _ := f.Normalize(symbol)
	bk := f.bookOf(symbol, inst)
	bk.gapSent = false // the caller's data loss is a new one
	return f.resync(bk, recvNS, reason, out)
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
	inst, _ := f.Normalize(sym)
	bk := f.bookOf(sym, inst)
	bk.pending = false
	if bk.synced && L <= bk.lastU {
		// Older than the book already in sync (replays hold periodic
		// snapshots): publishing it would take the book back in time.
		f.fm.Ignored("stale_snapshot")
		return out[:n], nil
	}
	usdm := f.market == MarketUSDM
	// Buffered events the snapshot contains go.
	i := 0
	for i < len(bk.buf) && (!usdm && bk.buf[i].u <= L || usdm && bk.buf[i].u < L) {
		i++
	}
	if i < len(bk.buf) {
		if e := bk.buf[i]; !usdm && e.U > L+1 || usdm && e.U > L {
			if i == 0 {
				// The snapshot predates everything buffered: fetch again.
				f.fm.Resync("stale_snapshot")
				f.requestSnapshot(bk)
				return out[:n], nil
			}
			// Events between the snapshot and the buffer are missing.
			return f.resync(bk, recvNS, "gap", out[:n]), nil
		}
	}
	if i > 0 {
		f.fm.Dropped("depth_in_snapshot", i)
	}
	buf := bk.buf[i:]
	bk.book.Clear()
	for j := n; j < len(out); j++ {
		t := &out[j]
		bk.book.Set(t.Side, t.Price, t.Size, "", "")
	}
	if bk.book.Crossed() {
		return f.resync(bk, recvNS, "crossed", out[:n]), nil
	}
	bk.synced, bk.first, bk.lastU = true, true, L
	bk.buf = nil // buf holds the events while they are applied
	for j, ev := range buf {
		var ok bool
		if out, ok = f.apply(bk, recvNS, ev, out, false); !ok {
			// The failing event and those after it start the new
			// buffer; the whole rebuild is withheld, only the gap tick
			// stays.
			bk.buf = append(bk.buf[:0], buf[j:]...)
			if len(out) > n && out[len(out)-1].Kind == market.KindGap {
				return append(out[:n], out[len(out)-1]), nil
			}
			return out[:n], nil
		}
	}
	bk.buf = buf[:0]
	bk.gapSent = false
	return out, nil
}
