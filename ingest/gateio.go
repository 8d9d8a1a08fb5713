package ingest

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
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
	RegisterVenue(VenueInfo{
		Name:       VenueGateio,
		Cryptofeed: []string{"GATEIO"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewGateioFeed(cfg), nil },
	})
}

// GateioFeed is the Gate.io spot v4 Feed.
type GateioFeed struct {
	feedCore
	now func() time.Time // the time field of sent frames (tests fix it)
	r   [4]jfield        // root members
	d   [7]jfield        // result members
}

// NewGateioFeed returns a Gate.io Feed.
func NewGateioFeed(cfg FeedConfig) *GateioFeed {
	return &GateioFeed{feedCore: newFeedCore(VenueGateio, cfg, NormalizeGateioSymbol), now: time.Now}
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

func (f *GateioFeed) Reset() { f.reset() }

func (f *GateioFeed) requestSnapshot(bk *bookState) {
	if bk.requested {
		return
	}
	bk.requested = true
	base := "https://api.gateio.ws"
	if f.cfg.RESTEndpoint != "" {
		base = strings.TrimRight(f.cfg.RESTEndpoint, "/")
	}
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: bk.sym.symbol,
		URL: base + "/api/v4/spot/order_book?currency_pair=" + url.QueryEscape(bk.sym.symbol) + "&limit=100&with_id=true"})
}

var gateioKeys = []string{"channel", "event", "result", "error"}

func (f *GateioFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		if rd.objectFields(root, gateioKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var channel, event []byte
		if r[0].typ != simdjson.TypeNone {
			channel = rd.str(&r[0], "channel")
		}
		if r[1].typ != simdjson.TypeNone {
			event = rd.str(&r[1], "event")
		}
		if channel == nil {
			rd.fail(ReasonMissingField, "channel")
		}
		if rd.err != nil {
			return out, rd.err
		}
		if r[3].typ != simdjson.TypeNone && r[3].typ != simdjson.TypeNull {
			f.log.Warn("gateio error", "frame", string(truncate(frame, 256)))
			f.m.Ignored("error")
			return out, nil
		}
		if string(event) != "update" {
			f.m.Ignored("event_other") // subscribe/unsubscribe acks, spot.pong
			return out, nil
		}
		if r[2].typ == simdjson.TypeNone {
			return out, perrf(ReasonMissingField, "result")
		}
		switch string(channel) {
		case "spot.order_book_update":
			return f.bookUpdate(recv, &r[2], out)
		case "spot.trades":
			return f.trade(recv, &r[2], out)
		case "spot.book_ticker":
			return f.bookTicker(recv, &r[2], out)
		}
		f.m.Ignored("channel_other")
		return out, nil
	})
}

// gateMillis reads a time in ms, a number or a string with a fraction
// ("1606292218213.4578"), to ns without going through a float.
func gateMillis(r *fieldReader, f *jfield, field string) int64 {
	if r.err != nil {
		return 0
	}
	switch f.typ {
	case simdjson.TypeNone:
		return 0
	case simdjson.TypeString:
	default:
		return r.msToNS(r.intJSON(f, field), field)
	}
	b, _ := f.it.StringBytes()
	ip, fp, _ := strings.Cut(string(b), ".")
	ms, err := strconv.ParseInt(ip, 10, 64)
	if err != nil || len(fp) > 9 || strings.Trim(fp, "0123456789") != "" {
		r.fail(ReasonBadNumber, field)
		return 0
	}
	ns := r.msToNS(ms, field)
	if r.err != nil {
		return 0
	}
	for i := 0; i < 6; i++ {
		d := int64(0)
		if i < len(fp) {
			d = int64(fp[i] - '0')
		}
		ns += d * pow10i[5-i]
	}
	return ns
}

var pow10i = [...]int64{1, 10, 100, 1000, 10000, 100000}

var gateioTradeKeys = []string{"currency_pair", "side", "price", "amount", "id", "create_time_ms"}

func (f *GateioFeed) trade(recv int64, res *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:6]
	var r fieldReader
	if r.objectFields(res, gateioTradeKeys, d, "result"); r.err == nil && !present(d[:5]) {
		r.fail(ReasonMissingField, "trade")
	}
	sym, side, px, sz, id := takerTrade(&r, d, gateioTradeKeys)
	ts := gateMillis(&r, &d[5], "create_time_ms")
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "currency_pair")
	}
	sd := r.sideWord(side)
	if r.err == nil && (px == 0 || sz == 0) {
		r.fail(ReasonBadNumber, "price")
	}
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindTrade, recv, ts)
	t.Side, t.Price, t.Size, t.TradeID = sd, px, sz, id
	t.ComputeID()
	return append(out, t), nil
}

var gateioTickerKeys = []string{"b", "B", "a", "A", "s", "u", "t"}

func (f *GateioFeed) bookTicker(recv int64, res *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:7]
	var r fieldReader
	if r.objectFields(res, gateioTickerKeys, d, "result"); r.err == nil && !present(d[:5]) {
		r.fail(ReasonMissingField, "book_ticker")
	}
	var q [4]float64
	for i := range q {
		q[i] = r.dec(&d[i], "book_ticker")
	}
	sym := r.str(&d[4], "s")
	var u uint64
	if d[5].typ != simdjson.TypeNone {
		u = r.seqNum(&d[5], "u")
	}
	ts := gateMillis(&r, &d[6], "t")
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "s")
	}
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], u
	t.ComputeID()
	return append(out, t), nil
}

var gateioUpdateKeys = []string{"s", "U", "u", "t", "b", "a"}

func (f *GateioFeed) bookUpdate(recv int64, res *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:6]
	var r fieldReader
	if r.objectFields(res, gateioUpdateKeys, d, "result"); r.err == nil && !present(d[:3]) {
		r.fail(ReasonMissingField, "order_book_update")
	}
	sym, first, last := seqSpan(&r, d, gateioUpdateKeys)
	ts := gateMillis(&r, &d[3], "t")
	f.sl = f.sl[:0]
	if r.err == nil {
		r.err = f.kucoinLevels(&d[4], market.SideBuy, "b", false)
	}
	if r.err == nil {
		r.err = f.kucoinLevels(&d[5], market.SideSell, "a", false)
	}
	if r.err == nil && last < first {
		r.fail(ReasonBadNumber, "u")
	}
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "s")
	}
	if r.err != nil {
		return out, r.err
	}
	return f.seqUpdate(f.book(s), recv, ts, first, last, f.sl, out, f.requestSnapshot), nil
}

var gateioSnapKeys = []string{"id", "update", "bids", "asks"}

// HandleSnapshot applies GET /api/v4/spot/order_book?with_id=true:
// {"id":N,"current":ms,"update":ms,"asks":[[px,sz]],"bids":[[px,sz]]}.
func (f *GateioFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	out, err := f.run(body, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		d := f.d[:4]
		var r fieldReader
		if r.objectFields(root, gateioSnapKeys, d, "root"); r.err == nil && (d[0].typ == simdjson.TypeNone || d[2].typ == simdjson.TypeNone || d[3].typ == simdjson.TypeNone) {
			r.fail(ReasonMissingField, "id")
		}
		id := r.seqNum(&d[0], "id")
		ts := gateMillis(&r, &d[1], "update")
		if r.err != nil {
			return out, r.err
		}
		return f.restSnapshot(recv, ts, req.Symbol, id, &d[2], &d[3], out, f.requestSnapshot)
	})
	f.snapshotFailed(req, err, f.requestSnapshot)
	return out, err
}
