package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
)

// BitMEX realtime API (wss://ws.bitmex.com/realtime): orderBookL2 (levels
// keyed by id: partial, then insert/update/delete; updates and deletes may
// carry only the id), trade (taker side) and quote. BitMEX sends no
// sequence numbers: an update or delete of an id the book does not hold is
// a gap, and the book is checked for crossing.
//
// Docs: https://www.bitmex.com/app/wsAPI.

func init() {
	RegisterFeed("bitmex", func(cfg FeedConfig) (Feed, error) { return NewBitmexFeed(cfg), nil })
}

type bitmexLevel struct {
	side Side
	px   float64
}

// BitmexFeed is the BitMEX realtime Feed.
type BitmexFeed struct {
	feedBase
	ids map[string]map[uint64]bitmexLevel // per venue symbol: level id → side, price
	ent []bitmexEntry
}

type bitmexEntry struct {
	s        *symB
	id       uint64
	side     Side
	px, sz   float64
	hasPx    bool
	hasSz    bool
	ts       int64
	tradeID  uint64
	bid, ask [2]float64
}

// NewBitmexFeed returns a BitMEX Feed.
func NewBitmexFeed(cfg FeedConfig) *BitmexFeed {
	return &BitmexFeed{feedBase: newFeedBase("bitmex", cfg), ids: map[string]map[uint64]bitmexLevel{}}
}

// Limits: BitMEX allows 20 subscribe args a second or so (its connection
// limit is 40 per hour, shown in the welcome's "limit"); the client sends
// "ping" when 5 s pass without a message, so every 5 s here.
func (f *BitmexFeed) Limits() Limits {
	return Limits{SubscribeRate: 10, PingInterval: 5 * time.Second, Silence: 15 * time.Second}
}

func (f *BitmexFeed) Ping() []byte { return []byte("ping") }

func (f *BitmexFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://ws.bitmex.com/realtime", nil
}

func (f *BitmexFeed) Normalize(symbol string) (string, bool) { return NormalizeBitmexSymbol(symbol) }

var bitmexMonths = map[byte]time.Month{'F': 1, 'G': 2, 'H': 3, 'J': 4, 'K': 5, 'M': 6, 'N': 7, 'Q': 8, 'U': 9, 'V': 10, 'X': 11, 'Z': 12}

// NormalizeBitmexSymbol maps perpetuals XBTUSD → BTC-USD-PERP, SOLUSDT →
// SOL-USDT-PERP, and XBT futures XBTU21 → BTC-USD-20210924 (expiry: the last
// Friday of the month). Other futures (quoted in XBT) are left unnormalized.
func NormalizeBitmexSymbol(symbol string) (string, bool) {
	asset := func(a string) string {
		if a == "XBT" {
			return "BTC"
		}
		return a
	}
	for _, q := range []string{"USDT", "USD", "EUR"} {
		if b, ok := strings.CutSuffix(symbol, q); ok && len(b) >= 2 {
			return asset(b) + "-" + q + "-PERP", true
		}
	}
	if n := len(symbol); n >= 5 && strings.HasPrefix(symbol, "XBT") {
		m, ok := bitmexMonths[symbol[n-3]]
		yy := symbol[n-2:]
		if ok && yy[0] >= '0' && yy[0] <= '9' && yy[1] >= '0' && yy[1] <= '9' && n == 6 {
			y := 2000 + int(yy[0]-'0')*10 + int(yy[1]-'0')
			d := time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC) // last day of the month
			for d.Weekday() != time.Friday {
				d = d.AddDate(0, 0, -1)
			}
			return "BTC-USD-" + d.Format("20060102"), true
		}
	}
	return symbol, false
}

