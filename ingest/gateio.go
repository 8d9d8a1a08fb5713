package ingest

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
)

// Gate.io spot websocket v4 (wss://api.gateio.ws/ws/v4/): spot.trades
// (taker side), spot.book_ticker (best bid/ask) and spot.order_book_update
// (U/u update ids, absolute sizes) synced against the REST snapshot
// GET /api/v4/spot/order_book?with_id=true: updates with u <= id are
// dropped, the first applied has U <= id+1 <= u, then each U is the last
// u + 1.
//
// Docs: https://www.gate.io/docs/developers/apiv4/ws/en/ (spot.order_book_update,
// "How to maintain local order book").

func init() {
	RegisterFeed("gateio", func(cfg FeedConfig) (Feed, error) { return NewGateioFeed(cfg), nil })
}

// GateioFeed is the Gate.io spot v4 Feed.
type GateioFeed struct {
	feedBase
	now func() time.Time // the time field of sent frames (tests fix it)
}

// NewGateioFeed returns a Gate.io Feed.
func NewGateioFeed(cfg FeedConfig) *GateioFeed {
	return &GateioFeed{feedBase: newFeedBase("gateio", cfg), now: time.Now}
}

// Limits: Gate.io documents no per-connection channel cap for public
// channels; subscribe frames are paced at 10 a second. An application
// spot.ping every 15 s keeps idle connections open.
func (f *GateioFeed) Limits() Limits {
	return Limits{SubscribeRate: 10, PingInterval: 15 * time.Second, Silence: 30 * time.Second}
}

func (f *GateioFeed) Ping() []byte {
	return fmt.Appendf(nil, `{"time":%d,"channel":"spot.ping"}`, f.now().Unix())
}

func (f *GateioFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://api.gateio.ws/ws/v4/", nil
}

func (f *GateioFeed) Normalize(symbol string) (string, bool) { return NormalizeGateioSymbol(symbol) }

// NormalizeGateioSymbol maps BTC_USDT → BTC-USDT.
func NormalizeGateioSymbol(symbol string) (string, bool) {
	b, q, ok := strings.Cut(symbol, "_")
	if !ok || b == "" || q == "" || strings.Contains(q, "_") {
		return symbol, false
	}
	return strings.ToUpper(b + "-" + q), true
}

// SubscribeFrames: one spot.trades and one spot.book_ticker frame for all
// their symbols, one spot.order_book_update frame per book (100ms).
func (f *GateioFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var trades, quotes []string
	var out [][]byte
	now := f.now().Unix()
	for _, s := range subs {
		if s.Symbol == "" || strings.ContainsAny(s.Symbol, `" ,`) {
			return nil, fmt.Errorf("gateio: bad symbol %q", s.Symbol)
		}
		switch s.Channel {
		case ChanTrades:
			trades = append(trades, s.Symbol)
		case ChanQuotes:
			quotes = append(quotes, s.Symbol)
		case ChanBook:
			out = append(out, fmt.Appendf(nil, `{"time":%d,"channel":"spot.order_book_update","event":"subscribe","payload":["%s","100ms"]}`, now, s.Symbol))
		default:
			return nil, fmt.Errorf("gateio: channel %q is not supported (trades, quotes, book)", s.Channel)
		}
	}
	for _, c := range []struct {
		name string
		syms []string
	}{{"spot.trades", trades}, {"spot.book_ticker", quotes}} {
		if len(c.syms) > 0 {
			out = append(out, fmt.Appendf(nil, `{"time":%d,"channel":"%s","event":"subscribe","payload":["%s"]}`, now, c.name, strings.Join(c.syms, `","`)))
		}
	}
	return out, nil
}

func (f *GateioFeed) Reset() { f.resetBase() }

func (f *GateioFeed) requestSnapshot(bk *bookB) {
	if bk.requested {
		return
	}
	bk.requested = true
	base := "https://api.gateio.ws"
	if f.cfg.RESTEndpoint != "" {
		base = strings.TrimRight(f.cfg.RESTEndpoint, "/")
	}
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: bk.s.sym,
		URL: base + "/api/v4/spot/order_book?currency_pair=" + url.QueryEscape(bk.s.sym) + "&limit=100&with_id=true"})
}

func (f *GateioFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	return f.run(frame, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el, result simdjson.Iter
		var channel, event []byte
		hasResult, hasError := false, false
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
			case "channel":
				channel, perr = jstr(&el, "channel")
			case "event":
				event, perr = jstr(&el, "event")
			case "result":
				result, hasResult = el, true
			case "error":
				hasError = t != simdjson.TypeNull
			}
			if perr != nil {
				return out, perr
			}
		}
		if channel == nil {
			return out, perrf(ReasonMissingField, "channel")
		}
		if hasError {
			f.log.Warn("gateio error", "frame", string(truncate(frame, 256)))
			f.m.Ignored("error")
			return out, nil
		}
		if string(event) != "update" {
			f.m.Ignored("event_other") // subscribe/unsubscribe acks, spot.pong
			return out, nil
		}
		if !hasResult {
			return out, perrf(ReasonMissingField, "result")
		}
		var r simdjson.Object
		switch string(channel) {
		case "spot.order_book_update":
			if perr := objectOf(&result, &r, "result"); perr != nil {
				return out, perr
			}
			return f.bookUpdate(recv, &r, out)
		case "spot.trades":
			if perr := objectOf(&result, &r, "result"); perr != nil {
				return out, perr
			}
			return f.trade(recv, &r, out)
		case "spot.book_ticker":
			if perr := objectOf(&result, &r, "result"); perr != nil {
				return out, perr
			}
			return f.bookTicker(recv, &r, out)
		}
		f.m.Ignored("channel_other")
		return out, nil
	})
}

