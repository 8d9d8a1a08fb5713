package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueCoinbase,
		Cryptofeed: []string{"COINBASE"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewCoinbaseFeed(cfg), nil },
	})
}

// CoinbaseFeed is the Coinbase Exchange websocket feed
// (wss://ws-feed.exchange.coinbase.com): matches (trades), ticker (best bid
// and offer), level2_batch (L2 book: a snapshot, then l2update) and
// heartbeat.
//
// Sync: level2 messages carry no sequence number, so a book gap cannot be
// seen in the level2 stream itself. Coinbase drops messages of a client that
// reads too slowly, for every channel of the connection alike; trade ids are
// consecutive per product, so a trade id that skips ahead (in matches, or in
// a heartbeat's last_trade_id) shows that messages were lost. The feed then
// treats the product's book as out of sync: a market.KindGap tick, book ticks
// withheld, and an unsubscribe and subscribe of the book channel, which
// makes Coinbase send a fresh snapshot. A crossed book after an update is
// handled the same way.
type CoinbaseFeed struct {
	resyncCore
	bookChannel string
	subscribed  map[string]bool // products with a book subscription
	lastTrade   map[string]uint64
	f           [16]jfield
}

// NewCoinbaseFeed returns a Coinbase feed.
func NewCoinbaseFeed(cfg FeedConfig) *CoinbaseFeed {
	f := &CoinbaseFeed{
		resyncCore:  resyncCore{newFeedCore(VenueCoinbase, cfg, NormalizeCoinbaseSymbol)},
		bookChannel: "level2_batch",
		subscribed:  map[string]bool{},
		lastTrade:   map[string]uint64{},
	}
	f.resnapshot = func(b *bookState) { f.resubscribe(b.sym.symbol) }
	return f
}

// NormalizeCoinbaseSymbol maps a Coinbase product id (BTC-USD) to the
// normalized instrument (the same, upper case).
func NormalizeCoinbaseSymbol(symbol string) (string, bool) {
	i := strings.IndexByte(symbol, '-')
	if i <= 0 || i == len(symbol)-1 || strings.IndexByte(symbol[i+1:], '-') >= 0 {
		return symbol, false
	}
	return strings.ToUpper(symbol), true
}

// Limits: Coinbase allows 8 requests a second per IP (bursts of 20); a
// connection must subscribe within 5 s. Heartbeats come every second per
// product, so 10 s of silence means the connection is dead; no
// application-level ping exists.
func (f *CoinbaseFeed) Limits() Limits {
	return Limits{SubscribeRate: 8, Silence: 10 * time.Second}
}

// URL implements Feed.
func (f *CoinbaseFeed) URL([]Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://ws-feed.exchange.coinbase.com", nil
}

// Ping implements Feed: Coinbase needs none (the heartbeat channel keeps
// the connection busy).
func (f *CoinbaseFeed) Ping() []byte { return nil }

type coinbaseSub struct {
	Type       string   `json:"type"`
	ProductIDs []string `json:"product_ids"`
	Channels   []string `json:"channels"`
}

// SubscribeFrames implements Feed: one subscribe frame per channel, and the
// heartbeat channel for every product.
func (f *CoinbaseFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	byChan := map[string][]string{}
	var order []string
	seen := map[string]bool{}
	for _, s := range subs {
		var ch string
		switch s.Channel {
		case ChanTrades:
			ch = "matches"
		case ChanQuotes:
			ch = "ticker"
		case ChanBook:
			ch = f.bookChannel
			f.subscribed[s.Symbol] = true
		default:
			return nil, fmt.Errorf("coinbase: channel %q is not supported (trades, quotes, book)", s.Channel)
		}
		if _, ok := byChan[ch]; !ok {
			order = append(order, ch)
		}
		byChan[ch] = append(byChan[ch], s.Symbol)
		if !seen[s.Symbol] {
			seen[s.Symbol] = true
			byChan["heartbeat"] = append(byChan["heartbeat"], s.Symbol)
		}
	}
	if len(subs) > 0 {
		order = append(order, "heartbeat")
	}
	var frames [][]byte
	for _, ch := range order {
		b, err := json.Marshal(coinbaseSub{Type: "subscribe", ProductIDs: byChan[ch], Channels: []string{ch}})
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
	}
	return frames, nil
}

