package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Huobi (HTX) spot market websocket (wss://api.huobi.pro/ws): every frame is
// gzip-compressed JSON. market.<sym>.depth.step0 pushes the whole top of the
// book (150 levels) each time, so each push is a snapshot; trade.detail
// carries trades with the taker's direction; bbo the best bid/offer. The
// server sends {"ping":N} every 5 s and drops the connection after two
// unanswered ones: Handle answers {"pong":N} through Outbox.
//
// Docs: https://www.htx.com/en-us/opend/newApiPages/ (Websocket Market Data).

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueHuobi,
		Cryptofeed: []string{"HUOBI"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewHuobiFeed(cfg), nil },
	})
}

// huobiMaxFrame bounds a decompressed frame (a gzip bomb is malformed, not
// an out-of-memory).
const huobiMaxFrame = 16 << 20

// HuobiFeed is the Huobi spot Feed.
type HuobiFeed struct {
	feedCore
	zr  *gzip.Reader
	buf bytes.Buffer
	br  bytes.Reader
	r   [3]jfield // root members
	d   [6]jfield // tick members
	e   [5]jfield // trade members
}

// NewHuobiFeed returns a Huobi Feed.
func NewHuobiFeed(cfg FeedConfig) *HuobiFeed {
	return &HuobiFeed{feedCore: newFeedCore(VenueHuobi, cfg, NormalizeHuobiSymbol)}
}

// Limits: the server pings every 5 s; subscriptions are paced at 10 a
// second (Huobi rejects bursts of subscribe requests).
func (f *HuobiFeed) Limits() Limits {
	return Limits{SubscribeRate: 10, Silence: 15 * time.Second}
}

func (f *HuobiFeed) Ping() []byte { return nil }

func (f *HuobiFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://api.huobi.pro/ws", nil
}

func (f *HuobiFeed) Normalize(symbol string) (string, bool) { return NormalizeHuobiSymbol(symbol) }

var huobiQuotes = []string{"usdt", "usdc", "husd", "btc", "eth", "ht", "trx", "usdd"}

// NormalizeHuobiSymbol maps btcusdt → BTC-USDT, trioeth → TRIO-ETH.
func NormalizeHuobiSymbol(symbol string) (string, bool) {
	s := strings.ToLower(symbol)
	for _, q := range huobiQuotes {
		if len(s) > len(q) && strings.HasSuffix(s, q) {
			return strings.ToUpper(s[:len(s)-len(q)] + "-" + q), true
		}
	}
	return symbol, false
}

func (f *HuobiFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var out [][]byte
	for i, s := range subs {
		if s.Symbol == "" || strings.ContainsAny(s.Symbol, `". `) {
			return nil, fmt.Errorf("huobi: bad symbol %q", s.Symbol)
		}
		var topic string
		switch s.Channel {
		case ChanBook:
			topic = "depth.step0"
		case ChanTrades:
			topic = "trade.detail"
		case ChanQuotes:
			topic = "bbo"
		default:
			return nil, fmt.Errorf("huobi: channel %q is not supported (book, trades, quotes)", s.Channel)
		}
		out = append(out, fmt.Appendf(nil, `{"sub":"market.%s.%s","id":"%d"}`, strings.ToLower(s.Symbol), topic, i+1))
	}
	return out, nil
}

func (f *HuobiFeed) Reset() { f.reset() }

func (f *HuobiFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("huobi: no REST snapshots (depth pushes are snapshots)")
}

// inflate returns the JSON text of frame: gunzipped when it starts with the
// gzip magic, as is otherwise.
func (f *HuobiFeed) inflate(frame []byte) ([]byte, bool) {
	if len(frame) < 2 || frame[0] != 0x1f || frame[1] != 0x8b {
		return frame, true
	}
	f.br.Reset(frame)
	var err error
	if f.zr == nil {
		f.zr, err = gzip.NewReader(&f.br)
	} else {
		err = f.zr.Reset(&f.br)
	}
	if err != nil {
		return nil, false
	}
	f.buf.Reset()
	n, err := f.buf.ReadFrom(io.LimitReader(f.zr, huobiMaxFrame+1))
	if err != nil || n > huobiMaxFrame {
		return nil, false
	}
	return f.buf.Bytes(), true
}

func (f *HuobiFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	js, ok := f.inflate(frame)
	if !ok {
		f.m.Frame()
		f.m.Malformed(ReasonBadJSON.String())
		return out, &ParseError{Venue: f.venue, Reason: ReasonBadJSON, Field: "gzip"}
	}
	return f.run(js, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		if rd.objectFields(root, huobiKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var ch []byte
		if r[0].typ != simdjson.TypeNone {
			ch = rd.str(&r[0], "ch")
		}
		if r[1].typ != simdjson.TypeNone {
			ping := rd.seqNum(&r[1], "ping")
			if rd.err != nil {
				return out, rd.err
			}
			f.outbox = append(f.outbox, fmt.Appendf(nil, `{"pong":%d}`, ping))
			f.m.Ignored("ping")
			return out, nil
		}
		if rd.err != nil {
			return out, rd.err
		}
		if ch == nil {
			f.m.Ignored("response") // subbed acks, errors
			return out, nil
		}
		// market.<symbol>.<topic>
		rest, ok := bytes.CutPrefix(ch, []byte("market."))
		dot := bytes.IndexByte(rest, '.')
		if !ok || dot <= 0 {
			return out, perrf(ReasonBadType, "ch")
		}
		if r[2].typ == simdjson.TypeNone {
			return out, perrf(ReasonMissingField, "tick")
		}
		s := rd.symOf(&f.feedCore, rest[:dot], "ch")
		if rd.err == nil && r[2].typ != simdjson.TypeObject {
			rd.fail(ReasonBadType, "tick")
		}
		if rd.err != nil {
			return out, rd.err
		}
		topic := rest[dot+1:]
		switch {
		case bytes.HasPrefix(topic, []byte("depth.")):
			return f.depth(recv, s, &r[2], out)
		case string(topic) == "trade.detail":
			return f.trades(recv, s, &r[2], out)
		case string(topic) == "bbo":
			return f.bbo(recv, s, &r[2], out)
		}
		f.m.Ignored("channel_other")
		return out, nil
	})
}

