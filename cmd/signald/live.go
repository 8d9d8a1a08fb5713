package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/signald-dev/signald/ingest"
)

// liveConfig is the live-ingest part of `signald run`.
type liveConfig struct {
	Specs    []liveSpec
	Channels []string
	// Endpoints and REST override each venue's URLs (venue → URL).
	Endpoints, REST map[string]string
	Overflow        string
	Queue           int
	ForceFallback   bool   // --json-path portable
	channels        string // --live-channels, split into Channels by validate
}

// liveSpec is one --live venue:SYM1,SYM2.
type liveSpec struct {
	Venue   string
	Symbols []string
}

type liveFlag struct{ c *liveConfig }

func (f liveFlag) String() string { return "" }
func (f liveFlag) Set(v string) error {
	venue, syms, ok := strings.Cut(v, ":")
	if !ok || venue == "" {
		return fmt.Errorf("%q: want venue:SYMBOL[,SYMBOL...], e.g. binance:BTCUSDT,ETHUSDT or kraken:XBT/USD", v)
	}
	s := splitList(syms)
	if len(s) == 0 {
		return fmt.Errorf("%q: no symbols after %q", v, venue+":")
	}
	f.c.Specs = append(f.c.Specs, liveSpec{Venue: venue, Symbols: s})
	return nil
}

type kvFlag struct {
	m    *map[string]string
	what string
}

func (f kvFlag) String() string { return "" }
func (f kvFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" {
		return fmt.Errorf("%q: want venue=%s", v, f.what)
	}
	if *f.m == nil {
		*f.m = map[string]string{}
	}
	(*f.m)[k] = val
	return nil
}

// addLiveFlags registers the live-ingest flags of `signald run`.
func addLiveFlags(fs *flag.FlagSet, c *liveConfig) {
	fs.Var(liveFlag{c}, "live", "ingest a venue live: `venue:SYMBOL[,SYMBOL...]` with the venue's own symbols (repeatable), e.g. --live binance:BTCUSDT,ETHUSDT --live kraken:XBT/USD")
	fs.StringVar(&c.channels, "live-channels", "trades,quotes,book", "channels of every --live symbol: trades, quotes, book, funding, liquidations")
	fs.Var(kvFlag{&c.Endpoints, "wss://host"}, "live-endpoint", "websocket endpoint override, `venue=URL` (repeatable; tests, proxies)")
	fs.Var(kvFlag{&c.REST, "https://host"}, "live-rest-endpoint", "REST endpoint override for snapshots, `venue=URL` (repeatable)")
	fs.StringVar(&c.Overflow, "live-overflow", "block", "when the queue toward the transport is full: block (backpressure, nothing lost), drop-oldest or drop-newest (counted in signald_ingest_queue_dropped_ticks_total)")
	fs.IntVar(&c.Queue, "live-queue", 4096, "capacity of the queue toward the transport, in frames")
}

// ingestors returns one ingest.IngestorConfig per --live venue, each
// checked by building its Ingestor (venue, channels and symbols are checked
// without dialling).
func (c *liveConfig) ingestors() ([]ingest.IngestorConfig, error) {
	pol, err := ingest.ParseOverflowPolicy(c.Overflow)
	if err != nil {
		return nil, fmt.Errorf("--live-overflow: %w", err)
	}
	var out []ingest.IngestorConfig
	var errs []error
	for _, s := range c.Specs {
		subs, err := subscriptions(s.Symbols, c.Channels)
		if err != nil {
			errs = append(errs, fmt.Errorf("--live %s: %w", s.Venue, err))
			continue
		}
		cfg := ingest.IngestorConfig{
			Venue: s.Venue, Subscriptions: subs, QueueSize: c.Queue, Overflow: pol,
			Feed: ingest.FeedConfig{Endpoint: c.Endpoints[s.Venue], RESTEndpoint: c.REST[s.Venue], ForceFallback: c.ForceFallback},
		}
		if _, err := ingest.NewIngestor(cfg, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("--live %s: %w", s.Venue, err))
			continue
		}
		out = append(out, cfg)
	}
	for v := range c.Endpoints {
		if !c.has(v) {
			errs = append(errs, fmt.Errorf("--live-endpoint %s: no --live %s:SYMBOLS to apply it to; add one or drop the override", v, v))
		}
	}
	for v := range c.REST {
		if !c.has(v) {
			errs = append(errs, fmt.Errorf("--live-rest-endpoint %s: no --live %s:SYMBOLS to apply it to; add one or drop the override", v, v))
		}
	}
	return out, errors.Join(errs...)
}

func (c *liveConfig) has(venue string) bool {
	for _, s := range c.Specs {
		if s.Venue == venue {
			return true
		}
	}
	return false
}

func (c *liveConfig) validate() error {
	c.Channels = splitList(c.channels)
	if len(c.Specs) == 0 {
		if len(c.Endpoints)+len(c.REST) > 0 {
			return errors.New("--live-endpoint/--live-rest-endpoint without --live")
		}
		return nil
	}
	if c.Queue < 1 {
		return fmt.Errorf("--live-queue %d: must be at least 1", c.Queue)
	}
	_, err := c.ingestors()
	return err
}

// validateReplayVenue checks --replay-venue against the registered feeds.
func validateReplayVenue(v string) error {
	if v == "" {
		return nil
	}
	if _, err := ingest.NewFeed(v, ingest.FeedConfig{}); err != nil {
		return fmt.Errorf("--replay-venue: %w", err)
	}
	return nil
}
