package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueBybit,
		Cryptofeed: []string{"BYBIT"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewBybitFeed(cfg, false), nil },
	})
	RegisterVenue(VenueInfo{
		Name:     VenueBybitLinear,
		Channels: []Channel{ChanTrades, ChanQuotes, ChanBook, ChanFunding, ChanLiquidations},
		New:      func(cfg FeedConfig) (Feed, error) { return NewBybitFeed(cfg, true), nil },
	})
}

// BybitFeed is Bybit's v5 public websocket, spot
// (wss://stream.bybit.com/v5/public/spot) or linear
// (wss://stream.bybit.com/v5/public/linear): publicTrade, orderbook.1 (best
// bid and offer), orderbook.50 (book), tickers (funding rate, linear) and
// allLiquidation (linear). Spot and linear symbols look alike (BTCUSDT), so
// they are two venues. Only v5 is decoded: frames of the legacy v2 API (the
// 2021 recordings) are counted as ignored "legacy_v2".
//
// Sync: a snapshot resets the book (Bybit resends one, with u=1, after a
// service restart); a delta's update id u must follow the last one by
// exactly one, else the book resyncs by resubscribing the topic, which
// brings a snapshot. A crossed book resyncs the same way.
type BybitFeed struct {
	resyncCore
	linear bool
	bbo    map[string]*Book
	f      [6]jfield
	d      [8]jfield
}

// BybitBookDepth is the depth of the orderbook topic subscribed.
const BybitBookDepth = 50

// NewBybitFeed returns a Bybit spot or linear feed.
func NewBybitFeed(cfg FeedConfig, linear bool) *BybitFeed {
	venue, norm := VenueBybit, NormalizeBybitSpot
	if linear {
		venue, norm = VenueBybitLinear, NormalizeBybitLinear
	}
	f := &BybitFeed{resyncCore: resyncCore{newFeedCore(venue, cfg, norm)}, linear: linear, bbo: map[string]*Book{}}
	f.resnapshot = func(b *bookState) { f.resubscribe(b.sym.symbol) }
	return f
}

var bybitQuotes = []string{"USDT", "USDC", "USDE", "USDR", "FDUSD", "DAI", "BTC", "ETH", "EUR", "BRL", "PLN", "TRY", "MNT"}

// NormalizeBybitSpot maps a spot symbol (BTCUSDT) to BTC-USDT.
func NormalizeBybitSpot(symbol string) (string, bool) {
	base, quote, ok := splitQuote(symbol, bybitQuotes)
	if !ok {
		return symbol, false
	}
	return base + "-" + quote, true
}

// NormalizeBybitLinear maps a linear symbol: BTCUSDT → BTC-USDT-PERP,
// BTCPERP (USDC perpetual) → BTC-USDC-PERP, BTCUSDT-26DEC25 →
// BTC-USDT-20251226, BTC-26DEC25 (USDC future) → BTC-USDC-20251226.
func NormalizeBybitLinear(symbol string) (string, bool) {
	s := strings.ToUpper(symbol)
	pair, exp, dated := strings.Cut(s, "-")
	var suffix string
	if dated {
		if len(exp) != 7 {
			return symbol, false
		}
		day, ok1 := parseDigits([]byte(exp[:2]))
		yy, ok2 := parseDigits([]byte(exp[5:]))
		mon := monthIndex(exp[2:5])
		if !ok1 || !ok2 || mon == 0 || day == 0 || day > 31 {
			return symbol, false
		}
		suffix = fmt.Sprintf("20%02d%02d%02d", yy, mon, day)
	} else {
		suffix = "PERP"
	}
	if base, ok := strings.CutSuffix(pair, "PERP"); ok && !dated && base != "" {
		return base + "-USDC-PERP", true
	}
	if base, quote, ok := splitQuote(pair, bybitQuotes); ok {
		return base + "-" + quote + "-" + suffix, true
	}
	if dated && pair != "" && strings.IndexFunc(pair, func(r rune) bool { return r < 'A' || r > 'Z' }) < 0 {
		return pair + "-USDC-" + suffix, true
	}
	return symbol, false
}

