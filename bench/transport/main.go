// Command transport measures the transport's throughput on a real Redis
// against baselines measured in the same run on the same server:
//
//   - publish: transport.Producer appending 64-byte entries, against
//     `redis-benchmark -P 100` running XADD (about what the server can take);
//
//   - consume: transport.Consumer with a no-op handler, against a bare go-redis
//     loop of XREADGROUP COUNT 1000 and one XACK per batch;
//
//   - latency: publish-to-handler latency at a fixed rate (-rate, default
//     50k entries/s) through Producer and Consumer, against a bare go-redis
//     pair at the same rate (pipelined XADD every millisecond; a blocking
//     XREADGROUP + XACK loop). The goal is a p99 under 5 ms.
//
//     go run ./bench/transport -redis 127.0.0.1:16379
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signald-dev/signald/transport"
)

func main() {
	addr := flag.String("redis", os.Getenv("SIGNALD_REDIS_ADDR"), "Redis host:port")
	n := flag.Int("n", 300_000, "entries per measurement")
	batch := flag.Int("batch", 0, "producer MaxBatch (0: the default)")
	shards := flag.Int("shards", 1, "publish over this many shard streams (the daemon uses 4)")
	rate := flag.Int("rate", 50_000, "entries per second for the latency measurement (0: skip it)")
	latDur := flag.Duration("latency-duration", 10*time.Second, "length of each latency measurement")
	rounds := flag.Int("rounds", 3, "publish measurement rounds (baseline and producer alternating)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	if *addr == "" {
		fatal("need -redis (or SIGNALD_REDIS_ADDR); `make services-up` starts one")
	}
	ctx := context.Background()
	b, err := transport.NewRedis(ctx, transport.RedisOptions{Addrs: []string{*addr}, PipelineAppend: true})
	if err != nil {
		fatal("%v", err)
	}
	defer b.Close()
	payload := bytes.Repeat([]byte("x"), 64)
	prefix := fmt.Sprintf("sdtbench%d", rand.Uint32())
	defer transport.DeletePrefix(ctx, b, prefix)

	bs, err := transport.NewRedis(ctx, transport.RedisOptions{Addrs: []string{*addr}})
	if err != nil {
		fatal("%v", err)
	}
	defer bs.Close()
	// The machine is noisy: rounds alternate baseline and producer, each
	// producer run is divided by the mean of the baselines just before and
	// after it, and the median of the rounds' ratios is reported.
	rb := func(key string) float64 {
		r, err := redisBenchmarkXADD(*addr, key, *n)
		if err != nil {
			fatal("redis-benchmark: %v", err)
		}
		// The baseline's stream is dropped at once, so memory does not
		// grow over the rounds.
		transport.DeletePrefix(ctx, b, key)
		return r
	}
	var ratioPipe, ratioScript []float64
	for r := range *rounds {
		k := fmt.Sprintf("%s:r%d", prefix, r)
		b0 := rb(k + ":rb0")
		pub := publish(ctx, b, k+":pub", payload, *n, *batch, *shards)
		b1 := rb(k + ":rb1")
		pubs := publish(ctx, bs, k+":pubs", payload, *n, *batch, *shards)
		b2 := rb(k + ":rb2")
		ratioPipe = append(ratioPipe, pub/((b0+b1)/2))
		ratioScript = append(ratioScript, pubs/((b1+b2)/2))
		fmt.Printf("publish  round %d  redis-benchmark -P 100 XADD: %.0f %.0f %.0f/s   pipeline %.0f/s (ratio %.2f)   script, the default %.0f/s (ratio %.2f)   %d streams\n",
			r+1, b0, b1, b2, pub, ratioPipe[r], pubs, ratioScript[r], *shards)
		if r < *rounds-1 {
			transport.DeletePrefix(ctx, b, k+":pub")
			transport.DeletePrefix(ctx, b, k+":pubs")
		}
	}
	fmt.Printf("publish  median ratio over %d rounds: pipeline %.2f, script (default) %.2f (goal 0.8)\n", *rounds, median(ratioPipe), median(ratioScript))
	lastPub := fmt.Sprintf("%s:r%d:pub", prefix, *rounds-1)

	// Both consumers read the same stream, each through its own group.
	stream := lastPub
	if *shards > 1 {
		stream = transport.ShardStreams(stream, *shards)[0]
		*n /= *shards
	}
	bare := bareConsume(ctx, b.Client(), stream, *n)
	ours, stop := consume(ctx, bs, stream, *n)
	fmt.Printf("consume  bare XREADGROUP 1000 + XACK: %9.0f/s   transport.Consumer: %9.0f/s   ratio %.2f   (then its stop took %v)\n",
		bare, ours, ours/bare, stop.Round(time.Millisecond))

	if *rate > 0 {
		bl := bareLatency(ctx, b.Client(), prefix+":lat-bare", *rate, *latDur)
		ol := latency(ctx, bs, prefix+":lat", *rate, *latDur)
		fmt.Printf("latency  at %d/s, publish to handler:\n", *rate)
		fmt.Printf("         bare go-redis XADD/XREADGROUP: %s\n", bl)
		fmt.Printf("         transport Producer/Consumer:   %s\n", ol)
		fmt.Printf("         p99 ratio %.2f (goal: p99 under 5 ms)\n", ol.p(0.99).Seconds()/bl.p(0.99).Seconds())
	}
}

