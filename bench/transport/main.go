// Command transport measures the transport's throughput on a real Redis
// against baselines measured in the same run on the same server:
//
//   - publish: transport.Producer appending 64-byte entries, against
//     `redis-benchmark -P 100` running XADD (about what the server can take);
//
//   - consume: transport.Consumer with a no-op handler, against a bare go-redis
//     loop of XREADGROUP COUNT 1000 and one XACK per batch.
//
//     go run ./bench/transport -redis 127.0.0.1:16379
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
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
	flag.Parse()
	if *addr == "" {
		fatal("need -redis (or SIGNALD_REDIS_ADDR); `make services-up` starts one")
	}
	ctx := context.Background()
	b, err := transport.NewRedis(ctx, transport.RedisOptions{Addrs: []string{*addr}})
	if err != nil {
		fatal("%v", err)
	}
	defer b.Close()
	payload := bytes.Repeat([]byte("x"), 64)
	prefix := fmt.Sprintf("sdtbench%d", rand.Uint32())
	defer transport.DeletePrefix(ctx, b, prefix)

	base, err := redisBenchmarkXADD(*addr, prefix+":rb", *n)
	if err != nil {
		fatal("redis-benchmark: %v", err)
	}
	pub := publish(ctx, b, prefix+":pub", payload, *n, *batch, *shards)
	fmt.Printf("publish  redis-benchmark -P 100 XADD: %9.0f/s   transport.Producer (%d streams): %9.0f/s   ratio %.2f\n", base, *shards, pub, pub/base)

	// Both consumers read the same stream, each through its own group.
	stream := prefix + ":pub"
	if *shards > 1 {
		stream = transport.ShardStreams(stream, *shards)[0]
		*n /= *shards
	}
	bare := bareConsume(ctx, b.Client(), stream, *n)
	ours := consume(ctx, b, stream, *n)
	fmt.Printf("consume  bare XREADGROUP 1000 + XACK: %9.0f/s   transport.Consumer: %9.0f/s   ratio %.2f\n", bare, ours, ours/bare)
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

func consume(ctx context.Context, b transport.Backend, stream string, n int) float64 {
	var got atomic.Int64
	runCtx, cancel := context.WithCancel(ctx)
	c, err := transport.NewConsumer(b, transport.ConsumerConfig{Group: "ours", Streams: []string{stream}, Count: 1000},
		func(ctx context.Context, msgs []transport.Message) error {
			if got.Add(int64(len(msgs))) >= int64(n) {
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
	return float64(got.Load()) / time.Since(start).Seconds()
}
