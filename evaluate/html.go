package evaluate

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"time"
)

// Chart colours (the HTML test looks for them in the screenshot).
const (
	colStrategy = "#1f6feb" // blue
	colBaseline = "#f0883e" // orange
	colControl  = "#8b949e" // grey
	colDrawdown = "#d1242f" // red
	colSignal   = "#1a7f37" // green
)

var palette = []string{colStrategy, colBaseline, colSignal, "#8250df", colDrawdown, "#bf8700"}

type line struct {
	name  string
	color string
	x, y  []float64
	lo    []float64 // optional error bars
	hi    []float64
	area  bool
}

type chart struct {
	title, ylabel string
	w, h          int
	timeX         bool     // x are ns since the epoch
	cats          []string // category labels for x = 0..n-1
	yfmt          func(float64) string
	lines         []line
}

// svg draws the chart as inline SVG (no external resources).
func (c chart) svg() string {
	if c.w == 0 {
		c.w, c.h = 560, 240
	}
	const ml, mr, mt, mb = 62, 18, 44, 34
	pw, ph := float64(c.w-ml-mr), float64(c.h-mt-mb)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, l := range c.lines {
		for i := range l.x {
			if !finite(l.x[i]) || !finite(l.y[i]) {
				continue
			}
			xmin, xmax = math.Min(xmin, l.x[i]), math.Max(xmax, l.x[i])
			lo, hi := l.y[i], l.y[i]
			if l.lo != nil && finite(l.lo[i]) && finite(l.hi[i]) {
				lo, hi = math.Min(lo, l.lo[i]), math.Max(hi, l.hi[i])
			}
			ymin, ymax = math.Min(ymin, lo), math.Max(ymax, hi)
			if l.area {
				ymax = math.Max(ymax, 0)
				ymin = math.Min(ymin, 0)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img"><title>%s</title>`, c.w, c.h, c.w, c.h, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<text x="%d" y="17" class="ct">%s</text>`, ml, html.EscapeString(c.title))
	if math.IsInf(xmin, 1) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="na">no data</text></svg>`, c.w/2-24, c.h/2)
		return b.String()
	}
	if c.cats != nil {
		xmin, xmax = -0.5, float64(len(c.cats))-0.5
	}
	if xmax == xmin {
		xmin, xmax = xmin-1, xmax+1
	}
	if ymax == ymin {
		ymin, ymax = ymin-math.Max(1e-9, math.Abs(ymin)*0.01), ymax+math.Max(1e-9, math.Abs(ymax)*0.01)
	}
	pad := (ymax - ymin) * 0.05
	ymin, ymax = ymin-pad, ymax+pad
	X := func(x float64) float64 { return ml + (x-xmin)/(xmax-xmin)*pw }
	Y := func(y float64) float64 { return mt + (ymax-y)/(ymax-ymin)*ph }
	yf := c.yfmt
	if yf == nil {
		yf = func(v float64) string { return trimFloat(v) }
	}
	for _, t := range niceTicks(ymin, ymax, 5) {
		y := Y(t)
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/><text x="%d" y="%.1f" class="yl">%s</text>`,
			ml, ml+pw, y, y, ml-6, y+4, html.EscapeString(yf(t)))
	}
	switch {
	case c.cats != nil:
		for i, s := range c.cats {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl">%s</text>`, X(float64(i)), c.h-mb+16, html.EscapeString(s))
		}
	case c.timeX:
		for i := 0; i <= 4; i++ {
			x := xmin + (xmax-xmin)*float64(i)/4
			t := time.Unix(0, int64(x)).UTC()
			layout := "15:04"
			if xmax-xmin > 2*86400e9 {
				layout = "01-02 15:04"
			} else if xmax-xmin < 600e9 {
				layout = "15:04:05"
			}
			anchor := ""
			switch i {
			case 0:
				anchor = ` style="text-anchor:start"`
			case 4:
				anchor = ` style="text-anchor:end"`
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl"%s>%s</text>`, X(x), c.h-mb+16, anchor, t.Format(layout))
		}
	default:
		for _, t := range niceTicks(xmin, xmax, 6) {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="xl">%s</text>`, X(t), c.h-mb+16, trimFloat(t))
		}
	}
	if ymin < 0 && ymax > 0 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" class="zero"/>`, ml, ml+pw, Y(0), Y(0))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" class="frame"/>`, ml, mt, pw, ph)
	for _, l := range c.lines {
		if l.lo == nil && len(l.x) > maxChartPoints {
			l.x, l.y = thin(l.x, l.y, maxChartPoints)
		}
		var pts strings.Builder
		n := 0
		for i := range l.x {
			if !finite(l.x[i]) || !finite(l.y[i]) {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", X(l.x[i]), Y(l.y[i]))
			n++
		}
		if l.area && n > 1 {
			fmt.Fprintf(&b, `<polygon points="%.1f,%.1f %s%.1f,%.1f" fill="%s" fill-opacity="0.35" stroke="%s" stroke-width="1"/>`,
				X(l.x[0]), Y(0), pts.String(), X(l.x[len(l.x)-1]), Y(0), l.color, l.color)
		} else if n > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`, pts.String(), l.color)
		}
		for i := range l.x {
			if !finite(l.x[i]) || !finite(l.y[i]) {
				continue
			}
			if l.lo != nil && finite(l.lo[i]) && finite(l.hi[i]) {
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`, X(l.x[i]), X(l.x[i]), Y(l.lo[i]), Y(l.hi[i]), l.color)
			}
			if c.cats != nil || n == 1 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`, X(l.x[i]), Y(l.y[i]), l.color)
			}
		}
	}
	// legend: one row under the title
	lx := float64(ml)
	for _, l := range c.lines {
		fmt.Fprintf(&b, `<rect x="%.1f" y="25" width="12" height="10" fill="%s"/><text x="%.1f" y="34" class="lg">%s</text>`, lx, l.color, lx+16, html.EscapeString(l.name))
		lx += float64(len(l.name))*6.2 + 30
	}
	if c.ylabel != "" {
		fmt.Fprintf(&b, `<text x="12" y="%.1f" class="yt" transform="rotate(-90 12 %.1f)">%s</text>`, mt+ph/2, mt+ph/2, html.EscapeString(c.ylabel))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// maxChartPoints bounds a drawn line; thin keeps each bucket's minimum and
// maximum so spikes and drawdowns stay visible.
const maxChartPoints = 1600

func thin(x, y []float64, n int) (tx, ty []float64) {
	k := (len(x) + n/2 - 1) / (n / 2)
	for i := 0; i < len(x); i += k {
		lo, hi := i, i
		for j := i; j < min(i+k, len(x)); j++ {
			if y[j] < y[lo] {
				lo = j
			}
			if y[j] > y[hi] {
				hi = j
			}
		}
		a, b := min(lo, hi), max(lo, hi)
		tx, ty = append(tx, x[a]), append(ty, y[a])
		if b != a {
			tx, ty = append(tx, x[b]), append(ty, y[b])
		}
	}
	return tx, ty
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceTicks returns about n round values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	span := hi - lo
	if !(span > 0) {
		return []float64{lo}
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		out = append(out, v)
	}
	return out
}

func trimFloat(v float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
	}
}

func pctFmt(v float64) string { return trimFloat(v*100) + "%" }

func pathLines(s *series, withBH bool) (eq, dd []line) {
	x := make([]float64, len(s.t))
	y := make([]float64, len(s.t))
	bh := make([]float64, len(s.t))
	d := make([]float64, len(s.t))
	peak := 0.0
	for i := range s.t {
		x[i] = float64(s.t[i])
		y[i] = s.eq[i] - 1
		bh[i] = s.bh[i] - 1
		peak = math.Max(peak, s.eq[i])
		d[i] = -(1 - s.eq[i]/peak)
	}
	eq = []line{{name: "trend calls", color: colStrategy, x: x, y: y}}
	if withBH {
		eq = append(eq, line{name: "buy and hold", color: colBaseline, x: x, y: bh})
	}
	dd = []line{{name: "drawdown", color: colDrawdown, x: x, y: d, area: true}}
	return eq, dd
}

const css = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#1f2328;background:#fff;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
p.sub{color:#59636e;margin:0 0 16px}.grid2{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:right}
th{background:#f6f8fa;font-weight:600}td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:150px}
.card .v{font-size:22px;font-weight:600}.card .k{color:#59636e;font-size:12px}
.chart{border:1px solid #eaeef2;border-radius:6px;background:#fff}
.chart .ct{font-size:13px;font-weight:600;fill:#1f2328}.chart .yl{font-size:11px;fill:#59636e;text-anchor:end}
.chart .xl{font-size:11px;fill:#59636e;text-anchor:middle}.chart .lg{font-size:11px;fill:#1f2328}.chart .yt{font-size:11px;fill:#59636e;text-anchor:middle}
.chart .grid{stroke:#eaeef2}.chart .zero{stroke:#8c959f;stroke-dasharray:3 3}.chart .frame{fill:none;stroke:#d0d7de}.chart .na{fill:#8c959f;font-size:13px}
.note{color:#59636e;font-size:12px;max-width:900px}.pos{color:#1a7f37}.neg{color:#d1242f}`

// WriteHTML writes a self-contained HTML report: inline CSS and SVG charts,
// no scripts, fonts or other resources fetched.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>signald backtest evaluation</title><style>`)
	b.WriteString(css)
	b.WriteString(`</style></head><body>`)
	fmt.Fprintf(&b, `<h1>signald backtest evaluation</h1><p class="sub">%s to %s · %d instruments · %d ticks · signals: %s · step %gs, delay %gs, fees %g bps, slippage %g bps + %g × spread</p>`,
		r.From.Format("2006-01-02 15:04:05"), r.To.Format("2006-01-02 15:04:05 UTC"), len(r.Instruments), r.Ticks, html.EscapeString(sigList(r.Signals)),
		r.Step, r.Delay, r.FeeBps, r.SlippageBps, r.SpreadFrac)

	s, bh, rb := r.Strategy, r.BuyHold, r.Random
	b.WriteString(`<div class="cards">`)
	card := func(k, v string, good int) {
		cls := ""
		if good > 0 {
			cls = " pos"
		} else if good < 0 {
			cls = " neg"
		}
		fmt.Fprintf(&b, `<div class="card"><div class="v%s">%s</div><div class="k">%s</div></div>`, cls, html.EscapeString(v), html.EscapeString(k))
	}
	signOf := func(f F) int {
		switch {
		case float64(f) > 0:
			return 1
		case float64(f) < 0:
			return -1
		}
		return 0
	}
	card("trend calls, total return", pct(s.TotalReturn), signOf(s.TotalReturn))
	card("buy and hold, total return", pct(bh.TotalReturn), signOf(bh.TotalReturn))
	card("Sharpe (annualized)", num(s.Sharpe), signOf(s.Sharpe))
	card("max drawdown", pct(s.MaxDrawdown), 0)
	card(fmt.Sprintf("beats random timing (%d draws)", rb.Draws), num(rb.Percentile)+"%", signOf(rb.Percentile-50))
	card("trades, hit rate", fmt.Sprintf("%d, %s", s.Trades, pct(s.HitRate)), 0)
	b.WriteString(`</div>`)

	b.WriteString(`<h2>Trend calls as a strategy</h2><div class="grid2">`)
	if r.total != nil {
		eq, dd := pathLines(r.total, true)
		b.WriteString(chart{title: "Equity, all instruments (return)", timeX: true, yfmt: pctFmt, lines: eq}.svg())
		b.WriteString(chart{title: "Drawdown, trend calls", timeX: true, yfmt: pctFmt, lines: dd}.svg())
	}
	b.WriteString(`</div>`)
	b.WriteString(`<table><tr><th></th><th>total return</th><th>ann. volatility</th><th>Sharpe</th><th>Sortino</th><th>max drawdown</th><th>drawdown duration</th><th>trades</th><th>hit rate</th><th>avg win</th><th>avg loss</th><th>turnover</th><th>exposure</th></tr>`)
	statRow := func(name string, st Stats, trades bool) {
		fmt.Fprintf(&b, `<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>`, html.EscapeString(name),
			pct(st.TotalReturn), pct(st.AnnVol), num(st.Sharpe), num(st.Sortino), pct(st.MaxDrawdown), dur(st.MaxDrawdownSeconds))
		if trades {
			fmt.Fprintf(&b, `<td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`, st.Trades, pct(st.HitRate), pct(st.AvgWin), pct(st.AvgLoss), num(st.Turnover), pct(st.Exposure))
		} else {
			b.WriteString(`<td></td><td></td><td></td><td></td><td></td><td>100%</td></tr>`)
		}
	}
	statRow("trend calls", s, true)
	statRow("buy and hold", bh, false)
	fmt.Fprintf(&b, `<tr><td>random timing, median of %d</td><td>%s</td><td colspan="11" style="text-align:left">5%%–95%%: %s to %s; mean instrument return of the calls %s is above %s%% of the draws</td></tr></table>`,
		rb.Draws, pct(rb.P50), pct(rb.P05), pct(rb.P95), pct(r.MeanReturn), num(rb.Percentile))
	b.WriteString(`<p class="note">Positions of one unit of each instrument's equity from the long/flat/short calls, filled at the first price after the call's time plus the delay; stops close at the first price beyond them. Total: the equal-capital portfolio. Random timing: the same trades (number, sides, durations, costs) at random times of the same instrument.</p>`)

	if len(r.Instruments) > 0 {
		b.WriteString(`<h2>Instruments</h2><table><tr><th>venue</th><th>instrument</th><th>return</th><th>buy and hold</th><th>Sharpe</th><th>max drawdown</th><th>trades</th><th>hit rate</th><th>exposure</th><th>beats random</th></tr>`)
		for _, in := range r.Instruments {
			fmt.Fprintf(&b, `<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s%%</td></tr>`,
				html.EscapeString(in.Venue), html.EscapeString(in.Instrument), pct(in.Strategy.TotalReturn), pct(in.BuyHold.TotalReturn), num(in.Strategy.Sharpe),
				pct(in.Strategy.MaxDrawdown), in.Strategy.Trades, pct(in.Strategy.HitRate), pct(in.Strategy.Exposure), num(in.Random.Percentile))
		}
		b.WriteString(`</table><div class="grid2">`)
		for i, in := range r.Instruments {
			if i == 12 {
				break
			}
			eq, _ := pathLines(in.path, true)
			b.WriteString(chart{title: in.Venue + " " + in.Instrument, w: 380, h: 190, timeX: true, yfmt: pctFmt, lines: eq}.svg())
		}
		b.WriteString(`</div>`)
		if len(r.Instruments) > 12 {
			fmt.Fprintf(&b, `<p class="note">Charts of the first 12 of %d instruments; equity.parquet has them all.</p>`, len(r.Instruments))
		}
	}

	cats := make([]string, len(r.Horizons))
	xs := make([]float64, len(r.Horizons))
	for i, h := range r.Horizons {
		cats[i] = fmt.Sprintf("%d steps", h)
		if h == 1 {
			cats[i] = "1 step"
		}
		xs[i] = float64(i)
	}
	b.WriteString(`<h2>Novelty: event study</h2>`)
	if len(r.Events) == 0 {
		b.WriteString(`<p class="note">No novelty signals.</p>`)
	} else {
		sig := line{name: "after novelty", color: colSignal, x: xs}
		ctl := line{name: "matched times", color: colControl, x: xs}
		for _, ev := range r.Events {
			sig.y = append(sig.y, float64(ev.Signal.Mean)*1e4)
			sig.lo = append(sig.lo, float64(ev.Signal.Lo)*1e4)
			sig.hi = append(sig.hi, float64(ev.Signal.Hi)*1e4)
			ctl.y = append(ctl.y, float64(ev.Control.Mean)*1e4)
			ctl.lo = append(ctl.lo, float64(ev.Control.Lo)*1e4)
			ctl.hi = append(ctl.hi, float64(ev.Control.Hi)*1e4)
		}
		b.WriteString(`<div class="grid2">`)
		b.WriteString(chart{title: "Mean |forward return| (bps), 95% interval", cats: cats, lines: []line{sig, ctl}}.svg())
		b.WriteString(`</div><table><tr><th>horizon</th><th>signals</th><th>mean |ret| bps</th><th>median</th><th>p95</th><th>controls</th><th>mean |ret| bps</th><th>median</th><th>p95</th><th>t</th><th>spread bps (signal / control)</th></tr>`)
		for _, ev := range r.Events {
			fmt.Fprintf(&b, `<tr><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s / %s</td></tr>`,
				ev.Horizon, ev.Signal.N, num(ev.Signal.Mean*1e4), num(ev.Signal.P50*1e4), num(ev.Signal.P95*1e4), ev.Control.N, num(ev.Control.Mean*1e4),
				num(ev.Control.P50*1e4), num(ev.Control.P95*1e4), num(ev.T), num(ev.SignalSpread), num(ev.ControlSpread))
		}
		b.WriteString(`</table><p class="note">Controls: one step of the same instrument per signal, drawn (seeded) from a uniform sample of its steps with no novelty signal within the longest horizon before or after. t: Welch's t of the mean |return|, signal minus control.</p>`)
	}

	b.WriteString(`<h2>Regimes and changepoints: what follows</h2>`)
	groups := map[string][]RegimeRow{}
	var order []string
	for _, rg := range r.Regime {
		if groups[rg.Group] == nil {
			order = append(order, rg.Group)
		}
		groups[rg.Group] = append(groups[rg.Group], rg)
	}
	if len(order) > 0 {
		var lines []line
		for i, g := range order {
			col := palette[i%len(palette)]
			if g == "unconditional" {
				col = colControl
			}
			l := line{name: g, color: col}
			for hi, rg := range groups[g] {
				l.x = append(l.x, float64(hi))
				l.y = append(l.y, float64(rg.RV.Mean)*1e4)
				l.lo = append(l.lo, float64(rg.RV.Lo)*1e4)
				l.hi = append(l.hi, float64(rg.RV.Hi)*1e4)
			}
			lines = append(lines, l)
		}
		b.WriteString(`<div class="grid2">`)
		b.WriteString(chart{title: "Forward realized volatility (bps), 95% interval", cats: cats, lines: lines}.svg())
		b.WriteString(`</div><table><tr><th>after</th><th>horizon</th><th>n</th><th>realized vol bps</th><th>95% interval</th><th>× unconditional</th><th>return p05 / p50 / p95 bps</th></tr>`)
		for _, g := range order {
			for _, rg := range groups[g] {
				fmt.Fprintf(&b, `<tr><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s – %s</td><td>%s</td><td>%s / %s / %s</td></tr>`, html.EscapeString(g), rg.Horizon, rg.RV.N,
					num(rg.RV.Mean*1e4), num(rg.RV.Lo*1e4), num(rg.RV.Hi*1e4), num(rg.RVRatio), num(rg.Ret.P05*1e4), num(rg.Ret.P50*1e4), num(rg.Ret.P95*1e4))
			}
		}
		b.WriteString(`</table><p class="note">Groups: the regime after a regime_change signal, and changepoints; unconditional: every step with a fresh price. Intervals: normal approximation (mean ± 1.96 standard errors); unconditional return quantiles from a uniform sample.</p>`)
	}

	b.WriteString(`<h2>Features: information coefficient</h2>`)
	if len(r.IC) == 0 {
		b.WriteString(`<p class="note">No feature records were evaluated.</p>`)
	} else {
		byF := map[string]*line{}
		var fs []string
		for _, ic := range r.IC {
			l := byF[ic.Feature]
			if l == nil {
				l = &line{name: ic.Feature, color: palette[len(fs)%len(palette)]}
				byF[ic.Feature] = l
				fs = append(fs, ic.Feature)
			}
			hi := len(l.x)
			se := float64(ic.SD) / math.Sqrt(float64(ic.Steps))
			l.x = append(l.x, float64(hi))
			l.y = append(l.y, float64(ic.Mean))
			l.lo = append(l.lo, float64(ic.Mean)-1.96*se)
			l.hi = append(l.hi, float64(ic.Mean)+1.96*se)
		}
		var lines []line
		for _, f := range fs {
			lines = append(lines, *byF[f])
		}
		b.WriteString(`<div class="grid2">`)
		b.WriteString(chart{title: "IC decay: mean cross-sectional Spearman IC by horizon", w: 760, h: 260, cats: cats, lines: lines}.svg())
		b.WriteString(`</div><table><tr><th>feature</th><th>horizon</th><th>steps</th><th>mean IC</th><th>sd</th><th>t</th><th>instruments</th><th>time-series IC</th><th>t</th></tr>`)
		for _, ic := range r.IC {
			fmt.Fprintf(&b, `<tr><td>%s</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td></tr>`, html.EscapeString(ic.Feature), ic.Horizon, ic.Steps,
				num3(ic.Mean), num3(ic.SD), num(ic.T), ic.Instruments, num3(ic.TSMean), num(ic.TST))
		}
		b.WriteString(`</table><p class="note">Spearman rank correlation of the feature at a step with the forward log return from the step's base: across instruments per step, and per instrument over time (every h-th step for horizon h, so forward windows do not overlap; time-series IC: the mean over instruments of their means over blocks of steps). Overlapping horizons make successive cross-sectional values dependent: their t above horizon 1 overstates significance.</p>`)
	}

	if len(r.Trades) > 0 {
		n := min(len(r.Trades), 50)
		fmt.Fprintf(&b, `<h2>Trades (first %d of %d)</h2><table><tr><th>instrument</th><th>side</th><th>entry</th><th>entry price</th><th>exit</th><th>exit price</th><th>exit by</th><th>return</th></tr>`, n, len(r.Trades))
		for _, t := range r.Trades[:n] {
			fmt.Fprintf(&b, `<tr><td>%s %s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`, html.EscapeString(t.Venue), html.EscapeString(t.Instrument),
				t.Side, tsFmt(t.EntryTime), trimFloat(t.EntryPrice), tsFmt(t.ExitTime), trimFloat(t.ExitPrice), t.Exit, pct(F(t.Return)))
		}
		b.WriteString(`</table>`)
	}
	b.WriteString(`</body></html>`)
	_, err := io.WriteString(w, b.String())
	return err
}

func num3(f F) string {
	if !finite(float64(f)) {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", float64(f))
}

func tsFmt(ns int64) string { return time.Unix(0, ns).UTC().Format("01-02 15:04:05") }

func dur(sec F) string {
	if !finite(float64(sec)) {
		return "n/a"
	}
	return (time.Duration(float64(sec)) * time.Second).String()
}