var (
	huobiKeys      = []string{"ch", "ping", "tick"}
	huobiDepthKeys = []string{"bids", "asks", "ts", "version"}
)

// huobiMillis reads an optional ms time to ns.
func huobiMillis(r *fieldReader, f *jfield, field string) int64 {
	if f.typ == simdjson.TypeNone {
		return 0
	}
	return r.msToNS(r.intJSON(f, field), field)
}

func (f *HuobiFeed) depth(recv int64, s *symEntry, tick *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:4]
	var r fieldReader
	if r.objectFields(tick, huobiDepthKeys, d, "tick"); r.err != nil {
		return out, r.err
	}
	f.sl = f.sl[:0]
	if !present(d[:2]) {
		return out, perrf(ReasonMissingField, "bids")
	}
	if r.err = f.numLevels(&d[0], market.SideBuy, "bids"); r.err == nil {
		r.err = f.numLevels(&d[1], market.SideSell, "asks")
	}
	ts := huobiMillis(&r, &d[2], "ts")
	var version uint64
	if d[3].typ != simdjson.TypeNone {
		version = r.seqNum(&d[3], "version")
	}
	if r.err != nil {
		return out, r.err
	}
	bk := f.book(s)
	out2, ok := f.replaceBook(bk, f.sl, recv, ts, version, out)
	if !ok {
		// The next push is a whole book again: nothing to ask for.
		return f.desync(bk, "crossed", recv, version, out), nil
	}
	return out2, nil
}

// numLevels reads [[price, size], ...] with numbers.
func (f *HuobiFeed) numLevels(fl *jfield, side market.Side, field string) *ParseError {
	var r fieldReader
	ai := r.elems(fl, field)
	for r.err == nil {
		if !ai.advance() {
			return nil
		}
		li := r.elems(&ai, field)
		var v [2]float64
		for i := 0; i < len(v) && r.err == nil; i++ {
			if !li.advance() {
				return perrf(ReasonMissingField, field)
			}
			v[i] = r.nonNeg(&li, field)
		}
		if r.err == nil && v[0] == 0 {
			r.fail(ReasonBadNumber, field)
		}
		if r.err == nil {
			f.sl = append(f.sl, seqLevel{side: side, px: v[0], sz: v[1]})
		}
	}
	return r.err
}

var (
	huobiTradesKeys = []string{"data"}
	huobiTradeKeys  = []string{"price", "amount", "direction", "ts", "tradeId"}
)

func (f *HuobiFeed) trades(recv int64, s *symEntry, tick *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:1]
	var r fieldReader
	if r.objectFields(tick, huobiTradesKeys, d, "tick"); r.err == nil && d[0].typ == simdjson.TypeNone {
		r.fail(ReasonMissingField, "data")
	}
	ai := r.elems(&d[0], "data")
	if r.err != nil {
		return out, r.err
	}
	n := len(out)
	e := f.e[:]
	for {
		if !ai.advance() {
			return out, nil
		}
		if r.objectFields(&ai, huobiTradeKeys, e, "data"); r.err == nil && !present(e[:4]) {
			r.fail(ReasonMissingField, "trade")
		}
		px := r.nonNeg(&e[0], "price")
		sz := r.nonNeg(&e[1], "amount")
		dir := r.str(&e[2], "direction")
		ms := r.intJSON(&e[3], "ts")
		var id uint64
		if e[4].typ != simdjson.TypeNone {
			id = r.seqNum(&e[4], "tradeId")
		}
		side := r.sideWordAs(dir, "direction")
		ts := r.msToNS(ms, "ts")
		if r.err == nil && (px == 0 || sz == 0) {
			r.fail(ReasonBadNumber, "price")
		}
		if r.err != nil {
			return out[:n], r.err
		}
		t := f.newTick(s, market.KindTrade, recv, ts)
		t.Side, t.Price, t.Size, t.TradeID = side, px, sz, id
		t.ComputeID()
		out = append(out, t)
	}
}

var huobiBBOKeys = []string{"bid", "bidSize", "ask", "askSize", "seqId", "quoteTime"}

func (f *HuobiFeed) bbo(recv int64, s *symEntry, tick *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:6]
	var r fieldReader
	if r.objectFields(tick, huobiBBOKeys, d, "tick"); r.err == nil && !present(d[:4]) {
		r.fail(ReasonMissingField, "bbo")
	}
	var q [4]float64
	for i := range q {
		q[i] = r.nonNeg(&d[i], "bbo")
	}
	var seq uint64
	if d[4].typ != simdjson.TypeNone {
		seq = r.seqNum(&d[4], "seqId")
	}
	ts := huobiMillis(&r, &d[5], "quoteTime")
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], seq
	t.ComputeID()
	return append(out, t), nil
}
