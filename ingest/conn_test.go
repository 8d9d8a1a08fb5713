package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

// binanceSim is a venue's true books for the scripted server: it makes
// depth events with Binance's ids (U, u, pu) and serves REST snapshots of
// the same books.
type binanceSim struct {
	mu    sync.Mutex
	usdm  bool
	rng   *rand.Rand
	books map[string]*binanceSimBook
}

type binanceSimBook struct {
	truth *refBook
	lastU uint64
}

func newBinanceSim(usdm bool, seed uint64, symbols ...string) *binanceSim {
	s := &binanceSim{usdm: usdm, rng: rand.New(rand.NewPCG(seed, 7)), books: map[string]*binanceSimBook{}}
	for i, sym := range symbols {
		b := &binanceSimBook{truth: newRefBook(), lastU: uint64(1000 * (i + 1))}
		for k := 1; k <= 20; k++ {
			b.truth.set(market.SideBuy, 100-float64(k)*0.5, float64(k))
			b.truth.set(market.SideSell, 100+float64(k)*0.5, float64(k))
		}
		s.books[sym] = b
	}
	return s
}

// event advances sym's book by one event of 1-4 level changes and returns
// its frame. Bids stay below 100 and asks above, so the book never crosses.
func (s *binanceSim) event(sym string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.books[sym]
	var bids, asks []string
	for n := 1 + s.rng.IntN(4); n > 0; n-- {
		px := float64(1+s.rng.IntN(30)) * 0.5
		sz := float64(s.rng.IntN(5)) // 0 removes the level
		side := market.SideBuy
		if s.rng.IntN(2) == 0 {
			side, px = market.SideSell, 100+px
		} else {
			px = 100 - px
		}
		b.truth.set(side, px, sz)
		lv := fmt.Sprintf(`["%s","%s"]`, strconv.FormatFloat(px, 'f', -1, 64), strconv.FormatFloat(sz, 'f', -1, 64))
		if side == market.SideBuy {
			bids = append(bids, lv)
		} else {
			asks = append(asks, lv)
		}
	}
	pu := b.lastU
	U := b.lastU + 1
	u := U + uint64(s.rng.IntN(3)) // several updates per event, as Binance sends
	b.lastU = u
	if !s.usdm {
		pu = 0
	}
	return depthFrame(sym, U, u, pu, strings.Join(bids, ","), strings.Join(asks, ","))
}

// snapshot is the REST body of sym's book now.
func (s *binanceSim) snapshot(sym string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.books[sym]
	if b == nil {
		return "", false
	}
	return snapshotBody(b.truth, b.lastU), true
}

func (s *binanceSim) truth(sym string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.books[sym].truth.String()
}

// rest serves /api/v3/depth (spot) or /fapi/v1/depth (futures).
func (s *binanceSim) rest(r *http.Request) (int, string) {
	want := "/api/v3/depth"
	if s.usdm {
		want = "/fapi/v1/depth"
	}
	if r.URL.Path != want || r.URL.Query().Get("limit") != "1000" {
		return 404, "wrong endpoint " + r.URL.String()
	}
	body, ok := s.snapshot(r.URL.Query().Get("symbol"))
	if !ok {
		return 400, `{"code":-1121,"msg":"Invalid symbol."}`
	}
	return 200, body
}

func testIngestorConfig(venue string, srv *wsTestServer, subs ...Subscription) IngestorConfig {
	return IngestorConfig{
		Venue: venue, Subscriptions: subs,
		Feed:        FeedConfig{Endpoint: srv.wsURL(), RESTEndpoint: srv.httpURL(), ForceFallback: true},
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		SnapshotRate: 1000, SnapshotInterval: 5 * time.Millisecond,
	}
}

