package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// KuCoin spot websocket: /market/level2 (trade.l2update: changes
// [price, size, sequence] with sequenceStart/sequenceEnd, synced against a
// REST snapshot's sequence), /market/match (trade.l3match, taker side) and
// /market/ticker (best bid/ask).
//
// Connecting takes a token: POST https://api.kucoin.com/api/v1/bullet-public
// (no key needed) returns {"data":{"token":T,"instanceServers":[{"endpoint":
// E,"pingInterval":18000,...}]}}; the websocket URL is E?token=T&connectId=<any
// id>. KucoinBulletURL builds it from that response; the connection manager
// (or whoever configures the feed) puts it in FeedConfig.Endpoint, and fetches
// a new one for each connection (a token is valid for 24 h).
//
// Docs: https://www.kucoin.com/docs/websocket/basic-info/apply-connect-token/public-token-no-authentication-required-
// and .../spot-trading/public-channels/level2-market-data.

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueKucoin,
		Cryptofeed: []string{"KUCOIN"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewKucoinFeed(cfg), nil },
	})
}

// KucoinFeed is the KuCoin spot Feed.
type KucoinFeed struct {
	feedCore
	r [4]jfield // root members
	d [6]jfield // data members
	c [2]jfield // changes members
}

// NewKucoinFeed returns a KuCoin Feed.
func NewKucoinFeed(cfg FeedConfig) *KucoinFeed {
	return &KucoinFeed{feedCore: newFeedCore(VenueKucoin, cfg, NormalizeKucoinSymbol)}
}

// Limits: at most 300 topics a connection and 100 client messages per 10 s
// (docs: websocket basic info); the server expects a ping within its
// pingInterval (18 s).
func (f *KucoinFeed) Limits() Limits {
	return Limits{MaxSubsPerConn: 300, SubscribeRate: 10, PingInterval: 18 * time.Second, Silence: 30 * time.Second}
}

func (f *KucoinFeed) Ping() []byte { return []byte(`{"id":"ping","type":"ping"}`) }

// URL is FeedConfig.Endpoint, which must carry a bullet-public token (see
// KucoinBulletURL).
func (f *KucoinFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint == "" {
		return "", fmt.Errorf("kucoin: FeedConfig.Endpoint is empty: POST https://api.kucoin.com/api/v1/bullet-public and set it to KucoinBulletURL(response)")
	}
	u, err := url.Parse(f.cfg.Endpoint)
	if err != nil || u.Query().Get("token") == "" {
		return "", fmt.Errorf("kucoin: endpoint %q has no token query parameter: build it with KucoinBulletURL", f.cfg.Endpoint)
	}
	return f.cfg.Endpoint, nil
}

