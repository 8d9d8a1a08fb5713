package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
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
	RegisterFeed("kucoin", func(cfg FeedConfig) (Feed, error) { return NewKucoinFeed(cfg), nil })
}

// KucoinFeed is the KuCoin spot Feed.
type KucoinFeed struct {
	feedBase
}

// NewKucoinFeed returns a KuCoin Feed.
func NewKucoinFeed(cfg FeedConfig) *KucoinFeed {
	return &KucoinFeed{feedBase: newFeedBase("kucoin", cfg)}
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

func (f *KucoinFeed) Reset() { f.resetBase() }

func (f *KucoinFeed) restBase() string {
	if f.cfg.RESTEndpoint != "" {
		return strings.TrimRight(f.cfg.RESTEndpoint, "/")
	}
	return "https://api.kucoin.com"
}

// requestSnapshot asks for the public 100-level snapshot (the full-depth
// /api/v3 one needs an API key). Levels deeper than 100 that updates later
// add are kept; the top of the book is exact.
func (f *KucoinFeed) requestSnapshot(bk *bookB) {
	if bk.requested {
		return
	}
	bk.requested = true
	f.snaps = append(f.snaps, SnapshotRequest{Symbol: bk.s.sym,
		URL: f.restBase() + "/api/v1/market/orderbook/level2_100?symbol=" + url.QueryEscape(bk.s.sym)})
}

type kucoinMsg struct {
	typ, topic, subject []byte
	data                simdjson.Iter
	hasData             bool
}

func (f *KucoinFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	return f.run(frame, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var m kucoinMsg
		var el simdjson.Iter
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
			case "type":
				m.typ, perr = jstr(&el, "type")
			case "topic":
				m.topic, perr = jstr(&el, "topic")
			case "subject":
				m.subject, perr = jstr(&el, "subject")
			case "data":
				m.data, m.hasData = el, true
			}
			if perr != nil {
				return out, perr
			}
		}
		switch string(m.typ) {
		case "message":
		case "":
			return out, perrf(ReasonMissingField, "type")
		case "error":
			f.log.Warn("kucoin error", "frame", string(truncate(frame, 256)))
			fallthrough
		default: // welcome, ack, pong
			f.m.Ignored(labelOf(m.typ, "welcome", "ack", "pong", "error"))
			return out, nil
		}
		if !m.hasData {
			return out, perrf(ReasonMissingField, "data")
		}
		var data simdjson.Object
		if perr := objectOf(&m.data, &data, "data"); perr != nil {
			return out, perr
		}
		switch string(m.subject) {
		case "trade.l2update":
			return f.l2update(recv, &data, out)
		case "trade.l3match":
			return f.match(recv, &data, out)
		case "trade.ticker":
			sym := m.topic
			if i := bytes.LastIndexByte(sym, ':'); i >= 0 {
				sym = sym[i+1:]
			}
			return f.ticker(recv, sym, &data, out)
		}
		f.m.Ignored("subject_other")
		return out, nil
	})
}

// kucoinTime reads "time": ms as a number (level2, ticker) or ns as a
// string (match).
func kucoinTime(it *simdjson.Iter) (int64, *ParseError) {
	if it.Type() == simdjson.TypeString {
		v, perr := juint(it, "time")
		if perr != nil || v > 1<<63-1 {
			return 0, perrf(ReasonBadNumber, "time")
		}
		return int64(v), nil
	}
	ms, perr := jint(it, "time")
	if perr != nil {
		return 0, perr
	}
	return msToNS(ms, "time")
}

func (f *KucoinFeed) match(recv int64, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var sym, side []byte
	var px, sz float64
	var seq uint64
	var ts int64
	have := 0
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
		case "symbol":
			sym, perr = jstr(&el, "symbol")
			have |= 1
		case "side":
			side, perr = jstr(&el, "side")
			have |= 2
		case "price":
			px, perr = jdec(&el, "price")
			have |= 4
		case "size":
			sz, perr = jdec(&el, "size")
			have |= 8
		case "sequence":
			seq, perr = juint(&el, "sequence")
			have |= 16
		case "time":
			ts, perr = kucoinTime(&el)
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 31 {
		return out, perrf(ReasonMissingField, "match")
	}
	s, perr := f.symbol(sym, "symbol", NormalizeKucoinSymbol)
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
	// tradeId is a 24-hex-digit object id; the match's sequence identifies
	// the trade within the symbol and is what TradeID carries.
	t.Side, t.Price, t.Size, t.TradeID, t.Seq = sd, px, sz, seq, seq
	t.ComputeID()
	return append(out, t), nil
}

