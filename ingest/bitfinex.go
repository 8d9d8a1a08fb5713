package ingest

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Bitfinex websocket v2 (public channels): trades, ticker (BBO), book P0
// with per-connection sequence numbers (conf flag SEQ_ALL) and CRC32
// checksums of the top 25 levels (conf flag OB_CHECKSUM), and the status
// channel for derivatives funding and mark price.
//
// Docs: https://docs.bitfinex.com/docs/ws-public,
// https://docs.bitfinex.com/docs/ws-websocket-checksum,
// https://docs.bitfinex.com/reference-link/ws-public-status.

const (
	bitfinexSeqAll   = 65536  // SEQ_ALL: a sequence number ends every channel message
	bitfinexChecksum = 131072 // OB_CHECKSUM: [chanId,"cs",crc,seq] after book updates
	bitfinexBookLen  = 100    // book depth subscribed ("len") and kept
	bitfinexCSLevels = 25     // levels per side covered by the checksum
)

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueBitfinex,
		Cryptofeed: []string{"BITFINEX"},
		Channels:   []Channel{ChanTrades, ChanQuotes, ChanBook, ChanFunding},
		New:        func(cfg FeedConfig) (Feed, error) { return NewBitfinexFeed(cfg), nil },
	})
}

// Bitfinex channel kinds.
const (
	bfxTrades = iota + 1
	bfxTicker
	bfxBook
	bfxStatus
)

type bfxChan struct {
	kind int
	s    *symEntry
	bk   *bookState // bfxBook
	sub  []byte     // the subscribe frame, to resubscribe
}

// BitfinexFeed is the Bitfinex v2 public websocket Feed.
type BitfinexFeed struct {
	feedCore
	chans   map[int64]*bfxChan
	seq     uint64
	haveSeq bool
	csbuf   []byte
	gapSeen map[string]bool // scratch: instruments given a gap tick for one sequence gap
	ids     []int64         // scratch: channel ids, sorted
	ev      [5]jfield       // scratch: event members
}

// NewBitfinexFeed returns a Bitfinex Feed.
func NewBitfinexFeed(cfg FeedConfig) *BitfinexFeed {
	return &BitfinexFeed{feedCore: newFeedCore(VenueBitfinex, cfg, NormalizeBitfinexSymbol), chans: map[int64]*bfxChan{}, gapSeen: map[string]bool{}}
}

// Limits: 25 channels per connection and 20 connections a minute on
// api-pub (docs: ws-public). The server sends a heartbeat per channel
// every 15 s, so no client ping is needed.
func (f *BitfinexFeed) Limits() Limits {
	return Limits{MaxSubsPerConn: 25, SubscribeRate: 0, PingInterval: 0, Silence: 30 * time.Second}
}

func (f *BitfinexFeed) Ping() []byte { return nil }

func (f *BitfinexFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://api-pub.bitfinex.com/ws/2", nil
}

// Normalize maps tBTCUSD → BTC-USD, tTESTBTC:TESTUSD → TESTBTC-TESTUSD,
// and perpetuals tBTCF0:USTF0 → BTC-USDT-PERP (UST is Bitfinex's name for
// USDT). Funding symbols (fUSD) are not instruments.
func (f *BitfinexFeed) Normalize(symbol string) (string, bool) {
	return NormalizeBitfinexSymbol(symbol)
}

// NormalizeBitfinexSymbol is BitfinexFeed.Normalize.
func NormalizeBitfinexSymbol(symbol string) (string, bool) {
	if len(symbol) < 2 || symbol[0] != 't' {
		return symbol, false
	}
	p := symbol[1:]
	var base, quote string
	if i := strings.IndexByte(p, ':'); i >= 0 {
		base, quote = p[:i], p[i+1:]
	} else if len(p) == 6 {
		base, quote = p[:3], p[3:]
	} else {
		return symbol, false
	}
	perp := strings.HasSuffix(base, "F0") && strings.HasSuffix(quote, "F0")
	if perp {
		base, quote = base[:len(base)-2], quote[:len(quote)-2]
	}
	if base == "" || quote == "" || strings.IndexByte(quote, ':') >= 0 {
		return symbol, false
	}
	base, quote = bfxAsset(base), bfxAsset(quote)
	if perp {
		return base + "-" + quote + "-PERP", true
	}
	return base + "-" + quote, true
}

// bfxAsset maps Bitfinex's short asset codes to common ones.
func bfxAsset(a string) string {
	switch a {
	case "UST":
		return "USDT"
	case "TESTUSDT", "TESTUST":
		return "TESTUSDT"
	}
	return a
}

