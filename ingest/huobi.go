package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
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
	RegisterFeed("huobi", func(cfg FeedConfig) (Feed, error) { return NewHuobiFeed(cfg), nil })
}

// huobiMaxFrame bounds a decompressed frame (a gzip bomb is malformed, not
// an out-of-memory).
const huobiMaxFrame = 16 << 20

// HuobiFeed is the Huobi spot Feed.
type HuobiFeed struct {
	feedBase
	zr  *gzip.Reader
	buf bytes.Buffer
	br  bytes.Reader
}

// NewHuobiFeed returns a Huobi Feed.
func NewHuobiFeed(cfg FeedConfig) *HuobiFeed {
	return &HuobiFeed{feedBase: newFeedBase("huobi", cfg)}
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

func (f *HuobiFeed) Reset() { f.resetBase() }

func (f *HuobiFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
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

func (f *HuobiFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	js, ok := f.inflate(frame)
	if !ok {
		f.m.Frame()
		f.m.Malformed(ReasonBadJSON.String())
		return out, &ParseError{Venue: f.venue, Reason: ReasonBadJSON, Field: "gzip"}
	}
	return f.run(js, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el, tick simdjson.Iter
		var ch []byte
		var ping uint64
		hasPing, hasTick := false, false
		for {
			name, t, err := obj.NextElementBytes(&el)
			if err != nil {
				return out, perrf(ReasonBadJSON, "")
			}
			if t == simdjson.TypeNone {
				break
			}
			var perr *ParseError
			switch string(name) {
			case "ch":
				ch, perr = jstr(&el, "ch")
			case "ping":
				ping, perr = juint(&el, "ping")
				hasPing = true
			case "tick":
				tick, hasTick = el, true
			}
			if perr != nil {
				return out, perr
			}
		}
		if hasPing {
			f.outbox = append(f.outbox, fmt.Appendf(nil, `{"pong":%d}`, ping))
			f.m.Ignored("ping")
			return out, nil
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
		if !hasTick {
			return out, perrf(ReasonMissingField, "tick")
		}
		s, perr := f.symbol(rest[:dot], "ch", NormalizeHuobiSymbol)
		if perr != nil {
			return out, perr
		}
		var tobj simdjson.Object
		if perr := objectOf(&tick, &tobj, "tick"); perr != nil {
			return out, perr
		}
		topic := rest[dot+1:]
		switch {
		case bytes.HasPrefix(topic, []byte("depth.")):
			return f.depth(recv, s, &tobj, out)
		case string(topic) == "trade.detail":
			return f.trades(recv, s, &tobj, out)
		case string(topic) == "bbo":
			return f.bbo(recv, s, &tobj, out)
		}
		f.m.Ignored("channel_other")
		return out, nil
	})
}

func (f *HuobiFeed) depth(recv int64, s *symB, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var ts int64
	var version uint64
	f.lv = f.lv[:0]
	have := 0
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "tick")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "bids":
			perr = f.numLevels(&el, SideBuy, "bids")
			have |= 1
		case "asks":
			perr = f.numLevels(&el, SideSell, "asks")
			have |= 2
		case "ts":
			var ms int64
			if ms, perr = jint(&el, "ts"); perr == nil {
				ts, perr = msToNS(ms, "ts")
			}
		case "version":
			version, perr = juint(&el, "version")
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 3 {
		return out, perrf(ReasonMissingField, "bids")
	}
	bk := f.book(s)
	out2, ok := f.applySnapshot(bk, f.lv, recv, ts, version, out)
	if !ok {
		// The next push is a whole book again: nothing to ask for.
		return f.desync(bk, "crossed", recv, version, out), nil
	}
	return out2, nil
}

// numLevels reads [[price, size], ...] with numbers.
func (f *HuobiFeed) numLevels(it *simdjson.Iter, side Side, field string) *ParseError {
	ai, perr := arrayIter(it, field)
	if perr != nil {
		return perr
	}
	for ai.Advance() != simdjson.TypeNone {
		var v [2]float64
		li, perr := arrayIter(&ai, field)
		if perr != nil {
			return perr
		}
		for i := range v {
			if li.Advance() == simdjson.TypeNone {
				return perrf(ReasonMissingField, field)
			}
			if v[i], perr = jnonneg(&li, field); perr != nil {
				return perr
			}
		}
		if v[0] == 0 {
			return perrf(ReasonBadNumber, field)
		}
		f.lv = append(f.lv, lvB{side: side, px: v[0], sz: v[1]})
	}
	return nil
}

func (f *HuobiFeed) trades(recv int64, s *symB, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var data simdjson.Iter
	hasData := false
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "tick")
		}
		if t == simdjson.TypeNone {
			break
		}
		if string(name) == "data" {
			data, hasData = el, true
		}
	}
	if !hasData {
		return out, perrf(ReasonMissingField, "data")
	}
	ai, perr := arrayIter(&data, "data")
	if perr != nil {
		return out, perr
	}
	n := len(out)
	var tobj simdjson.Object
	for ai.Advance() != simdjson.TypeNone {
		if perr := objectOf(&ai, &tobj, "data"); perr != nil {
			return out[:n], perr
		}
		var px, sz float64
		var ms int64
		var id uint64
		var dir []byte
		have := 0
		for {
			name, t, err := tobj.NextElementBytes(&el)
			if err != nil {
				return out[:n], perrf(ReasonBadJSON, "data")
			}
			if t == simdjson.TypeNone {
				break
			}
			var perr *ParseError
			switch string(name) {
			case "price":
				px, perr = jnonneg(&el, "price")
				have |= 1
			case "amount":
				sz, perr = jnonneg(&el, "amount")
				have |= 2
			case "direction":
				dir, perr = jstr(&el, "direction")
				have |= 4
			case "ts":
				ms, perr = jint(&el, "ts")
				have |= 8
			case "tradeId":
				id, perr = juint(&el, "tradeId")
			}
			if perr != nil {
				return out[:n], perr
			}
		}
		if have != 15 {
			return out[:n], perrf(ReasonMissingField, "trade")
		}
		side, perr := sideWord(dir)
		if perr != nil {
			return out[:n], perrf(perr.Reason, "direction")
		}
		ts, perr := msToNS(ms, "ts")
		if perr != nil {
			return out[:n], perr
		}
		if px == 0 || sz == 0 {
			return out[:n], perrf(ReasonBadNumber, "price")
		}
		t := f.tick(s, KindTrade, recv, ts)
		t.Side, t.Price, t.Size, t.TradeID = side, px, sz, id
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}

func (f *HuobiFeed) bbo(recv int64, s *symB, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var q [4]float64
	var seq uint64
	var ts int64
	have := 0
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "tick")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		i := -1
		switch string(name) {
		case "bid":
			i = 0
		case "bidSize":
			i = 1
		case "ask":
			i = 2
		case "askSize":
			i = 3
		case "seqId":
			seq, perr = juint(&el, "seqId")
		case "quoteTime":
			var ms int64
			if ms, perr = jint(&el, "quoteTime"); perr == nil {
				ts, perr = msToNS(ms, "quoteTime")
			}
		}
		if i >= 0 {
			q[i], perr = jnonneg(&el, "bbo")
			have |= 1 << i
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 15 {
		return out, perrf(ReasonMissingField, "bbo")
	}
	t := f.tick(s, KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], seq
	t.ComputeID()
	return append(out, t), nil
}
