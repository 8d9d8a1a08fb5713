package features

import (
	"math"

	"github.com/signald-dev/signald/market"
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

func (k instKey) cmp(o instKey) int {
	switch {
	case k.less(o):
		return -1
	case o.less(k):
		return 1
	}
	return 0
}

// stepAcc accumulates one instrument's ticks of one open step. It is
// independent of the order in which the step's ticks arrive, except for ties
// of RecvTS (the tick applied last wins).
type stepAcc struct {
	quotes         int
	quoteTS        int64 // RecvTS of the latest quote
	mid, spreadBps float64
	bidSz, askSz   float64
	microDev       float64 // of the latest quote
	midMin, midMax float64

	trades           int
	volume, notional float64
	buyVol, sellVol  float64
	firstTradeTS     int64
	lastTradeTS      int64
	lastTradePx      float64
}

// instState is one instrument: its open steps and the per-step values it
// carries forward. The rolling window state lives in the engine's
// structure-of-arrays store at index idx.
type instState struct {
	key       instKey
	firstStep int64     // first step with an accepted tick
	pending   []stepAcc // open steps, indexed by step mod len
	idx       int       // row in the SoA store; -1 until the instrument's first step closes
	group     int       // instruments of the same name across venues (basis)

	// Carried values; NaN until first defined.
	mid, spreadBps, microDev, bboImb float64
	lastTradePx                      float64
	lastTradeTS                      int64 // 0: no trade yet
	tradeSize, tradeIAT              float64
}

func newInstState(key instKey, firstStep int64, slots int) *instState {
	nan := math.NaN()
	return &instState{
		key: key, firstStep: firstStep, pending: make([]stepAcc, slots), idx: -1,
		mid: nan, spreadBps: nan, microDev: nan, bboImb: nan, lastTradePx: nan, tradeSize: nan, tradeIAT: nan,
	}
}

// applyQuote records a valid quote in the step accumulator.
func (a *stepAcc) applyQuote(t *market.Tick) {
	mid := (t.BidPx + t.AskPx) / 2
	if a.quotes == 0 {
		a.midMin, a.midMax = mid, mid
	} else {
		a.midMin, a.midMax = min(a.midMin, mid), max(a.midMax, mid)
	}
	a.quotes++
	if a.quotes > 1 && t.RecvTS < a.quoteTS {
		return // an earlier quote of the same step, applied out of order
	}
	a.quoteTS = t.RecvTS
	a.mid = mid
	a.spreadBps = (t.AskPx - t.BidPx) / mid * 1e4
	a.bidSz, a.askSz = t.BidSz, t.AskSz
	if tot := t.BidSz + t.AskSz; tot > 0 {
		micro := (t.BidPx*t.AskSz + t.AskPx*t.BidSz) / tot
		a.microDev = (micro - mid) / mid * 1e4
	} else {
		a.microDev = 0
	}
}

// applyTrade records a valid trade in the step accumulator. Trades without a
// taker side count in volume and trade_count but not in signed_vol.
func (a *stepAcc) applyTrade(t *market.Tick) {
	if a.trades == 0 || t.RecvTS < a.firstTradeTS {
		a.firstTradeTS = t.RecvTS
	}
	if a.trades == 0 || t.RecvTS >= a.lastTradeTS {
		a.lastTradeTS, a.lastTradePx = t.RecvTS, t.Price
	}
	a.trades++
	a.volume += t.Size
	a.notional += t.Price * t.Size
	switch t.Side {
	case market.SideBuy:
		a.buyVol += t.Size
	case market.SideSell:
		a.sellVol += t.Size
	}
}

// closeStep folds the accumulator of the step being closed into the carried
// values and writes the step's base values to x (NaN where a base is not
// defined yet). basis_bps is left for the cross-venue pass. An empty
// accumulator is an empty step.
func (s *instState) closeStep(a *stepAcc, stepSec float64, x *[numBases]float64) {
	nan := math.NaN()
	prevMid := s.mid
	if a.quotes > 0 {
		s.mid, s.spreadBps, s.microDev = a.mid, a.spreadBps, a.microDev
		if tot := a.bidSz + a.askSz; tot > 0 {
			s.bboImb = (a.bidSz - a.askSz) / tot
		} else {
			s.bboImb = 0
		}
		x[bMidRet] = math.Log(s.mid / prevMid) // NaN while prevMid is NaN
		x[bMidRange] = (a.midMax - a.midMin) / s.mid * 1e4
	} else {
		x[bMidRet] = 0 * prevMid // 0, or NaN before the first mid
		x[bMidRange] = 0
	}
	x[bSpread], x[bMicroDev], x[bBBOImb] = s.spreadBps, s.microDev, s.bboImb

	x[bSignedVol] = a.buyVol - a.sellVol
	x[bVolume] = a.volume
	x[bNotional] = a.notional
	x[bTradeCount] = float64(a.trades)
	x[bQuoteRate] = float64(a.quotes) / stepSec
	if a.trades > 0 {
		x[bTradeRet] = math.Log(a.lastTradePx / s.lastTradePx) // NaN before the first trade
		x[bVWAPDev] = (a.notional/a.volume - s.mid) / s.mid * 1e4
		x[bTradeImb] = (a.buyVol - a.sellVol) / a.volume
		s.tradeSize = a.volume / float64(a.trades)
		switch {
		case s.lastTradeTS != 0:
			s.tradeIAT = float64(a.lastTradeTS-s.lastTradeTS) / 1e9 / float64(a.trades)
		case a.trades > 1:
			s.tradeIAT = float64(a.lastTradeTS-a.firstTradeTS) / 1e9 / float64(a.trades-1)
		}
		s.lastTradePx, s.lastTradeTS = a.lastTradePx, a.lastTradeTS
	} else {
		x[bTradeRet] = 0 * s.lastTradePx
		x[bVWAPDev] = 0 * s.mid
		x[bTradeImb] = 0
	}
	x[bTradeSize], x[bTradeIAT] = s.tradeSize, s.tradeIAT
	x[bBasis] = nan
	*a = stepAcc{}
}
