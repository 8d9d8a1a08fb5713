package evaluate

import (
	"math"
)

// order is a trend call waiting for its fill.
type order struct {
	at      int64 // fill at the first price received after this
	pos     int8
	stop    float64
	sigTime int64
}

// strat is one instrument's trend-call strategy: value v at price ref, held
// position pos (units of equity).
type strat struct {
	pos      int8
	stop     float64
	v, ref   float64
	orders   []order
	open     Trade
	vEntry   float64
	trades   []Trade
	turnover float64
	exposed  int64 // grid points with a position
	costSum  float64
	costN    int
}

// value is the strategy's equity marked at px.
func (s *strat) value(px float64) float64 {
	if s.pos == 0 {
		return s.v
	}
	return s.v * (1 + float64(s.pos)*(px/s.ref-1))
}

// cost is the fraction of equity one unit traded costs at a price with the
// given spread (bps; NaN without quotes).
func (o Options) cost(spreadBps float64) float64 {
	c := (o.FeeBps + o.SlippageBps) / 1e4
	if o.SpreadFraction > 0 && !math.IsNaN(spreadBps) {
		c += o.SpreadFraction * spreadBps / 1e4
	}
	return c
}

// onPrice fills due orders and checks the stop at a new price.
func (s *strat) onPrice(e *Evaluator, in *inst, px, spread float64, ts int64) {
	for len(s.orders) > 0 && ts > s.orders[0].at {
		o := s.orders[0]
		s.orders = s.orders[1:]
		if o.pos != s.pos {
			s.trade(e, in, px, spread, ts, o.pos, "call")
		}
		if s.pos != 0 {
			s.stop = o.stop
		}
	}
	if len(s.orders) == 0 {
		s.orders = nil
	}
	if s.pos == 1 && px <= s.stop || s.pos == -1 && px >= s.stop {
		s.trade(e, in, px, spread, ts, 0, "stop")
	}
}

// trade moves the position to pos at price px; a flip is an exit and an entry.
func (s *strat) trade(e *Evaluator, in *inst, px, spread float64, ts int64, pos int8, reason string) {
	c := e.o.cost(spread)
	v := s.value(px)
	if s.pos != 0 {
		v *= 1 - c
		s.turnover++
		s.costSum += c
		s.costN++
		t := s.open
		t.ExitTime, t.ExitPrice, t.Exit = ts, px, reason
		t.Return = v/s.vEntry - 1
		s.trades = append(s.trades, t)
		s.pos = 0
		s.stop = math.NaN()
	}
	if pos != 0 {
		s.vEntry = v
		v *= 1 - c
		s.turnover++
		s.costSum += c
		s.costN++
		s.open = Trade{Venue: in.key.Venue, Instrument: in.key.Instrument, Side: sideName(pos), EntryTime: ts, EntryPrice: px}
		s.pos = pos
	}
	s.v, s.ref = v, px
}

func sideName(p int8) string {
	if p > 0 {
		return "long"
	}
	return "short"
}

// bhEntry starts the buy-and-hold baseline at the first price.
func (in *inst) bhEntry(o Options, px, spread float64) {
	in.bhV0 = 1 - o.cost(spread)
}

func (in *inst) bhValue(o Options) float64 {
	return in.bhV0 * in.px / in.p0
}

// curve accumulates the statistics of an equity curve sampled on the grid.
type curve struct {
	n               int64
	prev            float64
	mean, m2, down2 float64
	peak, maxDD     float64
	dd, maxDDSteps  int64
}

func newCurve() curve { return curve{prev: 1, peak: 1} }

func (c *curve) add(v float64) {
	r := 0.0
	if c.prev != 0 {
		r = v/c.prev - 1
	}
	c.n++
	d := r - c.mean
	c.mean += d / float64(c.n)
	c.m2 += d * (r - c.mean)
	if r < 0 {
		c.down2 += r * r
	}
	c.prev = v
	if v >= c.peak {
		c.peak, c.dd = v, 0
		return
	}
	c.dd++
	c.maxDD = max(c.maxDD, 1-v/c.peak)
	c.maxDDSteps = max(c.maxDDSteps, c.dd)
}

// stats turns the curve into Stats; perYear is grid steps per year.
func (c *curve) stats(step float64, perYear float64) Stats {
	st := Stats{TotalReturn: F(c.prev - 1), MaxDrawdown: F(c.maxDD), MaxDrawdownSeconds: F(float64(c.maxDDSteps) * step), Steps: c.n}
	if c.n > 1 {
		sd := math.Sqrt(c.m2 / float64(c.n-1))
		st.AnnVol = F(sd * math.Sqrt(perYear))
		st.Sharpe = F(ratio(c.mean, sd) * math.Sqrt(perYear))
		st.Sortino = F(ratio(c.mean, math.Sqrt(c.down2/float64(c.n))) * math.Sqrt(perYear))
	} else {
		st.AnnVol, st.Sharpe, st.Sortino = F(math.NaN()), F(math.NaN()), F(math.NaN())
	}
	return st
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// series is a sampled path of one instrument (or the total): every stride-th
// grid point, halved when full, so its size stays bounded.
type series struct {
	max     int
	startGI int64
	stride  int64
	t       []int64
	lp      []float32
	eq, bh  []float64
	started bool
}

func newSeries(max int) series { return series{max: max, stride: 1} }

func (s *series) add(gi, t int64, lp float32, eq, bh float64) {
	if !s.started {
		s.started, s.startGI = true, gi
	}
	if (gi-s.startGI)%s.stride != 0 {
		return
	}
	if len(s.t) == s.max {
		k := 0
		for i := 0; i < len(s.t); i += 2 {
			s.t[k], s.lp[k], s.eq[k], s.bh[k] = s.t[i], s.lp[i], s.eq[i], s.bh[i]
			k++
		}
		s.t, s.lp, s.eq, s.bh = s.t[:k], s.lp[:k], s.eq[:k], s.bh[:k]
		s.stride *= 2
		if (gi-s.startGI)%s.stride != 0 {
			return
		}
	}
	s.t = append(s.t, t)
	s.lp = append(s.lp, lp)
	s.eq = append(s.eq, eq)
	s.bh = append(s.bh, bh)
}
