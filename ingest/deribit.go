package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Deribit API v2 over JSON-RPC websocket: book.<instrument>.<interval>
// (snapshot, then changes chained by prev_change_id == the last change_id),
// trades.<instrument>.<interval> (taker direction, liquidation flag),
// ticker.<instrument>.<interval> (best bid/ask, mark and index price,
// current funding of perpetuals). public/set_heartbeat makes the server
// send test_requests, answered with public/test.
//
// Docs: https://docs.deribit.com/#subscriptions, #public-set_heartbeat.

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueDeribit,
		Cryptofeed: []string{"DERIBIT"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook, ChanFunding, ChanLiquidations},
		New:        func(cfg FeedConfig) (Feed, error) { return NewDeribitFeed(cfg), nil },
	})
}

// deribitInterval is the notification interval subscribed: "raw" needs an
// authorized connection, 100ms does not and carries the same change_id
// chain.
const deribitInterval = "100ms"

// deribitHeartbeat is the interval asked with public/set_heartbeat (s).
const deribitHeartbeat = 30

// DeribitFeed is the Deribit v2 Feed.
type DeribitFeed struct {
	feedCore
	nextID   int64
	bookChan map[string]string // venue symbol → its book channel name
	r        [4]jfield         // root members
	p        [2]jfield         // params members
	d        [9]jfield         // data members
}

// NewDeribitFeed returns a Deribit Feed.
func NewDeribitFeed(cfg FeedConfig) *DeribitFeed {
	return &DeribitFeed{feedCore: newFeedCore(VenueDeribit, cfg, NormalizeDeribitSymbol), nextID: 100, bookChan: map[string]string{}}
}

// Limits: Deribit rate-limits by credits (non-matching-engine requests:
// about 20 a second sustained); subscribe frames are paced at 5 a second.
// The server's heartbeats every 30 s keep the connection watched.
func (f *DeribitFeed) Limits() Limits {
	return Limits{SubscribeRate: 5, Silence: 2 * deribitHeartbeat * time.Second}
}

func (f *DeribitFeed) Ping() []byte { return nil }

func (f *DeribitFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://www.deribit.com/ws/api/v2", nil
}

func (f *DeribitFeed) Normalize(symbol string) (string, bool) { return NormalizeDeribitSymbol(symbol) }

var monthsB = map[string]string{"JAN": "01", "FEB": "02", "MAR": "03", "APR": "04", "MAY": "05", "JUN": "06",
	"JUL": "07", "AUG": "08", "SEP": "09", "OCT": "10", "NOV": "11", "DEC": "12"}

// deribitExpiry turns 27DEC24 or 3JAN25 into 20241227, 20250103.
func deribitExpiry(s string) (string, bool) {
	if len(s) < 6 || len(s) > 7 {
		return "", false
	}
	d, mon, yy := s[:len(s)-5], s[len(s)-5:len(s)-2], s[len(s)-2:]
	m, ok := monthsB[mon]
	if !ok {
		return "", false
	}
	if len(d) == 1 {
		d = "0" + d
	}
	if _, err := strconv.Atoi(d); err != nil {
		return "", false
	}
	if _, err := strconv.Atoi(yy); err != nil {
		return "", false
	}
	return "20" + yy + m + d, true
}

// NormalizeDeribitSymbol maps BTC-PERPETUAL → BTC-USD-PERP,
// BTC_USDC-PERPETUAL → BTC-USDC-PERP, BTC-27DEC24 → BTC-USD-20241227, spot
// BTC_USDC → BTC-USDC, and options BTC-24SEP21-8000-P →
// BTC-USD-20210924-8000-P (inverse contracts are quoted in USD).
func NormalizeDeribitSymbol(symbol string) (string, bool) {
	parts := strings.Split(symbol, "-")
	base, quote := parts[0], "USD"
	if b, q, ok := strings.Cut(parts[0], "_"); ok {
		base, quote = b, q
	}
	if base == "" || quote == "" {
		return symbol, false
	}
	switch len(parts) {
	case 1:
		if quote == "USD" && !strings.Contains(parts[0], "_") {
			return symbol, false // an index or currency, not an instrument
		}
		return base + "-" + quote, true
	case 2:
		if parts[1] == "PERPETUAL" {
			return base + "-" + quote + "-PERP", true
		}
		if d, ok := deribitExpiry(parts[1]); ok {
			return base + "-" + quote + "-" + d, true
		}
	case 4:
		d, ok := deribitExpiry(parts[1])
		if ok && (parts[3] == "C" || parts[3] == "P") && parts[2] != "" {
			return base + "-" + quote + "-" + d + "-" + parts[2] + "-" + parts[3], true
		}
	}
	return symbol, false
}

