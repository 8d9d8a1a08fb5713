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
		Name:       VenueOKX,
		Cryptofeed: []string{"OKX"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook, ChanFunding, ChanLiquidations},
		New:        func(cfg FeedConfig) (Feed, error) { return NewOKXFeed(cfg), nil },
	})
}

// OKXFeed is OKX's v5 public websocket (wss://ws.okx.com:8443/ws/v5/public):
// trades, bbo-tbt (and tickers, as recorded) for quotes, books (400-level
// snapshot then 100 ms updates), funding-rate, and liquidation-orders.
//
// Sync: books frames carry seqId and prevSeqId (not in the 2022
// recordings; checked when present): an update whose prevSeqId is not the
// last seqId is a gap. Every books frame carries a CRC32 over the top 25
// levels, interleaved bid, ask ("bidPx:bidSz:askPx:askSz:..." with the
// venue's text), sent as a signed 32-bit integer; verified after each
// frame. A gap, a checksum mismatch or a crossed book resubscribes the
// books channel of the instrument, which brings a new snapshot.
type OKXFeed struct {
	resyncCore
	sum []byte
	f   [6]jfield
	a   [3]jfield
	d   [12]jfield
	x   [8]jfield
}

// NewOKXFeed returns an OKX feed.
func NewOKXFeed(cfg FeedConfig) *OKXFeed {
	f := &OKXFeed{resyncCore: resyncCore{newFeedCore(VenueOKX, cfg, NormalizeOKXSymbol)}}
	f.resnapshot = func(b *bookState) { f.resubscribe(b.sym.symbol) }
	return f
}

// NormalizeOKXSymbol maps an OKX instId to the normalized instrument:
// BTC-USDT (spot), BTC-USDT-SWAP → BTC-USDT-PERP, BTC-USD-220527 →
// BTC-USD-20220527. Options and anything else are not normalized.
func NormalizeOKXSymbol(symbol string) (string, bool) {
	p := strings.Split(strings.ToUpper(symbol), "-")
	for _, s := range p {
		if s == "" {
			return symbol, false
		}
	}
	switch len(p) {
	case 2:
		return p[0] + "-" + p[1], true
	case 3:
		if p[2] == "SWAP" {
			return p[0] + "-" + p[1] + "-PERP", true
		}
		if len(p[2]) == 6 {
			if _, ok := parseDigits([]byte(p[2])); ok {
				return p[0] + "-" + p[1] + "-20" + p[2], true
			}
		}
	}
	return symbol, false
}

// Limits: OKX allows 480 subscribe/unsubscribe requests an hour per
// connection and 3 connection requests a second per IP; it closes a
// connection that received nothing for 30 s, which the text "ping" (answered
// by "pong") prevents.
func (f *OKXFeed) Limits() Limits {
	return Limits{SubscribeRate: 480.0 / 3600, PingInterval: 20 * time.Second, Silence: 30 * time.Second}
}

// URL implements Feed.
func (f *OKXFeed) URL([]Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://ws.okx.com:8443/ws/v5/public", nil
}

// Ping implements Feed: the text "ping".
func (f *OKXFeed) Ping() []byte { return []byte("ping") }

type okxArg struct {
	Channel  string `json:"channel"`
	InstID   string `json:"instId,omitempty"`
	InstType string `json:"instType,omitempty"`
}

type okxReq struct {
	Op   string   `json:"op"`
	Args []okxArg `json:"args"`
}