func startIngestor(t *testing.T, cfg IngestorConfig, m *Metrics) (*Ingestor, *collector) {
	t.Helper()
	in, err := NewIngestor(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return in, runIngestor(t, in)
}

// runIngestor runs in until the test ends, collecting its batches.
func runIngestor(t *testing.T, in *Ingestor) *collector {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- in.Run(context.Background()) }()
	col := collect2(in.C())
	t.Cleanup(func() {
		in.Close()
		in.Close() // idempotent
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v after Close, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after Close")
		}
		<-col.done
	})
	return col
}

// rebuilt feeds every batch collected so far into a fresh rebuilder.
func rebuilt(col *collector) *bookRebuilder {
	rb := newBookRebuilder()
	for _, b := range col.snapshot() {
		rb.apply(b)
	}
	return rb
}

// TestIngestorBinanceResync runs the Binance feeds against the scripted
// server: depth streams, a gap injected in one book, a dropped connection,
// a reconnect. Whatever the ingestor published must rebuild books equal to
// the server's true books, with no delta published while a book was out of
// sync, gap markers where data was lost, and fresh snapshots after each.
func TestIngestorBinanceResync(t *testing.T) {
	for _, mkt := range []string{MarketSpot, MarketUSDM} {
		t.Run(mkt, func(t *testing.T) {
			usdm := mkt == MarketUSDM
			venue := map[bool]string{false: "binance", true: "binance-usdm"}[usdm]
			syms := []string{"BTCUSDT", "ETHUSDT"}
			sim := newBinanceSim(usdm, 42, syms...)
			srv := newWSTestServer(t, sim.rest)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			in, col := startIngestor(t, testIngestorConfig(venue, srv,
				Subscription{ChanBook, "BTCUSDT"}, Subscription{ChanBook, "ETHUSDT"}, Subscription{ChanTrades, "BTCUSDT"}), m)
			if in.Connections() != 1 {
				t.Fatalf("%d connections", in.Connections())
			}
			inst := func(sym string) string { i, _ := NormalizeBinanceSymbol(mkt, sym); return i }
			synced := func() bool {
				rb := rebuilt(col)
				for _, s := range syms {
					if !rb.synced[inst(s)] || bookString(rb.books[inst(s)]) != sim.truth(s) {
						return false
					}
				}
				return true
			}
			stream := func(c *wsServerConn, n int) {
				for i := 0; i < n; i++ {
					for _, s := range syms {
						if !c.send(sim.event(s)) {
							t.Fatal("send failed")
						}
					}
					time.Sleep(time.Millisecond)
				}
			}

			c1 := srv.accept(5 * time.Second)
			if got := c1.url.Query().Get("streams"); !strings.Contains(got, "btcusdt@depth@100ms") || !strings.Contains(got, "ethusdt@depth@100ms") {
				t.Fatalf("dialled %s", c1.url)
			}
			stream(c1, 40)
			waitFor(t, 5*time.Second, "books in sync", synced)
			// A trade passes straight through.
			c1.send(`{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":9,"p":"100","q":"1","T":1,"m":false}}`)
			// Gap: one BTC event the client never sees.
			sim.event("BTCUSDT")
			stream(c1, 30)
			waitFor(t, 5*time.Second, "books in sync after the gap", synced)
			if g := rebuilt(col).gaps[inst("BTCUSDT")]; g != 1 {
				t.Fatalf("BTC gaps after the injected gap = %d, want 1", g)
			}
			if got := testutil.ToFloat64(m.resyncs.WithLabelValues(venue, "gap")); got != 1 {
				t.Errorf("resyncs{gap} = %v", got)
			}
			// The connection drops; events go on meanwhile.
			c1.drop()
			sim.event("ETHUSDT")
			c2 := srv.accept(5 * time.Second)
			stream(c2, 40)
			waitFor(t, 5*time.Second, "books in sync after the reconnect", synced)

			rb := rebuilt(col)
			if len(rb.errs) > 0 {
				t.Fatalf("published book errors: %v", rb.errs[:min(5, len(rb.errs))])
			}
			if rb.gaps[inst("BTCUSDT")] != 2 || rb.gaps[inst("ETHUSDT")] != 1 {
				t.Errorf("gaps %v, want BTC 2 (injected, disconnect) and ETH 1", rb.gaps)
			}
			trades := 0
			for _, b := range col.snapshot() {
				for _, tk := range b {
					if tk.Kind == market.KindTrade {
						trades++
					}
					if tk.Venue != venue {
						t.Fatalf("tick of venue %q", tk.Venue)
					}
				}
			}
			if trades != 1 {
				t.Errorf("%d trades, want 1", trades)
			}
			if got := testutil.ToFloat64(m.conn.reconnects.WithLabelValues(venue, "read")); got != 1 {
				t.Errorf("reconnects{read} = %v", got)
			}
			if got := testutil.ToFloat64(m.resyncs.WithLabelValues(venue, "disconnect")); got != 2 {
				t.Errorf("resyncs{disconnect} = %v, want 2 (two books)", got)
			}
			// Two initial snapshots, one after the gap, two after the
			// reconnect (some more if a snapshot came back stale).
			if ok := testutil.ToFloat64(m.conn.snapshots.WithLabelValues(venue, "ok")); ok < 5 {
				t.Errorf("snapshot fetches ok = %v, want >= 5", ok)
			}
			if got := testutil.ToFloat64(m.conn.open.WithLabelValues(venue)); got != 1 {
				t.Errorf("connections open = %v", got)
			}
		})
	}
}

