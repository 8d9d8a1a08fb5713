package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signald-dev/signald/market"
)

// Defaults of SyntheticConfig.
const (
	DefaultSyntheticInstruments = 100
	DefaultSyntheticQuoteRate   = 2.0
	DefaultSyntheticTradeRate   = 1.0
	DefaultSyntheticFrame       = 10 * time.Millisecond
)

// DefaultSyntheticVenues are the venues of a synthetic source.
var DefaultSyntheticVenues = []string{"synth-a", "synth-b", "synth-c", "synth-d"}

// SyntheticConfig configures a Synthetic source. The zero value of each
// field selects its default.
type SyntheticConfig struct {
	// Instruments is the number of (venue, instrument) pairs; default 100.
	Instruments int
	// Venues the instruments are spread over, round robin; default
	// DefaultSyntheticVenues.
	Venues []string
	// Seed of the random generator: the same seed (and Start) gives the same
	// ticks. Default 0, a seed like any other.
	Seed uint64
	// QuoteRate and TradeRate are the mean quotes and trades per instrument
	// and second (Poisson); defaults 2 and 1.
	QuoteRate, TradeRate float64
	// Start is the time of the first tick; default the wall clock when Run
	// starts.
	Start time.Time
	// Unpaced generates as fast as possible instead of in real time.
	Unpaced bool
	// Duration stops the source after this much generated time; 0 runs until
	// the context ends.
	Duration time.Duration
	// Frame is the generation period: ticks are generated and emitted per
	// frame of this length; default 10ms.
	Frame time.Duration
}

func (c SyntheticConfig) withDefaults() (SyntheticConfig, error) {
	if c.Instruments == 0 {
		c.Instruments = DefaultSyntheticInstruments
	}
	if c.Instruments < 1 || c.Instruments > 1_000_000 {
		return c, fmt.Errorf("synthetic: %d instruments: must be 1-1000000", c.Instruments)
	}
	if len(c.Venues) == 0 {
		c.Venues = DefaultSyntheticVenues
	}
	for _, v := range c.Venues {
		if v == "" || strings.Contains(v, ":") {
			return c, fmt.Errorf("synthetic: venue %q: must be non-empty and without ':'", v)
		}
	}
	if c.QuoteRate == 0 {
		c.QuoteRate = DefaultSyntheticQuoteRate
	}
	if c.TradeRate == 0 {
		c.TradeRate = DefaultSyntheticTradeRate
	}
	if c.QuoteRate < 0 || c.TradeRate < 0 || math.IsInf(c.QuoteRate, 0) || math.IsInf(c.TradeRate, 0) {
		return c, fmt.Errorf("synthetic: rates %v quotes/s, %v trades/s: must be finite and >= 0", c.QuoteRate, c.TradeRate)
	}
	if c.Frame == 0 {
		c.Frame = DefaultSyntheticFrame
	}
	if c.Frame < time.Millisecond {
		return c, fmt.Errorf("synthetic: frame %v: must be at least 1ms", c.Frame)
	}
	if c.Duration < 0 {
		return c, fmt.Errorf("synthetic: duration %v: must be >= 0", c.Duration)
	}
	return c, nil
}

// Synthetic generator regimes: the ground truth a detector should find.
const (
	SynthCalm = iota
	SynthVolatile
	SynthTrendUp
	SynthTrendDown
)

// Per-second dynamics of the log mid in each regime.
var (
	synthSigma = [4]float64{2e-4, 8e-4, 2e-4, 2e-4} // volatility per sqrt(s)
	synthDrift = [4]float64{0, 0, 3e-4, -3e-4}      // drift per s
	synthStay  = [4]float64{300, 60, 90, 90}        // mean duration, s
)

type synthInst struct {
	venue, instrument, symbol string
	venueIdx                  int
	logMid                    float64
	spreadBps                 float64
	regime                    int
	regimeUntil               int64
	lastQuote                 int64
	nextQuote, nextTrade      int64
	tradeID                   uint64
}