// KucoinBulletURL returns the websocket URL and ping interval from a
// bullet-public response body; connectID identifies the connection (any
// unique string).
func KucoinBulletURL(body []byte, connectID string) (string, time.Duration, error) {
	var r struct {
		Code string
		Data struct {
			Token           string
			InstanceServers []struct {
				Endpoint     string
				PingInterval int64
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", 0, fmt.Errorf("kucoin bullet: %w", err)
	}
	if r.Code != "200000" || r.Data.Token == "" || len(r.Data.InstanceServers) == 0 || r.Data.InstanceServers[0].Endpoint == "" {
		return "", 0, fmt.Errorf("kucoin bullet: code %q, no token or server in the response", r.Code)
	}
	s := r.Data.InstanceServers[0]
	q := url.Values{"token": {r.Data.Token}, "connectId": {connectID}}
	return s.Endpoint + "?" + q.Encode(), time.Duration(s.PingInterval) * time.Millisecond, nil
}

// Normalize: BTC-USDT is already BASE-QUOTE.
func (f *KucoinFeed) Normalize(symbol string) (string, bool) { return NormalizeKucoinSymbol(symbol) }

// NormalizeKucoinSymbol checks a KuCoin spot symbol (BTC-USDT).
func NormalizeKucoinSymbol(symbol string) (string, bool) {
	b, q, ok := strings.Cut(symbol, "-")
	if !ok || b == "" || q == "" || strings.Contains(q, "-") {
		return symbol, false
	}
	return strings.ToUpper(symbol), true
}

// SubscribeFrames: one frame per topic, at most 100 symbols each.
func (f *KucoinFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	topics := map[Channel][]string{}
	var order []Channel
	for _, s := range subs {
		if s.Symbol == "" || strings.ContainsAny(s.Symbol, ",: ") {
			return nil, fmt.Errorf("kucoin: bad symbol %q", s.Symbol)
		}
		switch s.Channel {
		case ChanBook, ChanTrades, ChanQuotes:
		default:
			return nil, fmt.Errorf("kucoin: channel %q is not supported (book, trades, quotes)", s.Channel)
		}
		if _, ok := topics[s.Channel]; !ok {
			order = append(order, s.Channel)
		}
		topics[s.Channel] = append(topics[s.Channel], s.Symbol)
	}
	var out [][]byte
	id := 1
	for _, c := range order {
		prefix := map[Channel]string{ChanBook: "/market/level2:", ChanTrades: "/market/match:", ChanQuotes: "/market/ticker:"}[c]
		syms := topics[c]
		for len(syms) > 0 {
			n := min(len(syms), 100)
			out = append(out, fmt.Appendf(nil, `{"id":"%d","type":"subscribe","topic":"%s%s","privateChannel":false,"response":true}`, id, prefix, strings.Join(syms[:n], ",")))
			syms = syms[n:]
			id++
		}
	}
	return out, nil
}

func (f *KucoinFeed) Reset() { f.reset() }

func (f *KucoinFeed) restBase() string {
	if f.cfg.RESTEndpoint != "" {
		return strings.TrimRight(f.cfg.RESTEndpoint, "/")
	}
	return "https://api.kucoin.com"
}

// requestSnapshot asks for the public 100-level snapshot (the full-depth
// /api/v3 one needs an API key). Levels deeper than 100 that updates later
// add are kept; the top of the book is exact.
func (f *KucoinFeed) requestSnapshot(bk *bookState) {
	if bk.requested {
		return
	}
	bk.requested = true
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: bk.sym.symbol,
		URL: f.restBase() + "/api/v1/market/orderbook/level2_100?symbol=" + url.QueryEscape(bk.sym.symbol)})
}

var kucoinKeys = []string{"type", "topic", "subject", "data"}

func (f *KucoinFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		if rd.objectFields(root, kucoinKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var typ, topic, subject []byte
		if r[0].typ != simdjson.TypeNone {
			typ = rd.str(&r[0], "type")
		}
		if r[1].typ != simdjson.TypeNone {
			topic = rd.str(&r[1], "topic")
		}
		if r[2].typ != simdjson.TypeNone {
			subject = rd.str(&r[2], "subject")
		}
		if rd.err != nil {
			return out, rd.err
		}
		switch string(typ) {
		case "message":
		case "":
			return out, perrf(ReasonMissingField, "type")
		case "error":
			f.log.Warn("kucoin error", "frame", string(truncate(frame, 256)))
			fallthrough
		default: // welcome, ack, pong
			f.m.Ignored(labelOf(typ, "welcome", "ack", "pong", "error"))
			return out, nil
		}
		if r[3].typ == simdjson.TypeNone {
			return out, perrf(ReasonMissingField, "data")
		}
		if r[3].typ != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "data")
		}
		switch string(subject) {
		case "trade.l2update":
			return f.l2update(recv, &r[3], out)
		case "trade.l3match":
			return f.match(recv, &r[3], out)
		case "trade.ticker":
			sym := topic
			if i := bytes.LastIndexByte(sym, ':'); i >= 0 {
				sym = sym[i+1:]
			}
			return f.ticker(recv, sym, &r[3], out)
		}
		f.m.Ignored("subject_other")
		return out, nil
	})
}