func (f *KucoinFeed) ticker(recv int64, sym []byte, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el simdjson.Iter
	var q [4]float64
	var seq uint64
	var ts int64
	have := 0
	for {
		name, t, err := obj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "data")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		i := -1
		switch string(name) {
		case "bestBid":
			i = 0
		case "bestBidSize":
			i = 1
		case "bestAsk":
			i = 2
		case "bestAskSize":
			i = 3
		case "sequence":
			seq, perr = juint(&el, "sequence")
		case "time":
			ts, perr = kucoinTime(&el)
		}
		if i >= 0 {
			q[i], perr = jdec(&el, "best")
			have |= 1 << i
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 15 {
		return out, perrf(ReasonMissingField, "bestBid")
	}
	s, perr := f.symbol(sym, "topic", NormalizeKucoinSymbol)
	if perr != nil {
		return out, perr
	}
	t := f.tick(s, KindQuote, recv, ts)
	t.BidPx, t.BidSz, t.AskPx, t.AskSz, t.Seq = q[0], q[1], q[2], q[3], seq
	t.ComputeID()
	return append(out, t), nil
}

// kucoinLevels reads [[price, size, sequence], ...] into f.lv; price "0" is
// a sequence-only entry and is left out.
func (f *feedBase) kucoinLevels(it *simdjson.Iter, side Side, field string, withSeq bool) *ParseError {
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
		n := 2
		if withSeq {
			n = 3
		}
		for i := 0; i < n; i++ {
			if li.Advance() == simdjson.TypeNone {
				return perrf(ReasonMissingField, field)
			}
			switch i {
			case 0:
				l.px, perr = jdec(&li, field)
			case 1:
				l.sz, perr = jdec(&li, field)
			case 2:
				l.seq, perr = juint(&li, field)
			}
			if perr != nil {
				return perr
			}
		}
		if l.px == 0 {
			if !withSeq {
				return perrf(ReasonBadNumber, field)
			}
			continue
		}
		f.lv = append(f.lv, l)
	}
	return nil
}

func (f *KucoinFeed) l2update(recv int64, obj *simdjson.Object, out []Tick) ([]Tick, *ParseError) {
	var el, changes simdjson.Iter
	var sym []byte
	var start, end uint64
	var ts int64
	have := 0
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
		case "symbol":
			sym, perr = jstr(&el, "symbol")
			have |= 1
		case "sequenceStart":
			start, perr = juint(&el, "sequenceStart")
			have |= 2
		case "sequenceEnd":
			end, perr = juint(&el, "sequenceEnd")
			have |= 4
		case "changes":
			changes = el
			have |= 8
		case "time":
			ts, perr = kucoinTime(&el)
		}
		if perr != nil {
			return out, perr
		}
	}
	if have != 15 {
		return out, perrf(ReasonMissingField, "l2update")
	}
	if end < start {
		return out, perrf(ReasonBadNumber, "sequenceEnd")
	}
	var cobj simdjson.Object
	if perr := objectOf(&changes, &cobj, "changes"); perr != nil {
		return out, perr
	}
	f.lv = f.lv[:0]
	for {
		name, t, err := cobj.NextElementBytes(&el)
		if err != nil {
			return out, perrf(ReasonBadJSON, "changes")
		}
		if t == simdjson.TypeNone {
			break
		}
		var perr *ParseError
		switch string(name) {
		case "bids":
			perr = f.kucoinLevels(&el, SideBuy, "bids", true)
		case "asks":
			perr = f.kucoinLevels(&el, SideSell, "asks", true)
		}
		if perr != nil {
			return out, perr
		}
	}
	s, perr := f.symbol(sym, "symbol", NormalizeKucoinSymbol)
	if perr != nil {
		return out, perr
	}
	return f.seqUpdate(f.book(s), recv, ts, start, end, f.lv, out, f.requestSnapshot), nil
}