// SubscribeFrames: conf (SEQ_ALL, and OB_CHECKSUM unless NoChecksum), then
// one subscribe per channel: trades → trades, quotes → ticker, book → book
// P0/F0/len 100, funding → status deriv:<symbol>.
func (f *BitfinexFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	flags := bitfinexSeqAll
	if !f.cfg.NoChecksum {
		flags |= bitfinexChecksum
	}
	out := [][]byte{fmt.Appendf(nil, `{"event":"conf","flags":%d}`, flags)}
	for _, s := range subs {
		fr, err := bfxSubFrame(s)
		if err != nil {
			return nil, err
		}
		out = append(out, fr)
	}
	return out, nil
}

func bfxSubFrame(s Subscription) ([]byte, error) {
	sym, err := json.Marshal(s.Symbol)
	if err != nil || s.Symbol == "" {
		return nil, fmt.Errorf("bitfinex: bad symbol %q", s.Symbol)
	}
	switch s.Channel {
	case ChanTrades:
		return fmt.Appendf(nil, `{"event":"subscribe","channel":"trades","symbol":%s}`, sym), nil
	case ChanQuotes:
		return fmt.Appendf(nil, `{"event":"subscribe","channel":"ticker","symbol":%s}`, sym), nil
	case ChanBook:
		return fmt.Appendf(nil, `{"event":"subscribe","channel":"book","symbol":%s,"prec":"P0","freq":"F0","len":"%d"}`, sym, bitfinexBookLen), nil
	case ChanFunding:
		key, _ := json.Marshal("deriv:" + s.Symbol)
		return fmt.Appendf(nil, `{"event":"subscribe","channel":"status","key":%s}`, key), nil
	}
	return nil, fmt.Errorf("bitfinex: channel %q is not supported (trades, quotes, book, funding)", s.Channel)
}

func (f *BitfinexFeed) Reset() {
	f.reset()
	clear(f.chans)
	f.seq, f.haveSeq = 0, false
}

func (f *BitfinexFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("bitfinex: no REST snapshots (books come over the websocket)")
}

// Handle decodes one frame. Events ({"event":...}) maintain the channel
// map; channel messages are [chanId, payload..., seq].
func (f *BitfinexFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		switch root.typ {
		case simdjson.TypeObject:
			return out, f.event(root)
		case simdjson.TypeArray:
			return f.message(recv, root, out)
		}
		return out, perrf(ReasonBadType, "root")
	})
}

var bitfinexEventKeys = []string{"event", "channel", "symbol", "key", "chanId"}

func (f *BitfinexFeed) event(root *jfield) *ParseError {
	e := f.ev[:]
	var r fieldReader
	if r.objectFields(root, bitfinexEventKeys, e, "root"); r.err != nil {
		return r.err
	}
	var str [4][]byte // event, channel, symbol, key
	for i := range str {
		if e[i].typ != simdjson.TypeNone {
			str[i] = r.str(&e[i], bitfinexEventKeys[i])
		}
	}
	ev, channel, symbol, key := str[0], str[1], str[2], str[3]
	var chanID int64
	haveChan := e[4].typ != simdjson.TypeNone
	if haveChan {
		chanID = r.intJSON(&e[4], "chanId")
	}
	if r.err != nil {
		return r.err
	}
	switch string(ev) {
	case "subscribed":
		if !haveChan {
			return perrf(ReasonMissingField, "chanId")
		}
		return f.subscribed(chanID, string(channel), symbol, key)
	case "unsubscribed":
		if haveChan {
			delete(f.chans, chanID)
		}
		f.m.Ignored("unsubscribed")
	case "":
		return perrf(ReasonMissingField, "event")
	case "error":
		f.log.Warn("bitfinex error event", "channel", string(channel), "symbol", string(symbol))
		f.m.Ignored("error")
	default: // info, conf, pong
		f.m.Ignored(labelOf(ev, "info", "conf", "pong"))
	}
	return nil
}

func (f *BitfinexFeed) subscribed(id int64, channel string, symbol, key []byte) *ParseError {
	c := &bfxChan{}
	var sub Subscription
	switch channel {
	case "trades":
		c.kind, sub.Channel = bfxTrades, ChanTrades
	case "ticker":
		c.kind, sub.Channel = bfxTicker, ChanQuotes
	case "book":
		c.kind, sub.Channel = bfxBook, ChanBook
	case "status":
		c.kind, sub.Channel = bfxStatus, ChanFunding
		k, ok := strings.CutPrefix(string(key), "deriv:")
		if !ok {
			f.m.Ignored("status_other")
			return nil
		}
		symbol = []byte(k)
	default:
		f.m.Ignored("subscribed_other")
		return nil
	}
	s, perr := f.sym(symbol, "symbol")
	if perr != nil {
		return perr
	}
	c.s = s
	sub.Symbol = s.symbol
	c.sub, _ = bfxSubFrame(sub)
	if c.kind == bfxBook {
		c.bk = f.book(s)
		c.bk.depth = bitfinexBookLen
		c.bk.chanID = id
	}
	f.chans[id] = c
	return nil
}

