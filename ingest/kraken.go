package ingest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// VenueKraken is Kraken spot.
const VenueKraken = "kraken"

func init() {
	RegisterFeed(VenueKraken, func(cfg FeedConfig) (Feed, error) { return NewKrakenFeed(cfg), nil })
}

// KrakenFeed is Kraken's spot websocket. Live it speaks v2
// (wss://ws.kraken.com/v2: trade, ticker with event_trigger bbo, book,
// instrument); Handle also decodes v1 frames (the array frames of
// wss://ws.kraken.com: trade, ticker, spread, book-N), which is what the
// recordings hold. Resubscriptions follow the version of the frame that
// found the book out of sync.
//
// Sync: Kraken sends no sequence numbers; every book update carries a CRC32
// over the top ten levels of each side (v1 "c", v2 "checksum", v2 also on
// snapshots), verified after the frame is applied and after the book is
// truncated to the subscribed depth. The v1 checksum is over the levels'
// text as sent. v2 sends numbers, so the checksum text is rebuilt at the
// pair's price and quantity precision, which the instrument channel gives
// (subscribed with any book); until it is known for a pair its checksums
// are not verified, counted in signald_ingest_ignored_frames_total
// {type="checksum_unverified"}.
type KrakenFeed struct {
	resyncCore
	depth map[string]int // book depth subscribed, by v2 symbol
	prec  map[string][2]int
	sum   []byte
	el    [6]jfield
	f     [12]jfield
	g     [8]jfield
}

// NewKrakenFeed returns a Kraken feed.
func NewKrakenFeed(cfg FeedConfig) *KrakenFeed {
	f := &KrakenFeed{
		resyncCore: resyncCore{newFeedCore(VenueKraken, cfg, NormalizeKrakenSymbol)},
		depth:      map[string]int{},
		prec:       map[string][2]int{},
	}
	f.resnapshot = func(b *bookState) {
		depth := b.depth
		if depth == 0 {
			depth = f.depth[b.sym.symbol]
		}
		if depth == 0 {
			depth = 10
		}
		if b.v1 {
			f.resubscribeV1(b.sym.symbol, depth)
		} else {
			f.resubscribeV2(b.sym.symbol, depth)
		}
	}
	return f
}

// NormalizeKrakenSymbol maps a Kraken pair (v1 "XBT/USD", v2 "BTC/USD") to
// the normalized instrument; XBT is BTC and XDG is DOGE.
func NormalizeKrakenSymbol(symbol string) (string, bool) {
	base, quote, ok := strings.Cut(symbol, "/")
	if !ok || base == "" || quote == "" || strings.Contains(quote, "/") {
		return symbol, false
	}
	fix := func(a string) string {
		a = strings.ToUpper(a)
		switch a {
		case "XBT":
			return "BTC"
		case "XDG":
			return "DOGE"
		}
		return a
	}
	return fix(base) + "-" + fix(quote), true
}

// Limits: Kraken v2 sends a heartbeat every second once subscribed, so 10 s
// of silence means a dead connection; the ping method keeps idle
// connections open. Subscriptions are paced at one a second (Kraken
// throttles connection attempts and requests per IP without publishing a
// number for subscribe frames).
func (f *KrakenFeed) Limits() Limits {
	return Limits{SubscribeRate: 1, PingInterval: 30 * time.Second, Silence: 10 * time.Second}
}

// URL implements Feed.
func (f *KrakenFeed) URL([]Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://ws.kraken.com/v2", nil
}

// Ping implements Feed (the v2 ping method).
func (f *KrakenFeed) Ping() []byte { return []byte(`{"method":"ping"}`) }

// KrakenBookDepth is the book depth the feed subscribes (v2 allows 10, 25,
// 100, 500, 1000).
const KrakenBookDepth = 100

type krakenV2Params struct {
	Channel      string   `json:"channel"`
	Symbol       []string `json:"symbol,omitempty"`
	Depth        int      `json:"depth,omitempty"`
	EventTrigger string   `json:"event_trigger,omitempty"`
	Snapshot     *bool    `json:"snapshot,omitempty"`
}

type krakenV2Req struct {
	Method string         `json:"method"`
	Params krakenV2Params `json:"params"`
}