// SubscribeFrames implements Feed: one frame with every argument (OKX
// accepts up to 64 KB of arguments per request, and counts requests).
func (f *OKXFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var args []okxArg
	liq := map[string]bool{}
	for _, s := range subs {
		switch s.Channel {
		case ChanTrades:
			args = append(args, okxArg{Channel: "trades", InstID: s.Symbol})
		case ChanQuotes:
			args = append(args, okxArg{Channel: "bbo-tbt", InstID: s.Symbol})
		case ChanBook:
			args = append(args, okxArg{Channel: "books", InstID: s.Symbol})
		case ChanFunding:
			args = append(args, okxArg{Channel: "funding-rate", InstID: s.Symbol})
		case ChanLiquidations:
			// Liquidations are published per instrument type.
			typ := "SWAP"
			if !strings.HasSuffix(strings.ToUpper(s.Symbol), "-SWAP") {
				typ = "FUTURES"
			}
			if !liq[typ] {
				liq[typ] = true
				args = append(args, okxArg{Channel: "liquidation-orders", InstType: typ})
			}
		default:
			return nil, fmt.Errorf("okx: channel %q is not supported", s.Channel)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(okxReq{Op: "subscribe", Args: args})
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

// HandleSnapshot implements Feed: OKX sends snapshots on the websocket.
func (f *OKXFeed) HandleSnapshot(_ int64, req SnapshotRequest, _ []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("okx: no REST snapshots are requested (got %s)", req.URL)
}

// Reset implements Feed.
func (f *OKXFeed) Reset() { f.reset() }

// Handle implements Feed.
func (f *OKXFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	if string(frame) == "pong" {
		f.m.Ignored("pong")
		return out, nil
	}
	n := len(out)
	out, perr := f.handle(recv, frame, out)
	return f.finish(out, n, perr)
}

var okxKeys = []string{"arg", "data", "action", "event", "code", "msg"}

func (f *OKXFeed) handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	it, typ, perr := f.parseRoot(frame)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	fl := f.f[:]
	if perr := objectFields(&root, okxKeys, fl, "root"); perr != nil {
		return out, perr
	}
	if fl[3].typ != simdjson.TypeNone {
		ev, perr := fl[3].str("event")
		if perr != nil {
			return out, perr
		}
		switch string(ev) {
		case "error":
			f.log.Warn("okx error", "code", string(fl[4].strOr()), "msg", string(fl[5].strOr()))
			f.m.Ignored("error")
		case "subscribe", "unsubscribe":
			f.m.Ignored("response")
		default: // notice (service upgrade), channel-conn-count, ...
			f.log.Info("okx event", "event", string(ev), "msg", string(fl[5].strOr()))
			f.m.Ignored("event")
		}
		return out, nil
	}
	a := f.a[:]
	if perr := objectFields(&fl[0], []string{"channel", "instId", "instType"}, a, "arg"); perr != nil {
		return out, perr
	}
	ch, perr := a[0].str("channel")
	if perr != nil {
		return out, perr
	}
	switch string(ch) {
	case "trades", "trades-all", "bbo-tbt", "tickers", "books", "funding-rate", "liquidation-orders":
	default:
		f.m.Ignored("other")
		return out, nil
	}
	it2, perr := fl[1].arrayIter("data")
	if perr != nil {
		return out, perr
	}
	var s *symEntry
	if a[1].typ != simdjson.TypeNone {
		b, perr := a[1].str("instId")
		if perr != nil {
			return out, perr
		}
		if s, perr = f.sym(b, "instId"); perr != nil {
			return out, perr
		}
	}
	if string(ch) != "liquidation-orders" && s == nil {
		return out, &ParseError{Reason: ReasonMissingField, Field: "instId"}
	}
	for {
		e, ok := next(&it2)
		if !ok {
			return out, nil
		}
		switch string(ch) {
		case "trades", "trades-all":
			out, perr = f.trade(recv, s, &e, out)
		case "bbo-tbt":
			out, perr = f.bbo(recv, s, &e, out)
		case "tickers":
			out, perr = f.ticker(recv, s, &e, out)
		case "books":
			action := fl[2].strOr()
			out, perr = f.orderBook(recv, s, &e, string(action) != "update", out)
		case "funding-rate":
			out, perr = f.funding(recv, s, &e, out)
		case "liquidation-orders":
			out, perr = f.liquidation(recv, &e, out)
		}
		if perr != nil {
			return out, perr
		}
	}
}

var okxTradeKeys = []string{"instId", "tradeId", "px", "sz", "side", "ts"}

func (f *OKXFeed) trade(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxTradeKeys)]
	if perr := objectFields(e, okxTradeKeys, d, "data"); perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindTrade, recv, 0)
	var perr *ParseError
	if t.TradeID, perr = d[1].uint("tradeId"); perr != nil {
		return out, perr
	}
	if t.Price, _, perr = d[2].dec("px"); perr != nil {
		return out, perr
	}
	if t.Size, _, perr = d[3].dec("sz"); perr != nil {
		return out, perr
	}
	if t.Side, perr = d[4].side("side"); perr != nil { // the taker's side
		return out, perr
	}
	if t.ExchTS, perr = d[5].msTime("ts"); perr != nil {
		return out, perr
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxBBOKeys = []string{"asks", "bids", "ts", "seqId"}

func (f *OKXFeed) bbo(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxBBOKeys)]
	if perr := objectFields(e, okxBBOKeys, d, "data"); perr != nil {
		return out, perr
	}
	f.lv = f.lv[:0]
	if perr := f.levelArray(&d[1], market.SideBuy, "bids"); perr != nil {
		return out, perr
	}
	if perr := f.levelArray(&d[0], market.SideSell, "asks"); perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	for _, l := range f.lv {
		if l.side == market.SideBuy && t.BidPx == 0 {
			t.BidPx, t.BidSz = l.px, l.sz
		} else if l.side == market.SideSell && t.AskPx == 0 {
			t.AskPx, t.AskSz = l.px, l.sz
		}
	}
	var perr *ParseError
	if t.ExchTS, perr = d[2].msTime("ts"); perr != nil {
		return out, perr
	}
	if d[3].typ != simdjson.TypeNone {
		if t.Seq, perr = d[3].uint("seqId"); perr != nil {
			return out, perr
		}
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxTickerKeys = []string{"bidPx", "bidSz", "askPx", "askSz", "ts"}

func (f *OKXFeed) ticker(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxTickerKeys)]
	if perr := objectFields(e, okxTickerKeys, d, "data"); perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	var perr *ParseError
	for i, dst := range [...]*float64{&t.BidPx, &t.BidSz, &t.AskPx, &t.AskSz} {
		// An empty side is sent as "".
		if b := d[i].strOr(); b != nil && len(b) == 0 {
			continue
		}
		if *dst, _, perr = d[i].dec(okxTickerKeys[i]); perr != nil {
			return out, perr
		}
	}
	if t.ExchTS, perr = d[4].msTime("ts"); perr != nil {
		return out, perr
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxBookKeys = []string{"asks", "bids", "ts", "checksum", "prevSeqId", "seqId"}

func (f *OKXFeed) orderBook(recv int64, s *symEntry, e *jfield, snapshot bool, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxBookKeys)]
	if perr := objectFields(e, okxBookKeys, d, "data"); perr != nil {
		return out, perr
	}
	f.lv = f.lv[:0]
	if perr := f.levelArray(&d[1], market.SideBuy, "bids"); perr != nil {
		return out, perr
	}
	if perr := f.levelArray(&d[0], market.SideSell, "asks"); perr != nil {
		return out, perr
	}
	ts, perr := d[2].msTime("ts")
	if perr != nil {
		return out, perr
	}
	var sum int64
	hasSum := d[3].typ != simdjson.TypeNone
	if hasSum {
		if sum, perr = d[3].int("checksum"); perr != nil {
			return out, perr
		}
		if sum < -1<<31 || sum > 1<<31-1 {
			return out, &ParseError{Reason: ReasonBadNumber, Field: "checksum"}
		}
	}
	var seq uint64
	var prev int64
	hasSeq := d[5].typ != simdjson.TypeNone
	if hasSeq {
		if seq, perr = d[5].uint("seqId"); perr != nil {
			return out, perr
		}
		if prev, perr = d[4].int("prevSeqId"); perr != nil {
			return out, perr
		}
	}
	b := f.book(s)
	n := len(out)
	if snapshot {
		b.Clear()
		out = f.applyLevels(out, b, market.KindSnapshot, seq, recv, ts, true)
		b.synced = true
	} else {
		if !b.synced {
			f.withheld()
			return out, nil
		}
		if hasSeq && b.seqOK && (prev < 0 || uint64(prev) != b.seq) {
			out = f.outOfSync(out, n, b, "gap", recv, ts, seq)
			f.resubscribe(s.symbol)
			return out, nil
		}
		out = f.applyLevels(out, b, market.KindBookDelta, seq, recv, ts, true)
	}
	b.seq, b.seqOK = seq, hasSeq
	if hasSum && !f.cfg.NoChecksum && int32(f.checksum(b)) != int32(sum) {
		out = f.outOfSync(out, n, b, "checksum", recv, ts, seq)
		f.resubscribe(s.symbol)
		return out, nil
	}
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, ts, seq)
		f.resubscribe(s.symbol)
	}
	return out, nil
}