// HandleSnapshot implements Feed: Coinbase sends snapshots on the websocket.
func (f *CoinbaseFeed) HandleSnapshot(_ int64, req SnapshotRequest, _ []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("coinbase: no REST snapshots are requested (got %s)", req.URL)
}

// Reset implements Feed.
func (f *CoinbaseFeed) Reset() {
	f.reset()
	clear(f.lastTrade)
}

var coinbaseKeys = []string{"type", "product_id", "trade_id", "side", "size", "price", "sequence", "time",
	"best_bid", "best_bid_size", "best_ask", "best_ask_size", "bids", "asks", "changes", "last_trade_id"}

const (
	cbType = iota
	cbProduct
	cbTradeID
	cbSide
	cbSize
	cbPrice
	cbSeq
	cbTime
	cbBestBid
	cbBestBidSize
	cbBestAsk
	cbBestAskSize
	cbBids
	cbAsks
	cbChanges
	cbLastTradeID
)

// Handle implements Feed.
func (f *CoinbaseFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	n := len(out)
	out, perr := f.handle(recv, frame, out)
	return f.finish(out, n, perr)
}

func (f *CoinbaseFeed) handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	it, typ, perr := f.parseRoot(frame)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	fl := f.f[:]
	var r fieldReader
	r.objectFields(&root, coinbaseKeys, fl, "root")
	t := r.str(&fl[cbType], "type")
	if r.err != nil {
		return out, r.err
	}
	switch string(t) {
	case "match", "last_match":
		return f.match(recv, out)
	case "ticker":
		return f.ticker(recv, out)
	case "snapshot":
		return f.snapshot(recv, out)
	case "l2update":
		return f.l2update(recv, out)
	case "heartbeat":
		return f.heartbeat(recv, out)
	case "error":
		f.log.Warn("coinbase error message", "frame", string(truncate(frame, 512)))
		f.m.Ignored("error")
		return out, nil
	case "subscriptions":
		f.m.Ignored("response")
		return out, nil
	}
	f.m.Ignored("other")
	return out, nil
}

func (f *CoinbaseFeed) product(r *fieldReader) *symEntry {
	return r.sym(&f.feedCore, &f.f[cbProduct], "product_id")
}

// time returns the frame's time, 0 when absent.
func (f *CoinbaseFeed) time(r *fieldReader) int64 {
	fl := &f.f[cbTime]
	if fl.typ == simdjson.TypeNone {
		return 0
	}
	b := r.str(fl, "time")
	if r.err != nil {
		return 0
	}
	ts, ok := parseRFC3339(b)
	if !ok {
		r.fail(ReasonBadNumber, "time")
	}
	return ts
}

func (f *CoinbaseFeed) match(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := f.product(&r)
	if r.err != nil {
		return out, r.err
	}
	fl := f.f[:]
	id := r.uint(&fl[cbTradeID], "trade_id")
	px := r.dec(&fl[cbPrice], "price")
	sz := r.dec(&fl[cbSize], "size")
	maker := r.side(&fl[cbSide], "side")
	t := f.newTick(s, market.KindTrade, recv, 0)
	t.Side = -maker // side is the maker order's side: the taker took the other one
	if fl[cbSeq].typ != simdjson.TypeNone {
		t.Seq = r.uint(&fl[cbSeq], "sequence")
	}
	t.ExchTS = f.time(&r)
	if r.err != nil {
		return out, r.err
	}
	last, seen := f.lastTrade[s.symbol]
	if seen && id <= last {
		// Already published (Coinbase repeats the last match on subscribe).
		f.m.Ignored("duplicate_trade")
		return out, nil
	}
	t.Price, t.Size, t.TradeID = px, sz, id
	t.ComputeID()
	out = append(out, t)
	f.lastTrade[s.symbol] = id
	if seen && id > last+1 {
		out = f.lost(s, out, len(out), recv, t.ExchTS)
	}
	return out, nil
}

// lost handles messages lost for a product: a gap tick and, when the
// product's book is subscribed, a fresh snapshot.
func (f *CoinbaseFeed) lost(s *symEntry, out []market.Tick, n int, recv, exch int64) []market.Tick {
	if _, ok := f.books[s.symbol]; ok || f.subscribed[s.symbol] {
		out = f.outOfSync(out, n, f.book(s), "gap", recv, exch, 0)
		f.resubscribe(s.symbol)
		return out
	}
	// No book to resync: the gap tick still tells consumers trades are
	// missing.
	g := f.newTick(s, market.KindGap, recv, exch)
	g.ComputeID()
	f.m.Resync("trade_gap")
	return append(out, g)
}