// SubscribeFrames: one subscribe op with every topic.
func (f *BitmexFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var args []string
	for _, s := range subs {
		if s.Symbol == "" || strings.ContainsAny(s.Symbol, `":, `) {
			return nil, fmt.Errorf("bitmex: bad symbol %q", s.Symbol)
		}
		switch s.Channel {
		case ChanBook:
			args = append(args, "orderBookL2:"+s.Symbol)
		case ChanTrades:
			args = append(args, "trade:"+s.Symbol)
		case ChanQuotes:
			args = append(args, "quote:"+s.Symbol)
		default:
			return nil, fmt.Errorf("bitmex: channel %q is not supported (book, trades, quotes)", s.Channel)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	return [][]byte{bitmexOp("subscribe", args...)}, nil
}

func bitmexOp(op string, args ...string) []byte {
	return fmt.Appendf(nil, `{"op":%q,"args":["%s"]}`, op, strings.Join(args, `","`))
}

func (f *BitmexFeed) Reset() {
	f.resetBase()
	clear(f.ids)
}

func (f *BitmexFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
	return out, fmt.Errorf("bitmex: no REST snapshots (orderBookL2 sends a partial)")
}

func (f *BitmexFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	if bytes.Equal(frame, []byte("pong")) {
		f.m.Frame()
		f.m.Ignored("pong")
		return out, nil
	}
	return f.run(frame, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el, data simdjson.Iter
		var table, action, filterSym []byte
		hasData := false
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
			case "table":
				table, perr = jstr(&el, "table")
			case "action":
				action, perr = jstr(&el, "action")
			case "data":
				data, hasData = el, true
			case "filter":
				var fo simdjson.Object
				if perr = objectOf(&el, &fo, "filter"); perr == nil {
					var fe simdjson.Iter
					for {
						n, ft, err := fo.NextElementBytes(&fe)
						if err != nil || ft == simdjson.TypeNone {
							break
						}
						if string(n) == "symbol" {
							filterSym, perr = jstr(&fe, "filter")
						}
					}
				}
			}
			if perr != nil {
				return out, perr
			}
		}
		if table == nil {
			f.m.Ignored("response") // welcome, subscribe acks, errors
			return out, nil
		}
		if !hasData {
			return out, perrf(ReasonMissingField, "data")
		}
		switch string(table) {
		case "orderBookL2", "orderBookL2_25":
			return f.book(recv, action, filterSym, &data, out)
		case "trade":
			if string(action) == "partial" {
				f.m.Ignored("trade_partial") // past trades
				return out, nil
			}
			return f.trades(recv, &data, out)
		case "quote":
			return f.quotes(recv, &data, out)
		}
		f.m.Ignored("table_other")
		return out, nil
	})
}

// entries decodes data's objects into f.ent.
func (f *BitmexFeed) entries(data *simdjson.Iter) *ParseError {
	ai, perr := arrayIter(data, "data")
	if perr != nil {
		return perr
	}
	f.ent = f.ent[:0]
	var obj simdjson.Object
	var el simdjson.Iter
	for ai.Advance() != simdjson.TypeNone {
		if perr := objectOf(&ai, &obj, "data"); perr != nil {
			return perr
		}
		var e bitmexEntry
		var sym []byte
		for {
			name, t, err := obj.NextElementBytes(&el)
			if err != nil {
				return perrf(ReasonBadJSON, "data")
			}
			if t == simdjson.TypeNone {
				break
			}
			var perr *ParseError
			switch string(name) {
			case "symbol":
				sym, perr = jstr(&el, "symbol")
			case "id":
				e.id, perr = juint(&el, "id")
			case "side":
				var b []byte
				if b, perr = jstr(&el, "side"); perr == nil {
					switch string(b) {
					case "Buy":
						e.side = SideBuy
					case "Sell":
						e.side = SideSell
					default:
						perr = perrf(ReasonBadType, "side")
					}
				}
			case "price":
				e.px, perr = jnonneg(&el, "price")
				e.hasPx = true
			case "size":
				e.sz, perr = jnonneg(&el, "size")
				e.hasSz = true
			case "timestamp":
				var b []byte
				if b, perr = jstr(&el, "timestamp"); perr == nil {
					tm, err := time.Parse(time.RFC3339Nano, string(b))
					if err != nil {
						perr = perrf(ReasonBadNumber, "timestamp")
					}
					e.ts = tm.UnixNano()
				}
			case "trdMatchID":
				var b []byte
				if b, perr = jstr(&el, "trdMatchID"); perr == nil {
					e.tradeID = bitmexTradeID(b)
				}
			case "bidPrice":
				e.bid[0], _, perr = jnumOrNull(&el, "bidPrice")
			case "bidSize":
				e.bid[1], _, perr = jnumOrNull(&el, "bidSize")
			case "askPrice":
				e.ask[0], _, perr = jnumOrNull(&el, "askPrice")
			case "askSize":
				e.ask[1], _, perr = jnumOrNull(&el, "askSize")
			}
			if perr != nil {
				return perr
			}
		}
		if e.s, perr = f.symbol(sym, "symbol", NormalizeBitmexSymbol); perr != nil {
			return perr
		}
		f.ent = append(f.ent, e)
	}
	return nil
}