// kucoinTime reads "time": ms as a number (level2, ticker) or ns as a
// string (match); absent, 0.
func kucoinTime(r *fieldReader, f *jfield) int64 {
	if r.err != nil {
		return 0
	}
	switch f.typ {
	case simdjson.TypeNone:
		return 0
	case simdjson.TypeString:
		v, perr := f.seqNum("time")
		if perr != nil || v > 1<<63-1 {
			r.fail(ReasonBadNumber, "time")
			return 0
		}
		return int64(v)
	}
	return r.msToNS(r.intJSON(f, "time"), "time")
}

var kucoinMatchKeys = []string{"symbol", "side", "price", "size", "sequence", "time"}

func (f *KucoinFeed) match(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:6]
	var r fieldReader
	if r.objectFields(data, kucoinMatchKeys, d, "data"); r.err == nil && !present(d[:5]) {
		r.fail(ReasonMissingField, "match")
	}
	sym, side, px, sz, seq := takerTrade(&r, d, kucoinMatchKeys)
	ts := kucoinTime(&r, &d[5])
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "symbol")
	}
	sd := r.sideWord(side)
	if r.err == nil && (px == 0 || sz == 0) {
		r.fail(ReasonBadNumber, "price")
	}
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindTrade, recv, ts)
	// tradeId is a 24-hex-digit object id; the match's sequence identifies
	// the trade within the symbol and is what TradeID carries.
	t.Side, t.Price, t.Size, t.TradeID, t.Seq = sd, px, sz, seq, seq
	t.ComputeID()
	return append(out, t), nil
}

// takerTrade reads the members of a KuCoin match or a Gate.io trade named
// by keys: symbol, side, price, size (decimal strings) and id.
func takerTrade(r *fieldReader, d []jfield, keys []string) (sym, side []byte, px, sz float64, id uint64) {
	return r.str(&d[0], keys[0]), r.str(&d[1], keys[1]), r.dec(&d[2], keys[2]), r.dec(&d[3], keys[3]), r.seqNum(&d[4], keys[4])
}

var kucoinTickerKeys = []string{"bestBid", "bestBidSize", "bestAsk", "bestAskSize", "sequence", "time"}

func (f *KucoinFeed) ticker(recv int64, sym []byte, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:6]
	var r fieldReader
	if r.objectFields(data, kucoinTickerKeys, d, "data"); r.err == nil && !present(d[:4]) {
		r.fail(ReasonMissingField, "bestBid")
	}
	var q [4]float64
	for i := range q {
		q[i] = r.dec(&d[i], "best")
	}
	var seq uint64
	if d[4].typ != simdjson.TypeNone {
		seq = r.seqNum(&d[4], "sequence")
	}
	ts := kucoinTime(&r, &d[5])
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "topic")
	}
	if r.err != nil {
		return out, r.err
	}
	t := f.newTick(s, market.KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], seq
	t.ComputeID()
	return append(out, t), nil
}

// kucoinLevels reads [[price, size, sequence], ...] into c.sl; price "0" is
// a sequence-only entry and is left out. An absent member adds nothing.
func (c *feedCore) kucoinLevels(f *jfield, side market.Side, field string, withSeq bool) *ParseError {
	if f.typ == simdjson.TypeNone {
		return nil
	}
	var r fieldReader
	ai := r.elems(f, field)
	n := 2
	if withSeq {
		n = 3
	}
	for r.err == nil {
		if !ai.advance() {
			return nil
		}
		li := r.elems(&ai, field)
		l := seqLevel{side: side}
		for i := 0; i < n && r.err == nil; i++ {
			if !li.advance() {
				return perrf(ReasonMissingField, field)
			}
			switch i {
			case 0:
				l.px = r.dec(&li, field)
			case 1:
				l.sz = r.dec(&li, field)
			case 2:
				l.seq = r.seqNum(&li, field)
			}
		}
		if r.err != nil {
			break
		}
		if l.px == 0 {
			if !withSeq {
				return perrf(ReasonBadNumber, field)
			}
			continue
		}
		c.sl = append(c.sl, l)
	}
	return r.err
}