// message handles [chanId, ...]. With SEQ_ALL the last element is the
// connection's sequence number.
func (f *BitfinexFeed) message(recv int64, root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
	ai, perr := root.arrayIter("root")
	if perr != nil {
		return out, perr
	}
	var el [5]jfield
	n := 0
	for {
		e, ok := next(&ai)
		if !ok {
			break
		}
		if n == len(el) {
			return out, perrf(ReasonBadType, "root")
		}
		el[n] = e
		n++
	}
	if n < 2 {
		return out, perrf(ReasonMissingField, "payload")
	}
	chanID, perr := el[0].intJSON("chanId")
	if perr != nil {
		return out, perr
	}
	// The payload's shape: "hb" | "te"/"tu" [trade] | "cs" crc | [data].
	min := 2
	var tag []byte
	if el[1].typ == simdjson.TypeString {
		tag, _ = el[1].it.StringBytes()
		if string(tag) != "hb" {
			min = 3
		}
	} else if el[1].typ != simdjson.TypeArray {
		return out, perrf(ReasonBadType, "payload")
	}
	if n < min {
		return out, perrf(ReasonMissingField, "payload")
	}
	var seq uint64
	haveSeq := false
	if n > min {
		v, perr := el[min].intJSON("seq")
		if perr != nil {
			return out, perr
		}
		if v < 0 {
			return out, perrf(ReasonBadNumber, "seq")
		}
		seq, haveSeq = uint64(v), true
	}
	c := f.chans[chanID]

	// Decode before touching any state, so a malformed frame changes nothing.
	var pl bfxPayload
	if c != nil {
		if perr := f.decode(c, tag, &el[1], &el[2], &pl); perr != nil {
			return out, perr
		}
	}
	if haveSeq {
		if f.haveSeq && seq != f.seq+1 {
			out = f.seqGap(recv, seq, out)
		}
		f.seq, f.haveSeq = seq, true
	}
	if c == nil {
		f.m.Ignored("unknown_channel")
		return out, nil
	}
	return f.apply(recv, c, chanID, seq, &pl, out)
}

// bfxPayload is one decoded channel message.
type bfxPayload struct {
	what     int // bfxHB, ...
	trade    [4]float64
	quote    [4]float64
	funding  [4]float64 // time ms, funding rate, mark price, spot price
	checksum int32
}

const (
	bfxHB = iota
	bfxIgnored
	bfxTrade
	bfxQuote
	bfxBookSnap
	bfxBookDelta
	bfxCS
	bfxFunding
)

func (f *BitfinexFeed) decode(c *bfxChan, tag []byte, p1, p2 *jfield, pl *bfxPayload) *ParseError {
	switch string(tag) {
	case "hb":
		pl.what = bfxHB
		return nil
	case "tu", "fte", "ftu":
		// tu repeats te (with the same id) a moment later: te is taken.
		pl.what = bfxIgnored
		return nil
	case "te":
		if c.kind != bfxTrades {
			return perrf(ReasonBadType, "te")
		}
		pl.what = bfxTrade
		if perr := bfxNumbers(p2, pl.trade[:], "trade"); perr != nil {
			return perr
		}
		id, ms, amt, px := pl.trade[0], pl.trade[1], pl.trade[2], pl.trade[3]
		if id < 0 || id != math.Trunc(id) || id > 1<<53 || px <= 0 || amt == 0 || ms < 0 || ms > math.MaxInt64/1e6 {
			return perrf(ReasonBadNumber, "trade")
		}
		return nil
	case "cs":
		if c.kind != bfxBook {
			return perrf(ReasonBadType, "cs")
		}
		v, perr := p2.intJSON("checksum")
		if perr != nil {
			return perr
		}
		if v < math.MinInt32 || v > math.MaxInt32 {
			return perrf(ReasonBadNumber, "checksum")
		}
		pl.what, pl.checksum = bfxCS, int32(v)
		return nil
	case "":
	default:
		return perrf(ReasonBadType, "payload")
	}
	switch c.kind {
	case bfxTrades:
		pl.what = bfxIgnored // the snapshot of past trades: not live trades
		_, perr := p1.arrayIter("trades")
		return perr
	case bfxTicker:
		pl.what = bfxQuote
		if perr := bfxNumbers(p1, pl.quote[:], "ticker"); perr != nil {
			return perr
		}
		if pl.quote[1] < 0 || pl.quote[3] < 0 {
			return perrf(ReasonBadNumber, "ticker")
		}
		return nil
	case bfxStatus:
		pl.what = bfxFunding
		return f.decodeStatus(p1, pl)
	case bfxBook:
		return f.decodeBook(p1, pl)
	}
	return nil
}