func deribitChannel(s Subscription) (string, error) {
	switch s.Channel {
	case ChanBook:
		return "book." + s.Symbol + "." + deribitInterval, nil
	case ChanTrades, ChanLiquidations:
		return "trades." + s.Symbol + "." + deribitInterval, nil
	case ChanQuotes, ChanFunding:
		return "ticker." + s.Symbol + "." + deribitInterval, nil
	}
	return "", fmt.Errorf("deribit: channel %q is not supported", s.Channel)
}

// SubscribeFrames: public/set_heartbeat, then one public/subscribe with
// every channel (trades and liquidations share trades.*, quotes and funding
// share ticker.*).
func (f *DeribitFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var chans []string
	seen := map[string]bool{}
	for _, s := range subs {
		if s.Symbol == "" || strings.ContainsAny(s.Symbol, ". ") {
			return nil, fmt.Errorf("deribit: bad symbol %q", s.Symbol)
		}
		c, err := deribitChannel(s)
		if err != nil {
			return nil, err
		}
		if !seen[c] {
			seen[c] = true
			chans = append(chans, c)
		}
	}
	out := [][]byte{fmt.Appendf(nil, `{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":%d}}`, deribitHeartbeat)}
	if len(chans) > 0 {
		out = append(out, deribitRPC(2, "public/subscribe", chans))
	}
	return out, nil
}

func deribitRPC(id int64, method string, chans []string) []byte {
	b, _ := json.Marshal(chans)
	return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"channels":%s}}`, id, method, b)
}

func (f *DeribitFeed) Reset() {
	f.reset()
	clear(f.bookChan)
}

func (f *DeribitFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("deribit: no REST snapshots (the book channel sends one)")
}

var deribitKeys = []string{"method", "params", "result", "error"}

func (f *DeribitFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		rd.objectFields(root, deribitKeys, r, "root")
		var method []byte
		if r[0].typ != simdjson.TypeNone {
			method = rd.str(&r[0], "method")
		}
		if rd.err != nil {
			return out, rd.err
		}
		hasParams := r[1].typ != simdjson.TypeNone
		switch string(method) {
		case "subscription":
			if !hasParams {
				return out, perrf(ReasonMissingField, "params")
			}
			return f.subscription(recv, &r[1], out)
		case "heartbeat":
			if !hasParams {
				return out, perrf(ReasonMissingField, "params")
			}
			return out, f.heartbeat(&r[1])
		case "":
			switch {
			case r[3].typ != simdjson.TypeNone:
				f.log.Warn("deribit error response", "frame", string(truncate(frame, 256)))
				f.m.Ignored("error")
			case r[2].typ != simdjson.TypeNone:
				f.m.Ignored("response")
			default:
				return out, perrf(ReasonMissingField, "method")
			}
			return out, nil
		}
		f.m.Ignored("other")
		return out, nil
	})
}

var (
	deribitHeartbeatKeys = []string{"type"}
	deribitParamsKeys    = []string{"channel", "data"}
)

// heartbeat answers a test_request with public/test.
func (f *DeribitFeed) heartbeat(params *jfield) *ParseError {
	p := f.p[:1]
	var r fieldReader
	r.objectFields(params, deribitHeartbeatKeys, p, "params")
	var typ []byte
	if p[0].typ != simdjson.TypeNone {
		typ = r.str(&p[0], "type")
	}
	if r.err != nil {
		return r.err
	}
	if string(typ) == "test_request" {
		f.nextID++
		f.outbox = append(f.outbox, fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"public/test","params":{}}`, f.nextID))
	}
	f.m.Ignored("heartbeat")
	return nil
}

func (f *DeribitFeed) subscription(recv int64, params *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	p := f.p[:]
	var r fieldReader
	r.objectFields(params, deribitParamsKeys, p, "params")
	var channel []byte
	if p[0].typ != simdjson.TypeNone {
		channel = r.str(&p[0], "channel")
	}
	if channel == nil {
		r.fail(ReasonMissingField, "channel")
	}
	if p[1].typ == simdjson.TypeNone {
		r.fail(ReasonMissingField, "data")
	}
	if r.err != nil {
		return out, r.err
	}
	kind := channel
	if i := bytes.IndexByte(channel, '.'); i >= 0 {
		kind = channel[:i]
	}
	switch string(kind) {
	case "book":
		return f.bookMsg(recv, channel, &p[1], out)
	case "trades":
		return f.trades(recv, &p[1], out)
	case "ticker":
		return f.ticker(recv, &p[1], out)
	}
	f.m.Ignored("channel_other")
	return out, nil
}