var (
	kucoinL2Keys      = []string{"symbol", "sequenceStart", "sequenceEnd", "changes", "time"}
	kucoinChangesKeys = []string{"bids", "asks"}
)

func (f *KucoinFeed) l2update(recv int64, data *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	d := f.d[:5]
	var r fieldReader
	if r.objectFields(data, kucoinL2Keys, d, "data"); r.err == nil && !present(d[:4]) {
		r.fail(ReasonMissingField, "l2update")
	}
	sym, start, end := seqSpan(&r, d, kucoinL2Keys)
	ts := kucoinTime(&r, &d[4])
	if r.err == nil && end < start {
		r.fail(ReasonBadNumber, "sequenceEnd")
	}
	c := f.c[:]
	r.objectFields(&d[3], kucoinChangesKeys, c, "changes")
	f.sl = f.sl[:0]
	if r.err == nil {
		r.err = f.kucoinLevels(&c[0], market.SideBuy, "bids", true)
	}
	if r.err == nil {
		r.err = f.kucoinLevels(&c[1], market.SideSell, "asks", true)
	}
	var s *symEntry
	if r.err == nil {
		s, r.err = f.sym(sym, "symbol")
	}
	if r.err != nil {
		return out, r.err
	}
	return f.seqUpdate(f.book(s), recv, ts, start, end, f.sl, out, f.requestSnapshot), nil
}

// seqSpan reads a sequenced delta frame's symbol and its first and last
// venue sequences from d[0:3], named keys[0:3] (KuCoin symbol,
// sequenceStart, sequenceEnd; Gate.io s, U, u).
func seqSpan(r *fieldReader, d []jfield, keys []string) (sym []byte, first, last uint64) {
	return r.str(&d[0], keys[0]), r.seqNum(&d[1], keys[1]), r.seqNum(&d[2], keys[2])
}

// seqUpdate applies or buffers a delta frame covering venue sequences
// [first, last] (KuCoin sequenceStart/End, Gate.io U/u) to a book synced
// from REST snapshots. Before the snapshot the frame is buffered; once live,
// frames wholly at or before the book's sequence are skipped, a frame
// starting beyond the next sequence is a gap, and levels carrying their own
// sequence (KuCoin) at or before the book's are skipped.
func (c *feedCore) seqUpdate(bk *bookState, recv, exch int64, first, last uint64, lv []seqLevel, out []market.Tick, request func(*bookState)) []market.Tick {
	if !bk.synced {
		if len(bk.pendLv)+len(lv) > maxPendLevels {
			c.log.Warn("snapshot buffer full, dropping it and asking again", "symbol", bk.sym.symbol)
			c.m.Resync("buffer")
			bk.pend, bk.pendLv = bk.pend[:0], bk.pendLv[:0]
			bk.requested = false
		}
		from := len(bk.pendLv)
		bk.pendLv = append(bk.pendLv, lv...)
		bk.pend = append(bk.pend, pendingDelta{first: first, last: last, exch: exch, recv: recv, from: from, to: len(bk.pendLv)})
		request(bk)
		return out
	}
	if last <= bk.seq {
		return out
	}
	if first > bk.seq+1 {
		out = c.desync(bk, "gap", recv, last, out)
		request(bk)
		return out
	}
	return c.applySeqDelta(bk, recv, exch, last, lv, out, request)
}

func (c *feedCore) applySeqDelta(bk *bookState, recv, exch int64, last uint64, lv []seqLevel, out []market.Tick, request func(*bookState)) []market.Tick {
	// Drop levels the snapshot already holds (their own sequence is at or
	// before it), filtering lv in place.
	k := 0
	keep := lv
	for _, l := range lv {
		if l.seq != 0 && l.seq <= bk.seq {
			continue
		}
		keep[k] = l
		k++
	}
	n := len(out)
	out, ok := c.applyDelta(bk, keep[:k], recv, exch, last, out)
	if !ok {
		out = c.desync(bk, "crossed", recv, last, out[:n])
		request(bk)
	}
	return out
}

