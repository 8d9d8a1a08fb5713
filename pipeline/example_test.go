package pipeline_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/pipeline"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// Example embeds the whole pipeline in another program: the in-process
// transport, a Parquet store in a temporary directory, and the replay of a
// bundled capture (15 s of Binance spot BTCUSDT) as fast as it reads, to the
// end. With a 25 ms step the detectors warm up (120 steps) within the
// capture and fire.
func Example() {
	dir, err := os.MkdirTemp("", "signald-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.OpenParquet(store.ParquetOptions{Dir: dir}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	p, err := pipeline.New(ctx, pipeline.Config{
		Backend: transport.NewMemory(),
		Store:   st,
		DataDir: dir, // ingest's ledger goes beside the store
		Step:    25 * time.Millisecond,
		Source: pipeline.Source{Replay: ingest.ReplayConfig{
			Paths: []string{filepath.Join("..", "testdata", "binance", "binance_spot_btcusdt_20240808_head1500.gz")},
			Speed: 0, // as fast as possible
		}},
		ExitAfterDrain: true,
	}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Run(ctx); err != nil { // closes the store and the transport
		log.Fatal(err)
	}

	// Read back what the run stored.
	st, err = store.OpenParquet(store.ParquetOptions{Dir: dir}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	n, err := st.CountTicks(ctx, store.Query{})
	if err != nil {
		log.Fatal(err)
	}
	sigs, err := st.ReadSignals(ctx, store.Query{})
	if err != nil {
		log.Fatal(err)
	}
	byType := map[string]int{}
	for _, s := range sigs {
		byType[string(s.Type)]++
	}
	fmt.Println("ticks stored:", n)
	fmt.Println("signals:", len(sigs), byType)
	// Output:
	// ticks stored: 7220
	// signals: 6 map[novelty:2 regime_change:3 regime_probs:1]
}
