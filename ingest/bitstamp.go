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
		Name:       VenueBitstamp,
		Cryptofeed: []string{"BITSTAMP"},
		Channels:   []Channel{ChanTrades, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewBitstampFeed(cfg), nil },
	})
}

// BitstampFeed is Bitstamp's websocket v2 (wss://ws.bitstamp.net):
// live_trades_<pair> and diff_order_book_<pair>.
//
// Sync: the diff channel sends no snapshot and no sequence number, only a
// microtimestamp. The feed asks for the REST snapshot
// (/api/v2/order_book/<pair>) when the diff subscription is confirmed or
// the first diff arrives, buffers diffs meanwhile (up to
// BitstampMaxBuffered per pair), applies the snapshot, drops the buffered
// diffs it already contains (microtimestamp not after the snapshot's,
// counted as ignored "stale_diff"; so are diffs that arrive after the
// snapshot but are older than it) and applies the rest. A diff newer than
// the snapshot but older than the last one applied, or a crossed book,
// resnapshots the pair.
type BitstampFeed struct {
	resyncCore
	pend map[string]*bitstampPending
	f    [4]jfield
	d    [8]jfield
}

// BitstampMaxBuffered bounds the diffs buffered per pair while its
// snapshot is awaited; beyond it the buffer is dropped (counted as ignored
// "diff_buffer_overflow") and the snapshot asked for again.
const BitstampMaxBuffered = 4096

type bitstampDiff struct {
	recv, mt int64
	lv       []parsedLevel
}

type bitstampPending struct {
	requested bool // a snapshot request is out
	diffs     []bitstampDiff
	lastMT    int64 // microtimestamp (ns) of the last diff applied
	snapMT    int64 // microtimestamp (ns) of the snapshot applied
}

// NewBitstampFeed returns a Bitstamp feed.
func NewBitstampFeed(cfg FeedConfig) *BitstampFeed {
	f := &BitstampFeed{resyncCore: resyncCore{newFeedCore(VenueBitstamp, cfg, NormalizeBitstampSymbol)}, pend: map[string]*bitstampPending{}}
	f.resnapshot = func(b *bookState) { f.requestSnapshot(b.sym.symbol) }
	return f
}

var bitstampQuotes = []string{"USDT", "USDC", "PYUSD", "GUSD", "EURC", "PAX", "USD", "EUR", "GBP", "CHF", "BTC", "ETH"}

// NormalizeBitstampSymbol maps a Bitstamp pair (btcusd) to the normalized
// instrument (BTC-USD).
func NormalizeBitstampSymbol(symbol string) (string, bool) {
	base, quote, ok := splitQuote(symbol, bitstampQuotes)
	if !ok {
		return symbol, false
	}
	return base + "-" + quote, true
}

// Limits: Bitstamp publishes no subscription rate; the feed paces
// subscriptions at 10 a second. bts:heartbeat every 10 s (answered by the
// server) keeps quiet pairs' connections from looking dead.
func (f *BitstampFeed) Limits() Limits {
	return Limits{SubscribeRate: 10, PingInterval: 10 * time.Second, Silence: 30 * time.Second}
}

// URL implements Feed.
func (f *BitstampFeed) URL([]Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://ws.bitstamp.net", nil
}

// Ping implements Feed.
func (f *BitstampFeed) Ping() []byte { return []byte(`{"event":"bts:heartbeat"}`) }

type bitstampReq struct {
	Event string `json:"event"`
	Data  struct {
		Channel string `json:"channel"`
	} `json:"data"`
}

// SubscribeFrames implements Feed: one frame per channel.
func (f *BitstampFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var frames [][]byte
	for _, s := range subs {
		var r bitstampReq
		r.Event = "bts:subscribe"
		switch s.Channel {
		case ChanTrades:
			r.Data.Channel = "live_trades_" + strings.ToLower(s.Symbol)
		case ChanBook:
			r.Data.Channel = "diff_order_book_" + strings.ToLower(s.Symbol)
		default:
			return nil, fmt.Errorf("bitstamp: channel %q is not supported (trades, book)", s.Channel)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
	}
	return frames, nil
}

// Reset implements Feed.
func (f *BitstampFeed) Reset() {
	f.reset()
	clear(f.pend)
}

func (f *BitstampFeed) pending(pair string) *bitstampPending {
	p := f.pend[pair]
	if p == nil {
		p = &bitstampPending{}
		f.pend[pair] = p
	}
	return p
}

// requestSnapshot asks for pair's REST snapshot unless one is out.
func (f *BitstampFeed) requestSnapshot(pair string) {
	p := f.pending(pair)
	if p.requested {
		return
	}
	p.requested = true
	base := f.cfg.RESTEndpoint
	if base == "" {
		base = "https://www.bitstamp.net"
	}
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: pair, URL: strings.TrimRight(base, "/") + "/api/v2/order_book/" + pair})
}

