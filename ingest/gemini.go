package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/minio/simdjson-go"
)

// Gemini market data v2 (wss://api.gemini.com/v2/marketdata): the l2
// subscription gives l2_updates (the first for a symbol, carrying "trades",
// is the full book; later ones are changes with absolute quantities) and
// trade messages. v2 has no sequence numbers; where a frame carries
// socket_sequence (the v1 format) it must increase by one per message.
//
// Docs: https://docs.gemini.com/websocket/market-data/v2/about

func init() {
	RegisterFeed("gemini", func(cfg FeedConfig) (Feed, error) { return NewGeminiFeed(cfg), nil })
}

// GeminiFeed is the Gemini market data v2 Feed.
type GeminiFeed struct {
	feedBase
	sockSeq  uint64
	haveSock bool
}

// NewGeminiFeed returns a Gemini Feed.
func NewGeminiFeed(cfg FeedConfig) *GeminiFeed {
	return &GeminiFeed{feedBase: newFeedBase("gemini", cfg)}
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
	f.resetBase()
	f.sockSeq, f.haveSock = 0, false
}

func (f *GeminiFeed) HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []Tick) ([]Tick, error) {
	return out, fmt.Errorf("gemini: no REST snapshots (the l2 subscription sends the book)")
}

type geminiMsg struct {
	typ, symbol []byte
	changes     simdjson.Iter
	hasChanges  bool
	hasTrades   bool
	ts          int64
	eventID     uint64
	px, qty     float64
	side        Side
	sockSeq     uint64
	hasSock     bool
}

func (f *GeminiFeed) Handle(recv int64, frame []byte, out []Tick) ([]Tick, error) {
	return f.run(frame, out, func(pj *simdjson.ParsedJson, out []Tick) ([]Tick, *ParseError) {
		var it simdjson.Iter
		if rootOf(pj, &it) != simdjson.TypeObject {
			return out, perrf(ReasonBadType, "root")
		}
		var obj simdjson.Object
		if perr := objectOf(&it, &obj, "root"); perr != nil {
			return out, perr
		}
		var m geminiMsg
		var el simdjson.Iter
		var pxb, qtyb, sideb []byte
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
			case "symbol":
				m.symbol, perr = jstr(&el, "symbol")
			case "changes":
				m.changes, m.hasChanges = el, true
			case "trades":
				m.hasTrades = true
			case "timestamp":
				m.ts, perr = jint(&el, "timestamp")
			case "event_id":
				m.eventID, perr = juint(&el, "event_id")
			case "price":
				pxb, perr = jstr(&el, "price")
			case "quantity":
				qtyb, perr = jstr(&el, "quantity")
			case "side":
				sideb, perr = jstr(&el, "side")
			case "socket_sequence":
				m.sockSeq, perr = juint(&el, "socket_sequence")
				m.hasSock = true
			}
			if perr != nil {
				return out, perr
			}
		}
		switch string(m.typ) {
		case "l2_updates":
			return f.l2(recv, &m, out)
		case "trade":
			var perr *ParseError
			if m.px, perr = decString(pxb, "price"); perr != nil {
				return out, perr
			}
			if m.qty, perr = decString(qtyb, "quantity"); perr != nil {
				return out, perr
			}
			if m.side, perr = sideWord(sideb); perr != nil {
				return out, perr
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
func (f *GeminiFeed) sequence(recv int64, m *geminiMsg, out []Tick) []Tick {
	if !m.hasSock {
		return out
	}
	if f.haveSock && m.sockSeq != f.sockSeq+1 {
		for _, bk := range f.sortedBooks() {
			if bk.state == bookLive {
				out = f.desync(bk, "gap", recv, m.sockSeq, out)
				f.resubscribe(bk)
			}
		}
	}
	f.sockSeq, f.haveSock = m.sockSeq, true
	return out
}

func (f *GeminiFeed) resubscribe(bk *bookB) {
	syms := []string{bk.s.sym}
	f.outbox = append(f.outbox, geminiL2Frame("unsubscribe", syms), geminiL2Frame("subscribe", syms))
}

func (f *GeminiFeed) trade(recv int64, m *geminiMsg, out []Tick) ([]Tick, *ParseError) {
	s, perr := f.symbol(m.symbol, "symbol", NormalizeGeminiSymbol)
	if perr != nil {
		return out, perr
	}
	ts, perr := msToNS(m.ts, "timestamp")
	if perr != nil {
		return out, perr
	}
	if m.px <= 0 || m.qty <= 0 {
		return out, perrf(ReasonBadNumber, "price")
	}
	out = f.sequence(recv, m, out)
	t := f.tick(s, KindTrade, recv, ts)
	t.Side, t.Price, t.Size, t.TradeID, t.Seq = m.side, m.px, m.qty, m.eventID, m.sockSeq
	t.ComputeID()
	return append(out, t), nil
}

// l2 applies an l2_updates frame. Its "trades" (recent trades sent with the
// initial book) are history, not live trades, and are not published.
func (f *GeminiFeed) l2(recv int64, m *geminiMsg, out []Tick) ([]Tick, *ParseError) {
	s, perr := f.symbol(m.symbol, "symbol", NormalizeGeminiSymbol)
	if perr != nil {
		return out, perr
	}
	if !m.hasChanges {
		return out, perrf(ReasonMissingField, "changes")
	}
	ai, perr := arrayIter(&m.changes, "changes")
	if perr != nil {
		return out, perr
	}
	f.lv = f.lv[:0]
	for ai.Advance() != simdjson.TypeNone {
		li, perr := arrayIter(&ai, "changes")
		if perr != nil {
			return out, perr
		}
		var l lvB
		for i := 0; i < 3; i++ {
			if li.Advance() == simdjson.TypeNone {
				return out, perrf(ReasonMissingField, "changes")
			}
			switch i {
			case 0:
				b, perr := jstr(&li, "changes")
				if perr != nil {
					return out, perr
				}
				if l.side, perr = sideWord(b); perr != nil {
					return out, perr
				}
			case 1:
				if l.px, perr = jdec(&li, "changes"); perr != nil {
					return out, perr
				}
				if l.px == 0 {
					return out, perrf(ReasonBadNumber, "changes")
				}
			case 2:
				if l.sz, perr = jdec(&li, "changes"); perr != nil {
					return out, perr
				}
			}
		}
		f.lv = append(f.lv, l)
	}
	out = f.sequence(recv, m, out)
	bk := f.book(s)
	if m.hasTrades {
		f.m.Ignored("initial_trades")
		out2, ok := f.applySnapshot(bk, f.lv, recv, 0, m.sockSeq, out)
		if !ok {
			out = f.desync(bk, "crossed", recv, m.sockSeq, out)
			f.resubscribe(bk)
			return out, nil
		}
		return out2, nil
	}
	if bk.state != bookLive {
		return out, nil // withheld until the (re)subscription's book arrives
	}
	n := len(out)
	out, ok := f.applyDelta(bk, f.lv, recv, 0, m.sockSeq, out)
	if !ok {
		out = f.desync(bk, "crossed", recv, m.sockSeq, out[:n])
		f.resubscribe(bk)
	}
	return out, nil
}
