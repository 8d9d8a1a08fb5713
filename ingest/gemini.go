package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// Gemini market data v2 (wss://api.gemini.com/v2/marketdata): the l2
// subscription gives l2_updates (the first for a symbol, carrying "trades",
// is the full book; later ones are changes with absolute quantities) and
// trade messages. v2 has no sequence numbers; where a frame carries
// socket_sequence (the v1 format) it must increase by one per message.
//
// Docs: https://docs.gemini.com/websocket/market-data/v2/about

func init() {
	RegisterVenue(VenueInfo{
		Name:       VenueGemini,
		Cryptofeed: []string{"GEMINI"},
		Channels:   []Channel{ChanTrades, ChanBook},
		New:        func(cfg FeedConfig) (Feed, error) { return NewGeminiFeed(cfg), nil },
	})
}

// GeminiFeed is the Gemini market data v2 Feed.
type GeminiFeed struct {
	feedCore
	sockSeq  uint64
	haveSock bool
	r        [10]jfield // root members
}

// NewGeminiFeed returns a Gemini Feed.
func NewGeminiFeed(cfg FeedConfig) *GeminiFeed {
	return &GeminiFeed{feedCore: newFeedCore(VenueGemini, cfg, NormalizeGeminiSymbol)}
}

// Limits: Gemini documents no per-connection symbol cap for v2 market data;
// public APIs allow 120 requests a minute, so subscriptions are paced at one
// a second. The server sends a heartbeat every 5 s.
func (f *GeminiFeed) Limits() Limits {
	return Limits{SubscribeRate: 1, Silence: 15 * time.Second}
}

func (f *GeminiFeed) Ping() []byte { return nil }

func (f *GeminiFeed) URL(subs []Subscription) (string, error) {
	if f.cfg.Endpoint != "" {
		return f.cfg.Endpoint, nil
	}
	return "wss://api.gemini.com/v2/marketdata", nil
}

func (f *GeminiFeed) Normalize(symbol string) (string, bool) { return NormalizeGeminiSymbol(symbol) }

var geminiQuotes = []string{"GUSD", "USDT", "USDC", "USD", "GBP", "EUR", "SGD", "AUD", "CAD", "BTC", "ETH", "LTC", "BCH", "DAI", "FIL"}

// NormalizeGeminiSymbol maps BTCUSD → BTC-USD, ETHBTC → ETH-BTC and
// perpetuals BTCGUSDPERP → BTC-GUSD-PERP (case-insensitive).
func NormalizeGeminiSymbol(symbol string) (string, bool) {
	s := strings.ToUpper(symbol)
	perp := false
	if p, ok := strings.CutSuffix(s, "PERP"); ok {
		s, perp = p, true
	}
	for _, q := range geminiQuotes {
		if len(s) > len(q) && strings.HasSuffix(s, q) {
			inst := s[:len(s)-len(q)] + "-" + q
			if perp {
				inst += "-PERP"
			}
			return inst, true
		}
	}
	return symbol, false
}

// SubscribeFrames: one l2 subscription for the symbols of trades and book
// subscriptions (l2 carries both).
func (f *GeminiFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var syms []string
	seen := map[string]bool{}
	for _, s := range subs {
		if s.Channel != ChanTrades && s.Channel != ChanBook {
			return nil, fmt.Errorf("gemini: channel %q is not supported (trades, book)", s.Channel)
		}
		if s.Symbol == "" {
			return nil, fmt.Errorf("gemini: empty symbol")
		}
		if !seen[s.Symbol] {
			seen[s.Symbol] = true
			syms = append(syms, s.Symbol)
		}
	}
	if len(syms) == 0 {
		return nil, nil
	}
	return [][]byte{geminiL2Frame("subscribe", syms)}, nil
}

func geminiL2Frame(typ string, syms []string) []byte {
	b, _ := json.Marshal(syms)
	return fmt.Appendf(nil, `{"type":%q,"subscriptions":[{"name":"l2","symbols":%s}]}`, typ, b)
}

func (f *GeminiFeed) Reset() {
	f.reset()
	f.sockSeq, f.haveSock = 0, false
}

func (f *GeminiFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error) {
	return out, fmt.Errorf("gemini: no REST snapshots (the l2 subscription sends the book)")
}

type geminiMsg struct {
	typ, symbol []byte
	changes     *jfield
	hasTrades   bool
	ts          int64
	eventID     uint64
	px, qty     float64
	side        market.Side
	sockSeq     uint64
	hasSock     bool
}

var geminiKeys = []string{"type", "symbol", "changes", "trades", "timestamp", "event_id", "price", "quantity", "side", "socket_sequence"}