// Handle implements Feed.
func (f *BitstampFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	n := len(out)
	out, perr := f.handle(recv, frame, out)
	return f.finish(out, n, perr)
}

var bitstampKeys = []string{"event", "channel", "data"}

func (f *BitstampFeed) handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	it, typ, perr := f.parseRoot(frame)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	fl := f.f[:3]
	var r fieldReader
	r.objectFields(&root, bitstampKeys, fl, "root")
	ev := r.str(&fl[0], "event")
	if r.err != nil {
		return out, r.err
	}
	ch := fl[1].strOr()
	switch string(ev) {
	case "trade":
		pair, ok := strings.CutPrefix(string(ch), "live_trades_")
		if !ok {
			return out, &ParseError{Reason: ReasonBadSymbol, Field: "channel"}
		}
		return f.trade(recv, pair, out)
	case "data":
		if pair, ok := strings.CutPrefix(string(ch), "diff_order_book_"); ok {
			return f.diff(recv, pair, out)
		}
		f.m.Ignored("other")
		return out, nil
	case "bts:subscription_succeeded":
		if pair, ok := strings.CutPrefix(string(ch), "diff_order_book_"); ok {
			if _, perr := f.sym([]byte(pair), "channel"); perr != nil {
				return out, perr
			}
			if b := f.books[pair]; b == nil || !b.synced {
				f.requestSnapshot(pair)
			}
		}
		f.m.Ignored("response")
		return out, nil
	case "bts:request_reconnect":
		// Maintenance: the server closes the connection soon; the manager
		// reconnects when it does.
		f.log.Info("bitstamp asks for a reconnect")
		f.m.Ignored("request_reconnect")
		return out, nil
	case "bts:error":
		f.log.Warn("bitstamp error", "channel", string(ch))
		f.m.Ignored("error")
		return out, nil
	case "bts:heartbeat", "bts:unsubscription_succeeded":
		f.m.Ignored("response")
		return out, nil
	}
	f.m.Ignored("other")
	return out, nil
}

var bitstampTradeKeys = []string{"id", "amount_str", "price_str", "type", "microtimestamp"}

func microTime(r *fieldReader, fl *jfield, field string) int64 {
	v := r.uint(fl, field)
	if v > 9_223_372_036_854_775 { // ns would overflow int64
		r.fail(ReasonBadNumber, field)
		return 0
	}
	return int64(v) * 1000
}