// Synthetic generates random-walk quotes and trades for many instruments,
// with regime changes (calm, volatile, trending up or down; exponential
// durations), for load and soak runs with more instruments than the
// recorded captures have. Slot i trades on Venues[i % len(Venues)] as
// instrument "SYN<i>-USD" (i zero-padded to the width of the largest), except that every tenth slot lists the previous
// slot's instrument on another venue (a name on two venues, as BTC-USDT on
// several exchanges). The ticks are a pure function of the config.
type Synthetic struct {
	cfg      SyntheticConfig
	log      *slog.Logger
	fm       []*FeedMetrics
	rng      *rand.Rand
	insts    []synthInst
	seq      []uint64 // per venue
	venueIdx map[string]int
	buf      []market.Tick
}

// NewSynthetic validates cfg and returns a source. logger and m may be nil.
func NewSynthetic(cfg SyntheticConfig, logger *slog.Logger, m *Metrics) (*Synthetic, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Synthetic{cfg: cfg, log: logger.With("component", "synthetic"), seq: make([]uint64, len(cfg.Venues))}
	s.venueIdx = make(map[string]int, len(cfg.Venues))
	for i, v := range cfg.Venues {
		if _, dup := s.venueIdx[v]; dup {
			return nil, fmt.Errorf("synthetic: venue %q listed twice", v)
		}
		s.venueIdx[v] = i
		s.fm = append(s.fm, m.Feed(v))
	}
	return s, nil
}

// Instruments returns the "venue:instrument" ids the source generates, in
// slot order.
func (s *Synthetic) Instruments() []string {
	out := make([]string, s.cfg.Instruments)
	for i := range out {
		v, inst := s.slot(i)
		out[i] = s.cfg.Venues[v] + ":" + inst
	}
	return out
}

func (s *Synthetic) slot(i int) (venue int, instrument string) {
	n := i
	if i%10 == 9 && len(s.cfg.Venues) > 1 {
		n = i - 1 // same name as slot i-1, on the next venue
	}
	return i % len(s.cfg.Venues), fmt.Sprintf("SYN%0*d-USD", len(strconv.Itoa(s.cfg.Instruments-1)), n)
}

func (s *Synthetic) expNext(t int64, rate float64) int64 {
	if rate == 0 {
		return math.MaxInt64
	}
	return t + int64(s.rng.ExpFloat64()/rate*1e9) + 1
}

func (s *Synthetic) newRegime(in *synthInst, t int64) {
	u := s.rng.Float64()
	switch {
	case u < 0.6:
		in.regime = SynthCalm
	case u < 0.8:
		in.regime = SynthVolatile
	case u < 0.9:
		in.regime = SynthTrendUp
	default:
		in.regime = SynthTrendDown
	}
	in.regimeUntil = t + int64(s.rng.ExpFloat64()*synthStay[in.regime]*1e9)
}

