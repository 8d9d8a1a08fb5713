package ingest

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/market"
)

// TestFeedsThroughServer runs every registered Feed that has testdata
// (same convention as BenchmarkFeeds) through the scripted server: its
// recorded frames are served over a connection that drops half-way, then
// the whole recording again over the new connection (stateful protocols
// announce their channels at the start), and its recorded REST snapshots
// where the feed asks for them. The Ingestor must reconnect, publish one gap
// per subscribed instrument, never publish a book delta while a book is out
// of sync, and publish exactly the trades of the first half and then of the
// whole recording, in order.
func TestFeedsThroughServer(t *testing.T) {
	for _, venue := range FeedVenues() {
		if venue == "replaytest" {
			continue
		}
		lines := benchLines(t, venue)
		if len(lines) == 0 {
			continue
		}
		t.Run(venue, func(t *testing.T) { recordedThroughServer(t, venue, lines) })
	}
}

func recordedThroughServer(t *testing.T, venue string, lines []benchLine) {
	// Pre-pass: what the recording subscribes to, and its trades.
	f, err := NewFeed(venue, FeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	chanOf := map[market.Kind]Channel{market.KindTrade: ChanTrades, market.KindQuote: ChanQuotes, market.KindBookDelta: ChanBook, market.KindSnapshot: ChanBook,
		market.KindFunding: ChanFunding, market.KindLiquidation: ChanLiquidations}
	seen := map[Subscription]bool{}
	var subs []Subscription
	var tradesOf [][]market.Tick // per frame
	snapshots := map[string]string{}
	var frames []benchLine
	var out []market.Tick
	for i := range lines {
		l := &lines[i]
		if l.snap {
			if u, err := url.Parse(l.url); err == nil {
				snapshots[u.Path+"?"+u.RawQuery] = string(l.body)
			}
		} else {
			frames = append(frames, *l)
			tradesOf = append(tradesOf, nil)
		}
		out, _ = handleLine(f, l, out[:0])
		f.SnapshotRequests(nil)
		f.Outbox(nil)
		for _, tk := range out {
			if c, ok := chanOf[tk.Kind]; ok && tk.Symbol != "" {
				if s := (Subscription{c, tk.Symbol}); !seen[s] {
					seen[s] = true
					subs = append(subs, s)
				}
			}
			if tk.Kind == market.KindTrade && !l.snap {
				tradesOf[len(tradesOf)-1] = append(tradesOf[len(tradesOf)-1], tk)
			}
		}
	}
	if len(subs) == 0 {
		t.Skip("the recording yields no ticks")
	}
	srv := newWSTestServer(t, func(r *http.Request) (int, string) {
		if b, ok := snapshots[r.URL.Path+"?"+r.URL.RawQuery]; ok {
			return 200, b
		}
		return 404, "no recorded snapshot for " + r.URL.String()
	})
	m := NewMetrics(prometheus.NewRegistry())
	endpoint := srv.wsURL()
	if venue == "kucoin" {
		// KuCoin's URL carries the token of a bullet-public call.
		endpoint += "?token=test&connectId=1"
	}
	cfg := IngestorConfig{
		Venue: venue, Subscriptions: subs,
		Feed:        FeedConfig{Endpoint: endpoint, RESTEndpoint: srv.httpURL()},
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		SnapshotRate: 1000, SnapshotInterval: 20 * time.Millisecond,
	}
	in, col := startIngestor(t, cfg, m)
	instruments := map[string]bool{}
	for _, s := range subs {
		inst, _ := f.Normalize(s.Symbol)
		instruments[inst] = true
	}
	send := func(c *wsServerConn, ls []benchLine) {
		for _, l := range ls {
			ok := false
			if l.binary {
				ok = c.sendBinary(l.body)
			} else {
				ok = c.send(string(l.body))
			}
			if !ok {
				t.Fatal("send failed")
			}
		}
	}
	half := len(frames) / 2
	var wantTrades []market.Tick
	for _, tr := range append(tradesOf[:half:half], tradesOf...) {
		wantTrades = append(wantTrades, tr...)
	}
	for i := 0; i < in.Connections(); i++ {
		c := srv.accept(5 * time.Second)
		if i == 0 {
			send(c, frames[:half])
			time.Sleep(100 * time.Millisecond)
			c.drop()
		}
	}
	// Connection 0 redials; the rest of the recording goes there.
	c := srv.accept(5 * time.Second)
	send(c, frames)
	trades := func() []market.Tick {
		var tr []market.Tick
		for _, b := range col.snapshot() {
			for _, tk := range b {
				if tk.Kind == market.KindTrade {
					tr = append(tr, tk)
				}
			}
		}
		return tr
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("%d trades", len(wantTrades)), func() bool { return len(trades()) >= len(wantTrades) })
	got := trades()
	if len(got) != len(wantTrades) {
		t.Fatalf("%d trades published, want %d", len(got), len(wantTrades))
	}
	for i := range got {
		g, w := got[i], wantTrades[i]
		if g.Instrument != w.Instrument || g.TradeID != w.TradeID || g.Price != w.Price || g.Size != w.Size || g.Side != w.Side || g.ExchTS != w.ExchTS {
			t.Fatalf("trade %d = %+v, want %+v", i, g, w)
		}
	}
	rb := rebuilt(col)
	if len(rb.errs) > 0 {
		t.Fatalf("published book errors: %v", rb.errs[:min(5, len(rb.errs))])
	}
	// One gap per instrument of the dropped connection (all of them when
	// one connection carries every subscription).
	if in.Connections() == 1 {
		for inst := range instruments {
			if rb.gaps[inst] < 1 {
				t.Errorf("no gap for %s after the drop", inst)
			}
		}
	}
	if got := testutil.ToFloat64(m.conn.reconnects.WithLabelValues(venue, "read")); got != 1 {
		t.Errorf("reconnects{read} = %v", got)
	}
}