// Limits: Bybit v5 closes a connection without a ping for long; the
// documented client ping is {"op":"ping"} every 20 s. Spot takes at most
// 10 topics per subscribe request (SubscribeFrames batches accordingly);
// no rate is published for subscribe requests, paced at 5 a second.
func (f *BybitFeed) Limits() Limits {
	return Limits{SubscribeRate: 5, PingInterval: 20 * time.Second, Silence: 30 * time.Second}
}

// URL implements Feed.
func (f *BybitFeed) URL([]Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	if f.linear {
		return "wss://stream.bybit.com/v5/public/linear", nil
	}
	return "wss://stream.bybit.com/v5/public/spot", nil
}

// Ping implements Feed.
func (f *BybitFeed) Ping() []byte { return []byte(`{"op":"ping"}`) }

type bybitReq struct {
	Op   string   `json:"op"`
	Args []string `json:"args"`
}

// SubscribeFrames implements Feed: topics in frames of at most 10.
func (f *BybitFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var topics []string
	for _, s := range subs {
		switch s.Channel {
		case ChanTrades:
			topics = append(topics, "publicTrade."+s.Symbol)
		case ChanQuotes:
			topics = append(topics, "orderbook.1."+s.Symbol)
		case ChanBook:
			topics = append(topics, fmt.Sprintf("orderbook.%d.%s", BybitBookDepth, s.Symbol))
		case ChanFunding, ChanLiquidations:
			if !f.linear {
				return nil, fmt.Errorf("bybit: channel %q exists for linear contracts only (venue %s)", s.Channel, VenueBybitLinear)
			}
			if s.Channel == ChanFunding {
				topics = append(topics, "tickers."+s.Symbol)
			} else {
				topics = append(topics, "allLiquidation."+s.Symbol)
			}
		default:
			return nil, fmt.Errorf("bybit: channel %q is not supported", s.Channel)
		}
	}
	var frames [][]byte
	for len(topics) > 0 {
		n := min(10, len(topics))
		b, err := json.Marshal(bybitReq{Op: "subscribe", Args: topics[:n]})
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
		topics = topics[n:]
	}
	return frames, nil
}

// HandleSnapshot implements Feed: Bybit sends snapshots on the websocket.
func (f *BybitFeed) HandleSnapshot(_ int64, req SnapshotRequest, _ []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("bybit: no REST snapshots are requested (got %s)", req.URL)
}

// Reset implements Feed.
func (f *BybitFeed) Reset() {
	f.reset()
	clear(f.bbo)
}

// Handle implements Feed.
func (f *BybitFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	n := len(out)
	out, perr := f.handle(recv, frame, out)
	return f.finish(out, n, perr)
}

var bybitKeys = []string{"topic", "type", "ts", "data", "op", "success"}

func (f *BybitFeed) handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	it, typ, perr := f.parseRoot(frame)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	fl := f.f[:]
	var r fieldReader
	if r.objectFields(&root, bybitKeys, fl, "root"); r.err != nil {
		return out, r.err
	}
	if fl[0].typ == simdjson.TypeNone {
		if fl[4].typ != simdjson.TypeNone || fl[5].typ != simdjson.TypeNone {
			if fl[5].typ == simdjson.TypeBool {
				if ok, _ := fl[5].it.Bool(); !ok {
					f.log.Warn("bybit request failed", "frame", string(truncate(frame, 256)))
					f.m.Ignored("error")
					return out, nil
				}
			}
			f.m.Ignored("response") // subscribe acks, pongs
			return out, nil
		}
		return out, &ParseError{Reason: ReasonMissingField, Field: "topic"}
	}
	topic := r.str(&fl[0], "topic")
	kind, rest, _ := strings.Cut(string(topic), ".")
	ts := int64(0)
	if fl[2].typ != simdjson.TypeNone {
		ts = r.msTime(&fl[2], "ts")
	}
	if r.err != nil {
		return out, r.err
	}
	switch kind {
	case "publicTrade":
		return f.trades(recv, out)
	case "orderbook":
		depth, _, _ := strings.Cut(rest, ".")
		return f.orderbook(recv, ts, depth == "1", out)
	case "tickers":
		return f.ticker(recv, ts, out)
	case "allLiquidation", "liquidation":
		return f.liquidations(recv, out)
	case "orderBookL2_25", "orderBookL2_200", "trade", "instrument_info", "klineV2":
		f.m.Ignored("legacy_v2")
		return out, nil
	}
	f.m.Ignored("other")
	return out, nil
}