// SubscribeFrames implements Feed (v2).
func (f *KrakenFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	by := map[Channel][]string{}
	var order []Channel
	for _, s := range subs {
		switch s.Channel {
		case ChanTrades, ChanQuotes, ChanBook:
		default:
			return nil, fmt.Errorf("kraken: channel %q is not supported (trades, quotes, book)", s.Channel)
		}
		if _, ok := by[s.Channel]; !ok {
			order = append(order, s.Channel)
		}
		by[s.Channel] = append(by[s.Channel], s.Symbol)
	}
	var frames [][]byte
	yes := true
	for _, ch := range order {
		p := krakenV2Params{Symbol: by[ch]}
		switch ch {
		case ChanTrades:
			p.Channel = "trade"
		case ChanQuotes:
			p.Channel, p.EventTrigger = "ticker", "bbo"
		case ChanBook:
			// The pairs' precisions first: the checksums need them.
			b, _ := json.Marshal(krakenV2Req{Method: "subscribe", Params: krakenV2Params{Channel: "instrument", Snapshot: &yes}})
			frames = append(frames, b)
			p.Channel, p.Depth, p.Snapshot = "book", KrakenBookDepth, &yes
			for _, s := range by[ch] {
				f.depth[s] = KrakenBookDepth
			}
		}
		b, err := json.Marshal(krakenV2Req{Method: "subscribe", Params: p})
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
	}
	return frames, nil
}

// HandleSnapshot implements Feed: Kraken sends snapshots on the websocket.
func (f *KrakenFeed) HandleSnapshot(_ int64, req SnapshotRequest, _ []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("kraken: no REST snapshots are requested (got %s)", req.URL)
}

// Reset implements Feed.
func (f *KrakenFeed) Reset() { f.reset() }

// Handle implements Feed.
func (f *KrakenFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	f.m.Frame()
	n := len(out)
	out, perr := f.handle(recv, frame, out)
	return f.finish(out, n, perr)
}

func (f *KrakenFeed) handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, *ParseError) {
	it, typ, perr := f.parseRoot(frame)
	if perr != nil {
		return out, perr
	}
	root := jfield{it: it, typ: typ}
	switch typ {
	case simdjson.TypeArray:
		return f.v1(recv, &root, out)
	case simdjson.TypeObject:
		return f.object(recv, &root, out)
	}
	return out, &ParseError{Reason: ReasonBadType, Field: "root"}
}

// ---- v1 ----

// object handles v1 events and all v2 messages.
func (f *KrakenFeed) object(recv int64, root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	fl := f.f[:len(krakenV2Keys)]
	if perr := objectFields(root, krakenV2Keys, fl, "root"); perr != nil {
		return out, perr
	}
	if fl[k2Channel].typ != simdjson.TypeNone {
		return f.v2(recv, out)
	}
	if fl[k2Method].typ != simdjson.TypeNone {
		return f.v2method(out)
	}
	ev, perr := fl[k2Event].str("event")
	if perr != nil {
		return out, perr
	}
	switch string(ev) {
	case "heartbeat", "pong":
		f.m.Ignored("heartbeat")
	case "ping":
		// v1 clients answer server pings; echo reqid when sent.
		f.m.Ignored("heartbeat")
		if fl[k2ReqID].typ != simdjson.TypeNone {
			id, perr := fl[k2ReqID].uint("reqid")
			if perr != nil {
				return out, perr
			}
			f.outbox = append(f.outbox, []byte(`{"event":"pong","reqid":`+strconv.FormatUint(id, 10)+`}`))
		} else {
			f.outbox = append(f.outbox, []byte(`{"event":"pong"}`))
		}
	case "subscriptionStatus":
		if st := fl[k2Status].strOr(); string(st) == "error" {
			f.log.Warn("kraken subscription failed", "pair", string(fl[k2Pair].strOr()), "error", string(fl[k2ErrorMessage].strOr()))
			f.m.Ignored("error")
			return out, nil
		}
		f.m.Ignored("response")
	case "systemStatus":
		f.m.Ignored("status")
	default:
		f.m.Ignored("other")
	}
	return out, nil
}

