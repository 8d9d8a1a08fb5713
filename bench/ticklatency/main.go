// Command ticklatency measures tick-to-storage latency of `signald run` on
// real Redis and ClickHouse: it replays the bundled capture at the given
// paces, scrapes signald_store_tick_to_storage_seconds from /metrics, and
// reports p50/p99 next to a baseline measured in the same run: the round trip
// of a bare 100-row ch-go insert into the same server.
//
//	go run ./bench/ticklatency -redis 127.0.0.1:16379 -clickhouse 127.0.0.1:19000 -speeds 1,10
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

func main() {
	bin := flag.String("bin", "bin/signald", "signald binary")
	redis := flag.String("redis", os.Getenv("SIGNALD_REDIS_ADDR"), "Redis host:port")
	chAddr := flag.String("clickhouse", os.Getenv("SIGNALD_CLICKHOUSE_ADDR"), "ClickHouse host:port")
	capture := flag.String("replay", "testdata/binance/binance_spot_btcusdt_20240808.gz", "capture to replay")
	speeds := flag.String("speeds", "1,10", "comma-separated replay paces")
	dur := flag.Duration("duration", 60*time.Second, "how long to replay at each pace")
	extra := flag.String("args", "", "extra flags for signald run, space-separated (e.g. \"--store-batch-wait 10ms\")")
	flag.Parse()
	if *redis == "" || *chAddr == "" {
		fatal("need -redis and -clickhouse (or SIGNALD_REDIS_ADDR / SIGNALD_CLICKHOUSE_ADDR); `make services-up` starts both")
	}
	ctx := context.Background()
	base, err := insertBaseline(ctx, *chAddr)
	if err != nil {
		fatal("baseline: %v", err)
	}
	fmt.Printf("baseline: bare 100-row ch-go insert round trip p50 %.2f ms, p99 %.2f ms (200 inserts)\n", base.p50*1e3, base.p99*1e3)
	fmt.Printf("%-6s %8s %10s %10s %10s %14s %14s\n", "speed", "ticks", "ticks/s", "p50 ms", "p99 ms", "p99/baseline", "p99/50ms goal")
	for _, s := range strings.Split(*speeds, ",") {
		speed, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || speed <= 0 {
			fatal("bad speed %q", s)
		}
		r, err := runAt(*bin, *capture, *redis, *chAddr, speed, *dur, strings.Fields(*extra))
		if err != nil {
			fatal("speed %v: %v", speed, err)
		}
		fmt.Printf("%-6g %8d %10.0f %10.2f %10.2f %14.2f %14.2f\n", speed, r.n, float64(r.n)/dur.Seconds(), r.p50*1e3, r.p99*1e3, r.p99/base.p99, r.p99/0.05)
	}
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "ticklatency: "+f+"\n", a...)
	os.Exit(1)
}

type quantiles struct{ p50, p99 float64 }

func insertBaseline(ctx context.Context, addr string) (quantiles, error) {
	db := fmt.Sprintf("sdbench_%d", rand.Uint32())
	ch, err := store.OpenClickHouse(ctx, store.ClickHouseOptions{Addr: addr, Database: db}, nil, nil)
	if err != nil {
		return quantiles{}, err
	}
	defer func() {
		ch.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		ch.Close()
	}()
	var lat []float64
	ticks := make([]market.Tick, 100)
	for i := 0; i < 200; i++ {
		now := time.Now().UnixNano()
		for j := range ticks {
			ticks[j] = market.Tick{Venue: "binance", Instrument: "BTC-USDT", Kind: market.KindTrade, RecvTS: now + int64(j), Price: 1, Size: 1}
			ticks[j].ComputeID()
		}
		start := time.Now()
		if err := ch.InsertTicks(ctx, ticks); err != nil {
			return quantiles{}, err
		}
		lat = append(lat, time.Since(start).Seconds())
	}
	sort.Float64s(lat)
	return quantiles{lat[len(lat)/2], lat[len(lat)*99/100]}, nil
}

type result struct {
	n        int64
	p50, p99 float64
}

func runAt(bin, capture, redis, chAddr string, speed float64, dur time.Duration, extra []string) (result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	addr := ln.Addr().String()
	ln.Close()
	db := fmt.Sprintf("sdbench_%d", rand.Uint32())
	prefix := fmt.Sprintf("sdbench%d", rand.Uint32())
	cmd := exec.Command(bin, "run", "--replay", capture, "--loop", "--speed", fmt.Sprint(speed), "--http", addr,
		"--redis", redis, "--clickhouse", chAddr, "--clickhouse-db", db,
		"--stream-prefix", prefix, "--log-level", "warn")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if ch, err := store.OpenClickHouse(context.Background(), store.ClickHouseOptions{Addr: chAddr, Database: db}, nil, nil); err == nil {
			ch.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
			ch.Close()
		}
		if r, err := transport.NewRedis(context.Background(), transport.RedisOptions{Addrs: []string{redis}}); err == nil {
			transport.DeletePrefix(context.Background(), r, prefix+":")
			r.Close()
		}
	}()
	time.Sleep(dur)
	h, err := scrape("http://"+addr+"/metrics", "signald_store_tick_to_storage_seconds")
	if err != nil {
		return result{}, err
	}
	return result{n: int64(h.count), p50: h.quantile(0.5), p99: h.quantile(0.99)}, nil
}

type histogram struct {
	bounds []float64 // upper bounds, ascending, last +Inf
	cum    []float64
	count  float64
}

// quantile interpolates linearly inside the bucket, as Prometheus'
// histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lo, prev := 0.0, 0.0
	for i, b := range h.bounds {
		if h.cum[i] >= rank {
			if math.IsInf(b, 1) {
				return lo
			}
			return lo + (b-lo)*(rank-prev)/(h.cum[i]-prev)
		}
		lo, prev = b, h.cum[i]
	}
	return lo
}

func scrape(url, name string) (histogram, error) {
	resp, err := http.Get(url)
	if err != nil {
		return histogram{}, err
	}
	defer resp.Body.Close()
	var h histogram
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, name+"_bucket{le=\""):
			rest := strings.TrimPrefix(line, name+"_bucket{le=\"")
			le, val, _ := strings.Cut(rest, "\"} ")
			b, err1 := strconv.ParseFloat(le, 64)
			if le == "+Inf" {
				b, err1 = math.Inf(1), nil
			}
			v, err2 := strconv.ParseFloat(val, 64)
			if err1 != nil || err2 != nil {
				return h, fmt.Errorf("bad bucket line %q", line)
			}
			h.bounds = append(h.bounds, b)
			h.cum = append(h.cum, v)
		case strings.HasPrefix(line, name+"_count "):
			h.count, _ = strconv.ParseFloat(strings.TrimPrefix(line, name+"_count "), 64)
		}
	}
	if len(h.bounds) == 0 {
		return h, fmt.Errorf("%s not found in %s", name, url)
	}
	return h, sc.Err()
}