// tradeID is the trade id: the number when "i" is digits (spot), else a
// hash of the text (linear ids are UUIDs).
func tradeID(b []byte) uint64 {
	if v, ok := parseDigits(b); ok {
		return v
	}
	return xxhash.Sum64(b)
}

var bybitTradeKeys = []string{"T", "s", "S", "v", "p", "i"}

func (f *BybitFeed) trades(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	it := r.arrayIter(&f.f[3], "data")
	if r.err != nil {
		return out, r.err
	}
	for {
		e, ok := next(&it)
		if !ok {
			return out, nil
		}
		d := f.d[:len(bybitTradeKeys)]
		r.objectFields(&e, bybitTradeKeys, d, "data")
		s := r.sym(&f.feedCore, &d[1], "s")
		if r.err != nil {
			return out, r.err
		}
		t := f.newTick(s, market.KindTrade, recv, 0)
		t.ExchTS = r.msTime(&d[0], "T")
		t.Side = bybitSide(&r, &d[2])
		t.Size = r.dec(&d[3], "v")
		t.Price = r.dec(&d[4], "p")
		id := r.str(&d[5], "i")
		if r.err != nil {
			return out, r.err
		}
		t.TradeID = tradeID(id)
		t.ComputeID()
		out = append(out, t)
	}
}

func bybitSide(r *fieldReader, fl *jfield) market.Side {
	b := r.str(fl, "S")
	if r.err != nil {
		return 0
	}
	switch string(b) {
	case "Buy":
		return market.SideBuy
	case "Sell":
		return market.SideSell
	}
	r.fail(ReasonBadType, "S")
	return 0
}

var bybitBookKeys = []string{"s", "b", "a", "u", "seq"}

func (f *BybitFeed) orderbook(recv, ts int64, top bool, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	typ := r.str(&f.f[1], "type")
	snapshot := string(typ) == "snapshot"
	if r.err == nil && !snapshot && string(typ) != "delta" {
		r.fail(ReasonBadType, "type")
	}
	d := f.d[:len(bybitBookKeys)]
	r.objectFields(&f.f[3], bybitBookKeys, d, "data")
	s := r.sym(&f.feedCore, &d[0], "s")
	f.lv = f.lv[:0]
	r.levelArray(&f.feedCore, &d[1], market.SideBuy, "b")
	r.levelArray(&f.feedCore, &d[2], market.SideSell, "a")
	u := r.uint(&d[3], "u")
	var seq uint64
	if d[4].typ != simdjson.TypeNone {
		seq = r.uint(&d[4], "seq")
	}
	if r.err != nil {
		return out, r.err
	}
	if top {
		// orderbook.1: the best bid and offer, as a quote.
		bk := f.bbo[s.symbol]
		if bk == nil {
			if len(f.bbo) >= maxCachedSymbols {
				return out, nil
			}
			bk = &Book{}
			f.bbo[s.symbol] = bk
		}
		if snapshot {
			bk.Clear()
		}
		for _, l := range f.lv {
			bk.Set(l.side, l.px, l.sz, "", "")
		}
		bk.Truncate(1)
		t := f.newTick(s, market.KindQuote, recv, ts)
		if lv := bk.Side(market.SideBuy); len(lv) > 0 {
			t.BidPx, t.BidSz = lv[0].Px, lv[0].Sz
		}
		if lv := bk.Side(market.SideSell); len(lv) > 0 {
			t.AskPx, t.AskSz = lv[0].Px, lv[0].Sz
		}
		t.Seq = seq
		t.ComputeID()
		return append(out, t), nil
	}
	b := f.book(s)
	n := len(out)
	if snapshot {
		b.Clear()
		out = f.applyLevels(out, b, market.KindSnapshot, seq, recv, ts, false)
		b.synced = true
	} else {
		if !b.synced {
			f.withheld()
			return out, nil
		}
		if !b.seqOK || u != b.seq+1 {
			out = f.outOfSync(out, n, b, "gap", recv, ts, seq)
			f.resubscribe(s.symbol)
			return out, nil
		}
		out = f.applyLevels(out, b, market.KindBookDelta, seq, recv, ts, false)
	}
	b.Truncate(BybitBookDepth)
	b.seq, b.seqOK = u, true
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, ts, seq)
		f.resubscribe(s.symbol)
	}
	return out, nil
}