// TestIngestorSnapshotRetries: the REST endpoint fails twice; the failures
// are counted and retried, and the book then syncs.
func TestIngestorSnapshotRetries(t *testing.T) {
	sim := newBinanceSim(false, 1, "BTCUSDT")
	var mu sync.Mutex
	fails := 2
	srv := newWSTestServer(t, func(r *http.Request) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return 503, "busy"
		}
		return sim.rest(r)
	})
	m := NewMetrics(prometheus.NewRegistry())
	_, col := startIngestor(t, testIngestorConfig("binance", srv, Subscription{ChanBook, "BTCUSDT"}), m)
	c := srv.accept(5 * time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			c.send(sim.event("BTCUSDT"))
			time.Sleep(time.Millisecond)
		}
	}()
	<-done
	waitFor(t, 5*time.Second, "book in sync", func() bool {
		rb := rebuilt(col)
		return rb.synced["BTC-USDT"] && bookString(rb.books["BTC-USDT"]) == sim.truth("BTCUSDT")
	})
	if got := testutil.ToFloat64(m.conn.snapshots.WithLabelValues("binance", "error")); got != 2 {
		t.Errorf("snapshot errors = %v, want 2", got)
	}
	if rb := rebuilt(col); len(rb.errs) > 0 || rb.gaps["BTC-USDT"] != 0 {
		t.Errorf("errors %v gaps %v", rb.errs, rb.gaps)
	}
}

// TestIngestorSnapshotRetryAfter: a 429 with Retry-After holds every
// snapshot fetch back that long.
func TestIngestorSnapshotRetryAfter(t *testing.T) {
	sim := newBinanceSim(false, 5, "BTCUSDT")
	var mu sync.Mutex
	var times []time.Time
	srv := newWSTestServer(t, func(r *http.Request) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) == 1 {
			return 429, "slow down"
		}
		return sim.rest(r)
	})
	srv.retryAfter = "1"
	m := NewMetrics(prometheus.NewRegistry())
	_, col := startIngestor(t, testIngestorConfig("binance", srv, Subscription{ChanBook, "BTCUSDT"}), m)
	c := srv.accept(5 * time.Second)
	for i := 0; i < 20; i++ {
		c.send(sim.event("BTCUSDT"))
		time.Sleep(time.Millisecond)
	}
	waitFor(t, 5*time.Second, "book in sync", func() bool {
		rb := rebuilt(col)
		return rb.synced["BTC-USDT"] && bookString(rb.books["BTC-USDT"]) == sim.truth("BTCUSDT")
	})
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 || times[1].Sub(times[0]) < 950*time.Millisecond {
		t.Errorf("fetches at %v: want the retry a second after the 429", times)
	}
}