func (f *BitstampFeed) trade(recv int64, pair string, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := r.symOf(&f.feedCore, []byte(pair), "channel")
	if r.err != nil {
		return out, r.err
	}
	d := f.d[:len(bitstampTradeKeys)]
	r.objectFields(&f.f[2], bitstampTradeKeys, d, "data")
	t := f.newTick(s, market.KindTrade, recv, 0)
	t.TradeID = r.uint(&d[0], "id")
	t.Size = r.dec(&d[1], "amount_str")
	t.Price = r.dec(&d[2], "price_str")
	switch typ := r.uint(&d[3], "type"); { // the taker's side
	case r.err != nil:
	case typ == 0:
		t.Side = market.SideBuy
	case typ == 1:
		t.Side = market.SideSell
	default:
		r.fail(ReasonBadNumber, "type")
	}
	t.ExchTS = microTime(&r, &d[4], "microtimestamp")
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var bitstampBookKeys = []string{"bids", "asks", "microtimestamp"}

// levels parses a diff or snapshot object into f.lv.
func (f *BitstampFeed) levels(obj *jfield) (int64, *ParseError) {
	d := f.d[:len(bitstampBookKeys)]
	var r fieldReader
	if r.objectFields(obj, bitstampBookKeys, d, "data"); r.err != nil {
		return 0, r.err
	}
	f.lv = f.lv[:0]
	for i, side := range [2]market.Side{market.SideBuy, market.SideSell} {
		if r.err == nil && d[i].typ == simdjson.TypeNone {
			r.fail(ReasonMissingField, bitstampBookKeys[i])
		}
		r.levelArray(&f.feedCore, &d[i], side, bitstampBookKeys[i])
	}
	mt := microTime(&r, &d[2], "microtimestamp")
	return mt, r.err
}

func (f *BitstampFeed) diff(recv int64, pair string, out []market.Tick) ([]market.Tick, *ParseError) {
	s, perr := f.sym([]byte(pair), "channel")
	if perr != nil {
		return out, perr
	}
	mt, perr := f.levels(&f.f[2])
	if perr != nil {
		return out, perr
	}
	b := f.book(s)
	p := f.pending(s.symbol)
	if !b.synced {
		if len(p.diffs) >= BitstampMaxBuffered {
			f.m.Ignored("diff_buffer_overflow")
			p.diffs = p.diffs[:0]
			p.requested = false
		}
		p.diffs = append(p.diffs, bitstampDiff{recv: recv, mt: mt, lv: cloneLevels(f.lv)})
		f.withheld()
		f.requestSnapshot(s.symbol)
		return out, nil
	}
	return f.apply(recv, mt, b, p, out), nil
}

// cloneLevels copies levels out of the parser's tape (the buffered diff
// outlives the frame).
func cloneLevels(lv []parsedLevel) []parsedLevel {
	c := make([]parsedLevel, len(lv))
	for i, l := range lv {
		c[i] = parsedLevel{side: l.side, px: l.px, sz: l.sz, ts: l.ts}
	}
	return c
}

// apply applies f.lv (a diff with microtimestamp mt) to a synced book.
func (f *BitstampFeed) apply(recv, mt int64, b *bookState, p *bitstampPending, out []market.Tick) []market.Tick {
	n := len(out)
	if mt <= p.snapMT {
		// Already in the snapshot (a diff delivered after it was fetched).
		f.m.Ignored("stale_diff")
		return out
	}
	if mt < p.lastMT {
		out = f.outOfSync(out, n, b, "gap", recv, mt, uint64(mt/1000))
		f.requestSnapshot(b.sym.symbol)
		return out
	}
	out = f.applyLevels(out, b, market.KindBookDelta, uint64(mt/1000), recv, mt, false)
	p.lastMT = mt
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, mt, uint64(mt/1000))
		f.requestSnapshot(b.sym.symbol)
	}
	return out
}

// HandleSnapshot implements Feed: the body of /api/v2/order_book/<pair>.
// req.Symbol is the pair; when empty (a recorded snapshot replayed) it is
// taken from the URL's last path element.
func (f *BitstampFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	n := len(out)
	out, perr := f.snapshot(recv, req, body, out)
	return f.finish(out, n, perr)
}

func (f *BitstampFeed) snapshot(recv int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	pair := req.Symbol
	if pair == "" {
		pair = req.URL[strings.LastIndexByte(req.URL, '/')+1:]
	}
	s, perr := f.sym([]byte(pair), "symbol")
	if perr != nil {
		return out, perr
	}
	it, typ, perr := f.parseRoot(body)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	mt, perr := f.levels(&root)
	if perr != nil {
		return out, perr
	}
	b := f.book(s)
	p := f.pending(s.symbol)
	b.Clear()
	n := len(out)
	out = f.applyLevels(out, b, market.KindSnapshot, uint64(mt/1000), recv, mt, false)
	b.synced = true
	p.requested = false
	p.lastMT, p.snapMT = mt, mt
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, mt, uint64(mt/1000))
		f.requestSnapshot(s.symbol)
		p.diffs = p.diffs[:0]
		return out, nil
	}
	// The buffered diffs: those the snapshot contains are dropped.
	diffs := p.diffs
	p.diffs = nil
	for _, d := range diffs {
		if !b.synced {
			// A buffered diff broke the book again; keep the rest for the
			// next snapshot.
			p.diffs = append(p.diffs, d)
			continue
		}
		f.lv = append(f.lv[:0], d.lv...)
		out = f.apply(d.recv, d.mt, b, p, out)
	}
	return out, nil
}