// v1 handles [channelID, payload..., channelName, pair].
func (f *KrakenFeed) v1(recv int64, root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	it, perr := root.arrayIter("root")
	if perr != nil {
		return out, perr
	}
	els := f.el[:0]
	for {
		e, ok := next(&it)
		if !ok {
			break
		}
		if len(els) == cap(els) {
			return out, &ParseError{Reason: ReasonBadType, Field: "root"}
		}
		els = append(els, e)
	}
	if len(els) < 4 {
		return out, &ParseError{Reason: ReasonBadType, Field: "root"}
	}
	if els[0].typ != simdjson.TypeInt && els[0].typ != simdjson.TypeUint {
		return out, &ParseError{Reason: ReasonBadType, Field: "channelID"}
	}
	name, perr := els[len(els)-2].str("channelName")
	if perr != nil {
		return out, perr
	}
	pair, perr := els[len(els)-1].str("pair")
	if perr != nil {
		return out, perr
	}
	s, perr := f.sym(pair, "pair")
	if perr != nil {
		return out, perr
	}
	payload := els[1 : len(els)-2]
	switch {
	case string(name) == "trade":
		return f.v1trade(recv, s, payload, out)
	case string(name) == "ticker":
		return f.v1ticker(recv, s, payload, out)
	case string(name) == "spread":
		return f.v1spread(recv, s, payload, out)
	case strings.HasPrefix(string(name), "book-"):
		depth, ok := parseDigits(name[5:])
		if !ok || depth == 0 || depth > 1<<20 {
			return out, &ParseError{Reason: ReasonBadNumber, Field: "channelName"}
		}
		return f.v1book(recv, s, int(depth), payload, out)
	}
	f.m.Ignored("other")
	return out, nil
}

func (f *KrakenFeed) v1trade(recv int64, s *symEntry, payload []jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if len(payload) != 1 {
		return out, &ParseError{Reason: ReasonBadType, Field: "trade"}
	}
	it, perr := payload[0].arrayIter("trade")
	if perr != nil {
		return out, perr
	}
	n := len(out)
	for {
		e, ok := next(&it)
		if !ok {
			return out, nil
		}
		li, perr := e.arrayIter("trade")
		if perr != nil {
			return out[:n], perr
		}
		var v [7]jfield
		k := 0
		for ; k < len(v); k++ {
			if v[k], ok = next(&li); !ok {
				break
			}
		}
		if k < 4 {
			return out[:n], &ParseError{Reason: ReasonBadType, Field: "trade"}
		}
		t := f.newTick(s, market.KindTrade, recv, 0)
		if t.Price, _, perr = v[0].dec("price"); perr != nil {
			return out[:n], perr
		}
		if t.Size, _, perr = v[1].dec("volume"); perr != nil {
			return out[:n], perr
		}
		tb, perr := v[2].str("time")
		if perr != nil {
			return out[:n], perr
		}
		var okT bool
		if t.ExchTS, okT = parseSecondsDecimal(tb); !okT {
			return out[:n], &ParseError{Reason: ReasonBadNumber, Field: "time"}
		}
		side, perr := v[3].str("side")
		if perr != nil {
			return out[:n], perr
		}
		switch string(side) {
		case "b":
			t.Side = market.SideBuy
		case "s":
			t.Side = market.SideSell
		default:
			return out[:n], &ParseError{Reason: ReasonBadType, Field: "side"}
		}
		if k == 7 { // newer v1 frames end with the trade id
			if t.TradeID, perr = v[6].uint("trade_id"); perr != nil {
				return out[:n], perr
			}
		}
		t.ComputeID()
		out = append(out, t)
	}
}

func (f *KrakenFeed) v1ticker(recv int64, s *symEntry, payload []jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if len(payload) != 1 {
		return out, &ParseError{Reason: ReasonBadType, Field: "ticker"}
	}
	g := f.g[:2]
	if perr := objectFields(&payload[0], []string{"a", "b"}, g, "ticker"); perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [2][2]*float64{{&t.AskPx, &t.AskSz}, {&t.BidPx, &t.BidSz}} {
		field := [2]string{"a", "b"}[i]
		it, perr := g[i].arrayIter(field)
		if perr != nil {
			return out, perr
		}
		px, ok1 := next(&it)
		_, ok2 := next(&it)
		lot, ok3 := next(&it)
		if !ok1 || !ok2 || !ok3 {
			return out, &ParseError{Reason: ReasonBadType, Field: field}
		}
		if *dst[0], _, perr = px.dec(field); perr != nil {
			return out, perr
		}
		if *dst[1], _, perr = lot.dec(field); perr != nil {
			return out, perr
		}
	}
	t.ComputeID()
	return append(out, t), nil
}