// testFeed is a minimal line protocol for manager tests: the client sends
// "sub <SYM>" per subscription and "ping"; the server sends
// "trade <SYM> <id>".
type testFeed struct {
	noPing bool // like Binance: websocket-level pings only
	base   string
	limits Limits
	resets *int
	mu     *sync.Mutex
}

func (f *testFeed) Venue() string                     { return "test" }
func (f *testFeed) Limits() Limits                    { return f.limits }
func (f *testFeed) Normalize(s string) (string, bool) { return s + "-USD", true }
func (f *testFeed) URL(subs []Subscription) (string, error) {
	var syms []string
	for _, s := range subs {
		syms = append(syms, s.Symbol)
	}
	return f.base + "/ws?syms=" + strings.Join(syms, ","), nil
}
func (f *testFeed) SubscribeFrames(subs []Subscription) ([][]byte, error) {
	var out [][]byte
	for _, s := range subs {
		if s.Symbol == "" {
			return nil, errors.New("empty symbol")
		}
		out = append(out, []byte("sub "+s.Symbol))
	}
	return out, nil
}
func (f *testFeed) Ping() []byte {
	if f.noPing {
		return nil
	}
	return []byte("ping")
}
func (f *testFeed) Handle(recv int64, frame []byte, out []market.Tick) ([]market.Tick, error) {
	p := strings.Fields(string(frame))
	if len(p) != 3 || p[0] != "trade" {
		return out, &ParseError{Venue: "test", Reason: ReasonBadJSON}
	}
	id, _ := strconv.ParseUint(p[2], 10, 64)
	t := market.Tick{Venue: "test", Instrument: p[1] + "-USD", Symbol: p[1], Kind: market.KindTrade, RecvTS: recv, IngestTS: recv, TradeID: id, Price: 1, Size: 1}
	t.ComputeID()
	return append(out, t), nil
}
func (f *testFeed) Outbox(dst [][]byte) [][]byte                             { return dst }
func (f *testFeed) SnapshotRequests(dst []SnapshotRequest) []SnapshotRequest { return dst }
func (f *testFeed) HandleSnapshot(int64, SnapshotRequest, []byte, []market.Tick) ([]market.Tick, error) {
	return nil, errors.New("no snapshots")
}
func (f *testFeed) Reset() {
	f.mu.Lock()
	*f.resets++
	f.mu.Unlock()
}

func testFeedConfig(srv *wsTestServer, limits Limits, subs ...string) (IngestorConfig, *int, *sync.Mutex) {
	resets, mu := new(int), new(sync.Mutex)
	var ss []Subscription
	for _, s := range subs {
		ss = append(ss, Subscription{ChanTrades, s})
	}
	return IngestorConfig{
		Venue: "test", Subscriptions: ss,
		NewFeed:     func() (Feed, error) { return &testFeed{base: srv.wsURL(), limits: limits, resets: resets, mu: mu}, nil },
		BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
	}, resets, mu
}