func (f *GeminiFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	return f.run(frame, out, func(root *jfield, out []market.Tick) ([]market.Tick, *ParseError) {
		r := f.r[:]
		var rd fieldReader
		if rd.objectFields(root, geminiKeys, r, "root"); rd.err != nil {
			return out, rd.err
		}
		var m geminiMsg
		var pxb, qtyb, sideb []byte
		for i, b := range [...]*[]byte{&m.typ, &m.symbol, 6: &pxb, 7: &qtyb, 8: &sideb} {
			if b != nil && r[i].typ != simdjson.TypeNone {
				*b = rd.str(&r[i], geminiKeys[i])
			}
		}
		m.changes = &r[2]
		m.hasTrades = r[3].typ != simdjson.TypeNone
		if r[4].typ != simdjson.TypeNone {
			m.ts = rd.intJSON(&r[4], "timestamp")
		}
		if r[5].typ != simdjson.TypeNone {
			m.eventID = rd.seqNum(&r[5], "event_id")
		}
		if m.hasSock = r[9].typ != simdjson.TypeNone; m.hasSock {
			m.sockSeq = rd.seqNum(&r[9], "socket_sequence")
		}
		if rd.err != nil {
			return out, rd.err
		}
		switch string(m.typ) {
		case "l2_updates":
			return f.l2(recv, &m, out)
		case "trade":
			m.px = rd.decString(pxb, "price")
			m.qty = rd.decString(qtyb, "quantity")
			if m.side = rd.sideWord(sideb); rd.err != nil {
				return out, rd.err
			}
			return f.trade(recv, &m, out)
		case "":
			return out, perrf(ReasonMissingField, "type")
		}
		f.m.Ignored(labelOf(m.typ, "heartbeat", "candles_1m_updates", "auction_result", "auction_indicative"))
		return f.sequence(recv, &m, out), nil
	})
}

// sequence checks socket_sequence where the frame has one: a gap desyncs
// every live book of the connection.
func (f *GeminiFeed) sequence(recv int64, m *geminiMsg, out []market.Tick) []market.Tick {
	if !m.hasSock {
		return out
	}
	if f.haveSock && m.sockSeq != f.sockSeq+1 {
		for _, bk := range f.sortedBooks() {
			if bk.synced {
				out = f.desync(bk, "gap", recv, m.sockSeq, out)
				f.resubscribe(bk)
			}
		}
	}
	f.sockSeq, f.haveSock = m.sockSeq, true
	return out
}

func (f *GeminiFeed) resubscribe(bk *bookState) {
	syms := []string{bk.sym.symbol}
	f.outbox = append(f.outbox, geminiL2Frame("unsubscribe", syms), geminiL2Frame("subscribe", syms))
}

func (f *GeminiFeed) trade(recv int64, m *geminiMsg, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := r.symOf(&f.feedCore, m.symbol, "symbol")
	ts := r.msToNS(m.ts, "timestamp")
	if r.err == nil && (m.px <= 0 || m.qty <= 0) {
		r.fail(ReasonBadNumber, "price")
	}
	if r.err != nil {
		return out, r.err
	}
	out = f.sequence(recv, m, out)
	t := f.newTick(s, market.KindTrade, recv, ts)
	t.Side, t.Price, t.Size, t.TradeID, t.Seq = m.side, m.px, m.qty, m.eventID, m.sockSeq
	t.ComputeID()
	return append(out, t), nil
}

// l2 applies an l2_updates frame. Its "trades" (recent trades sent with the
// initial book) are history, not live trades, and are not published.
func (f *GeminiFeed) l2(recv int64, m *geminiMsg, out []market.Tick) ([]market.Tick, *ParseError) {
	var r fieldReader
	s := r.symOf(&f.feedCore, m.symbol, "symbol")
	if r.err == nil && m.changes.typ == simdjson.TypeNone {
		r.fail(ReasonMissingField, "changes")
	}
	ai := r.elems(m.changes, "changes")
	if r.err != nil {
		return out, r.err
	}
	f.sl = f.sl[:0]
	for {
		if !ai.advance() {
			break
		}
		li := r.elems(&ai, "changes")
		var l seqLevel
		for i := 0; i < 3 && r.err == nil; i++ {
			if !li.advance() {
				return out, perrf(ReasonMissingField, "changes")
			}
			switch i {
			case 0:
				l.side = r.sideWord(r.str(&li, "changes"))
			case 1:
				if l.px = r.dec(&li, "changes"); r.err == nil && l.px == 0 {
					r.fail(ReasonBadNumber, "changes")
				}
			case 2:
				l.sz = r.dec(&li, "changes")
			}
		}
		if r.err != nil {
			return out, r.err
		}
		f.sl = append(f.sl, l)
	}
	out = f.sequence(recv, m, out)
	bk := f.book(s)
	if m.hasTrades {
		f.m.Ignored("initial_trades")
		out2, ok := f.replaceBook(bk, f.sl, recv, 0, m.sockSeq, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, m.sockSeq, out)
			f.resubscribe(bk)
			return out, nil
		}
		return out2, nil
	}
	if !bk.synced {
		return out, nil // withheld until the (re)subscription's book arrives
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.sl, recv, 0, m.sockSeq, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, m.sockSeq, out[:n])
		f.resubscribe(bk)
	}
	return out, nil
}