func (f *BybitFeed) resubscribe(symbol string) {
	topic := fmt.Sprintf("orderbook.%d.%s", BybitBookDepth, symbol)
	for _, op := range []string{"unsubscribe", "subscribe"} {
		b, _ := json.Marshal(bybitReq{Op: op, Args: []string{topic}})
		f.outbox = append(f.outbox, b)
	}
}

var bybitTickerKeys = []string{"symbol", "fundingRate"}

// ticker gives a market.KindFunding tick when the message carries fundingRate
// (deltas carry only changed fields).
func (f *BybitFeed) ticker(recv, ts int64, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(bybitTickerKeys)]
	var r fieldReader
	r.objectFields(&f.f[3], bybitTickerKeys, d, "data")
	s := r.sym(&f.feedCore, &d[0], "symbol")
	if r.err != nil {
		return out, r.err
	}
	if d[1].typ == simdjson.TypeNone || len(d[1].strOr()) == 0 && d[1].typ == simdjson.TypeString {
		f.m.Ignored("ticker_without_funding")
		return out, nil
	}
	t := f.newTick(s, market.KindFunding, recv, ts)
	if t.Price = r.num(&d[1], "fundingRate"); r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var bybitLiqKeys = []string{"T", "s", "S", "v", "p"}

// liquidations: S is the side of the liquidated position ("Buy": a long
// was liquidated), so the forced order, market.Tick.Side, is the other side.
func (f *BybitFeed) liquidations(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	data := f.f[3]
	var it simdjson.Iter
	var r fieldReader
	single := data.typ == simdjson.TypeObject // the older liquidation topic
	if !single {
		if it = r.arrayIter(&data, "data"); r.err != nil {
			return out, r.err
		}
	}
	for first := true; ; first = false {
		var e jfield
		if single {
			if !first {
				return out, nil
			}
			e = data
		} else {
			var ok bool
			if e, ok = next(&it); !ok {
				return out, nil
			}
		}
		d := f.d[:len(bybitLiqKeys)]
		keys := bybitLiqKeys
		if single {
			keys = []string{"updatedTime", "symbol", "side", "size", "price"}
		}
		r.objectFields(&e, keys, d, "data")
		s := r.sym(&f.feedCore, &d[1], keys[1])
		if r.err != nil {
			return out, r.err
		}
		t := f.newTick(s, market.KindLiquidation, recv, 0)
		t.ExchTS = r.msTime(&d[0], keys[0])
		t.Side = -bybitSide(&r, &d[2])
		t.Size = r.dec(&d[3], keys[3])
		t.Price = r.dec(&d[4], keys[4])
		if r.err != nil {
			return out, r.err
		}
		t.ComputeID()
		out = append(out, t)
	}
}