// TestIngestorSpreadsAndPaces: five subscriptions at two per connection make
// three connections; subscribe frames are paced by SubscribeRate, and pings
// go out every PingInterval. The pacing is measured at the sender (the
// subSent hook), where the ingestor spaces the writes: arrival times at the
// server also carry the scheduling delays of a loaded machine.
func TestIngestorSpreadsAndPaces(t *testing.T) {
	srv := newWSTestServer(t, nil)
	cfg, _, _ := testFeedConfig(srv, Limits{MaxSubsPerConn: 2, SubscribeRate: 20, PingInterval: 30 * time.Millisecond}, "A", "B", "C", "D", "E")
	m := NewMetrics(prometheus.NewRegistry())
	in, err := NewIngestor(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		frame string
		at    time.Time
	}
	var mu sync.Mutex
	sends := map[int][]sent{}
	in.subSent = func(conn int, frame []byte, at time.Time) {
		mu.Lock()
		sends[conn] = append(sends[conn], sent{string(frame), at})
		mu.Unlock()
	}
	col := runIngestor(t, in)
	if in.Connections() != 3 {
		t.Fatalf("%d connections, want 3", in.Connections())
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		c := srv.accept(5 * time.Second)
		syms := strings.Split(c.url.Query().Get("syms"), ",")
		var subs []wsRecv
		pings := 0
		for len(subs) < len(syms) || pings < 2 {
			r := c.expect(t, 5*time.Second)
			if r.frame == "ping" {
				pings++
				continue
			}
			subs = append(subs, r)
		}
		for j, s := range subs {
			if s.frame != "sub "+syms[j] {
				t.Errorf("frame %q, want sub %s", s.frame, syms[j])
			}
			seen[syms[j]] = true
		}
		c.send("trade " + syms[0] + " 1")
		c.send("garbage")
	}
	if len(seen) != 5 {
		t.Errorf("subscribed %v", seen)
	}
	mu.Lock()
	paced := 0
	for conn, ss := range sends {
		for j := 1; j < len(ss); j++ {
			// 20 per second: each write starts at least 50 ms after the
			// previous one started (a timer never fires early).
			if d := ss[j].at.Sub(ss[j-1].at); d < 50*time.Millisecond {
				t.Errorf("conn %d: %q sent %v after %q, want >= 50ms", conn, ss[j].frame, d, ss[j-1].frame)
			}
			paced++
		}
	}
	mu.Unlock()
	if paced != 2 { // two connections of two subscriptions, one of one
		t.Errorf("%d paced subscribe frames, want 2 (sent %v)", paced, sends)
	}
	waitFor(t, 5*time.Second, "three trades", func() bool { return len(col.snapshot()) == 3 })
	if got := testutil.ToFloat64(m.conn.open.WithLabelValues("test")); got != 3 {
		t.Errorf("open connections %v", got)
	}
	if got := testutil.ToFloat64(m.conn.sent.WithLabelValues("test", "subscribe")); got != 5 {
		t.Errorf("subscribe frames sent %v", got)
	}
}

// TestIngestorSilenceWatchdog: a connection that sends nothing is redialled
// after Silence; the feed is reset and one gap per instrument published.
func TestIngestorSilenceWatchdog(t *testing.T) {
	srv := newWSTestServer(t, nil)
	cfg, resets, mu := testFeedConfig(srv, Limits{}, "A", "B")
	cfg.Silence = 100 * time.Millisecond
	m := NewMetrics(prometheus.NewRegistry())
	_, col := startIngestor(t, cfg, m)
	c1 := srv.accept(5 * time.Second)
	c1.send("trade A 1")
	start := time.Now()
	srv.accept(5 * time.Second)
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("redialled after %v of silence, want >= 100ms", d)
	}
	if got := testutil.ToFloat64(m.conn.reconnects.WithLabelValues("test", "silence")); got != 1 {
		t.Errorf("reconnects{silence} = %v", got)
	}
	mu.Lock()
	if *resets != 1 {
		t.Errorf("%d resets", *resets)
	}
	mu.Unlock()
	waitFor(t, 5*time.Second, "gap ticks", func() bool { return len(col.snapshot()) >= 2 })
	b := col.snapshot()
	if len(b[0]) != 1 || b[0][0].Kind != market.KindTrade {
		t.Fatalf("first batch %+v", b[0])
	}
	if len(b[1]) != 2 || b[1][0].Kind != market.KindGap || b[1][0].Instrument != "A-USD" || b[1][1].Instrument != "B-USD" {
		t.Fatalf("gap batch %+v", b[1])
	}
}

