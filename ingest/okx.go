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
	var r fieldReader
	r.objectFields(&root, okxKeys, fl, "root")
	if r.err == nil && fl[3].typ != simdjson.TypeNone {
		ev := r.str(&fl[3], "event")
		if r.err != nil {
			return out, r.err
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
	r.objectFields(&fl[0], []string{"channel", "instId", "instType"}, a, "arg")
	ch := r.str(&a[0], "channel")
	if r.err != nil {
		return out, r.err
	}
	switch string(ch) {
	case "trades", "trades-all", "bbo-tbt", "tickers", "books", "funding-rate", "liquidation-orders":
	default:
		f.m.Ignored("other")
		return out, nil
	}
	it2 := r.arrayIter(&fl[1], "data")
	var s *symEntry
	if a[1].typ != simdjson.TypeNone {
		if b := r.str(&a[1], "instId"); r.err == nil {
			s, r.err = f.sym(b, "instId")
		}
	}
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	r.objectFields(e, okxTradeKeys, d, "data")
	t := f.newTick(s, market.KindTrade, recv, 0)
	t.TradeID = r.uint(&d[1], "tradeId")
	t.Price = r.dec(&d[2], "px")
	t.Size = r.dec(&d[3], "sz")
	t.Side = r.side(&d[4], "side") // the taker's side
	t.ExchTS = r.msTime(&d[5], "ts")
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxBBOKeys = []string{"asks", "bids", "ts", "seqId"}

func (f *OKXFeed) bbo(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxBBOKeys)]
	var r fieldReader
	r.objectFields(e, okxBBOKeys, d, "data")
	f.lv = f.lv[:0]
	r.levelArray(&f.feedCore, &d[1], market.SideBuy, "bids")
	r.levelArray(&f.feedCore, &d[0], market.SideSell, "asks")
	t := f.newTick(s, market.KindQuote, recv, 0)
	for _, l := range f.lv {
		if l.side == market.SideBuy && t.BidPx == 0 {
			t.BidPx, t.BidSz = l.px, l.sz
		} else if l.side == market.SideSell && t.AskPx == 0 {
			t.AskPx, t.AskSz = l.px, l.sz
		}
	}
	t.ExchTS = r.msTime(&d[2], "ts")
	if d[3].typ != simdjson.TypeNone {
		t.Seq = r.uint(&d[3], "seqId")
	}
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxTickerKeys = []string{"bidPx", "bidSz", "askPx", "askSz", "ts"}

func (f *OKXFeed) ticker(recv int64, s *symEntry, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxTickerKeys)]
	var r fieldReader
	r.objectFields(e, okxTickerKeys, d, "data")
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [...]*float64{&t.BidPx, &t.BidSz, &t.AskPx, &t.AskSz} {
		// An empty side is sent as "".
		if b := d[i].strOr(); b != nil && len(b) == 0 {
			continue
		}
		*dst = r.dec(&d[i], okxTickerKeys[i])
	}
	t.ExchTS = r.msTime(&d[4], "ts")
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var okxBookKeys = []string{"asks", "bids", "ts", "checksum", "prevSeqId", "seqId"}

func (f *OKXFeed) orderBook(recv int64, s *symEntry, e *jfield, snapshot bool, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:len(okxBookKeys)]
	var r fieldReader
	r.objectFields(e, okxBookKeys, d, "data")
	f.lv = f.lv[:0]
	r.levelArray(&f.feedCore, &d[1], market.SideBuy, "bids")
	r.levelArray(&f.feedCore, &d[0], market.SideSell, "asks")
	ts := r.msTime(&d[2], "ts")
	var sum int64
	hasSum := d[3].typ != simdjson.TypeNone
	if hasSum {
		if sum = r.int(&d[3], "checksum"); sum < -1<<31 || sum > 1<<31-1 {
			r.fail(ReasonBadNumber, "checksum")
		}
	}
	var seq uint64
	var prev int64
	hasSeq := d[5].typ != simdjson.TypeNone
	if hasSeq {
		seq = r.uint(&d[5], "seqId")
		prev = r.int(&d[4], "prevSeqId")
	}
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	r.objectFields(e, okxFundingKeys, d, "data")
	t := f.newTick(s, market.KindFunding, recv, 0)
	t.Price = r.num(&d[0], "fundingRate")
	// ts (when the rate was published) is newer than the documented
	// fundingTime (the settlement it applies to); use it when sent.
	k := 2
	if d[2].typ == simdjson.TypeNone {
		k = 1
	}
	t.ExchTS = r.msTime(&d[k], okxFundingKeys[k])
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	r.objectFields(e, okxLiqKeys, d, "data")
	b := r.str(&d[0], "instId")
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(b, "instId")
	}
	it := r.arrayIter(&d[1], "details")
	if r.err != nil {
		return out, r.err
	}
	for {
		de, ok := next(&it)
		if !ok {
			return out, nil
		}
		x := f.x[:len(okxLiqDetailKeys)]
		r.objectFields(&de, okxLiqDetailKeys, x, "details")
		t := f.newTick(s, market.KindLiquidation, recv, 0)
		t.Price = r.dec(&x[0], "bkPx")
		t.Size = r.dec(&x[1], "sz")
		t.Side = r.side(&x[2], "side")
		t.ExchTS = r.msTime(&x[3], "ts")
		if r.err != nil {
			return out, r.err
		}
		t.ComputeID()
		out = append(out, t)
	}
}