func (f *CoinbaseFeed) resubscribe(product string) {
	for _, typ := range []string{"unsubscribe", "subscribe"} {
		b, _ := json.Marshal(coinbaseSub{Type: typ, ProductIDs: []string{product}, Channels: []string{f.bookChannel}})
		f.outbox = append(f.outbox, b)
	}
}

func (f *CoinbaseFeed) ticker(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := f.product(&r)
	if r.err != nil {
		return out, r.err
	}
	fl := f.f[:]
	t := f.newTick(s, market.KindQuote, recv, 0)
	t.BidPx = r.dec(&fl[cbBestBid], "best_bid")
	t.AskPx = r.dec(&fl[cbBestAsk], "best_ask")
	// Sizes were added to the ticker in 2022; older frames lack them.
	if fl[cbBestBidSize].typ != simdjson.TypeNone {
		t.BidSz = r.dec(&fl[cbBestBidSize], "best_bid_size")
	}
	if fl[cbBestAskSize].typ != simdjson.TypeNone {
		t.AskSz = r.dec(&fl[cbBestAskSize], "best_ask_size")
	}
	if fl[cbSeq].typ != simdjson.TypeNone {
		t.Seq = r.uint(&fl[cbSeq], "sequence")
	}
	t.ExchTS = f.time(&r)
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

func (f *CoinbaseFeed) snapshot(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := f.product(&r)
	if r.err != nil {
		return out, r.err
	}
	f.lv = f.lv[:0]
	r.levelArray(&f.feedCore, &f.f[cbBids], market.SideBuy, "bids")
	r.levelArray(&f.feedCore, &f.f[cbAsks], market.SideSell, "asks")
	ts := f.time(&r)
	if r.err != nil {
		return out, r.err
	}
	b := f.book(s)
	b.Clear()
	n := len(out)
	out = f.applyLevels(out, b, market.KindSnapshot, 0, recv, ts, false)
	b.synced = true
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, ts, 0)
		f.resubscribe(s.symbol)
	}
	return out, nil
}

func (f *CoinbaseFeed) l2update(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := f.product(&r)
	it := r.arrayIter(&f.f[cbChanges], "changes")
	if r.err != nil {
		return out, r.err
	}
	f.lv = f.lv[:0]
	for r.err == nil {
		el, ok := next(&it)
		if !ok {
			break
		}
		li := r.arrayIter(&el, "changes")
		if r.err != nil {
			break
		}
		sf, ok1 := next(&li)
		pf, ok2 := next(&li)
		zf, ok3 := next(&li)
		if !ok1 || !ok2 || !ok3 {
			r.fail(ReasonBadType, "changes")
		}
		sd := r.side(&sf, "changes")
		px := r.dec(&pf, "changes")
		sz := r.dec(&zf, "changes")
		if r.err == nil {
			f.lv = append(f.lv, parsedLevel{side: sd, px: px, sz: sz})
		}
	}
	ts := f.time(&r)
	if r.err != nil {
		return out, r.err
	}
	b := f.book(s)
	if !b.synced {
		f.withheld()
		return out, nil
	}
	n := len(out)
	out = f.applyLevels(out, b, market.KindBookDelta, 0, recv, ts, false)
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, ts, 0)
		f.resubscribe(s.symbol)
	}
	return out, nil
}

// heartbeat checks last_trade_id against the trades seen: a heartbeat
// naming a later trade than the last match means matches were lost.
func (f *CoinbaseFeed) heartbeat(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := f.product(&r)
	if r.err != nil {
		return out, r.err
	}
	fl := &f.f[cbLastTradeID]
	if fl.typ == simdjson.TypeNone {
		return out, nil
	}
	id := r.uint(fl, "last_trade_id")
	ts := f.time(&r)
	if r.err != nil {
		return out, r.err
	}
	if last, seen := f.lastTrade[s.symbol]; seen && id > last {
		f.lastTrade[s.symbol] = id
		out = f.lost(s, out, len(out), recv, ts)
	}
	return out, nil
}