// TestIngestorBackoff: a server that refuses the handshake is redialled
// with growing, jittered, capped delays.
func TestIngestorBackoff(t *testing.T) {
	in := &Ingestor{cfg: IngestorConfig{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}}
	for n, max := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		max *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := in.backoff(n); d < max/2 || d > max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, max/2, max)
			}
		}
	}
	// Dial failures are counted under "dial".
	srv := newWSTestServer(t, nil)
	cfg, _, _ := testFeedConfig(srv, Limits{}, "A")
	cfg.NewFeed = func() (Feed, error) {
		return &testFeed{base: "ws://127.0.0.1:1", resets: new(int), mu: new(sync.Mutex)}, nil
	}
	m := NewMetrics(prometheus.NewRegistry())
	startIngestor(t, cfg, m)
	waitFor(t, 5*time.Second, "three dial failures", func() bool {
		return testutil.ToFloat64(m.conn.reconnects.WithLabelValues("test", "dial")) >= 3
	})
}

// TestIngestorQueuePolicies: with nobody reading, drop-newest keeps the
// first batches and drop-oldest the last; every dropped tick is counted.
func TestIngestorQueuePolicies(t *testing.T) {
	for _, pol := range []OverflowPolicy{DropNewest, DropOldest} {
		t.Run(pol.String(), func(t *testing.T) {
			srv := newWSTestServer(t, nil)
			cfg, _, _ := testFeedConfig(srv, Limits{}, "A")
			cfg.QueueSize, cfg.Overflow = 3, pol
			m := NewMetrics(prometheus.NewRegistry())
			in, err := NewIngestor(cfg, nil, m)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- in.Run(ctx) }()
			c := srv.accept(5 * time.Second)
			for i := 1; i <= 10; i++ {
				c.send(fmt.Sprintf("trade A %d", i))
			}
			dropped := m.conn.queueDropped.WithLabelValues("test", pol.String())
			waitFor(t, 5*time.Second, "7 drops", func() bool { return testutil.ToFloat64(dropped) == 7 })
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
			var ids []uint64
			for b := range in.C() {
				ids = append(ids, b[0].TradeID)
			}
			want := "[1 2 3]"
			if pol == DropOldest {
				want = "[8 9 10]"
			}
			if fmt.Sprint(ids) != want {
				t.Errorf("kept %v, want %s", ids, want)
			}
		})
	}
}