// bitmexTradeID is the first 8 bytes of the trdMatchID UUID (0 when it is
// not one).
func bitmexTradeID(b []byte) uint64 {
	var h [16]byte
	s := bytes.ReplaceAll(b, []byte("-"), nil)
	if len(s) != 32 {
		return 0
	}
	if _, err := hex.Decode(h[:], s); err != nil {
		return 0
	}
	return binary.BigEndian.Uint64(h[:8])
}

func (f *BitmexFeed) trades(recv int64, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	if perr := f.entries(data); perr != nil {
		return out, perr
	}
	for _, e := range f.ent {
		if e.side == 0 || e.px == 0 || e.sz == 0 {
			return out, perrf(ReasonMissingField, "trade")
		}
	}
	for _, e := range f.ent {
		t := f.tick(e.s, KindTrade, recv, e.ts)
		t.Side, t.Price, t.Size, t.TradeID = e.side, e.px, e.sz, e.tradeID
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}

func (f *BitmexFeed) quotes(recv int64, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	if perr := f.entries(data); perr != nil {
		return out, perr
	}
	for _, e := range f.ent {
		t := f.tick(e.s, KindQuote, recv, e.ts)
		t.BidPx, t.BidSz, t.AskPx, t.AskSz = e.bid[0], e.bid[1], e.ask[0], e.ask[1]
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}

func (f *BitmexFeed) resubscribe(sym string) {
	f.outbox = append(f.outbox, bitmexOp("unsubscribe", "orderBookL2:"+sym), bitmexOp("subscribe", "orderBookL2:"+sym))
}

func (f *BitmexFeed) book(recv int64, action, filterSym []byte, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	if perr := f.entries(data); perr != nil {
		return out, perr
	}
	act := string(action)
	switch act {
	case "partial", "insert", "update", "delete":
	default:
		return out, perrf(ReasonBadType, "action")
	}
	for _, e := range f.ent {
		if e.id == 0 || e.side == 0 || (act != "delete" && !e.hasSz) || ((act == "insert" || act == "partial") && (!e.hasPx || e.px == 0)) {
			return out, perrf(ReasonMissingField, "data")
		}
	}
	if act == "partial" {
		// One symbol per partial (the filter names it even when empty).
		var s *symB
		if len(f.ent) > 0 {
			s = f.ent[0].s
		} else if filterSym != nil {
			var perr *ParseError
			if s, perr = f.symbol(filterSym, "filter", NormalizeBitmexSymbol); perr != nil {
				return out, perr
			}
		} else {
			return out, nil
		}
		ids := map[uint64]bitmexLevel{}
		f.lv = f.lv[:0]
		for _, e := range f.ent {
			if e.s != s {
				return out, perrf(ReasonBadSymbol, "symbol")
			}
			ids[e.id] = bitmexLevel{e.side, e.px}
			f.lv = append(f.lv, lvB{side: e.side, px: e.px, sz: e.sz})
		}
		f.ids[s.sym] = ids
		bk := f.feedBase.book(s)
		out2, ok := f.applySnapshot(bk, f.lv, recv, 0, 0, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, 0, out)
			f.resubscribe(s.sym)
			return out, nil
		}
		return out2, nil
	}
	// insert/update/delete, possibly for several symbols: apply per symbol.
	for i := 0; i < len(f.ent); {
		s := f.ent[i].s
		j := i
		for j < len(f.ent) && f.ent[j].s == s {
			j++
		}
		out = f.bookChanges(recv, act, s, f.ent[i:j], out)
		i = j
	}
	return out, nil
}

func (f *BitmexFeed) bookChanges(recv int64, act string, s *symB, ents []bitmexEntry, out []Tick) []Tick {
	bk := f.feedBase.book(s)
	if bk.state != bookLive {
		return out
	}
	ids := f.ids[s.sym]
	f.lv = f.lv[:0]
	for _, e := range ents {
		lv, known := ids[e.id]
		switch act {
		case "insert":
			lv = bitmexLevel{e.side, e.px}
			ids[e.id] = lv
		case "update", "delete":
			if !known {
				// A change to a level the book never got: a message was lost.
				out = f.desync(bk, "gap", recv, e.id, out)
				f.resubscribe(s.sym)
				return out
			}
			if e.hasPx && e.px != 0 {
				lv.px = e.px
			}
		}
		sz := e.sz
		if act == "delete" {
			sz = 0
			delete(ids, e.id)
		}
		f.lv = append(f.lv, lvB{side: lv.side, px: lv.px, sz: sz})
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.lv, recv, 0, 0, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, 0, out[:n])
		f.resubscribe(s.sym)
	}
	return out
}