func (f *KrakenFeed) v1spread(recv int64, s *symEntry, payload []jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if len(payload) != 1 {
		return out, &ParseError{Reason: ReasonBadType, Field: "spread"}
	}
	it, perr := payload[0].arrayIter("spread")
	if perr != nil {
		return out, perr
	}
	var v [5]jfield
	for i := range v {
		var ok bool
		if v[i], ok = next(&it); !ok {
			return out, &ParseError{Reason: ReasonBadType, Field: "spread"}
		}
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [...]*float64{&t.BidPx, &t.AskPx, nil, &t.BidSz, &t.AskSz} {
		if dst == nil {
			b, perr := v[i].str("spread")
			if perr != nil {
				return out, perr
			}
			var ok bool
			if t.ExchTS, ok = parseSecondsDecimal(b); !ok {
				return out, &ParseError{Reason: ReasonBadNumber, Field: "spread"}
			}
			continue
		}
		if *dst, _, perr = v[i].dec("spread"); perr != nil {
			return out, perr
		}
	}
	t.ComputeID()
	return append(out, t), nil
}

var krakenV1BookKeys = []string{"as", "bs", "a", "b", "c"}

// v1book handles a snapshot ({"as","bs"}) or an update (one or two objects
// with "a" and/or "b", the last with "c").
func (f *KrakenFeed) v1book(recv int64, s *symEntry, depth int, payload []jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if len(payload) < 1 || len(payload) > 2 {
		return out, &ParseError{Reason: ReasonBadType, Field: "book"}
	}
	f.lv = f.lv[:0]
	snapshot := false
	var sum []byte
	for i := range payload {
		g := f.g[:len(krakenV1BookKeys)]
		if perr := objectFields(&payload[i], krakenV1BookKeys, g, "book"); perr != nil {
			return out, perr
		}
		if g[0].typ != simdjson.TypeNone || g[1].typ != simdjson.TypeNone {
			if len(payload) != 1 {
				return out, &ParseError{Reason: ReasonBadType, Field: "book"}
			}
			snapshot = true
		}
		// Levels are [[price, volume, timestamp(, "r")], ...]. Order matters
		// within an update (a level may change twice); asks and bids are
		// separate sides, so a-then-b is the venue's order.
		for j, side := range [4]market.Side{market.SideSell, market.SideBuy, market.SideSell, market.SideBuy} {
			if perr := f.levelRows(&g[j], side, krakenV1BookKeys[j], true); perr != nil {
				return out, perr
			}
		}
		if g[4].typ != simdjson.TypeNone {
			c, perr := g[4].str("c")
			if perr != nil {
				return out, perr
			}
			sum = c
		}
	}
	var want uint32
	if sum != nil {
		v, ok := parseDigits(sum)
		if !ok || v > 1<<32-1 {
			return out, &ParseError{Reason: ReasonBadNumber, Field: "c"}
		}
		want = uint32(v)
	}
	b := f.book(s)
	b.depth, b.v1 = depth, true
	var exch int64
	for i := range f.lv {
		exch = max(exch, f.lv[i].ts)
	}
	n := len(out)
	if snapshot {
		b.Clear()
		out = f.applyLevels(out, b, market.KindSnapshot, 0, recv, exch, true)
		b.Truncate(depth)
		b.synced = true
		if b.Crossed() {
			out = f.outOfSync(out, n, b, "crossed", recv, exch, 0)
			f.resubscribeV1(s.symbol, depth)
		}
		return out, nil
	}
	if !b.synced {
		f.withheld()
		return out, nil
	}
	out = f.applyLevels(out, b, market.KindBookDelta, 0, recv, exch, true)
	b.Truncate(depth)
	if sum != nil && !f.cfg.NoChecksum && f.checksumV1(b) != want {
		out = f.outOfSync(out, n, b, "checksum", recv, exch, 0)
		f.resubscribeV1(s.symbol, depth)
		return out, nil
	}
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, exch, 0)
		f.resubscribeV1(s.symbol, depth)
	}
	return out, nil
}