// TestIngestorQueueDropResyncsBook: a dropped batch of book ticks makes the
// Binance feed resync that book (gap tick, fresh snapshot), so a consumer
// never keeps a book with a hole in it.
func TestIngestorQueueDropResyncsBook(t *testing.T) {
	sim := newBinanceSim(false, 3, "BTCUSDT")
	srv := newWSTestServer(t, sim.rest)
	cfg := testIngestorConfig("binance", srv, Subscription{ChanBook, "BTCUSDT"})
	cfg.QueueSize, cfg.Overflow = 4, DropNewest
	m := NewMetrics(prometheus.NewRegistry())
	in, err := NewIngestor(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(ctx)
	c := srv.accept(5 * time.Second)
	// Nobody reads: the queue fills with the snapshot and a few deltas.
	for i := 0; i < 20; i++ {
		c.send(sim.event("BTCUSDT"))
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "drops", func() bool {
		return testutil.ToFloat64(m.conn.queueDropped.WithLabelValues("binance", "drop-newest")) > 0
	})
	// Now read, and go on streaming.
	col := collect2(in.C())
	for i := 0; i < 100; i++ {
		c.send(sim.event("BTCUSDT"))
		time.Sleep(time.Millisecond)
	}
	waitFor(t, 5*time.Second, "book in sync", func() bool {
		rb := rebuilt(col)
		return rb.synced["BTC-USDT"] && bookString(rb.books["BTC-USDT"]) == sim.truth("BTCUSDT")
	})
	rb := rebuilt(col)
	if len(rb.errs) > 0 {
		t.Fatalf("errors %v", rb.errs[:min(3, len(rb.errs))])
	}
	if rb.gaps["BTC-USDT"] < 1 {
		t.Error("no gap after dropping book ticks")
	}
	if got := testutil.ToFloat64(m.resyncs.WithLabelValues("binance", "queue_drop")); got < 1 {
		t.Errorf("resyncs{queue_drop} = %v", got)
	}
}

func TestNewIngestorValidates(t *testing.T) {
	for _, c := range []struct {
		cfg  IngestorConfig
		want string
	}{
		{IngestorConfig{}, "Venue"},
		{IngestorConfig{Venue: "binance"}, "no subscriptions"},
		{IngestorConfig{Venue: "nope", Subscriptions: []Subscription{{ChanTrades, "X"}}}, "unknown venue"},
		{IngestorConfig{Venue: "binance", Subscriptions: []Subscription{{ChanFunding, "BTCUSDT"}}}, "funding"},
	} {
		if _, err := NewIngestor(c.cfg, nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.cfg, err, c.want)
		}
	}
	// Close before Run: Run returns at once, C is closed.
	in, err := NewIngestor(IngestorConfig{Venue: "binance", Subscriptions: []Subscription{{ChanTrades, "BTCUSDT"}}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := in.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-in.C(); ok {
		t.Fatal("C not closed")
	}
}

// TestIngestorBlockIsNotSilence: with the block policy a consumer that
// stalls longer than Silence holds the connection back but does not make
// the watchdog redial it; nothing is lost.
func TestIngestorBlockIsNotSilence(t *testing.T) {
	srv := newWSTestServer(t, nil)
	cfg, _, _ := testFeedConfig(srv, Limits{}, "A")
	cfg.QueueSize, cfg.Silence = 1, 100*time.Millisecond
	m := NewMetrics(prometheus.NewRegistry())
	in, err := NewIngestor(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(ctx)
	c := srv.accept(5 * time.Second)
	go func() {
		for i := 1; i <= 5; i++ {
			c.send(fmt.Sprintf("trade A %d", i))
		}
		// Keep the connection busy enough for the watchdog afterwards.
		for i := 6; i <= 20; i++ {
			time.Sleep(20 * time.Millisecond)
			c.send(fmt.Sprintf("trade A %d", i))
		}
	}()
	time.Sleep(400 * time.Millisecond) // the consumer stalls
	var ids []uint64
	for len(ids) < 20 {
		select {
		case b := <-in.C():
			ids = append(ids, b[0].TradeID)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v", ids)
		}
	}
	for i, id := range ids {
		if id != uint64(i+1) {
			t.Fatalf("ids %v", ids)
		}
	}
	for _, r := range []string{"silence", "read", "closed"} {
		if got := testutil.ToFloat64(m.conn.reconnects.WithLabelValues("test", r)); got != 0 {
			t.Errorf("reconnects{%s} = %v", r, got)
		}
	}
}

// TestIngestorSilenceProbe: a silent connection of a venue without an
// application ping answers a websocket ping and is kept.
func TestIngestorSilenceProbe(t *testing.T) {
	srv := newWSTestServer(t, nil)
	cfg, resets, mu := testFeedConfig(srv, Limits{}, "A")
	cfg.NewFeed = func() (Feed, error) {
		return &testFeed{noPing: true, base: srv.wsURL(), resets: resets, mu: mu}, nil
	}
	cfg.Silence = 50 * time.Millisecond
	m := NewMetrics(prometheus.NewRegistry())
	startIngestor(t, cfg, m)
	srv.accept(5 * time.Second)
	waitFor(t, 5*time.Second, "three probes", func() bool {
		return testutil.ToFloat64(m.conn.probes.WithLabelValues("test", "pong")) >= 3
	})
	if got := testutil.ToFloat64(m.conn.reconnects.WithLabelValues("test", "silence")); got != 0 {
		t.Errorf("reconnects{silence} = %v", got)
	}
	select {
	case <-srv.conns:
		t.Error("redialled a connection that answers pings")
	default:
	}
}