// checksum is OKX's documented book checksum: the top 25 levels
// interleaved, "bid[0].px:bid[0].sz:ask[0].px:ask[0].sz:bid[1]..." (a side
// that has run out is skipped), with the venue's text, CRC32.
func (f *OKXFeed) checksum(b *bookState) uint32 {
	f.sum = f.sum[:0]
	bids, asks := b.Side(market.SideBuy), b.Side(market.SideSell)
	for i := 0; i < 25; i++ {
		if i < len(bids) {
			f.sum = append(append(append(append(f.sum, bids[i].PxText...), ':'), bids[i].SzText...), ':')
		}
		if i < len(asks) {
			f.sum = append(append(append(append(f.sum, asks[i].PxText...), ':'), asks[i].SzText...), ':')
		}
	}
	if len(f.sum) > 0 {
		f.sum = f.sum[:len(f.sum)-1]
	}
	return crc32IEEE(f.sum)
}

func (f *OKXFeed) resubscribe(instID string) {
	for _, op := range []string{"unsubscribe", "subscribe"} {
		b, _ := json.Marshal(okxReq{Op: op, Args: []okxArg{{Channel: "books", InstID: instID}}})
		f.outbox = append(f.outbox, b)
	}
}

var okxFundingKeys = []string{"fundingRate", "fundingTime", "ts"}

