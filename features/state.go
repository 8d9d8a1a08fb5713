package features

import (
	"math"

	"github.com/signald-dev/signald/ingest"
)

// instKey identifies an instrument; a struct of two strings needs no
// allocation to look up.
type instKey struct{ venue, instrument string }

func (k instKey) less(o instKey) bool {
	if k.venue != o.venue {
		return k.venue < o.venue
	}
	return k.instrument < o.instrument
}

// stepAcc accumulates one instrument's ticks of one open step.
type stepAcc struct {
	hasQuote   bool
	quoteTS    int64
	mid        float64
	spreadBps  float64
	buyVol     float64
	sellVol    float64
	volume     float64
	tradeCount int
}

// instState is the incremental state of one instrument.
type instState struct {
	key       instKey
	firstStep int64     // first step with an accepted tick
	pending   []stepAcc // open steps, indexed by step mod len

	// Values of the last closed step.
	mid        float64 // carried forward; NaN until the first quote
	spreadBps  float64
	ret        float64 // log(mid / previous step's mid); NaN until two mids
	tradeCount float64
	volume     float64
	steps      int // closed steps since firstStep

	rets    series
	buys    series
	sells   series
	retWin  []momentWindow // one per Config.Windows entry
	buyWin  []sumWindow
	sellWin []sumWindow
}

func newInstState(key instKey, firstStep int64, cfg *Config) *instState {
	maxW := cfg.maxWindow()
	s := &instState{
		key:       key,
		firstStep: firstStep,
		pending:   make([]stepAcc, cfg.openSlots()),
		mid:       math.NaN(),
		spreadBps: math.NaN(),
		ret:       math.NaN(),
		rets:      newSeries(maxW),
		buys:      newSeries(maxW),
		sells:     newSeries(maxW),
		retWin:    make([]momentWindow, len(cfg.Windows)),
		buyWin:    make([]sumWindow, len(cfg.Windows)),
		sellWin:   make([]sumWindow, len(cfg.Windows)),
	}
	for i, w := range cfg.Windows {
		s.retWin[i].w = w
		s.buyWin[i].w = w
		s.sellWin[i].w = w
	}
	return s
}

// applyQuote records a valid quote in the step accumulator.
func (a *stepAcc) applyQuote(t *ingest.Tick) {
	if a.hasQuote && t.RecvTS < a.quoteTS {
		return // an earlier quote of the same step, applied out of order
	}
	mid := (t.BidPx + t.AskPx) / 2
	a.hasQuote = true
	a.quoteTS = t.RecvTS
	a.mid = mid
	a.spreadBps = (t.AskPx - t.BidPx) / mid * 1e4
}

// applyTrade records a valid trade in the step accumulator. Trades without a
// taker side count in volume and trade_count but not in the imbalance.
func (a *stepAcc) applyTrade(t *ingest.Tick) {
	a.tradeCount++
	a.volume += t.Size
	switch t.Side {
	case ingest.SideBuy:
		a.buyVol += t.Size
	case ingest.SideSell:
		a.sellVol += t.Size
	}
}

// closeStep folds the accumulator of the step being closed into the rolling
// state. An empty accumulator is an empty step.
func (s *instState) closeStep(a *stepAcc) {
	if a.hasQuote {
		prev := s.mid
		s.mid, s.spreadBps = a.mid, a.spreadBps
		s.ret = math.Log(s.mid / prev) // NaN while prev is NaN
	} else if !math.IsNaN(s.mid) {
		s.ret = 0
	}
	s.tradeCount = float64(a.tradeCount)
	s.volume = a.volume
	s.steps++

	if !math.IsNaN(s.ret) {
		for i := range s.retWin {
			old, ok := s.rets.evicted(s.retWin[i].w)
			s.retWin[i].push(s.ret, old, ok)
		}
		s.rets.push(s.ret)
		for i := range s.retWin {
			s.retWin[i].maybeReanchor(&s.rets)
		}
	}
	for i := range s.buyWin {
		old, ok := s.buys.evicted(s.buyWin[i].w)
		s.buyWin[i].push(a.buyVol, old, ok)
		old, ok = s.sells.evicted(s.sellWin[i].w)
		s.sellWin[i].push(a.sellVol, old, ok)
	}
	s.buys.push(a.buyVol)
	s.sells.push(a.sellVol)
	*a = stepAcc{}
}
