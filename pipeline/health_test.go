package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/internal/faultnet"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

func problem(ps []Problem, component string) (Problem, bool) {
	for _, p := range ps {
		if p.Component == component {
			return p, true
		}
	}
	return Problem{}, false
}

// A configured live venue that cannot connect makes Health name it once the
// grace has passed (the daemon's /readyz turns 503 with it).
func TestHealthVenueNotConnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there
	st, _ := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	p, _ := newFaultPipeline(t, st, Config{VenueGrace: 200 * time.Millisecond, Source: Source{Live: []ingest.IngestorConfig{{
		Venue: "binance", Subscriptions: []ingest.Subscription{{Symbol: "BTCUSDT", Channel: ingest.ChanTrades}},
		Feed: ingest.FeedConfig{Endpoint: "ws://" + dead}, BackoffBase: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	}}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if pr, ok := problem(p.Health(), "venue binance"); ok {
			if !strings.Contains(pr.Reason, "no connection open") {
				t.Fatalf("reason %q", pr.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no venue problem reported within 15 s: %v", p.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A store that cannot write (a hung ClickHouse) is reported after its grace
// and no longer once it writes again.
func TestHealthStoreCannotWrite(t *testing.T) {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real ClickHouse")
	}
	px, err := faultnet.Listen(os.Getenv("SIGNALD_CLICKHOUSE_ADDR"))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	db := fmt.Sprintf("sdhealth_%d", rand.Uint32())
	ch, err := store.OpenClickHouse(context.Background(), store.ClickHouseOptions{Addr: px.Addr(), Database: db, InsertTimeout: 300 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		px.Thaw()
		ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
	})
	p, _ := newFaultPipeline(t, ch, Config{StoreGrace: 100 * time.Millisecond})
	msgs := []transport.Message{entry(seqTick("A", 0, 0))}
	if err := p.storeTicks(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if ps := p.Health(); len(ps) != 0 {
		t.Fatalf("healthy store reported: %v", ps)
	}
	px.Freeze()
	if err := p.storeTicks(context.Background(), msgs); err == nil {
		t.Fatal("an insert into a hung server succeeded")
	}
	time.Sleep(150 * time.Millisecond)
	pr, ok := problem(p.Health(), "store")
	if !ok || !strings.Contains(pr.Reason, "cannot write") || !strings.Contains(pr.Reason, "deadline") {
		t.Fatalf("store problem %+v (%v)", pr, ok)
	}
	px.Thaw()
	px.Cut()
	var last error
	for i := 0; i < 20; i++ {
		if last = p.storeTicks(context.Background(), msgs); last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("no recovery: %v", last)
	}
	if _, ok := problem(p.Health(), "store"); ok {
		t.Fatal("store still reported after it wrote again")
	}
}

// A transport that does not answer (Redis hung) is named by Health within
// its 1 s probe, and no longer once it answers.
func TestHealthTransportUnreachable(t *testing.T) {
	if os.Getenv("SIGNALD_INTEGRATION") == "" {
		t.Skip("integration tests off: SIGNALD_INTEGRATION=1 (make test sets it) runs them against real Redis")
	}
	px, err := faultnet.Listen(os.Getenv("SIGNALD_REDIS_ADDR"))
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	r, err := transport.NewRedis(context.Background(), transport.RedisOptions{Addrs: []string{px.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	p, err := New(context.Background(), Config{Backend: r, Store: st, DataDir: t.TempDir(), StreamPrefix: fmt.Sprintf("sdhealth%d", rand.Uint32())}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := problem(p.Health(), "transport"); ok {
		t.Fatalf("healthy transport reported: %v", p.Health())
	}
	px.Freeze()
	p.probedAt = time.Time{}
	if pr, ok := problem(p.Health(), "transport"); !ok || !strings.Contains(pr.Reason, "unreachable") {
		t.Fatalf("hung transport: %+v %v", pr, ok)
	}
	px.Thaw()
	px.Cut()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.probedAt = time.Time{}
		if _, ok := problem(p.Health(), "transport"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still reported after the thaw: %v", p.Health())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