// checksumV1 is the documented v1 checksum: for the top ten asks (best
// first) then the top ten bids, the price and volume text without the
// point and leading zeros, concatenated; CRC32 of the result.
func (f *KrakenFeed) checksumV1(b *bookState) uint32 {
	f.sum = f.sum[:0]
	for _, side := range [2]market.Side{market.SideSell, market.SideBuy} {
		lv := b.Side(side)
		for i := 0; i < len(lv) && i < 10; i++ {
			f.sum = checksumText(f.sum, lv[i].PxText)
			f.sum = checksumText(f.sum, lv[i].SzText)
		}
	}
	return crc32IEEE(f.sum)
}

type krakenV1Req struct {
	Event        string   `json:"event"`
	Pair         []string `json:"pair"`
	Subscription struct {
		Name  string `json:"name"`
		Depth int    `json:"depth"`
	} `json:"subscription"`
}

func (f *KrakenFeed) resubscribeV1(pair string, depth int) {
	for _, ev := range []string{"unsubscribe", "subscribe"} {
		r := krakenV1Req{Event: ev, Pair: []string{pair}}
		r.Subscription.Name, r.Subscription.Depth = "book", depth
		b, _ := json.Marshal(r)
		f.outbox = append(f.outbox, b)
	}
}

// ---- v2 ----

var krakenV2Keys = []string{"channel", "type", "data", "method", "success", "error", "result", "event", "status", "pair", "errorMessage", "reqid"}

const (
	k2Channel = iota
	k2Type
	k2Data
	k2Method
	k2Success
	k2Error
	k2Result
	k2Event
	k2Status
	k2Pair
	k2ErrorMessage
	k2ReqID
)

// v2method handles responses to requests (subscribe acks, pong).
func (f *KrakenFeed) v2method(out []market.Tick) ([]market.Tick, *ParseError) {
	fl := f.f[:]
	m, perr := fl[k2Method].str("method")
	if perr != nil {
		return out, perr
	}
	if fl[k2Success].typ == simdjson.TypeBool {
		if ok, _ := fl[k2Success].it.Bool(); !ok {
			f.log.Warn("kraken request failed", "method", string(m), "error", string(fl[k2Error].strOr()))
			f.m.Ignored("error")
			return out, nil
		}
	}
	if string(m) == "subscribe" && fl[k2Result].typ == simdjson.TypeObject {
		// The ack names the book depth actually subscribed.
		g := f.g[:3]
		if perr := objectFields(&fl[k2Result], []string{"channel", "symbol", "depth"}, g, "result"); perr != nil {
			return out, perr
		}
		if string(g[0].strOr()) == "book" && g[2].typ != simdjson.TypeNone {
			d, perr := g[2].uint("depth")
			if perr != nil {
				return out, perr
			}
			if sym := g[1].strOr(); sym != nil && d > 0 && d <= 1<<20 {
				f.depth[string(sym)] = int(d)
			}
		}
	}
	f.m.Ignored("response")
	return out, nil
}

func (f *KrakenFeed) v2(recv int64, out []market.Tick) ([]market.Tick, *ParseError) {
	fl := f.f[:]
	ch, perr := fl[k2Channel].str("channel")
	if perr != nil {
		return out, perr
	}
	switch string(ch) {
	case "heartbeat", "status":
		f.m.Ignored(string(ch))
		return out, nil
	case "instrument":
		return out, f.v2instrument()
	case "trade", "ticker", "book":
	default:
		f.m.Ignored("other")
		return out, nil
	}
	typ, perr := fl[k2Type].str("type")
	if perr != nil {
		return out, perr
	}
	snapshot := string(typ) == "snapshot"
	if !snapshot && string(typ) != "update" {
		return out, &ParseError{Reason: ReasonBadType, Field: "type"}
	}
	it, perr := fl[k2Data].arrayIter("data")
	if perr != nil {
		return out, perr
	}
	n := len(out)
	for {
		e, ok := next(&it)
		if !ok {
			return out, nil
		}
		switch string(ch) {
		case "trade":
			out, perr = f.v2trade(recv, &e, out)
		case "ticker":
			out, perr = f.v2ticker(recv, &e, out)
		case "book":
			out, perr = f.v2book(recv, &e, snapshot, out)
		}
		if perr != nil {
			return out[:n], perr
		}
	}
}

