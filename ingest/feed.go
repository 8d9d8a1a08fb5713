package ingest

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signald-dev/signald/market"
)

// Channel is a normalized market-data channel.
type Channel string

// Channels a Feed can subscribe to. A venue supports a subset.
const (
	ChanTrades       Channel = "trades"       // market.KindTrade
	ChanQuotes       Channel = "quotes"       // market.KindQuote (best bid and offer)
	ChanBook         Channel = "book"         // market.KindSnapshot then market.KindBookDelta
	ChanFunding      Channel = "funding"      // market.KindFunding (and mark price where sent)
	ChanLiquidations Channel = "liquidations" // market.KindLiquidation
)

// Subscription is one channel of one venue symbol.
type Subscription struct {
	Channel Channel
	Symbol  string // the venue's own symbol: "BTCUSDT", "BTC-USD", "XBT/USD", "tBTCUSD"
}

// Limits are a venue's connection rules; the connection manager spreads
// subscriptions over connections and paces them to respect them.
type Limits struct {
	// MaxSubsPerConn is the most subscriptions one connection may carry;
	// 0 means no limit.
	MaxSubsPerConn int
	// SubscribeRate is how many subscribe frames per second a connection may
	// send; 0 means no limit.
	SubscribeRate float64
	// PingInterval is how often to send the venue's application-level ping
	// (Feed.Ping); 0 when the venue needs none.
	PingInterval time.Duration
	// Silence is how long a connection may stay without any frame before the
	// watchdog reconnects it; 0 selects the manager's default (30s).
	Silence time.Duration
}

// SnapshotRequest asks the connection manager to fetch a book snapshot over
// REST, for venues whose websocket does not send one (Binance, KuCoin,
// Gate.io, Bitstamp).
type SnapshotRequest struct {
	Symbol string
	URL    string
}

// Feed is one venue's websocket protocol: where to connect, what to send,
// and how frames become ticks while the venue's books are kept in sync. The
// connection manager drives a Feed live; replay and `signald decode` drive
// the same Handle with recorded frames. A Feed is used by one goroutine at a
// time (one Feed per connection).
//
// Books: Handle applies snapshots and deltas to its books and checks the
// venue's sequence numbers, checksums (on by default where the venue sends
// them) and crossing. When a book is found out of sync it appends one
// market.KindGap tick for the instrument, withholds that instrument's book ticks
// until a fresh snapshot has been applied, counts the event
// (signald_ingest_book_resyncs_total{venue,reason}) and asks for the
// snapshot through Outbox (resubscribe frames) or SnapshotRequests (REST).
// Trades and quotes are not withheld: they do not depend on the book.
type Feed interface {
	// Venue is the name stamped on ticks, e.g. "kraken".
	Venue() string
	// Limits are the venue's connection rules.
	Limits() Limits
	// Normalize maps a venue symbol to the normalized instrument
	// (BASE-QUOTE, BASE-QUOTE-PERP, BASE-QUOTE-<YYYYMMDD>).
	Normalize(symbol string) (instrument string, ok bool)
	// URL is the websocket endpoint for a connection carrying subs.
	URL(subs []Subscription) (string, error)
	// SubscribeFrames are the frames to send, in order, after connecting.
	SubscribeFrames(subs []Subscription) ([][]byte, error)
	// Ping is the application-level ping frame sent every
	// Limits.PingInterval; nil when the venue needs none.
	Ping() []byte
	// Handle decodes one frame and appends the ticks to publish. Frames
	// without market data (subscription acks, heartbeats, pongs) append
	// nothing and return nil. A malformed frame returns a *ParseError
	// (wrapping ErrMalformed) and appends nothing; the caller counts and
	// skips it.
	Handle(recvNS int64, frame []byte, out []market.Tick) ([]market.Tick, error)
	// Outbox appends the frames the feed wants sent now (answers to server
	// pings, resubscriptions that resync a book) and forgets them.
	Outbox(dst [][]byte) [][]byte
	// SnapshotRequests appends the REST snapshots the feed needs and
	// forgets them.
	SnapshotRequests(dst []SnapshotRequest) []SnapshotRequest
	// HandleSnapshot applies a REST snapshot body fetched for req.
	HandleSnapshot(recvNS int64, req SnapshotRequest, body []byte, out []market.Tick) ([]market.Tick, error)
	// Reset forgets all book and sequence state; the manager calls it after
	// a disconnect, before reconnecting (and publishes the gap itself).
	Reset()
}

// FeedConfig configures a Feed. The zero value works.
type FeedConfig struct {
	// Metrics counts frames, malformed frames, ticks and resyncs; nil counts
	// nothing.
	Metrics *Metrics
	// Logger logs a sample of malformed frames and each resync; nil discards.
	Logger *slog.Logger
	// ForceFallback uses the portable JSON path even where simdjson-go is
	// supported.
	ForceFallback bool
	// NoChecksum turns off book checksum validation (on by default where the
	// venue sends checksums).
	NoChecksum bool
	// Endpoint overrides the websocket URL (tests, proxies); default the
	// venue's public endpoint.
	Endpoint string
	// RESTEndpoint overrides the REST base URL used for snapshots.
	RESTEndpoint string
}