// gateMillis reads a time in ms, a number or a string with a fraction
// ("1606292218213.4578"), to ns without going through a float.
func gateMillis(it *simdjson.Iter, field string) (int64, *ParseError) {
	if it.Type() != simdjson.TypeString {
		ms, perr := jint(it, field)
		if perr != nil {
			return 0, perr
		}
		return msToNS(ms, field)
	}
	b, _ := it.StringBytes()
	ip, fp, _ := strings.Cut(string(b), ".")
	ms, err := strconv.ParseInt(ip, 10, 64)
	if err != nil || len(fp) > 9 || strings.Trim(fp, "0123456789") != "" {
		return 0, perrf(ReasonBadNumber, field)
	}
	ns, perr := msToNS(ms, field)
	if perr != nil {
		return 0, perr
	}
	for i := 0; i < 6; i++ {
		d := int64(0)
		if i < len(fp) {
			d = int64(fp[i] - '0')
		}
		ns += d * pow10i[5-i]
	}
	return ns, nil
}

var pow10i = [...]int64{1, 10, 100, 1000, 10000, 100000}

func (f *GateioFeed) trade(recv int64, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var sym, side []byte
	var id uint64
	var px, sz float64
	var ts int64
	have := 0
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "result")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "currency_pair":
			sym, perr = jstr(&el, "currency_pair")
			have |= 1
		case "side":
			side, perr = jstr(&el, "side")
			have |= 2
		case "price":
			px, perr = jdec(&el, "price")
			have |= 4
		case "amount":
			sz, perr = jdec(&el, "amount")
			have |= 8
		case "id":
			id, perr = juint(&el, "id")
			have |= 16
		case "create_time_ms":
			ts, perr = gateMillis(&el, "create_time_ms")
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 31 {
		return out, perrf(ReasonMissingField, "trade")
	}
	s, perr := f.symbol(sym, "currency_pair", NormalizeGateioSymbol)
	if perr != nil {
		return out, perr
	}
	sd, perr := sideWord(side)
	if perr != nil {
		return out, perr
	}
	if px == 0 || sz == 0 {
		return out, perrf(ReasonBadNumber, "price")
	}
	t := f.tick(s, KindTrade, recv, ts)
	t.Side, t.Price, t.Size, t.TradeID = sd, px, sz, id
	t.ComputeID()
	return append(out, t), nil
}

func (f *GateioFeed) bookTicker(recv int64, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var sym []byte
	var q [4]float64
	var u uint64
	var ts int64
	have := 0
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "result")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		i := -1
		switch string(name) {
		case "s":
			sym, perr = jstr(&el, "s")
			have |= 16
		case "b":
			i = 0
		case "B":
			i = 1
		case "a":
			i = 2
		case "A":
			i = 3
		case "u":
			u, perr = juint(&el, "u")
		case "t":
			ts, perr = gateMillis(&el, "t")
		}
		if i >= 0 {
			q[i], perr = jdec(&el, "book_ticker")
			have |= 1 << i
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 31 {
		return out, perrf(ReasonMissingField, "book_ticker")
	}
	s, perr := f.symbol(sym, "s", NormalizeGateioSymbol)
	if perr != nil {
		return out, perr
	}
	t := f.tick(s, KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], u
	t.ComputeID()
	return append(out, t), nil
}

func (f *GateioFeed) bookUpdate(recv int64, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var sym []byte
	var first, last uint64
	var ts int64
	have := 0
	f.lv = f.lv[:0]
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "result")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "s":
			sym, perr = jstr(&el, "s")
			have |= 1
		case "U":
			first, perr = juint(&el, "U")
			have |= 2
		case "u":
			last, perr = juint(&el, "u")
			have |= 4
		case "t":
			ts, perr = gateMillis(&el, "t")
		case "b":
			perr = f.kucoinLevels(&el, SideBuy, "b", false)
		case "a":
			perr = f.kucoinLevels(&el, SideSell, "a", false)
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 7 {
		return out, perrf(ReasonMissingField, "order_book_update")
	}
	if last < first {
		return out, perrf(ReasonBadNumber, "u")
	}
	s, perr := f.symbol(sym, "s", NormalizeGateioSymbol)
	if perr != nil {
		return out, perr
	}
	return f.seqUpdate(f.book(s), recv, ts, first, last, f.lv, out, f.requestSnapshot), nil
}

// HandleSnapshot applies GET /api/v4/spot/order_book?with_id=true:
// {"id":N,"current":ms,"update":ms,"asks":[[px,sz]],"bids":[[px,sz]]}.
func (f *GateioFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
	out, err := f.run(body, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el simdjson.Iter
		var id uint64
		var ts int64
		have := 0
		f.lv = f.lv[:0]
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
			case "id":
				id, perr = juint(&el, "id")
				have |= 1
			case "update":
				ts, perr = gateMillis(&el, "update")
			case "bids":
				perr = f.kucoinLevels(&el, SideBuy, "bids", false)
				have |= 2
			case "asks":
				perr = f.kucoinLevels(&el, SideSell, "asks", false)
				have |= 4
			}
			if perr != nil {
				return out, perr
			}
		}
		if have != 7 {
			return out, perrf(ReasonMissingField, "id")
		}
		s, perr := f.symbol([]byte(req.Symbol), "symbol", NormalizeGateioSymbol)
		if perr != nil {
			return out, perr
		}
		return f.applyRESTSnapshot(f.book(s), recv, ts, id, out, f.requestSnapshot), nil
	})
	f.snapshotFailed(req, err, f.requestSnapshot)
	return out, err
}