// bfxNumbers reads the first len(dst) elements of the array at it, which
// must all be numbers.
func bfxNumbers(fl *jfield, dst []float64, field string) *ParseError {
	var r fieldReader
	ai := r.elems(fl, field)
	for i := 0; i < len(dst) && r.err == nil; i++ {
		if !ai.advance() {
			return perrf(ReasonMissingField, field)
		}
		dst[i] = r.numJSON(&ai, field)
	}
	return r.err
}

// decodeStatus reads [MTS, _, DERIV_PRICE, SPOT_PRICE, _, INSURANCE, _,
// NEXT_FUNDING_MTS, NEXT_FUNDING_ACCRUED, NEXT_FUNDING_STEP, _,
// CURRENT_FUNDING, _, _, MARK_PRICE, ...].
func (f *BitfinexFeed) decodeStatus(fl *jfield, pl *bfxPayload) *ParseError {
	var r fieldReader
	ai := r.elems(fl, "status")
	for i := 0; i <= 14 && r.err == nil; i++ {
		if !ai.advance() {
			return perrf(ReasonMissingField, "status")
		}
		var v float64
		switch i {
		case 0:
			ms := r.intJSON(&ai, "status")
			r.msToNS(ms, "status")
			v = float64(ms)
		case 3, 11, 14:
			v, _ = r.numOrNull(&ai, "status")
		default:
			continue
		}
		if r.err != nil {
			break
		}
		switch i {
		case 0:
			pl.funding[0] = v
		case 11:
			pl.funding[1] = v
		case 14:
			pl.funding[2] = v
		case 3:
			pl.funding[3] = v
		}
	}
	return r.err
}

// decodeBook reads a snapshot [[price,count,amount],...] or one update
// [price,count,amount] into f.sl. count 0 removes the level: amount 1 from
// the bids, -1 from the asks; otherwise the amount's sign gives the side.
func (f *BitfinexFeed) decodeBook(fl *jfield, pl *bfxPayload) *ParseError {
	ai, perr := fl.elems("book")
	if perr != nil {
		return perr
	}
	f.sl = f.sl[:0]
	first := ai.it
	t := first.Advance()
	if t == simdjson.TypeArray || t == simdjson.TypeNone {
		pl.what = bfxBookSnap
		for {
			if !ai.advance() {
				return nil
			}
			if perr := f.bookLevel(&ai); perr != nil {
				return perr
			}
		}
	}
	pl.what = bfxBookDelta
	return f.bookLevel(fl)
}

func (f *BitfinexFeed) bookLevel(fl *jfield) *ParseError {
	var v [3]float64
	if perr := bfxNumbers(fl, v[:], "level"); perr != nil {
		return perr
	}
	px, count, amt := v[0], v[1], v[2]
	if px <= 0 || count < 0 || amt == 0 {
		return perrf(ReasonBadNumber, "level")
	}
	side := market.SideBuy
	if amt < 0 {
		side = market.SideSell
	}
	sz := math.Abs(amt)
	if count == 0 {
		sz = 0
	}
	f.sl = append(f.sl, seqLevel{side: side, px: px, sz: sz})
	return nil
}

// seqGap handles a break in the connection's sequence: any channel may have
// lost a message, so every instrument gets one gap tick and every book is
// resubscribed.
func (f *BitfinexFeed) seqGap(recv int64, seq uint64, out []market.Tick) []market.Tick {
	clear(f.gapSeen)
	// Channel ids in order, so the gap ticks come out the same way each time.
	f.ids = f.ids[:0]
	for id := range f.chans {
		f.ids = append(f.ids, id)
	}
	slices.Sort(f.ids)
	for _, id := range f.ids {
		c := f.chans[id]
		if c.kind == bfxBook {
			if c.bk.chanID != id || c.bk.resync {
				continue
			}
			if !c.bk.synced {
				// Nothing published yet: a resubscription is enough.
				f.resubscribe(c, id)
				continue
			}
			out = f.desync(c.bk, "gap", recv, seq, out)
			f.gapSeen[c.s.instrument] = true
			f.resubscribe(c, id)
		}
	}
	for _, id := range f.ids {
		c := f.chans[id]
		if c.kind != bfxBook && !f.gapSeen[c.s.instrument] {
			f.gapSeen[c.s.instrument] = true
			out = f.gapTick(out, c.s, recv, 0, seq)
		}
	}
	return out
}