var deribitBookKeys = []string{"type", "instrument_name", "timestamp", "change_id", "prev_change_id", "bids", "asks"}

func (f *DeribitFeed) bookMsg(recv int64, channel []byte, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:7]
	var r fieldReader
	if r.objectFields(data, deribitBookKeys, d, "data"); r.err != nil {
		return out, r.err
	}
	var typ, sym []byte
	if d[0].typ != simdjson.TypeNone {
		typ = r.str(&d[0], "type")
	}
	if d[1].typ != simdjson.TypeNone {
		sym = r.str(&d[1], "instrument_name")
	}
	var exch int64
	haveTS := d[2].typ != simdjson.TypeNone
	if haveTS {
		exch = r.intJSON(&d[2], "timestamp")
	}
	var changeID, prevID uint64
	if d[3].typ != simdjson.TypeNone {
		changeID = r.seqNum(&d[3], "change_id")
	}
	if d[4].typ != simdjson.TypeNone {
		prevID = r.seqNum(&d[4], "prev_change_id")
	}
	f.sl = f.sl[:0]
	if r.err == nil {
		r.err = f.levels(&d[5], market.SideBuy, "bids")
	}
	if r.err == nil {
		r.err = f.levels(&d[6], market.SideSell, "asks")
	}
	if d[3].typ == simdjson.TypeNone {
		r.fail(ReasonMissingField, "change_id")
	}
	if haveTS {
		exch = r.msToNS(exch, "timestamp")
	}
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "instrument_name")
	}
	if r.err != nil {
		return out, r.err
	}
	snapshot := false
	switch string(typ) {
	case "snapshot":
		snapshot = true
	case "change":
		if d[4].typ == simdjson.TypeNone {
			return out, perrf(ReasonMissingField, "prev_change_id")
		}
	default:
		return out, perrf(ReasonBadType, "type")
	}
	if _, ok := f.bookChan[s.symbol]; !ok && len(f.bookChan) < maxCachedSymbols {
		f.bookChan[s.symbol] = string(channel)
	}
	bk := f.book(s)
	if snapshot {
		out2, ok := f.replaceBook(bk, f.sl, recv, exch, changeID, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, changeID, out)
			f.resubscribe(bk)
			return out, nil
		}
		return out2, nil
	}
	if !bk.synced {
		return out, nil
	}
	if prevID != bk.seq {
		out = f.desync(bk, "gap", recv, changeID, out)
		f.resubscribe(bk)
		return out, nil
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.sl, recv, exch, changeID, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, changeID, out[:n])
		f.resubscribe(bk)
	}
	return out, nil
}

// levels reads [["new"|"change"|"delete", price, amount], ...]; absent, none.
func (f *DeribitFeed) levels(fl *jfield, side market.Side, field string) *ParseError {
	if fl.typ == simdjson.TypeNone {
		return nil
	}
	var r fieldReader
	ai := r.elems(fl, field)
	for r.err == nil {
		if !ai.advance() {
			return nil
		}
		li := r.elems(&ai, field)
		l := seqLevel{side: side}
		var action []byte
		for i := 0; i < 3 && r.err == nil; i++ {
			if !li.advance() {
				return perrf(ReasonMissingField, field)
			}
			switch i {
			case 0:
				action = r.str(&li, field)
			case 1:
				l.px = r.nonNeg(&li, field)
			case 2:
				l.sz = r.nonNeg(&li, field)
			}
		}
		if r.err != nil {
			break
		}
		switch string(action) {
		case "new", "change":
		case "delete":
			l.sz = 0
		default:
			return perrf(ReasonBadType, field)
		}
		if l.px == 0 {
			return perrf(ReasonBadNumber, field)
		}
		f.sl = append(f.sl, l)
	}
	return r.err
}

func (f *DeribitFeed) resubscribe(bk *bookState) {
	ch := f.bookChan[bk.sym.symbol]
	if ch == "" {
		ch = "book." + bk.sym.symbol + "." + deribitInterval
	}
	f.nextID++
	f.outbox = append(f.outbox, deribitRPC(f.nextID, "public/unsubscribe", []string{ch}))
	f.nextID++
	f.outbox = append(f.outbox, deribitRPC(f.nextID, "public/subscribe", []string{ch}))
}