// lat holds publish-to-handler latencies.
type lat []time.Duration

func (l lat) p(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

func (l lat) String() string {
	return fmt.Sprintf("n=%d p50 %v  p90 %v  p99 %v  p99.9 %v  max %v", len(l),
		l.p(0.5).Round(time.Microsecond), l.p(0.9).Round(time.Microsecond), l.p(0.99).Round(time.Microsecond),
		l.p(0.999).Round(time.Microsecond), l.p(1).Round(time.Microsecond))
}

// pace calls send every millisecond with the number of entries due, each
// stamped with the time it is sent, for d.
func pace(rate int, d time.Duration, send func(payloads [][]byte)) (sent int) {
	start := time.Now()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for range t.C {
		el := time.Since(start)
		if el >= d {
			return sent
		}
		due := int(el.Seconds()*float64(rate)) - sent
		if due <= 0 {
			continue
		}
		now := time.Now().UnixNano()
		ps := make([][]byte, due)
		for i := range ps {
			p := make([]byte, 64)
			binary.LittleEndian.PutUint64(p, uint64(now))
			ps[i] = p
		}
		send(ps)
		sent += due
	}
	return sent
}

// waitAll waits until got() reaches want, for at most 30s: every entry's
// latency is counted, the slowest included.
func waitAll(got func() int, want int) {
	deadline := time.Now().Add(30 * time.Second)
	for got() < want {
		if time.Now().After(deadline) {
			fatal("latency: %d of %d entries arrived within 30s", got(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stamp(p []byte) time.Duration {
	return time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(p)))
}

func latency(ctx context.Context, b transport.Backend, stream string, rate int, d time.Duration) lat {
	var (
		mu  sync.Mutex
		out lat
	)
	runCtx, cancel := context.WithCancel(ctx)
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "lat", Streams: []string{stream}, Start: "$"},
		func(ctx context.Context, msgs []transport.Message) error {
			mu.Lock()
			for _, m := range msgs {
				out = append(out, stamp(m.Payload))
			}
			mu.Unlock()
			return nil
		}, nil, nil)
	if err != nil {
		fatal("consumer: %v", err)
	}
	if err := b.CreateGroup(ctx, stream, "lat", "$"); err != nil {
		fatal("%v", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	p := transport.NewProducer(b, transport.ProducerConfig{}, nil, nil)
	sent := pace(rate, d, func(ps [][]byte) {
		if err := p.PublishBatch(ctx, stream, ps); err != nil {
			fatal("publish: %v", err)
		}
	})
	if err := p.Close(); err != nil {
		fatal("publish: %v", err)
	}
	waitAll(func() int { mu.Lock(); defer mu.Unlock(); return len(out) }, sent)
	cancel()
	if err := <-done; err != nil {
		fatal("consumer: %v", err)
	}
	slices.Sort(out)
	return out
}

func bareLatency(ctx context.Context, c redis.UniversalClient, stream string, rate int, d time.Duration) lat {
	if err := c.XGroupCreateMkStream(ctx, stream, "bare", "$").Err(); err != nil {
		fatal("xgroup: %v", err)
	}
	var (
		mu  sync.Mutex
		out lat
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "bare", Consumer: "c", Streams: []string{stream, ">"},
				Count: 1000, Block: 100 * time.Millisecond}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				fatal("xreadgroup: %v", err)
			}
			var ids []string
			mu.Lock()
			for _, s := range res {
				for _, m := range s.Messages {
					out = append(out, stamp([]byte(m.Values["d"].(string))))
					ids = append(ids, m.ID)
				}
			}
			mu.Unlock()
			if err := c.XAck(ctx, stream, "bare", ids...).Err(); err != nil {
				fatal("xack: %v", err)
			}
		}
	}()
	sent := pace(rate, d, func(ps [][]byte) {
		pipe := c.Pipeline()
		for _, p := range ps {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"d", p}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			fatal("xadd: %v", err)
		}
	})
	waitAll(func() int { mu.Lock(); defer mu.Unlock(); return len(out) }, sent)
	close(stop)
	<-done
	slices.Sort(out)
	return out
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "transport bench: "+f+"\n", a...)
	os.Exit(1)
}

