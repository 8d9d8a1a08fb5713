package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
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
	RegisterFeed("deribit", func(cfg FeedConfig) (Feed, error) { return NewDeribitFeed(cfg), nil })
}

// deribitInterval is the notification interval subscribed: "raw" needs an
// authorized connection, 100ms does not and carries the same change_id
// chain.
const deribitInterval = "100ms"

// deribitHeartbeat is the interval asked with public/set_heartbeat (s).
const deribitHeartbeat = 30

// DeribitFeed is the Deribit v2 Feed.
type DeribitFeed struct {
	feedBase
	nextID   int64
	bookChan map[string]string // venue symbol → its book channel name
}

// NewDeribitFeed returns a Deribit Feed.
func NewDeribitFeed(cfg FeedConfig) *DeribitFeed {
	return &DeribitFeed{feedBase: newFeedBase("deribit", cfg), nextID: 100, bookChan: map[string]string{}}
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
	f.resetBase()
	clear(f.bookChan)
}

func (f *DeribitFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
	return out, fmt.Errorf("deribit: no REST snapshots (the book channel sends one)")
}

func (f *DeribitFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	return f.run(frame, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el, params simdjson.Iter
		var method []byte
		hasParams, hasResult, hasError := false, false, false
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
			case "method":
				method, perr = jstr(&el, "method")
			case "params":
				params, hasParams = el, true
			case "result":
				hasResult = true
			case "error":
				hasError = true
			}
			if perr != nil {
				return out, perr
			}
		}
		switch string(method) {
		case "subscription":
			if !hasParams {
				return out, perrf(ReasonMissingField, "params")
			}
			return f.subscription(recv, &params, out)
		case "heartbeat":
			if !hasParams {
				return out, perrf(ReasonMissingField, "params")
			}
			return out, f.heartbeat(&params)
		case "":
			switch {
			case hasError:
				f.log.Warn("deribit error response", "frame", string(truncate(frame, 256)))
				f.m.Ignored("error")
			case hasResult:
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

// heartbeat answers a test_request with public/test.
func (f *DeribitFeed) heartbeat(params *simdjson.Iter) *ParseError {
	var obj simdjson.Object
	if perr := objectOf(params, &obj, "params"); perr != nil {
		return perr
	}
	var el simdjson.Iter
	var typ []byte
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return perrf(ReasonBadJSON, "params")
		}
		if t == simdjson.TypeNone {
			break
		}
		if string(name) == "type" {
			var perr *ParseError
			if typ, perr = jstr(&el, "type"); perr != nil {
				return perr
			}
		}
	}
	if string(typ) == "test_request" {
		f.nextID++
		f.outbox = append(f.outbox, fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"public/test","params":{}}`, f.nextID))
	}
	f.m.Ignored("heartbeat")
	return nil
}

func (f *DeribitFeed) subscription(recv int64, params *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	var obj simdjson.Object
	if perr := objectOf(params, &obj, "params"); perr != nil {
		return out, perr
	}
	var el, data simdjson.Iter
	var channel []byte
	hasData := false
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "params")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "channel":
			channel, perr = jstr(&el, "channel")
		case "data":
			data, hasData = el, true
		}
		if perr != nil {
			return out, perr
		}
	}
	if channel == nil {
		return out, perrf(ReasonMissingField, "channel")
	}
	if !hasData {
		return out, perrf(ReasonMissingField, "data")
	}
	kind := channel
	if i := bytes.IndexByte(channel, '.'); i >= 0 {
		kind = channel[:i]
	}
	switch string(kind) {
	case "book":
		return f.bookMsg(recv, channel, &data, out)
	case "trades":
		return f.trades(recv, &data, out)
	case "ticker":
		return f.ticker(recv, &data, out)
	}
	f.m.Ignored("channel_other")
	return out, nil
}

type deribitBook struct {
	typ                []byte
	sym                []byte
	ts                 int64
	changeID, prevID   uint64
	hasChange, hasPrev bool
}

func (f *DeribitFeed) bookMsg(recv int64, channel []byte, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	var obj simdjson.Object
	if perr := objectOf(data, &obj, "data"); perr != nil {
		return out, perr
	}
	var m deribitBook
	var el simdjson.Iter
	f.lv = f.lv[:0]
	haveTS := false
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "data")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "type":
			m.typ, perr = jstr(&el, "type")
		case "instrument_name":
			m.sym, perr = jstr(&el, "instrument_name")
		case "timestamp":
			m.ts, perr = jint(&el, "timestamp")
			haveTS = true
		case "change_id":
			m.changeID, perr = juint(&el, "change_id")
			m.hasChange = true
		case "prev_change_id":
			m.prevID, perr = juint(&el, "prev_change_id")
			m.hasPrev = true
		case "bids":
			perr = f.levels(&el, SideBuy, "bids")
		case "asks":
			perr = f.levels(&el, SideSell, "asks")
		}
		if perr != nil {
			return out, perr
		}
	}
	if !m.hasChange {
		return out, perrf(ReasonMissingField, "change_id")
	}
	var exch int64
	if haveTS {
		var perr *ParseError
		if exch, perr = msToNS(m.ts, "timestamp"); perr != nil {
			return out, perr
		}
	}
	s, perr := f.symbol(m.sym, "instrument_name", NormalizeDeribitSymbol)
	if perr != nil {
		return out, perr
	}
	snapshot := false
	switch string(m.typ) {
	case "snapshot":
		snapshot = true
	case "change":
		if !m.hasPrev {
			return out, perrf(ReasonMissingField, "prev_change_id")
		}
	default:
		return out, perrf(ReasonBadType, "type")
	}
	if _, ok := f.bookChan[s.sym]; !ok && len(f.bookChan) < maxCachedSymbols {
		f.bookChan[s.sym] = string(channel)
	}
	bk := f.book(s)
	if snapshot {
		out2, ok := f.applySnapshot(bk, f.lv, recv, exch, m.changeID, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, m.changeID, out)
			f.resubscribe(bk)
			return out, nil
		}
		return out2, nil
	}
	if bk.state != bookLive {
		return out, nil
	}
	if m.prevID != bk.seq {
		out = f.desync(bk, "gap", recv, m.changeID, out)
		f.resubscribe(bk)
		return out, nil
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.lv, recv, exch, m.changeID, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, m.changeID, out[:n])
		f.resubscribe(bk)
	}
	return out, nil
}

// levels reads [["new"|"change"|"delete", price, amount], ...].
func (f *DeribitFeed) levels(it *simdjson.Iter, side Side, field string) *ParseError {
	ai, perr := arrayIter(it, field)
	if perr != nil {
		return perr
	}
	for ai.Advance() != simdjson.TypeNone {
		li, perr := arrayIter(&ai, field)
		if perr != nil {
			return perr
		}
		l := lvB{side: side}
		var action []byte
		for i := 0; i < 3; i++ {
			if li.Advance() == simdjson.TypeNone {
				return perrf(ReasonMissingField, field)
			}
			switch i {
			case 0:
				if action, perr = jstr(&li, field); perr != nil {
					return perr
				}
			case 1:
				if l.px, perr = jnonneg(&li, field); perr != nil {
					return perr
				}
			case 2:
				if l.sz, perr = jnonneg(&li, field); perr != nil {
					return perr
				}
			}
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
		f.lv = append(f.lv, l)
	}
	return nil
}

func (f *DeribitFeed) resubscribe(bk *bookB) {
	ch := f.bookChan[bk.s.sym]
	if ch == "" {
		ch = "book." + bk.s.sym + "." + deribitInterval
	}
	f.nextID++
	f.outbox = append(f.outbox, deribitRPC(f.nextID, "public/unsubscribe", []string{ch}))
	f.nextID++
	f.outbox = append(f.outbox, deribitRPC(f.nextID, "public/subscribe", []string{ch}))
}

// trades handles a trades notification: an array of trades.
func (f *DeribitFeed) trades(recv int64, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	ai, perr := arrayIter(data, "data")
	if perr != nil {
		return out, perr
	}
	n := len(out)
	var obj simdjson.Object
	var el simdjson.Iter
	for ai.Advance() != simdjson.TypeNone {
		if perr := objectOf(&ai, &obj, "data"); perr != nil {
			return out[:n], perr
		}
		var sym, dir, tid, liq []byte
		var ts int64
		var seq uint64
		var px, amt float64
		have := 0
		for {
			name, t, err := obj.NextElementBytes(&el)
			if err != nil {
				return out[:n], perrf(ReasonBadJSON, "data")
			}
			if t == simdjson.TypeNone {
				break
			}
			var perr *ParseError
			switch string(name) {
			case "instrument_name":
				sym, perr = jstr(&el, "instrument_name")
				have |= 1
			case "direction":
				dir, perr = jstr(&el, "direction")
				have |= 2
			case "price":
				px, perr = jnonneg(&el, "price")
				have |= 4
			case "amount":
				amt, perr = jnonneg(&el, "amount")
				have |= 8
			case "timestamp":
				ts, perr = jint(&el, "timestamp")
				have |= 16
			case "trade_id":
				tid, perr = jstr(&el, "trade_id")
			case "trade_seq":
				seq, perr = juint(&el, "trade_seq")
			case "liquidation":
				liq, perr = jstr(&el, "liquidation")
			}
			if perr != nil {
				return out[:n], perr
			}
		}
		if have != 31 {
			return out[:n], perrf(ReasonMissingField, "trade")
		}
		s, perr := f.symbol(sym, "instrument_name", NormalizeDeribitSymbol)
		if perr != nil {
			return out[:n], perr
		}
		side, perr := sideWord(dir)
		if perr != nil {
			return out[:n], perrf(perr.Reason, "direction")
		}
		exch, perr := msToNS(ts, "timestamp")
		if perr != nil {
			return out[:n], perr
		}
		if px == 0 || amt == 0 {
			return out[:n], perrf(ReasonBadNumber, "price")
		}
		kind := KindTrade
		if len(liq) > 0 {
			// "M": the maker side was liquidated, "T": the taker, "MT": both.
			kind = KindLiquidation
		}
		t := f.tick(s, kind, recv, exch)
		t.Side, t.Price, t.Size, t.Seq = side, px, amt, seq
		t.TradeID = deribitTradeID(tid)
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
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

// ticker gives one KindQuote, and one KindFunding (rate in Price, mark price
// in BidPx, index price in AskPx) when current_funding is sent
// (perpetuals).
func (f *DeribitFeed) ticker(recv int64, data *simdjson.Iter, out []Tick) ([]Tick, *ParseError) {
	var obj simdjson.Object
	if perr := objectOf(data, &obj, "data"); perr != nil {
		return out, perr
	}
	var el simdjson.Iter
	var sym []byte
	var ts int64
	var q [4]float64
	var mark, index, funding float64
	hasFunding, haveTS := false, false
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "data")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		qi := -1
		switch string(name) {
		case "instrument_name":
			sym, perr = jstr(&el, "instrument_name")
		case "timestamp":
			ts, perr = jint(&el, "timestamp")
			haveTS = true
		case "best_bid_price":
			qi = 0
		case "best_bid_amount":
			qi = 1
		case "best_ask_price":
			qi = 2
		case "best_ask_amount":
			qi = 3
		case "mark_price":
			mark, _, perr = jnumOrNull(&el, "mark_price")
		case "index_price":
			index, _, perr = jnumOrNull(&el, "index_price")
		case "current_funding":
			funding, hasFunding, perr = jnumOrNull(&el, "current_funding")
		}
		if qi >= 0 {
			if q[qi], _, perr = jnumOrNull(&el, "best_bid_ask"); perr == nil && q[qi] < 0 {
				perr = perrf(ReasonBadNumber, "best_bid_ask")
			}
		}
		if perr != nil {
			return out, perr
		}
	}
	if !haveTS {
		return out, perrf(ReasonMissingField, "timestamp")
	}
	exch, perr := msToNS(ts, "timestamp")
	if perr != nil {
		return out, perr
	}
	s, perr := f.symbol(sym, "instrument_name", NormalizeDeribitSymbol)
	if perr != nil {
		return out, perr
	}
	t := f.tick(s, KindQuote, recv, exch)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz = q[0], q[1], q[2], q[3]
	t.ComputeID()
	out = append(out, t)
	if hasFunding {
		t := f.tick(s, KindFunding, recv, exch)
		t.Price, t.BidPx, t.AskPx = funding, mark, index
		t.ComputeID()
		out = append(out, t)
	}
	return out, nil
}