// Run generates ticks until ctx ends or Duration is reached, calling emit
// once per frame with that frame's ticks in RecvTS order. The slice is
// reused after emit returns. Paced, a frame is emitted when the wall clock
// reaches its end; a source that falls behind (a busy machine) catches up
// without sleeping, so tick times stay on the generated clock.
func (s *Synthetic) Run(ctx context.Context, emit func([]market.Tick) error) error {
	cfg := s.cfg
	start := cfg.Start
	if start.IsZero() {
		start = time.Now()
	}
	t0 := start.UnixNano()
	s.rng = rand.New(rand.NewPCG(cfg.Seed, 0x5eed5eed))
	s.seq = make([]uint64, len(cfg.Venues))
	s.insts = make([]synthInst, cfg.Instruments)
	for i := range s.insts {
		v, name := s.slot(i)
		in := &s.insts[i]
		*in = synthInst{venue: cfg.Venues[v], instrument: name, symbol: strings.ReplaceAll(name, "-", ""), venueIdx: v}
		in.logMid = math.Log(1 + 999*s.rng.Float64()) // 1 to 1000, skewed low like real prices
		if i%10 == 9 && len(cfg.Venues) > 1 {
			in.logMid = s.insts[i-1].logMid // the same asset on another venue
		}
		in.spreadBps = 1 + 9*s.rng.Float64()
		s.newRegime(in, t0)
		in.lastQuote = t0
		in.nextQuote = s.expNext(t0, cfg.QuoteRate)
		in.nextTrade = s.expNext(t0, cfg.TradeRate)
	}
	// An initial quote for every instrument, so the first feature step
	// already has them all.
	s.buf = s.buf[:0]
	for i := range s.insts {
		s.quote(&s.insts[i], t0, 0)
	}
	if err := s.emit(emit); err != nil {
		return err
	}
	s.log.Info("synthetic source started", "instruments", cfg.Instruments, "venues", len(cfg.Venues), "seed", cfg.Seed,
		"ticks_per_second", float64(cfg.Instruments)*(cfg.QuoteRate+cfg.TradeRate), "paced", !cfg.Unpaced)
	frame := int64(cfg.Frame)
	var timer *time.Timer
	for end := t0 + frame; ; end += frame {
		if cfg.Duration > 0 && end > t0+int64(cfg.Duration) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !cfg.Unpaced {
			if d := time.Until(time.Unix(0, end)); d > 0 {
				if timer == nil {
					timer = time.NewTimer(d)
					defer timer.Stop()
				} else {
					timer.Reset(d)
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
			}
		}
		s.buf = s.buf[:0]
		for i := range s.insts {
			in := &s.insts[i]
			for in.nextQuote < end || in.nextTrade < end {
				if in.nextQuote <= in.nextTrade {
					t := in.nextQuote
					s.quote(in, t, float64(t-in.lastQuote)/1e9)
					in.nextQuote = s.expNext(t, cfg.QuoteRate)
				} else {
					s.trade(in, in.nextTrade)
					in.nextTrade = s.expNext(in.nextTrade, cfg.TradeRate)
				}
			}
		}
		slices.SortStableFunc(s.buf, func(a, b market.Tick) int { return cmp.Compare(a.RecvTS, b.RecvTS) })
		if err := s.emit(emit); err != nil {
			return err
		}
	}
}

func (s *Synthetic) emit(emit func([]market.Tick) error) error {
	if len(s.buf) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	for i := range s.buf {
		t := &s.buf[i]
		v := s.venueIdx[t.Venue]
		s.seq[v]++ // in emission order: per venue, increasing like a feed's
		t.Seq = s.seq[v]
		t.ComputeID()
		t.IngestTS = now
	}
	if err := emit(s.buf); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("synthetic: emit: %w", err)
	}
	return nil
}

// quote moves the instrument's mid over dt seconds and appends its quote.
func (s *Synthetic) quote(in *synthInst, t int64, dt float64) {
	for t >= in.regimeUntil {
		s.newRegime(in, in.regimeUntil)
	}
	r := in.regime
	in.logMid += synthDrift[r]*dt + synthSigma[r]*math.Sqrt(dt)*s.rng.NormFloat64()
	in.lastQuote = t
	mid := math.Exp(in.logMid)
	half := in.spreadBps / 2e4
	if r == SynthVolatile {
		half *= 3
	}
	s.buf = append(s.buf, market.Tick{
		Venue: in.venue, Instrument: in.instrument, Symbol: in.symbol, Kind: market.KindQuote,
		ExchTS: t, RecvTS: t,
		BidPx: mid * (1 - half), BidSz: 1 + 10*s.rng.ExpFloat64(),
		AskPx: mid * (1 + half), AskSz: 1 + 10*s.rng.ExpFloat64(),
	})
	s.fm[in.venueIdx].Ticks(market.KindQuote, 1)
}

// trade appends a trade at the touch; trends lean the taker side.
func (s *Synthetic) trade(in *synthInst, t int64) {
	pBuy := 0.5
	switch in.regime {
	case SynthTrendUp:
		pBuy = 0.65
	case SynthTrendDown:
		pBuy = 0.35
	}
	mid := math.Exp(in.logMid)
	half := in.spreadBps / 2e4
	if in.regime == SynthVolatile {
		half *= 3
	}
	side, px := market.SideSell, mid*(1-half)
	if s.rng.Float64() < pBuy {
		side, px = market.SideBuy, mid*(1+half)
	}
	in.tradeID++
	s.buf = append(s.buf, market.Tick{
		Venue: in.venue, Instrument: in.instrument, Symbol: in.symbol, Kind: market.KindTrade, Side: side,
		ExchTS: t, RecvTS: t, TradeID: in.tradeID,
		Price: px, Size: math.Exp(s.rng.NormFloat64()),
	})
	s.fm[in.venueIdx].Ticks(market.KindTrade, 1)
}