var rps = regexp.MustCompile(`([0-9.]+) requests per second`)

func redisBenchmarkXADD(addr, key string, n int) (float64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-P", "100", "-n", strconv.Itoa(n), "-q",
		"XADD", key, "*", "d", string(bytes.Repeat([]byte("x"), 64))).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	m := rps.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no rate in %q", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func publish(ctx context.Context, b transport.Backend, stream string, payload []byte, n, batch, shards int) float64 {
	p := transport.NewProducer(b, transport.ProducerConfig{MaxBatch: batch}, nil, nil)
	streams := []string{stream}
	if shards > 1 {
		streams = transport.ShardStreams(stream, shards)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := p.Publish(ctx, streams[i%len(streams)], payload); err != nil {
			fatal("publish: %v", err)
		}
	}
	if err := p.Close(); err != nil {
		fatal("publish: %v", err)
	}
	return float64(n) / time.Since(start).Seconds()
}

func bareConsume(ctx context.Context, c redis.UniversalClient, stream string, n int) float64 {
	if err := c.XGroupCreate(ctx, stream, "bare", "0").Err(); err != nil {
		fatal("xgroup: %v", err)
	}
	start := time.Now()
	got := 0
	for got < n {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "bare", Consumer: "c", Streams: []string{stream, ">"}, Count: 1000, Block: time.Second}).Result()
		if err != nil {
			fatal("xreadgroup: %v", err)
		}
		ids := make([]string, 0, 1000)
		for _, s := range res {
			for _, m := range s.Messages {
				ids = append(ids, m.ID)
			}
		}
		if err := c.XAck(ctx, stream, "bare", ids...).Err(); err != nil {
			fatal("xack: %v", err)
		}
		got += len(ids)
	}
	return float64(n) / time.Since(start).Seconds()
}

// consume returns the consumer's rate up to the handling of the n-th entry
// (as the bare loop stops at its n-th), and how long the stop then took
// (a reader's blocking read ends within one block slice, 250 ms).
func consume(ctx context.Context, b transport.Backend, stream string, n int) (rate float64, stop time.Duration) {
	var got atomic.Int64
	var end atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "ours", Streams: []string{stream}, Count: 1000},
		func(ctx context.Context, msgs []transport.Message) error {
			if got.Add(int64(len(msgs))) >= int64(n) && end.Load() == 0 {
				// The last batch's XACK follows this return: one round trip
				// more than counted here.
				end.Store(time.Now().UnixNano())
				cancel()
			}
			return nil
		}, nil, nil)
	if err != nil {
		fatal("consumer: %v", err)
	}
	start := time.Now()
	if err := c.Run(runCtx); err != nil {
		fatal("consumer: %v", err)
	}
	last := time.Unix(0, end.Load())
	return float64(got.Load()) / last.Sub(start).Seconds(), time.Since(last)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