func (f *OKXFeed) funding(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxFundingKeys)]
	if perr := objectFields(e, okxFundingKeys, d, "data"); perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindFunding, recv, 0)
	var perr *ParseError
	if t.Price, perr = d[0].num("fundingRate"); perr != nil {
		return out, perr
	}
	// ts (when the rate was published) is newer than the documented
	// fundingTime (the settlement it applies to); use it when sent.
	k := 2
	if d[2].typ == simdjson.TypeNone {
		k = 1
	}
	if t.ExchTS, perr = d[k].msTime(okxFundingKeys[k]); perr != nil {
		return out, perr
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxLiqKeys = []string{"instId", "details"}
var okxLiqDetailKeys = []string{"bkPx", "sz", "side", "ts"}

// liquidation gives one market.KindLiquidation per detail: market.Side is the forced
// order's side (a liquidated long is sold), Price the bankruptcy price,
// Size in contracts (OKX's sz).
func (f *OKXFeed) liquidation(recv int64, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxLiqKeys)]
	if perr := objectFields(e, okxLiqKeys, d, "data"); perr != nil {
		return out, perr
	}
	b, perr := d[0].str("instId")
	if perr != nil {
		return out, perr
	}
	s, perr := f.sym(b, "instId")
	if perr != nil {
		return out, perr
	}
	it, perr := d[1].arrayIter("details")
	if perr != nil {
		return out, perr
	}
	for {
		de, ok := next(&it)
		if !ok {
			return out, nil
		}
		x := f.x[:len(okxLiqDetailKeys)]
		if perr := objectFields(&de, okxLiqDetailKeys, x, "details"); perr != nil {
			return out, perr
		}
		t := f.newTick(s, market.KindLiquidation, recv, 0)
		if t.Price, _, perr = x[0].dec("bkPx"); perr != nil {
			return out, perr
		}
		if t.Size, _, perr = x[1].dec("sz"); perr != nil {
			return out, perr
		}
		if t.Side, perr = x[2].side("side"); perr != nil {
			return out, perr
		}
		if t.ExchTS, perr = x[3].msTime("ts"); perr != nil {
			return out, perr
		}
		t.ComputeID()
		out = append(out, t)
	}
}