func (f *KrakenFeed) v2sym(g *jfield) (*symEntry, *ParseError) {
	b, perr := g.str("symbol")
	if perr != nil {
		return nil, perr
	}
	return f.sym(b, "symbol")
}

func v2time(g *jfield) (int64, *ParseError) {
	if g.typ == simdjson.TypeNone {
		return 0, nil
	}
	b, perr := g.str("timestamp")
	if perr != nil {
		return 0, perr
	}
	ts, ok := parseRFC3339(b)
	if !ok {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: "timestamp"}
	}
	return ts, nil
}

var krakenV2TradeKeys = []string{"symbol", "side", "price", "qty", "trade_id", "timestamp"}

func (f *KrakenFeed) v2trade(recv int64, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2TradeKeys)]
	if perr := objectFields(e, krakenV2TradeKeys, g, "data"); perr != nil {
		return out, perr
	}
	s, perr := f.v2sym(&g[0])
	if perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindTrade, recv, 0)
	if t.Side, perr = g[1].side("side"); perr != nil {
		return out, perr
	}
	if t.Price, perr = g[2].pos("price"); perr != nil {
		return out, perr
	}
	if t.Size, perr = g[3].pos("qty"); perr != nil {
		return out, perr
	}
	if t.TradeID, perr = g[4].uint("trade_id"); perr != nil {
		return out, perr
	}
	if t.ExchTS, perr = v2time(&g[5]); perr != nil {
		return out, perr
	}
	t.ComputeID()
	return append(out, t), nil
}

var krakenV2TickerKeys = []string{"symbol", "bid", "bid_qty", "ask", "ask_qty", "timestamp"}

func (f *KrakenFeed) v2ticker(recv int64, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2TickerKeys)]
	if perr := objectFields(e, krakenV2TickerKeys, g, "data"); perr != nil {
		return out, perr
	}
	s, perr := f.v2sym(&g[0])
	if perr != nil {
		return out, perr
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [...]*float64{&t.BidPx, &t.BidSz, &t.AskPx, &t.AskSz} {
		if *dst, perr = g[i+1].pos(krakenV2TickerKeys[i+1]); perr != nil {
			return out, perr
		}
	}
	if t.ExchTS, perr = v2time(&g[5]); perr != nil {
		return out, perr
	}
	t.ComputeID()
	return append(out, t), nil
}

var krakenV2BookKeys = []string{"symbol", "bids", "asks", "checksum", "timestamp"}

