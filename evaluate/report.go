package evaluate

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// F is a float64 that encodes as JSON null when it is NaN or infinite
// (undefined: a Sharpe ratio without variance, a study without events).
type F float64

// MarshalJSON implements json.Marshaler.
func (f F) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// UnmarshalJSON implements json.Unmarshaler (null is NaN).
func (f *F) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = F(math.NaN())
		return nil
	}
	v, err := strconv.ParseFloat(string(b), 64)
	*f = F(v)
	return err
}

// Stats are an equity curve's statistics. Returns are simple returns of the
// equity; volatility, Sharpe and Sortino are per grid step, annualized over
// 365 days (no risk-free rate).
type Stats struct {
	TotalReturn        F     `json:"total_return"`
	AnnVol             F     `json:"ann_vol"`
	Sharpe             F     `json:"sharpe"`
	Sortino            F     `json:"sortino"`
	MaxDrawdown        F     `json:"max_drawdown"`
	MaxDrawdownSeconds F     `json:"max_drawdown_seconds"`
	Steps              int64 `json:"steps"`
	// Trading statistics (the strategy only).
	Trades   int `json:"trades"`
	HitRate  F   `json:"hit_rate"`
	AvgWin   F   `json:"avg_win"`
	AvgLoss  F   `json:"avg_loss"`
	Turnover F   `json:"turnover"` // units of equity traded
	Exposure F   `json:"exposure"` // share of steps with a position
}

// Trade is one round trip of the strategy (Exit "open": still held at the end,
// marked at the last price without an exit cost).
type Trade struct {
	Venue      string  `json:"venue"`
	Instrument string  `json:"instrument"`
	Side       string  `json:"side"`
	EntryTime  int64   `json:"entry_time"`
	EntryPrice float64 `json:"entry_price"`
	ExitTime   int64   `json:"exit_time"`
	ExitPrice  float64 `json:"exit_price"`
	Exit       string  `json:"exit"` // call, stop or open
	Return     float64 `json:"return"`
}

// InstrumentReport is the strategy on one instrument.
type InstrumentReport struct {
	Venue      string         `json:"venue"`
	Instrument string         `json:"instrument"`
	Strategy   Stats          `json:"strategy"`
	BuyHold    Stats          `json:"buy_hold"`
	Random     RandomBaseline `json:"random"`
	path       *series
}

// Report is the evaluation of one backtest.
type Report struct {
	Step        float64          `json:"step_seconds"`
	Delay       float64          `json:"delay_seconds"`
	FeeBps      float64          `json:"fee_bps"`
	SlippageBps float64          `json:"slippage_bps"`
	SpreadFrac  float64          `json:"spread_fraction"`
	Horizons    []int            `json:"horizons"`
	Seed        uint64           `json:"seed"`
	From        time.Time        `json:"from"`
	To          time.Time        `json:"to"`
	Ticks       int64            `json:"ticks"`
	LateTicks   int64            `json:"late_ticks"`
	Signals     map[string]int64 `json:"signals"`
	LateSignals int64            `json:"late_signals"`

	Strategy    Stats              `json:"strategy"` // the total
	BuyHold     Stats              `json:"buy_hold"`
	Random      RandomBaseline     `json:"random"` // on the mean instrument return
	MeanReturn  F                  `json:"mean_instrument_return"`
	Instruments []InstrumentReport `json:"instruments"`
	Trades      []Trade            `json:"trades"`
	Regime      []RegimeRow        `json:"regime"`
	Events      []EventRow         `json:"novelty"`
	IC          []ICRow            `json:"ic"`
	ICByInst    []ICInstrument     `json:"ic_by_instrument"`

	total    *series
	events   []*Event
	controls []*Event
}

func (e *Evaluator) report() *Report {
	o := e.o
	r := &Report{Step: o.Step.Seconds(), Delay: o.Delay.Seconds(), FeeBps: o.FeeBps, SlippageBps: o.SlippageBps, SpreadFrac: o.SpreadFraction,
		Horizons: o.Horizons, Seed: o.Seed, Ticks: e.ticks, LateTicks: e.late, Signals: e.sigCount, LateSignals: e.lateSig}
	if e.first != 0 {
		r.From = time.Unix(0, e.first-e.step).UTC()
		r.To = time.Unix(0, e.first+(e.gi-1)*e.step).UTC()
	}
	stepS := o.Step.Seconds()
	perYear := 365 * 86400 / stepS
	r.Strategy = e.total.stats(stepS, perYear)
	r.BuyHold = e.totalBH.stats(stepS, perYear)
	r.total = &e.totalSer
	rng := rand.New(rand.NewPCG(o.Seed, 0xd1ce))
	drawSum := make([]float64, o.Draws)
	var allTrades []Trade
	var turnover, exposed, steps float64
	var meanRet welford
	insts := slices.Clone(e.order)
	slices.SortFunc(insts, func(a, b *inst) int {
		if a.key.Venue != b.key.Venue {
			return cmpStr(a.key.Venue, b.key.Venue)
		}
		return cmpStr(a.key.Instrument, b.key.Instrument)
	})
	nStarted := 0
	for _, in := range insts {
		if !in.started {
			continue
		}
		nStarted++
		trades := in.st.trades
		if in.st.pos != 0 {
			t := in.st.open
			t.ExitTime, t.ExitPrice, t.Exit = e.first+(e.gi-1)*e.step, in.px, "open"
			t.Return = in.st.value(in.px)/in.st.vEntry - 1
			trades = append(slices.Clip(trades), t)
		}
		ir := InstrumentReport{Venue: in.key.Venue, Instrument: in.key.Instrument, path: &in.ser}
		ir.Strategy = in.eq.stats(stepS, perYear)
		tradeStats(&ir.Strategy, trades)
		ir.Strategy.Turnover = F(in.st.turnover)
		ir.Strategy.Exposure = F(float64(in.st.exposed) / float64(max(1, in.eq.n)))
		ir.BuyHold = in.bh.stats(stepS, perYear)
		ir.BuyHold.Exposure = 1
		d := e.randomDraws(in, rng)
		for i := range d {
			drawSum[i] += d[i]
		}
		ir.Random = randomOf(d, float64(ir.Strategy.TotalReturn))
		meanRet.add(float64(ir.Strategy.TotalReturn))
		turnover += in.st.turnover
		exposed += float64(in.st.exposed)
		steps += float64(in.eq.n)
		allTrades = append(allTrades, trades...)
		r.Instruments = append(r.Instruments, ir)
	}
	slices.SortStableFunc(allTrades, func(a, b Trade) int { return int(sign(a.EntryTime - b.EntryTime)) })
	r.Trades = allTrades
	tradeStats(&r.Strategy, allTrades)
	r.Strategy.Turnover = F(turnover / float64(max(1, nStarted)))
	r.Strategy.Exposure = F(exposed / max(1, steps))
	r.BuyHold.Exposure = 1
	r.MeanReturn = F(meanRet.meanOrNaN())
	if nStarted > 0 {
		for i := range drawSum {
			drawSum[i] /= float64(nStarted)
		}
		r.Random = randomOf(drawSum, meanRet.mean())
	}
	r.Regime, r.Events, r.controls = e.studies()
	r.events = e.events
	r.IC, r.ICByInst = e.icRows()
	return r
}

