package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// BitMEX realtime API (wss://ws.bitmex.com/realtime): orderBookL2 (levels
// keyed by id: partial, then insert/update/delete; updates and deletes may
// carry only the id), trade (taker side) and quote. BitMEX sends no
// sequence numbers: an update or delete of an id the book does not hold is
// a gap, and the book is checked for crossing.
//
// Docs: https://www.bitmex.com/app/wsAPI.

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueBitmex,
		Cryptofeed: []string{"BITMEX"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewBitmexFeed(cfg), nil },
	})
}

type bitmexLevel struct {
	side market.Side
	px   float64
}

// BitmexFeed is the BitMEX realtime Feed.
type BitmexFeed struct {
	feedCore
	ids map[string]map[uint64]bitmexLevel // per venue symbol: level id → side, price
	ent []bitmexEntry
	r   [4]jfield  // root members
	fl  [1]jfield  // filter members
	e   [11]jfield // entry members
}

type bitmexEntry struct {
	s        *symEntry
	id       uint64
	side     market.Side
	px, sz   float64
	hasPx    bool
	hasSz    bool
	ts       int64
	tradeID  uint64
	bid, ask [2]float64
}

// NewBitmexFeed returns a BitMEX Feed.
func NewBitmexFeed(cfg FeedConfig) *BitmexFeed {
	return &BitmexFeed{feedCore: newFeedCore(VenueBitmex, cfg, NormalizeBitmexSymbol), ids: map[string]map[uint64]bitmexLevel{}}
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
	f.reset()
	clear(f.ids)
}

func (f *BitmexFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("bitmex: no REST snapshots (orderBookL2 sends a partial)")
}

func (f *BitmexFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	if bytes.Equal(frame, []byte("pong")) {
		f.m.Frame()
		f.m.Ignored("pong")
		return out, nil
	}
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		if rd.objectFields(root, bitmexKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var table, action, filterSym []byte
		if r[0].typ != simdjson.TypeNone {
			table = rd.str(&r[0], "table")
		}
		if r[1].typ != simdjson.TypeNone {
			action = rd.str(&r[1], "action")
		}
		if r[3].typ != simdjson.TypeNone && rd.err == nil {
			fl := f.fl[:]
			if rd.objectFields(&r[3], bitmexFilterKeys, fl, "filter"); rd.err == nil && fl[0].typ != simdjson.TypeNone {
				filterSym = rd.str(&fl[0], "filter")
			}
		}
		if rd.err != nil {
			return out, rd.err
		}
		if table == nil {
			f.m.Ignored("response") // welcome, subscribe acks, errors
			return out, nil
		}
		if r[2].typ == simdjson.TypeNone {
			return out, perrf(ReasonMissingField, "data")
		}
		data := &r[2]
		switch string(table) {
		case "orderBookL2", "orderBookL2_25":
			return f.book(recv, action, filterSym, data, out)
		case "trade":
			if string(action) == "partial" {
				f.m.Ignored("trade_partial") // past trades
				return out, nil
			}
			return f.trades(recv, data, out)
		case "quote":
			return f.quotes(recv, data, out)
		}
		f.m.Ignored("table_other")
		return out, nil
	})
}

var (
	bitmexKeys       = []string{"table", "action", "data", "filter"}
	bitmexFilterKeys = []string{"symbol"}
	bitmexEntryKeys  = []string{"symbol", "id", "side", "price", "size", "timestamp", "trdMatchID", "bidPrice", "bidSize", "askPrice", "askSize"}
)

