package transport_test

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/signald-dev/signald/transport"
)

// Embedding the transport: a producer spreads entries over shard streams by
// key, a consumer group handles them in batches, and a batch is acknowledged
// only when the handler returns nil. NewRedis in place of NewMemory runs the
// same code on Redis Streams.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	b := transport.NewMemory()
	defer b.Close()

	p := transport.NewProducer(b, transport.ProducerConfig{}, nil, nil)
	for i, key := range []string{"BTC-USDT", "ETH-USDT", "BTC-USDT", "SOL-USDT"} {
		p.Publish(ctx, transport.ShardStream("ticks", 4, key), []byte(fmt.Sprintf("%s #%d", key, i)))
	}
	p.Close() // flushes

	var mu sync.Mutex
	seen, n := map[string][]string{}, 0
	c, _ := transport.NewConsumer(b, transport.ConsumerConfig{
		Group: "example", Streams: transport.ShardStreams("ticks", 4),
	}, func(ctx context.Context, msgs []transport.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			seen[m.Stream] = append(seen[m.Stream], string(m.Payload))
			n++
		}
		if n == 4 {
			cancel() // all entries seen: stop; Run drains and acknowledges first
		}
		return nil
	}, nil, nil)
	c.Run(ctx)

	// One key's entries stay in order on its shard (which it may share).
	var btc []string
	for _, e := range seen[transport.ShardStream("ticks", 4, "BTC-USDT")] {
		if strings.HasPrefix(e, "BTC-USDT") {
			btc = append(btc, e)
		}
	}
	fmt.Println(btc)
	var pending int64
	for _, s := range transport.ShardStreams("ticks", 4) {
		n, _ := b.Pending(context.Background(), s, "example")
		pending += n
	}
	fmt.Println("pending after stop:", pending)
	// Output:
	// [BTC-USDT #0 BTC-USDT #2]
	// pending after stop: 0
}