func (f *BitfinexFeed) resubscribe(c *bfxChan, id int64) {
	c.bk.chanID = 0 // frames still arriving on the old channel are ignored
	c.bk.synced, c.bk.resync = false, true
	f.outbox = append(f.outbox, fmt.Appendf(nil, `{"event":"unsubscribe","chanId":%d}`, id), c.sub)
}

func (f *BitfinexFeed) apply(recv int64, c *bfxChan, id int64, seq uint64, pl *bfxPayload, out []market.Tick) ([]market.Tick, *ParseError) {
	switch pl.what {
	case bfxHB:
		return out, nil
	case bfxIgnored:
		f.m.Ignored("bitfinex_other")
		return out, nil
	case bfxTrade:
		ms, amt, px := pl.trade[1], pl.trade[2], pl.trade[3]
		t := f.newTick(c.s, market.KindTrade, recv, int64(ms)*1e6)
		t.Side = market.SideBuy // amount > 0: the taker bought
		if amt < 0 {
			t.Side = market.SideSell
		}
		t.Price, t.Size, t.TradeID, t.Seq = px, math.Abs(amt), uint64(pl.trade[0]), seq
		t.ComputeID()
		return append(out, t), nil
	case bfxQuote:
		t := f.newTick(c.s, market.KindQuote, recv, 0)
		t.BidPx, t.BidSz, t.AskPx, t.AskSz = pl.quote[0], pl.quote[1], pl.quote[2], pl.quote[3]
		t.Seq = seq
		t.ComputeID()
		return append(out, t), nil
	case bfxFunding:
		t := f.newTick(c.s, market.KindFunding, recv, int64(pl.funding[0])*1e6)
		// Price: the current funding rate; BidPx: the mark price; AskPx:
		// the spot (index) price.
		t.Price, t.BidPx, t.AskPx, t.Seq = pl.funding[1], pl.funding[2], pl.funding[3], seq
		t.ComputeID()
		return append(out, t), nil
	}
	bk := c.bk
	if bk.chanID != id {
		return out, nil // an old channel of a book being resubscribed
	}
	switch pl.what {
	case bfxBookSnap:
		out2, ok := f.replaceBook(bk, f.sl, recv, 0, seq, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, seq, out)
			f.resubscribe(c, id)
			return out, nil
		}
		return out2, nil
	case bfxBookDelta:
		if !bk.synced {
			return out, nil
		}
		n := len(out)
		out, ok := f.applyDelta(bk, f.sl, recv, 0, seq, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, seq, out[:n])
			f.resubscribe(c, id)
		}
		return out, nil
	case bfxCS:
		if !bk.synced || f.cfg.NoChecksum {
			return out, nil
		}
		if got := f.checksum(bk); got != pl.checksum {
			f.log.Warn("bitfinex checksum mismatch", "symbol", bk.sym.symbol, "want", pl.checksum, "got", got)
			out = f.desync(bk, "checksum", recv, seq, out)
			f.resubscribe(c, id)
		}
	}
	return out, nil
}

// checksum is the signed CRC32 of "bid0px:bid0amt:ask0px:-ask0amt:..." over
// the top 25 levels, numbers written as JavaScript writes them.
func (f *BitfinexFeed) checksum(bk *bookState) int32 {
	return bitfinexChecksumOf(&bk.Book, &f.csbuf)
}

func bitfinexChecksumOf(b *Book, buf *[]byte) int32 {
	bids, asks := b.Side(market.SideBuy), b.Side(market.SideSell)
	s := (*buf)[:0]
	for i := 0; i < bitfinexCSLevels; i++ {
		if i < len(bids) {
			s = appendJSNumber(s, bids[i].Px)
			s = append(s, ':')
			s = appendJSNumber(s, bids[i].Sz)
			s = append(s, ':')
		}
		if i < len(asks) {
			s = appendJSNumber(s, asks[i].Px)
			s = append(s, ':')
			s = appendJSNumber(s, -asks[i].Sz)
			s = append(s, ':')
		}
	}
	if len(s) > 0 {
		s = s[:len(s)-1]
	}
	*buf = s
	return int32(crc32.ChecksumIEEE(s))
}