// entries decodes data's objects into f.ent.
func (f *BitmexFeed) entries(data *jfield) *ParseError {
	var r fieldReader
	ai := r.elems(data, "data")
	if r.err != nil {
		return r.err
	}
	f.ent = f.ent[:0]
	d := f.e[:]
	for {
		if !ai.advance() {
			return nil
		}
		if r.objectFields(&ai, bitmexEntryKeys, d, "data"); r.err != nil {
			return r.err
		}
		var e bitmexEntry
		var sym []byte
		if d[0].typ != simdjson.TypeNone {
			sym = r.str(&d[0], "symbol")
		}
		if d[1].typ != simdjson.TypeNone {
			e.id = r.seqNum(&d[1], "id")
		}
		if d[2].typ != simdjson.TypeNone {
			switch b := r.str(&d[2], "side"); {
			case r.err != nil:
			case string(b) == "Buy":
				e.side = market.SideBuy
			case string(b) == "Sell":
				e.side = market.SideSell
			default:
				r.fail(ReasonBadType, "side")
			}
		}
		if e.hasPx = d[3].typ != simdjson.TypeNone; e.hasPx {
			e.px = r.nonNeg(&d[3], "price")
		}
		if e.hasSz = d[4].typ != simdjson.TypeNone; e.hasSz {
			e.sz = r.nonNeg(&d[4], "size")
		}
		if d[5].typ != simdjson.TypeNone {
			if b := r.str(&d[5], "timestamp"); r.err == nil {
				tm, err := time.Parse(time.RFC3339Nano, string(b))
				if err != nil {
					r.fail(ReasonBadNumber, "timestamp")
				}
				e.ts = tm.UnixNano()
			}
		}
		if d[6].typ != simdjson.TypeNone {
			e.tradeID = bitmexTradeID(r.str(&d[6], "trdMatchID"))
		}
		for i, v := range [...]*float64{&e.bid[0], &e.bid[1], &e.ask[0], &e.ask[1]} {
			if d[7+i].typ != simdjson.TypeNone {
				*v, _ = r.numOrNull(&d[7+i], bitmexEntryKeys[7+i])
			}
		}
		if e.s = r.symOf(&f.feedCore, sym, "symbol"); r.err != nil {
			return r.err
		}
		f.ent = append(f.ent, e)
	}
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

func (f *BitmexFeed) trades(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if perr := f.entries(data); perr != nil {
		return out, perr
	}
	for _, e := range f.ent {
		if e.side == 0 || e.px == 0 || e.sz == 0 {
			return out, perrf(ReasonMissingField, "trade")
		}
	}
	for _, e := range f.ent {
		t := f.newTick(e.s, market.KindTrade, recv, e.ts)
		t.Side, t.Price, t.Size, t.TradeID = e.side, e.px, e.sz, e.tradeID
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}

func (f *BitmexFeed) quotes(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if perr := f.entries(data); perr != nil {
		return out, perr
	}
	for _, e := range f.ent {
		t := f.newTick(e.s, market.KindQuote, recv, e.ts)
		t.BidPx, t.BidSz, t.AskPx, t.AskSz = e.bid[0], e.bid[1], e.ask[0], e.ask[1]
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}

func (f *BitmexFeed) resubscribe(sym string) {
	f.outbox = append(f.outbox, bitmexOp("unsubscribe", "orderBookL2:"+sym), bitmexOp("subscribe", "orderBookL2:"+sym))
}

func (f *BitmexFeed) book(recv int64, action, filterSym []byte, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
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
		var s *symEntry
		if len(f.ent) > 0 {
			s = f.ent[0].s
		} else if filterSym != nil {
			var perr *ParseError
			if s, perr = f.sym(filterSym, "filter"); perr != nil {
				return out, perr
			}
		} else {
			return out, nil
		}
		ids := map[uint64]bitmexLevel{}
		f.sl = f.sl[:0]
		for _, e := range f.ent {
			if e.s != s {
				return out, perrf(ReasonBadSymbol, "symbol")
			}
			ids[e.id] = bitmexLevel{e.side, e.px}
			f.sl = append(f.sl, seqLevel{side: e.side, px: e.px, sz: e.sz})
		}
		f.ids[s.symbol] = ids
		bk := f.feedCore.book(s)
		out2, ok := f.replaceBook(bk, f.sl, recv, 0, 0, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, 0, out)
			f.resubscribe(s.symbol)
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

func (f *BitmexFeed) bookChanges(recv int64, act string, s *symEntry, ents []bitmexEntry, out []market.Tick) []market.Tick {
	bk := f.feedCore.book(s)
	if !bk.synced {
		return out
	}
	ids := f.ids[s.symbol]
	f.sl = f.sl[:0]
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
				f.resubscribe(s.symbol)
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
		f.sl = append(f.sl, seqLevel{side: lv.side, px: lv.px, sz: sz})
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.sl, recv, 0, 0, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, 0, out[:n])
		f.resubscribe(s.symbol)
	}
	return out
}
