package regime

import "math"

// trend makes time-series momentum calls from the t-statistic of the W-step
// return,
//
//	tau = mean(ret, W) * sqrt(W) / std(ret, W)
//
// which is the W-step return scaled by its own volatility (so one threshold
// fits every instrument and volatility level):
//
//	flat  -> long   when tau >  enter     flat  -> short  when tau < -enter
//	long  -> flat   when tau <  exit      short -> flat   when tau > -exit
//	long  -> short  when tau < -enter     short -> long   when tau >  enter
//	long  -> flat   when mid <= stop      short -> flat   when mid >= stop
//
// The band between exit and enter is the hysteresis that keeps calls from
// flapping; after a stop-out the call stays flat until |tau| has fallen below
// exit (re-armed). The stop is volatility based and trailing:
//
//	long:  stop = max(stop, mid * exp(-stopK * std * sqrt(W)))
//	short: stop = min(stop, mid * exp(+stopK * std * sqrt(W)))
//
// Strength = min(1, |tau| / (2*enter)): 0.5 at entry, 1 at twice the entry
// threshold.
type trend struct {
	enter, exit, stopK float64
	sqrtW              float64
}

type trendState struct {
	call     int8 // 1 long, 0 flat, -1 short
	stop     float64
	strength float64
	tau      float64
	blocked  bool // stopped out, waiting for |tau| < exit
	reason   string
}

// Reasons of a call change, in explanations.
const (
	reasonEnter   = "momentum"
	reasonExit    = "momentum faded"
	reasonStopped = "stopped out"
)

// step updates the call from mid, tau and the per-step volatility std and
// reports whether the call changed.
func (tr *trend) step(s *trendState, mid, tau, std float64) (changed bool) {
	s.tau = tau
	s.strength = min(1, math.Abs(tau)/(2*tr.enter))
	prev := s.call
	if s.blocked && math.Abs(tau) < tr.exit {
		s.blocked = false
	}
	dist := tr.stopK * std * tr.sqrtW
	switch s.call {
	case 1:
		switch {
		case mid <= s.stop:
			s.call, s.blocked, s.reason = 0, true, reasonStopped
		case tau < -tr.enter:
			s.call, s.stop, s.reason = -1, mid*math.Exp(dist), reasonEnter
		case tau < tr.exit:
			s.call, s.reason = 0, reasonExit
		default:
			s.stop = max(s.stop, mid*math.Exp(-dist))
		}
	case -1:
		switch {
		case mid >= s.stop:
			s.call, s.blocked, s.reason = 0, true, reasonStopped
		case tau > tr.enter:
			s.call, s.stop, s.reason = 1, mid*math.Exp(-dist), reasonEnter
		case tau > -tr.exit:
			s.call, s.reason = 0, reasonExit
		default:
			s.stop = min(s.stop, mid*math.Exp(dist))
		}
	default:
		switch {
		case s.blocked:
		case tau > tr.enter:
			s.call, s.stop, s.reason = 1, mid*math.Exp(-dist), reasonEnter
		case tau < -tr.enter:
			s.call, s.stop, s.reason = -1, mid*math.Exp(dist), reasonEnter
		}
	}
	if s.call == 0 {
		s.stop = math.NaN()
	}
	return s.call != prev
}

func callName(c int8) string {
	switch c {
	case 1:
		return CallLong
	case -1:
		return CallShort
	}
	return CallFlat
}

// Trend call states.
const (
	CallLong  = "long"
	CallFlat  = "flat"
	CallShort = "short"
)