// applyRESTSnapshot sets bk from a REST snapshot at sequence seq and then
// applies the buffered frames after it. A snapshot older than the first
// buffered frame (a hole between them) is dropped and asked for again.
func (c *feedCore) applyRESTSnapshot(bk *bookState, recv, exch int64, seq uint64, out []market.Tick, request func(*bookState)) []market.Tick {
	bk.requested = false
	pend, pendLv := bk.pend, bk.pendLv
	var firstKept = -1
	for i, p := range pend {
		if p.last > seq {
			firstKept = i
			break
		}
	}
	if firstKept >= 0 && pend[firstKept].first > seq+1 {
		c.log.Info("REST snapshot older than the buffered updates, asking again", "symbol", bk.sym.symbol, "snapshot_seq", seq, "first_update", pend[firstKept].first)
		c.m.Ignored("stale_snapshot")
		request(bk)
		return out
	}
	out2, ok := c.replaceBook(bk, c.sl, recv, exch, seq, out)
	if !ok {
		out = c.desync(bk, "crossed", recv, seq, out)
		request(bk)
		return out
	}
	out = out2
	bk.pend, bk.pendLv = pend[:0], pendLv[:0]
	if firstKept < 0 {
		return out
	}
	for _, p := range pend[firstKept:] {
		if !bk.synced {
			break
		}
		if p.first > bk.seq+1 {
			out = c.desync(bk, "gap", p.recv, p.last, out)
			request(bk)
			break
		}
		out = c.applySeqDelta(bk, p.recv, p.exch, p.last, pendLv[p.from:p.to], out, request)
	}
	return out
}

// restSnapshot applies a REST snapshot at seq, its bids and asks
// [[price, size], ...], to symbol's book.
func (c *feedCore) restSnapshot(recv, exch int64, symbol string, seq uint64, bids, asks *jfield, out []market.Tick, request func(*bookState)) ([]market.Tick, *ParseError) {
	c.sl = c.sl[:0]
	perr := c.kucoinLevels(bids, market.SideBuy, "bids", false)
	if perr == nil {
		perr = c.kucoinLevels(asks, market.SideSell, "asks", false)
	}
	var s *symEntry
	if perr == nil {
		s, perr = c.sym([]byte(symbol), "symbol")
	}
	if perr != nil {
		return out, perr
	}
	return c.applyRESTSnapshot(c.book(s), recv, exch, seq, out, request), nil
}

var (
	kucoinSnapKeys     = []string{"code", "data"}
	kucoinSnapDataKeys = []string{"sequence", "time", "bids", "asks"}
)

// HandleSnapshot applies the body of GET
// /api/v1/market/orderbook/level2_100 (or the v3 full book):
// {"code":"200000","data":{"time":ms,"sequence":"N","bids":[[px,sz]],"asks":[...]}}.
func (f *KucoinFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	out, err := f.run(body, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:2]
		var rd fieldReader
		if rd.objectFields(root, kucoinSnapKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var code []byte
		if r[0].typ != simdjson.TypeNone {
			code = rd.str(&r[0], "code")
		}
		if r[1].typ != simdjson.TypeNone && r[1].typ != simdjson.TypeObject {
			rd.fail(ReasonBadType, "data")
		}
		if string(code) != "200000" || r[1].typ == simdjson.TypeNone {
			rd.fail(ReasonMissingField, "data")
		}
		d := f.d[:4]
		rd.objectFields(&r[1], kucoinSnapDataKeys, d, "data")
		if rd.err == nil && (d[0].typ == simdjson.TypeNone || d[2].typ == simdjson.TypeNone || d[3].typ == simdjson.TypeNone) {
			rd.fail(ReasonMissingField, "sequence")
		}
		seq := rd.seqNum(&d[0], "sequence")
		ts := kucoinTime(&rd, &d[1])
		if rd.err != nil {
			return out, rd.err
		}
		return f.restSnapshot(recv, ts, req.Symbol, seq, &d[2], &d[3], out, f.requestSnapshot)
	})
	f.snapshotFailed(req, err, f.requestSnapshot)
	return out, err
}