// Venue names: the name a venue's ticks carry and NewFeed's key.
const (
	VenueBinance     = "binance"      // Binance spot
	VenueBinanceUSDM = "binance-usdm" // Binance USD-M futures
	VenueBitfinex    = "bitfinex"
	VenueBitmex      = "bitmex"
	VenueBitstamp    = "bitstamp"     // websocket v2
	VenueBybit       = "bybit"        // Bybit v5 spot
	VenueBybitLinear = "bybit-linear" // Bybit v5 USDT/USDC perpetuals and futures
	VenueCoinbase    = "coinbase"     // Coinbase Exchange
	VenueDeribit     = "deribit"
	VenueGateio      = "gateio"
	VenueGemini      = "gemini" // market data v2
	VenueHuobi       = "huobi"  // HTX
	VenueKraken      = "kraken" // spot
	VenueKucoin      = "kucoin"
	VenueOKX         = "okx" // v5 public websocket
)

// VenueInfo describes one venue's feed; venue files register theirs from
// init (RegisterVenue), and NewFeed, FeedVenues and replay's venue
// detection all read the one registry.
type VenueInfo struct {
	// Name is the venue name (one of the Venue constants).
	Name string
	// Cryptofeed are the exchange names cryptofeed gives the venue's
	// capture files (<EXCHANGE>.ws.<n>.<m>, <EXCHANGE>.http.<n>.<m>); none
	// when no capture is read as this venue.
	Cryptofeed []string
	// Channels are the channels the venue supports.
	Channels []Channel
	// New returns a new Feed of the venue.
	New func(FeedConfig) (Feed, error)
}

var (
	venuesMu sync.Mutex
	venues   = map[string]VenueInfo{}
)

// RegisterVenue makes a venue known to NewFeed, FeedVenues and replay. It
// panics when the name is empty, has no constructor or is taken, or when a
// cryptofeed name is claimed twice.
func RegisterVenue(v VenueInfo) {
	venuesMu.Lock()
	defer venuesMu.Unlock()
	if v.Name == "" || v.New == nil {
		panic("ingest: venue registered without a name or a constructor")
	}
	if _, dup := venues[v.Name]; dup {
		panic("ingest: feed " + v.Name + " registered twice")
	}
	for _, o := range venues {
		for _, a := range o.Cryptofeed {
			if slices.Contains(v.Cryptofeed, a) {
				panic("ingest: cryptofeed name " + a + " registered for " + o.Name + " and " + v.Name)
			}
		}
	}
	venues[v.Name] = v
}

// LookupVenue returns the registered venue of that name.
func LookupVenue(name string) (VenueInfo, bool) {
	venuesMu.Lock()
	defer venuesMu.Unlock()
	v, ok := venues[name]
	return v, ok
}

// Venues lists the registered venues, sorted by name.
func Venues() []VenueInfo {
	venuesMu.Lock()
	defer venuesMu.Unlock()
	out := make([]VenueInfo, 0, len(venues))
	for _, v := range venues {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b VenueInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// NewFeed returns a new Feed for venue.
func NewFeed(venue string, cfg FeedConfig) (Feed, error) {
	v, ok := LookupVenue(venue)
	if !ok {
		return nil, fmt.Errorf("unknown venue %q (known: %v)", venue, FeedVenues())
	}
	return v.New(cfg)
}

// FeedVenues lists the registered venue names, sorted.
func FeedVenues() []string {
	vs := Venues()
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// GapTick returns the market.KindGap tick that marks data missing for instrument:
// a book published before it is invalid until the next snapshot.
//
// How a consumer rebuilds a book from a venue's ticks: within one published
// batch (one frame, or one REST snapshot with the buffered deltas applied
// after it), the first market.KindSnapshot tick of an instrument starts its book
// afresh and the batch's other snapshot ticks fill it; market.KindBookDelta ticks
// set the absolute size of a level (0 removes it); market.KindGap invalidates the
// book until the next snapshot. Feeds never publish a delta for a book
// that is out of sync.
func GapTick(venue, instrument, symbol string, recvNS int64) market.Tick {
	t := market.Tick{Venue: venue, Instrument: instrument, Symbol: symbol, Kind: market.KindGap, RecvTS: recvNS, IngestTS: recvNS}
	t.ComputeID()
	return t
}

// Resyncer is implemented by Feeds that can resynchronize one book on
// demand: the connection manager calls it when it had to drop book ticks of
// the instrument (queue overflow), so the book is rebuilt from a fresh
// snapshot instead of staying wrong.
type Resyncer interface {
	// Resync marks symbol's book out of sync (a market.KindGap tick is appended
	// to out) and asks for a fresh snapshot.
	Resync(recvNS int64, symbol, reason string, out []market.Tick) []market.Tick
}

// SnapshotSymbolParser is implemented by Feeds that can tell which venue
// symbol a REST snapshot URL is for. Replay uses it for recorded snapshot
// lines; without it the symbol is the URL's symbol=, currency_pair= or
// instrument_name= query parameter, else its last path segment.
type SnapshotSymbolParser interface {
	SnapshotSymbol(url string) (symbol string, ok bool)
}