var deribitTradeKeys = []string{"instrument_name", "direction", "price", "amount", "timestamp", "trade_id", "trade_seq", "liquidation"}

// trades handles a trades notification: an array of trades.
func (f *DeribitFeed) trades(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	ai := r.elems(data, "data")
	if r.err != nil {
		return out, r.err
	}
	n := len(out)
	d := f.d[:8]
	for {
		if !ai.advance() {
			return out, nil
		}
		r.objectFields(&ai, deribitTradeKeys, d, "data")
		if r.err == nil && !present(d[:5]) {
			r.fail(ReasonMissingField, "trade")
		}
		sym := r.str(&d[0], "instrument_name")
		dir := r.str(&d[1], "direction")
		px := r.nonNeg(&d[2], "price")
		amt := r.nonNeg(&d[3], "amount")
		ts := r.intJSON(&d[4], "timestamp")
		var tid, liq []byte
		var seq uint64
		if d[5].typ != simdjson.TypeNone {
			tid = r.str(&d[5], "trade_id")
		}
		if d[6].typ != simdjson.TypeNone {
			seq = r.seqNum(&d[6], "trade_seq")
		}
		if d[7].typ != simdjson.TypeNone {
			liq = r.str(&d[7], "liquidation")
		}
		var s *symEntry
		if r.err == nil {
			s, r.err = f.sym(sym, "instrument_name")
		}
		side := r.sideWordAs(dir, "direction")
		exch := r.msToNS(ts, "timestamp")
		if r.err == nil && (px == 0 || amt == 0) {
			r.fail(ReasonBadNumber, "price")
		}
		if r.err != nil {
			return out[:n], r.err
		}
		kind := market.KindTrade
		if len(liq) > 0 {
			// "M": the maker side was liquidated, "T": the taker, "MT": both.
			kind = market.KindLiquidation
		}
		t := f.newTick(s, kind, recv, exch)
		t.Side, t.Price, t.Size, t.Seq = side, px, amt, seq
		t.TradeID = deribitTradeID(tid)
		t.ComputeID()
		out = append(out, t)
	}
}

// deribitTradeID reads the number in "236929286" or "ETH-1234567".
func deribitTradeID(b []byte) uint64 {
	s := string(b)
	if i := strings.LastIndexByte(s, '-'); i >= 0 {
		s = s[i+1:]
	}
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

// ticker gives one market.KindQuote, and one market.KindFunding (rate in Price, mark price
// in BidPx, index price in AskPx) when current_funding is sent
// (perpetuals).
var deribitTickerKeys = []string{"best_bid_price", "best_bid_amount", "best_ask_price", "best_ask_amount",
	"instrument_name", "timestamp", "mark_price", "index_price", "current_funding"}

func (f *DeribitFeed) ticker(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:9]
	var r fieldReader
	if r.objectFields(data, deribitTickerKeys, d, "data"); r.err != nil {
		return out, r.err
	}
	var q [4]float64
	for i := range q {
		if d[i].typ == simdjson.TypeNone {
			continue
		}
		if q[i], _ = r.numOrNull(&d[i], "best_bid_ask"); q[i] < 0 {
			r.fail(ReasonBadNumber, "best_bid_ask")
		}
	}
	var sym []byte
	if d[4].typ != simdjson.TypeNone {
		sym = r.str(&d[4], "instrument_name")
	}
	var opt [3]float64 // mark, index, funding
	hasFunding := false
	for i := range opt {
		if d[6+i].typ == simdjson.TypeNone {
			continue
		}
		var ok bool
		opt[i], ok = r.numOrNull(&d[6+i], deribitTickerKeys[6+i])
		hasFunding = hasFunding || i == 2 && ok
	}
	if d[5].typ == simdjson.TypeNone {
		r.fail(ReasonMissingField, "timestamp")
	}
	exch := r.msToNS(r.intJSON(&d[5], "timestamp"), "timestamp")
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "instrument_name")
	}
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindQuote, recv, exch)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz = q[0], q[1], q[2], q[3]
	t.ComputeID()
	out = append(out, t)
	if hasFunding {
		t := f.newTick(s, market.KindFunding, recv, exch)
		t.Price, t.BidPx, t.AskPx = opt[2], opt[0], opt[1]
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}