func (f *KrakenFeed) v2book(recv int64, e *jfield, snapshot bool, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2BookKeys)]
	if perr := objectFields(e, krakenV2BookKeys, g, "data"); perr != nil {
		return out, perr
	}
	s, perr := f.v2sym(&g[0])
	if perr != nil {
		return out, perr
	}
	f.lv = f.lv[:0]
	for i, side := range [2]market.Side{market.SideBuy, market.SideSell} {
		fl := &g[1+i]
		if fl.typ == simdjson.TypeNone {
			continue
		}
		it, perr := fl.arrayIter(krakenV2BookKeys[1+i])
		if perr != nil {
			return out, perr
		}
		for {
			lv, ok := next(&it)
			if !ok {
				break
			}
			var pq [2]jfield
			if perr := objectFields(&lv, []string{"price", "qty"}, pq[:], krakenV2BookKeys[1+i]); perr != nil {
				return out, perr
			}
			px, perr := pq[0].pos("price")
			if perr != nil {
				return out, perr
			}
			sz, perr := pq[1].pos("qty")
			if perr != nil {
				return out, perr
			}
			f.lv = append(f.lv, parsedLevel{side: side, px: px, sz: sz})
		}
	}
	var want uint64
	hasSum := g[3].typ != simdjson.TypeNone
	if hasSum {
		if want, perr = g[3].uint("checksum"); perr != nil {
			return out, perr
		}
		if want > 1<<32-1 {
			return out, &ParseError{Reason: ReasonBadNumber, Field: "checksum"}
		}
	}
	exch, perr := v2time(&g[4])
	if perr != nil {
		return out, perr
	}
	b := f.book(s)
	depth := f.depth[s.symbol]
	if depth == 0 {
		depth = 10 // v2's default depth
	}
	b.depth, b.v1 = depth, false
	n := len(out)
	if snapshot {
		b.Clear()
		out = f.applyLevels(out, b, market.KindSnapshot, 0, recv, exch, false)
		b.synced = true
	} else {
		if !b.synced {
			f.withheld()
			return out, nil
		}
		out = f.applyLevels(out, b, market.KindBookDelta, 0, recv, exch, false)
	}
	b.Truncate(depth)
	if hasSum && !f.cfg.NoChecksum {
		prec, known := f.prec[s.symbol]
		if !known {
			f.m.Ignored("checksum_unverified")
		} else if f.checksumV2(b, prec) != uint32(want) {
			out = f.outOfSync(out, n, b, "checksum", recv, exch, 0)
			f.resubscribeV2(s.symbol, depth)
			return out, nil
		}
	}
	if b.Crossed() {
		out = f.outOfSync(out, n, b, "crossed", recv, exch, 0)
		f.resubscribeV2(s.symbol, depth)
	}
	return out, nil
}

// checksumV2 is the documented v2 checksum: as v1, over the numbers' text
// at the pair's precision (prec: price, quantity decimals).
func (f *KrakenFeed) checksumV2(b *bookState, prec [2]int) uint32 {
	f.sum = f.sum[:0]
	var tmp [64]byte
	for _, side := range [2]market.Side{market.SideSell, market.SideBuy} {
		lv := b.Side(side)
		for i := 0; i < len(lv) && i < 10; i++ {
			f.sum = checksumText(f.sum, string(formatFixed(tmp[:0], lv[i].Px, prec[0])))
			f.sum = checksumText(f.sum, string(formatFixed(tmp[:0], lv[i].Sz, prec[1])))
		}
	}
	return crc32IEEE(f.sum)
}

func (f *KrakenFeed) resubscribeV2(symbol string, depth int) {
	yes := true
	for _, m := range []string{"unsubscribe", "subscribe"} {
		p := krakenV2Params{Channel: "book", Symbol: []string{symbol}, Depth: depth}
		if m == "subscribe" {
			p.Snapshot = &yes
		}
		b, _ := json.Marshal(krakenV2Req{Method: m, Params: p})
		f.outbox = append(f.outbox, b)
	}
}

// v2instrument records the pairs' precisions.
func (f *KrakenFeed) v2instrument() *ParseError {
	g := f.g[:1]
	if perr := objectFields(&f.f[k2Data], []string{"pairs"}, g, "data"); perr != nil {
		return perr
	}
	if g[0].typ == simdjson.TypeNone {
		f.m.Ignored("instrument")
		return nil
	}
	it, perr := g[0].arrayIter("pairs")
	if perr != nil {
		return perr
	}
	for {
		e, ok := next(&it)
		if !ok {
			break
		}
		var p [3]jfield
		if perr := objectFields(&e, []string{"symbol", "price_precision", "qty_precision"}, p[:], "pairs"); perr != nil {
			return perr
		}
		sym, perr := p[0].str("symbol")
		if perr != nil {
			return perr
		}
		pp, perr := p[1].uint("price_precision")
		if perr != nil {
			return perr
		}
		qp, perr := p[2].uint("qty_precision")
		if perr != nil {
			return perr
		}
		if pp > 18 || qp > 18 {
			return &ParseError{Reason: ReasonBadNumber, Field: "pairs"}
		}
		if len(f.prec) < maxCachedSymbols {
			f.prec[string(sym)] = [2]int{int(pp), int(qp)}
		}
	}
	f.m.Ignored("instrument")
	return nil
}