// seqUpdate applies or buffers a delta frame covering venue sequences
// [first, last] (KuCoin sequenceStart/End, Gate.io U/u) to a book synced
// from REST snapshots. Before the snapshot the frame is buffered; once live,
// frames wholly at or before the book's sequence are skipped, a frame
// starting beyond the next sequence is a gap, and levels carrying their own
// sequence (KuCoin) at or before the book's are skipped.
func (f *feedBase) seqUpdate(bk *bookB, recv, exch int64, first, last uint64, lv []lvB, out []Tick, request func(*bookB)) []Tick {
	if bk.state != bookLive {
		if len(bk.pendLv)+len(lv) > maxPendLevels {
			f.log.Warn("snapshot buffer full, dropping it and asking again", "venue", f.venue, "symbol", bk.s.sym)
			f.m.Resync("buffer")
			bk.pend, bk.pendLv = bk.pend[:0], bk.pendLv[:0]
			bk.requested = false
		}
		from := len(bk.pendLv)
		bk.pendLv = append(bk.pendLv, lv...)
		bk.pend = append(bk.pend, pendB{first: first, last: last, exch: exch, recv: recv, from: from, to: len(bk.pendLv)})
		request(bk)
		return out
	}
	if last <= bk.seq {
		return out
	}
	if first > bk.seq+1 {
		out = f.desync(bk, "gap", recv, last, out)
		request(bk)
		return out
	}
	return f.applySeqDelta(bk, recv, exch, last, lv, out, request)
}

func (f *feedBase) applySeqDelta(bk *bookB, recv, exch int64, last uint64, lv []lvB, out []Tick, request func(*bookB)) []Tick {
	// Drop levels the snapshot already holds (their own sequence is at or
	// before it); f.lv may alias lv, so filter into a scratch copy.
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
	out, ok := f.applyDelta(bk, keep[:k], recv, exch, last, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, last, out[:n])
		request(bk)
	}
	return out
}

// applyRESTSnapshot sets bk from a REST snapshot at sequence seq and then
// applies the buffered frames after it. A snapshot older than the first
// buffered frame (a hole between them) is dropped and asked for again.
func (f *feedBase) applyRESTSnapshot(bk *bookB, recv, exch int64, seq uint64, out []Tick, request func(*bookB)) []Tick {
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
		f.log.Info("REST snapshot older than the buffered updates, asking again", "venue", f.venue, "symbol", bk.s.sym, "snapshot_seq", seq, "first_update", pend[firstKept].first)
		f.m.Ignored("stale_snapshot")
		request(bk)
		return out
	}
	wasResync := bk.state == bookResync
	out2, ok := f.applySnapshot(bk, f.lv, recv, exch, seq, out)
	if !ok {
		if wasResync {
			bk.state = bookResync
		}
		out = f.desync(bk, "crossed", recv, seq, out)
		request(bk)
		return out
	}
	out = out2
	bk.pend, bk.pendLv = pend[:0], pendLv[:0]
	if firstKept < 0 {
		return out
	}
	for _, p := range pend[firstKept:] {
		if bk.state != bookLive {
			break
		}
		if p.first > bk.seq+1 {
			out = f.desync(bk, "gap", p.recv, p.last, out)
			request(bk)
			break
		}
		out = f.applySeqDelta(bk, p.recv, p.exch, p.last, pendLv[p.from:p.to], out, request)
	}
	return out
}

// HandleSnapshot applies the body of GET
// /api/v1/market/orderbook/level2_100 (or the v3 full book):
// {"code":"200000","data":{"time":ms,"sequence":"N","bids":[[px,sz]],"asks":[...]}}.
func (f *KucoinFeed) HandleSnapshot(recv int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
	out, err := f.run(body, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj, data simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var el simdjson.Iter
		var code []byte
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
			case "code":
				code, perr = jstr(&el, "code")
			case "data":
				perr = objectOf(&el, &data, "data")
				hasData = true
			}
			if perr != nil {
				return out, perr
			}
		}
		if string(code) != "200000" || !hasData {
			return out, perrf(ReasonMissingField, "data")
		}
		var seq uint64
		var ts int64
		have := 0
		f.lv = f.lv[:0]
		for {
			name, t, err := data.NextElementBytes(&el)
			if err != nil {
				return out, perrf(ReasonBadJSON, "data")
			}
			if t == simdjson.TypeNone {
				break
			}
			var perr *ParseError
			switch string(name) {
			case "sequence":
				seq, perr = juint(&el, "sequence")
				have |= 1
			case "time":
				ts, perr = kucoinTime(&el)
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
			return out, perrf(ReasonMissingField, "sequence")
		}
		s, perr := f.symbol([]byte(req.Symbol), "symbol", NormalizeKucoinSymbol)
		if perr != nil {
			return out, perr
		}
		return f.applyRESTSnapshot(f.book(s), recv, ts, seq, out, f.requestSnapshot), nil
	})
	f.snapshotFailed(req, err, f.requestSnapshot)
	return out, err
}