func sign(x int64) int64 {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func tradeStats(st *Stats, trades []Trade) {
	st.Trades = len(trades)
	var wins, losses welford
	for _, t := range trades {
		if t.Return > 0 {
			wins.add(t.Return)
		} else {
			losses.add(t.Return)
		}
	}
	st.HitRate = F(math.NaN())
	if len(trades) > 0 {
		st.HitRate = F(float64(wins.count()) / float64(len(trades)))
	}
	st.AvgWin, st.AvgLoss = F(wins.meanOrNaN()), F(losses.meanOrNaN())
}

// Summary writes a few lines for a person (the backtest's stderr).
func (r *Report) Summary(w io.Writer) error {
	s, b, rb := r.Strategy, r.BuyHold, r.Random
	_, err := fmt.Fprintf(w, `evaluate: %s to %s, %d instruments, %d ticks, signals %s
  trend calls: total %s, Sharpe %s, max drawdown %s, %d trades, hit rate %s, exposure %s (fees %.1f bps, slippage %.1f bps + %.2f spread, delay %gs)
  buy and hold: total %s, Sharpe %s, max drawdown %s
  random timing (%d draws, same trades): median %s; the calls beat %s%% of them
`, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), len(r.Instruments), r.Ticks, sigList(r.Signals),
		pct(s.TotalReturn), num(s.Sharpe), pct(s.MaxDrawdown), s.Trades, pct(s.HitRate), pct(s.Exposure), r.FeeBps, r.SlippageBps, r.SpreadFrac, r.Delay,
		pct(b.TotalReturn), num(b.Sharpe), pct(b.MaxDrawdown), rb.Draws, pct(rb.P50), num(rb.Percentile))
	if err != nil {
		return err
	}
	if len(r.Events) > 0 {
		var hs, sg, ct, ts []string
		for _, ev := range r.Events {
			hs = append(hs, strconv.Itoa(ev.Horizon))
			sg = append(sg, num(ev.Signal.Mean*1e4))
			ct = append(ct, num(ev.Control.Mean*1e4))
			ts = append(ts, num(ev.T))
		}
		fmt.Fprintf(w, "  novelty (%d signals), mean |return| after %s steps: %s bps vs %s at matched times (t %s)\n",
			r.Events[0].Signal.N, strings.Join(hs, ", "), strings.Join(sg, ", "), strings.Join(ct, ", "), strings.Join(ts, ", "))
	}
	for _, rg := range r.Regime {
		if rg.Group != "unconditional" && rg.Horizon == r.Horizons[min(2, len(r.Horizons)-1)] {
			fmt.Fprintf(w, "  after %s (%d): realized volatility over %d steps %s x unconditional\n", rg.Group, rg.RV.N, rg.Horizon, num(rg.RVRatio))
		}
	}
	for _, ic := range r.IC {
		if ic.Horizon == r.Horizons[0] {
			fmt.Fprintf(w, "  IC %s, 1 step: %s (t = %s, %d steps)\n", ic.Feature, num(ic.Mean), num(ic.T), ic.Steps)
		}
	}
	if r.LateSignals > 0 {
		fmt.Fprintf(w, "  %d signals came after their execution time and were executed at the next price: raise --delay to the allowed lateness\n", r.LateSignals)
	}
	return nil
}

func sigList(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, m[k])
	}
	return s
}

func pct(f F) string {
	if math.IsNaN(float64(f)) {
		return "n/a"
	}
	return strconv.FormatFloat(float64(f)*100, 'f', 2, 64) + "%"
}

func num(f F) string {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return "n/a"
	}
	return strconv.FormatFloat(float64(f), 'f', 2, 64)
}

// WriteJSON writes the report as one indented JSON document (no curves or
// event rows: those are in the Parquet tables).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteDir writes report.json, report.html and the Parquet tables
// (trades, equity, events, ic) into dir, creating it.
func (r *Report) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("evaluate: %w", err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("evaluate: %s: %w", name, err)
		}
		return f.Close()
	}
	if err := write("report.json", r.WriteJSON); err != nil {
		return err
	}
	if err := write("report.html", r.WriteHTML); err != nil {
		return err
	}
	return r.WriteParquet(dir)
}
