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

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueKraken,
		Cryptofeed: []string{"KRAKEN"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewKrakenFeed(cfg), nil },
	})
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
	var r fieldReader
	if r.objectFields(root, krakenV2Keys, fl, "root"); r.err != nil {
		return out, r.err
	}
	if fl[k2Channel].typ != simdjson.TypeNone {
		return f.v2(recv, out)
	}
	if fl[k2Method].typ != simdjson.TypeNone {
		return f.v2method(out)
	}
	ev := r.str(&fl[k2Event], "event")
	if r.err != nil {
		return out, r.err
	}
	switch string(ev) {
	case "heartbeat", "pong":
		f.m.Ignored("heartbeat")
	case "ping":
		// v1 clients answer server pings; echo reqid when sent.
		f.m.Ignored("heartbeat")
		if fl[k2ReqID].typ != simdjson.TypeNone {
			id := r.uint(&fl[k2ReqID], "reqid")
			if r.err != nil {
				return out, r.err
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
	var r fieldReader
	it := r.arrayIter(root, "root")
	if r.err != nil {
		return out, r.err
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
	name := r.str(&els[len(els)-2], "channelName")
	pair := r.str(&els[len(els)-1], "pair")
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(pair, "pair")
	}
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	it := r.arrayIter(&payload[0], "trade")
	if r.err != nil {
		return out, r.err
	}
	n := len(out)
	for {
		e, ok := next(&it)
		if !ok {
			return out, nil
		}
		li := r.arrayIter(&e, "trade")
		if r.err != nil {
			return out[:n], r.err
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
		t.Price = r.dec(&v[0], "price")
		t.Size = r.dec(&v[1], "volume")
		if tb := r.str(&v[2], "time"); r.err == nil {
			var okT bool
			if t.ExchTS, okT = parseSecondsDecimal(tb); !okT {
				r.fail(ReasonBadNumber, "time")
			}
		}
		switch side := r.str(&v[3], "side"); {
		case r.err != nil:
		case string(side) == "b":
			t.Side = market.SideBuy
		case string(side) == "s":
			t.Side = market.SideSell
		default:
			r.fail(ReasonBadType, "side")
		}
		if k == 7 { // newer v1 frames end with the trade id
			t.TradeID = r.uint(&v[6], "trade_id")
		}
		if r.err != nil {
			return out[:n], r.err
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
	var r fieldReader
	r.objectFields(&payload[0], []string{"a", "b"}, g, "ticker")
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [2][2]*float64{{&t.AskPx, &t.AskSz}, {&t.BidPx, &t.BidSz}} {
		field := [2]string{"a", "b"}[i]
		it := r.arrayIter(&g[i], field)
		if r.err != nil {
			break
		}
		px, ok1 := next(&it)
		_, ok2 := next(&it)
		lot, ok3 := next(&it)
		if !ok1 || !ok2 || !ok3 {
			r.fail(ReasonBadType, field)
		}
		*dst[0] = r.dec(&px, field)
		*dst[1] = r.dec(&lot, field)
	}
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

func (f *KrakenFeed) v1spread(recv int64, s *symEntry, payload []jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	if len(payload) != 1 {
		return out, &ParseError{Reason: ReasonBadType, Field: "spread"}
	}
	var r fieldReader
	it := r.arrayIter(&payload[0], "spread")
	if r.err != nil {
		return out, r.err
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
			if b := r.str(&v[i], "spread"); r.err == nil {
				var ok bool
				if t.ExchTS, ok = parseSecondsDecimal(b); !ok {
					r.fail(ReasonBadNumber, "spread")
				}
			}
			continue
		}
		*dst = r.dec(&v[i], "spread")
	}
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	for i := range payload {
		g := f.g[:len(krakenV1BookKeys)]
		if r.objectFields(&payload[i], krakenV1BookKeys, g, "book"); r.err != nil {
			return out, r.err
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
			r.levelRows(&f.feedCore, &g[j], side, krakenV1BookKeys[j], true)
		}
		if g[4].typ != simdjson.TypeNone {
			sum = r.str(&g[4], "c")
		}
		if r.err != nil {
			return out, r.err
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
	var r fieldReader
	m := r.str(&fl[k2Method], "method")
	if r.err != nil {
		return out, r.err
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
		if r.objectFields(&fl[k2Result], []string{"channel", "symbol", "depth"}, g, "result"); r.err != nil {
			return out, r.err
		}
		if string(g[0].strOr()) == "book" && g[2].typ != simdjson.TypeNone {
			d := r.uint(&g[2], "depth")
			if r.err != nil {
				return out, r.err
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
	var r fieldReader
	ch := r.str(&fl[k2Channel], "channel")
	if r.err != nil {
		return out, r.err
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
	typ := r.str(&fl[k2Type], "type")
	snapshot := string(typ) == "snapshot"
	if !snapshot && string(typ) != "update" {
		r.fail(ReasonBadType, "type")
	}
	it := r.arrayIter(&fl[k2Data], "data")
	if r.err != nil {
		return out, r.err
	}
	var perr *ParseError
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

func (f *KrakenFeed) v2sym(r *fieldReader, g *jfield) *symEntry {
	var s *symEntry
	if b := r.str(g, "symbol"); r.err == nil {
		s, r.err = f.sym(b, "symbol")
	}
	return s
}

// v2time reads an optional RFC 3339 "timestamp" (0 when absent).
func v2time(r *fieldReader, g *jfield) int64 {
	if g.typ == simdjson.TypeNone {
		return 0
	}
	b := r.str(g, "timestamp")
	if r.err != nil {
		return 0
	}
	ts, ok := parseRFC3339(b)
	if !ok {
		r.fail(ReasonBadNumber, "timestamp")
	}
	return ts
}

var krakenV2TradeKeys = []string{"symbol", "side", "price", "qty", "trade_id", "timestamp"}

func (f *KrakenFeed) v2trade(recv int64, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2TradeKeys)]
	var r fieldReader
	r.objectFields(e, krakenV2TradeKeys, g, "data")
	s := f.v2sym(&r, &g[0])
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindTrade, recv, 0)
	t.Side = r.side(&g[1], "side")
	t.Price = r.pos(&g[2], "price")
	t.Size = r.pos(&g[3], "qty")
	t.TradeID = r.uint(&g[4], "trade_id")
	t.ExchTS = v2time(&r, &g[5])
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var krakenV2TickerKeys = []string{"symbol", "bid", "bid_qty", "ask", "ask_qty", "timestamp"}

func (f *KrakenFeed) v2ticker(recv int64, e *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2TickerKeys)]
	var r fieldReader
	r.objectFields(e, krakenV2TickerKeys, g, "data")
	s := f.v2sym(&r, &g[0])
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindQuote, recv, 0)
	for i, dst := range [...]*float64{&t.BidPx, &t.BidSz, &t.AskPx, &t.AskSz} {
		*dst = r.pos(&g[i+1], krakenV2TickerKeys[i+1])
	}
	t.ExchTS = v2time(&r, &g[5])
	if r.err != nil {
		return out, r.err
	}
	t.ComputeID()
	return append(out, t), nil
}

var krakenV2BookKeys = []string{"symbol", "bids", "asks", "checksum", "timestamp"}

func (f *KrakenFeed) v2book(recv int64, e *jfield, snapshot bool, out []market.Tick) ([]market.Tick, *ParseError) {
	g := f.g[:len(krakenV2BookKeys)]
	var r fieldReader
	r.objectFields(e, krakenV2BookKeys, g, "data")
	s := f.v2sym(&r, &g[0])
	if r.err != nil {
		return out, r.err
	}
	f.lv = f.lv[:0]
	for i, side := range [2]market.Side{market.SideBuy, market.SideSell} {
		fl := &g[1+i]
		if fl.typ == simdjson.TypeNone {
			continue
		}
		it := r.arrayIter(fl, krakenV2BookKeys[1+i])
		for r.err == nil {
			lv, ok := next(&it)
			if !ok {
				break
			}
			var pq [2]jfield
			r.objectFields(&lv, []string{"price", "qty"}, pq[:], krakenV2BookKeys[1+i])
			px := r.pos(&pq[0], "price")
			sz := r.pos(&pq[1], "qty")
			if r.err == nil {
				f.lv = append(f.lv, parsedLevel{side: side, px: px, sz: sz})
			}
		}
	}
	var want uint64
	hasSum := g[3].typ != simdjson.TypeNone
	if hasSum {
		if want = r.uint(&g[3], "checksum"); want > 1<<32-1 {
			r.fail(ReasonBadNumber, "checksum")
		}
	}
	exch := v2time(&r, &g[4])
	if r.err != nil {
		return out, r.err
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
	var r fieldReader
	it := r.arrayIter(&g[0], "pairs")
	for r.err == nil {
		e, ok := next(&it)
		if !ok {
			break
		}
		var p [3]jfield
		r.objectFields(&e, []string{"symbol", "price_precision", "qty_precision"}, p[:], "pairs")
		sym := r.str(&p[0], "symbol")
		pp := r.uint(&p[1], "price_precision")
		qp := r.uint(&p[2], "qty_precision")
		if r.err != nil {
			return r.err
		}
		if pp > 18 || qp > 18 {
			return &ParseError{Reason: ReasonBadNumber, Field: "pairs"}
		}
		if len(f.prec) < maxCachedSymbols {
			f.prec[string(sym)] = [2]int{int(pp), int(qp)}
		}
	}
	if r.err != nil {
		return r.err
	}
	f.m.Ignored("instrument")
	return nil
}
