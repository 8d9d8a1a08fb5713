package macro

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/internal/stats"
	"github.com/signald-dev/signald/market"
)

var nan = math.NaN()

// testRow is one instrument's row of a test feature record.
type testRow struct {
	venue, inst string
	vals        map[string]float64 // missing: NaN
}

// testRecord builds a feature record like the engine's: time, venue,
// instrument, then one float64 column per name.
func testRecord(t *testing.T, stepTime int64, cols []string, rows []testRow) arrow.Record {
	t.Helper()
	fields := []arrow.Field{
		{Name: features.ColTime, Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "UTC"}},
		{Name: features.ColVenue, Type: arrow.BinaryTypes.String},
		{Name: features.ColInstrument, Type: arrow.BinaryTypes.String},
	}
	for _, c := range cols {
		fields = append(fields, arrow.Field{Name: c, Type: arrow.PrimitiveTypes.Float64})
	}
	md := arrow.NewMetadata([]string{features.SchemaVersionKey}, []string{"test-1"})
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, &md))
	defer b.Release()
	for _, r := range rows {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(stepTime))
		b.Field(1).(*array.StringBuilder).Append(r.venue)
		b.Field(2).(*array.StringBuilder).Append(r.inst)
		for i, c := range cols {
			x, ok := r.vals[c]
			if !ok {
				x = nan
			}
			b.Field(3 + i).(*array.Float64Builder).Append(x)
		}
	}
	return b.NewRecord()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// A hand-checkable market: five instruments on two venues.
//
//	id              regime    trend novelty  mid_ret_sum_60  mid_ret_rv_60
//	a:X             calm       1    0.5      0.02            0.01
//	a:Y             volatile  -1    3.0     -0.01            0.04
//	a:Z             (no state)      -        NaN             NaN
//	b:X             calm       0    2.0      0               0.02
//	b:W             trending   1    0 (warm) 0.05            0.03
func testMarket(t *testing.T) (arrow.Record, []market.InstrumentState) {
	cols := []string{"mid", "mid_ret_sum_60", "mid_ret_rv_60", "other"}
	rows := []testRow{
		{"a", "X", map[string]float64{"mid": 100, "mid_ret_sum_60": 0.02, "mid_ret_rv_60": 0.01, "other": 1}},
		{"a", "Y", map[string]float64{"mid": 50, "mid_ret_sum_60": -0.01, "mid_ret_rv_60": 0.04}},
		{"a", "Z", map[string]float64{"mid": 7}},
		{"b", "W", map[string]float64{"mid": 1, "mid_ret_sum_60": 0.05, "mid_ret_rv_60": 0.03}},
		{"b", "X", map[string]float64{"mid": 101, "mid_ret_sum_60": 0, "mid_ret_rv_60": 0.02}},
	}
	rec := testRecord(t, t0.UnixNano(), cols, rows)
	states := []market.InstrumentState{
		{Venue: "a", Instrument: "X", Warm: true, Regime: "calm", Trend: 1, Novelty: 0.5},
		{Venue: "a", Instrument: "Y", Warm: true, Regime: "volatile", Trend: -1, Novelty: 3},
		{Venue: "b", Instrument: "X", Warm: true, Regime: "calm", Trend: 0, Novelty: 2},
		{Venue: "b", Instrument: "W", Warm: true, Regime: "trending", Trend: 1, Novelty: 0},
		{Venue: "c", Instrument: "GONE", Warm: true, Regime: "calm"}, // no row: not counted
	}
	return rec, states
}

func newTestBuilder(t *testing.T, clk *fakeClock) (*Builder, *metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	b := New(Config{
		Returns: []string{"mid_ret_sum_60", "mid_ret_sum_300"}, RV: "mid_ret_rv_60",
		TopNovelties: 2, TrendCalls: 2, Now: clk.Now,
	}, nil, reg)
	return b, b.m, reg
}

// macroJSON mirrors the view for decoding, with nullable numbers.
type macroJSON struct {
	Status      string `json:"status"`
	Step        int64  `json:"step"`
	StepTime    string `json:"step_time"`
	Instruments int    `json:"instruments"`
	Columns     struct {
		Read, Missing []string
	} `json:"columns"`
	RegimeMix struct {
		N      int                 `json:"n"`
		Counts map[string]int      `json:"counts"`
		Shares map[string]*float64 `json:"shares"`
	} `json:"regime_mix"`
	Breadth struct {
		Trend   udJSON `json:"trend"`
		Returns []struct {
			Column string `json:"column"`
			udJSON
		} `json:"returns"`
	} `json:"breadth"`
	Dispersion []struct {
		Column string   `json:"column"`
		N      int      `json:"n"`
		Mean   *float64 `json:"mean"`
		Std    *float64 `json:"std"`
	} `json:"dispersion"`
	RVIndex *struct {
		Column string   `json:"column"`
		N      int      `json:"n"`
		Median *float64 `json:"median"`
		Mean   *float64 `json:"mean"`
	} `json:"rv_index"`
	TopNovelties []struct {
		Venue, Instrument string
		Novelty           float64
		Regime            string
		Explanation       string
		Values            map[string]float64
	} `json:"top_novelties"`
	TrendCalls []struct {
		Venue, Instrument, State, Explanation string
		Score, Strength                       *float64
		Stop                                  *float64
	} `json:"trend_calls"`
	Venues []struct {
		Venue            string   `json:"venue"`
		Instruments      int      `json:"instruments"`
		Ticks            int64    `json:"ticks"`
		SecondsSinceTick *float64 `json:"seconds_since_tick"`
		Stale            bool     `json:"stale"`
	} `json:"venues"`
	Market map[string]*float64 `json:"market"`
}

type udJSON struct {
	N              int
	Up, Down, Flat *float64
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func decodeMacro(t *testing.T, body []byte) macroJSON {
	t.Helper()
	var m macroJSON
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("macro: %v\n%s", err, body)
	}
	return m
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*max(1, math.Abs(b)) }

func f(p *float64) float64 {
	if p == nil {
		return nan
	}
	return *p
}

func TestMacroAggregation(t *testing.T) {
	clk := &fakeClock{t: t0.Add(3 * time.Second)}
	b, _, _ := newTestBuilder(t, clk)
	// Venue a ticked 1 s ago, venue b 30 s ago.
	b.Seen(tickAt{"a", "X", t0.Add(2 * time.Second)}.tick())
	b.Seen(tickAt{"b", "X", t0.Add(-27 * time.Second)}.tick())
	b.Seen(tickAt{"b", "W", t0.Add(-27 * time.Second)}.tick())
	b.Signal(market.Signal{Time: 10, Venue: "a", Instrument: "Y", Type: market.TypeNovelty, Score: 3, Explanation: "spread_bps far out", Values: map[string]float64{"spread_bps": 0.8}})
	b.Signal(market.Signal{Time: 11, Venue: "b", Instrument: "X", Type: market.TypeNovelty, Score: 2, Explanation: "volume"})
	b.Signal(market.Signal{Time: 12, Venue: "a", Instrument: "X", Type: market.TypeTrendCall, State: "long", Score: 0.7, Explanation: "up 1", Values: map[string]float64{"strength": 0.7, "stop": 95}})
	b.Signal(market.Signal{Time: 13, Venue: "b", Instrument: "W", Type: market.TypeTrendCall, State: "long", Score: 0.2, Explanation: "up 2", Values: map[string]float64{"strength": 0.2}})
	b.Signal(market.Signal{Time: 9, Venue: "a", Instrument: "Y", Type: market.TypeTrendCall, State: "short", Score: 0.9, Explanation: "down"})
	rec, states := testMarket(t)
	defer rec.Release()
	b.Step(rec, features.Market{}, states)

	w := get(t, b, "/v1/macro")
	m := decodeMacro(t, w.Body.Bytes())
	if m.Step != 1 || m.Instruments != 5 || m.StepTime != "2026-03-04T05:06:07Z" {
		t.Fatalf("step %d, %d instruments, step time %s", m.Step, m.Instruments, m.StepTime)
	}
	if fmt.Sprint(m.Columns.Read) != "[mid_ret_sum_60 mid_ret_rv_60]" || fmt.Sprint(m.Columns.Missing) != "[mid_ret_sum_300]" {
		t.Fatalf("columns %+v", m.Columns)
	}
	// Regime mix over all 5 rows: calm 2, volatile 1, trending 1, warming_up 1.
	wantMix := map[string]int{"calm": 2, "volatile": 1, "trending": 1, RegimeWarmingUp: 1}
	if m.RegimeMix.N != 5 || fmt.Sprint(m.RegimeMix.Counts) != fmt.Sprint(wantMix) {
		t.Fatalf("regime mix %+v", m.RegimeMix)
	}
	for st, c := range wantMix {
		if !near(f(m.RegimeMix.Shares[st]), float64(c)/5) {
			t.Fatalf("share %s = %v", st, f(m.RegimeMix.Shares[st]))
		}
	}
	// Trend breadth over the 4 warm: up 2 (a:X, b:W), down 1, flat 1.
	if tr := m.Breadth.Trend; tr.N != 4 || f(tr.Up) != 0.5 || f(tr.Down) != 0.25 || f(tr.Flat) != 0.25 {
		t.Fatalf("trend breadth %+v %v %v %v", tr, f(tr.Up), f(tr.Down), f(tr.Flat))
	}
	// Return breadth over the 4 finite: 0.02, -0.01, 0.05, 0.
	if len(m.Breadth.Returns) != 1 {
		t.Fatalf("return breadth %+v", m.Breadth.Returns)
	}
	if r := m.Breadth.Returns[0]; r.Column != "mid_ret_sum_60" || r.N != 4 || f(r.Up) != 0.5 || f(r.Down) != 0.25 || f(r.Flat) != 0.25 {
		t.Fatalf("return breadth %+v", r)
	}
	// Dispersion: mean 0.015, population variance
	// ((0.005)^2 + (0.025)^2 + (0.035)^2 + (0.015)^2)/4 = 0.000525.
	if len(m.Dispersion) != 1 || m.Dispersion[0].N != 4 || !near(f(m.Dispersion[0].Mean), 0.015) || !near(f(m.Dispersion[0].Std), math.Sqrt(0.000525)) {
		t.Fatalf("dispersion %+v mean %v std %v", m.Dispersion, f(m.Dispersion[0].Mean), f(m.Dispersion[0].Std))
	}
	// RV index over 0.01, 0.04, 0.03, 0.02: median 0.025, mean 0.025.
	if r := m.RVIndex; r == nil || r.N != 4 || !near(f(r.Median), 0.025) || !near(f(r.Mean), 0.025) {
		t.Fatalf("rv index %+v", m.RVIndex)
	}
	// Top 2 novelties: a:Y (3) with its explanation, then b:X (2).
	if n := m.TopNovelties; len(n) != 2 || n[0].Instrument != "Y" || n[0].Novelty != 3 || n[0].Explanation != "spread_bps far out" ||
		n[0].Values["spread_bps"] != 0.8 || n[0].Regime != "volatile" || n[1].Venue != "b" || n[1].Instrument != "X" || n[1].Explanation != "volume" {
		t.Fatalf("top novelties %+v", n)
	}
	// Latest 2 trend calls, newest first: b:W (13), a:X (12).
	if tc := m.TrendCalls; len(tc) != 2 || tc[0].Instrument != "W" || tc[1].Instrument != "X" || f(tc[1].Strength) != 0.7 ||
		f(tc[1].Stop) != 95 || tc[0].Stop != nil || tc[1].Explanation != "up 1" {
		t.Fatalf("trend calls %+v", tc)
	}
	// Venues: a fresh (1 s), b stale (30 s > 10 s).
	if v := m.Venues; len(v) != 2 || v[0].Venue != "a" || v[0].Stale || !near(f(v[0].SecondsSinceTick), 1) || v[0].Instruments != 3 ||
		v[1].Venue != "b" || !v[1].Stale || !near(f(v[1].SecondsSinceTick), 30) || v[1].Ticks != 2 {
		t.Fatalf("venues %+v", v)
	}
}

type tickAt struct {
	venue, inst string
	at          time.Time
}

func (k tickAt) tick() *market.Tick {
	return &market.Tick{Venue: k.venue, Instrument: k.inst, RecvTS: k.at.UnixNano(), IngestTS: k.at.UnixNano()}
}

// TestMacroEmptyAndMissing: no rows, no columns: nulls and omissions, never
// NaN in the JSON; before the first step a warming-up body.
func TestMacroEmptyAndMissing(t *testing.T) {
	clk := &fakeClock{t: t0}
	b, _, _ := newTestBuilder(t, clk)
	m := decodeMacro(t, get(t, b, "/v1/macro").Body.Bytes())
	if m.Step != 0 || !strings.Contains(m.Status, "warming up") {
		t.Fatalf("before the first step: %+v", m)
	}
	rec := testRecord(t, t0.UnixNano(), []string{"mid"}, nil)
	defer rec.Release()
	b.Step(rec, features.Market{}, nil)
	w := get(t, b, "/v1/macro")
	m = decodeMacro(t, w.Body.Bytes())
	if m.Step != 1 || m.Instruments != 0 || m.RVIndex != nil || len(m.Dispersion) != 0 || len(m.Columns.Missing) != 3 || m.Breadth.Trend.Up != nil {
		t.Fatalf("empty step: %s", w.Body.String())
	}
}

// TestWelfordLargeOffset: the dispersion's mean and std stay exact where a
// naive sum of squares cancels, compared to an exact big.Float reference.
func TestWelfordLargeOffset(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, offset := range []float64{0, 1e6, 1e9} {
		xs := make([]float64, 100_000)
		w := stats.ShiftedWelford()
		for i := range xs {
			xs[i] = offset + rng.NormFloat64()*1e-3
			w.Add(xs[i])
		}
		// Exact reference with 256-bit floats, two passes.
		prec := uint(256)
		sum := new(big.Float).SetPrec(prec)
		for _, x := range xs {
			sum.Add(sum, big.NewFloat(x))
		}
		mean := new(big.Float).SetPrec(prec).Quo(sum, big.NewFloat(float64(len(xs))))
		ss := new(big.Float).SetPrec(prec)
		for _, x := range xs {
			d := new(big.Float).SetPrec(prec).Sub(big.NewFloat(x), mean)
			ss.Add(ss, d.Mul(d, d))
		}
		v, _ := ss.Quo(ss, big.NewFloat(float64(len(xs)))).Float64()
		m, _ := mean.Float64()
		wantStd := math.Sqrt(v)
		if math.Abs(w.Mean()-m) > 1e-15*math.Max(1, offset) || math.Abs(math.Sqrt(w.PopVar())-wantStd) > 1e-9*wantStd {
			t.Fatalf("offset %g: welford mean %v std %v, exact %v %v", offset, w.Mean(), math.Sqrt(w.PopVar()), m, wantStd)
		}
		// The naive one-pass formula loses it at 1e9: the data are hard enough.
		var s1, s2 float64
		for _, x := range xs {
			s1 += x
			s2 += x * x
		}
		naive := math.Sqrt(math.Max(s2/float64(len(xs))-(s1/float64(len(xs)))*(s1/float64(len(xs))), 0))
		if offset == 1e9 && math.Abs(naive-wantStd) < 0.5*wantStd {
			t.Fatalf("the naive std is close (%v vs %v): the data do not exercise cancellation", naive, wantStd)
		}
	}
}

func TestMacroETag(t *testing.T) {
	clk := &fakeClock{t: t0}
	b, _, _ := newTestBuilder(t, clk)
	rec, states := testMarket(t)
	defer rec.Release()
	b.Step(rec, features.Market{}, states)
	w := get(t, b, "/v1/macro")
	etag := w.Header().Get("ETag")
	if w.Code != 200 || etag == "" || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("X-Signald-Step") != "1" ||
		w.Header().Get("Content-Length") != fmt.Sprint(w.Body.Len()) {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	for _, inm := range []string{etag, "W/" + etag, `"nope", ` + etag, "*"} {
		if w2 := get(t, b, "/v1/macro", "If-None-Match", inm); w2.Code != 304 || w2.Body.Len() != 0 || w2.Header().Get("ETag") != etag {
			t.Fatalf("If-None-Match %s: %d", inm, w2.Code)
		}
	}
	if w2 := get(t, b, "/v1/macro", "If-None-Match", `"other"`); w2.Code != 200 {
		t.Fatalf("stale tag: %d", w2.Code)
	}
	// A new step is a new entity: the old tag no longer matches.
	clk.Add(time.Second)
	b.Step(rec, features.Market{}, states)
	if w2 := get(t, b, "/v1/macro", "If-None-Match", etag); w2.Code != 200 || w2.Header().Get("ETag") == etag {
		t.Fatalf("after a step: %d %s", w2.Code, w2.Header().Get("ETag"))
	}
	// gzip: same JSON, its own tag.
	g := get(t, b, "/v1/macro", "Accept-Encoding", "br, gzip;q=0.8")
	if g.Header().Get("Content-Encoding") != "gzip" || g.Header().Get("ETag") == etag || g.Header().Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip headers %v", g.Header())
	}
	zr, err := gzip.NewReader(g.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, get(t, b, "/v1/macro").Body.Bytes()) {
		t.Fatal("gzipped body differs from the plain one")
	}
	if g := get(t, b, "/v1/macro", "Accept-Encoding", "gzip;q=0"); g.Header().Get("Content-Encoding") != "" {
		t.Fatal("gzip;q=0 got gzip")
	}
	if w := get(t, b, "/v1/macro?format=xml"); w.Code != 400 || !strings.Contains(w.Body.String(), "arrow") {
		t.Fatalf("format=xml: %d %s", w.Code, w.Body)
	}
}

// TestMacroArrow: the Arrow stream holds the same numbers as the JSON.
func TestMacroArrow(t *testing.T) {
	clk := &fakeClock{t: t0.Add(3 * time.Second)}
	b, _, _ := newTestBuilder(t, clk)
	b.Seen(tickAt{"a", "X", t0}.tick())
	b.Seen(tickAt{"b", "X", t0.Add(-time.Minute)}.tick())
	b.Signal(market.Signal{Time: 10, Venue: "a", Instrument: "Y", Type: market.TypeNovelty, Explanation: "why"})
	b.Signal(market.Signal{Time: 12, Venue: "a", Instrument: "X", Type: market.TypeTrendCall, State: "long", Score: 0.7, Values: map[string]float64{"strength": 0.7, "stop": 95}})
	rec, states := testMarket(t)
	defer rec.Release()
	// The engine's market aggregates: 0.5 per index, the second undefined.
	cat := features.MarketCatalog()
	mkt := features.Market{Rows: 5, Values: make([]float64, len(cat))}
	for i := range mkt.Values {
		mkt.Values[i] = 0.5 * float64(i)
	}
	mkt.Values[1] = math.NaN()
	b.Step(rec, mkt, states)
	js := decodeMacro(t, get(t, b, "/v1/macro").Body.Bytes())
	if len(js.Market) != len(cat) || js.Market[cat[1].Name] != nil || f(js.Market[cat[2].Name]) != 1 {
		t.Fatalf("market section %v (catalogue of %d)", js.Market, len(cat))
	}

	w := get(t, b, "/v1/macro?format=arrow")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/vnd.apache.arrow.stream" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if et := w.Header().Get("ETag"); get(t, b, "/v1/macro?format=arrow", "If-None-Match", et).Code != 304 || et == get(t, b, "/v1/macro").Header().Get("ETag") {
		t.Fatal("arrow ETag: no 304, or the JSON's tag")
	}
	rd, err := ipc.NewReader(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	md := rd.Schema().Metadata()
	if i := md.FindKey("signald.macro.step_time"); i < 0 || md.Values()[i] != js.StepTime {
		t.Fatalf("metadata %v", md)
	}
	got := map[string]*float64{}
	texts := map[string]string{}
	for rd.Next() {
		r := rd.Record()
		metric, key := r.Column(0).(*array.String), r.Column(1).(*array.String)
		val, text := r.Column(2).(*array.Float64), r.Column(3).(*array.String)
		for i := range int(r.NumRows()) {
			k := metric.Value(i) + "|" + key.Value(i)
			if _, dup := got[k]; dup {
				t.Fatalf("row %s twice", k)
			}
			got[k] = nil
			if !val.IsNull(i) {
				x := val.Value(i)
				got[k] = &x
			}
			if !text.IsNull(i) {
				texts[k] = text.Value(i)
			}
		}
	}
	if rd.Err() != nil {
		t.Fatal(rd.Err())
	}
	// Every number of the JSON view, by its Arrow row.
	want := map[string]*float64{}
	num := func(x float64) *float64 { return &x }
	want["instruments|"] = num(float64(js.Instruments))
	want["regime_mix.n|"] = num(float64(js.RegimeMix.N))
	for st, c := range js.RegimeMix.Counts {
		want["regime_mix.counts|"+st] = num(float64(c))
		want["regime_mix.shares|"+st] = js.RegimeMix.Shares[st]
	}
	ud := func(prefix, k string, u udJSON) {
		want[prefix+".n|"+k] = num(float64(u.N))
		want[prefix+".up|"+k], want[prefix+".down|"+k], want[prefix+".flat|"+k] = u.Up, u.Down, u.Flat
	}
	ud("breadth.trend", "", js.Breadth.Trend)
	for _, r := range js.Breadth.Returns {
		ud("breadth.returns", r.Column, r.udJSON)
	}
	for _, d := range js.Dispersion {
		want["dispersion.n|"+d.Column], want["dispersion.mean|"+d.Column], want["dispersion.std|"+d.Column] = num(float64(d.N)), d.Mean, d.Std
	}
	want["rv_index.n|"+js.RVIndex.Column], want["rv_index.median|"+js.RVIndex.Column], want["rv_index.mean|"+js.RVIndex.Column] = num(float64(js.RVIndex.N)), js.RVIndex.Median, js.RVIndex.Mean
	for _, n := range js.TopNovelties {
		want["top_novelties.novelty|"+n.Venue+":"+n.Instrument] = num(n.Novelty)
		if texts["top_novelties.novelty|"+n.Venue+":"+n.Instrument] != n.Explanation {
			t.Fatalf("novelty text %q, JSON %q", texts["top_novelties.novelty|"+n.Venue+":"+n.Instrument], n.Explanation)
		}
	}
	for _, c := range js.TrendCalls {
		k := c.Venue + ":" + c.Instrument
		want["trend_calls.score|"+k], want["trend_calls.strength|"+k], want["trend_calls.stop|"+k] = c.Score, c.Strength, c.Stop
	}
	for _, v := range js.Venues {
		stale := 0.0
		if v.Stale {
			stale = 1
		}
		want["venues.instruments|"+v.Venue], want["venues.ticks|"+v.Venue] = num(float64(v.Instruments)), num(float64(v.Ticks))
		want["venues.seconds_since_tick|"+v.Venue], want["venues.stale|"+v.Venue] = v.SecondsSinceTick, num(stale)
	}
	for name, x := range js.Market {
		want["market|"+name] = x
	}
	if len(got) != len(want) {
		t.Fatalf("arrow has %d rows, JSON %d numbers", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || (g == nil) != (w == nil) || (g != nil && *g != *w) {
			t.Fatalf("%s: arrow %v, json %v", k, f(g), f(w))
		}
	}
	if len(js.TopNovelties) == 0 || len(js.TrendCalls) == 0 || len(js.Venues) != 2 {
		t.Fatal("the test market lost its novelties, trend calls or venues")
	}
}

// TestStaleRefresh: a venue that goes silent becomes stale even when no
// step closes, through the refresh; the fake clock drives it.
func TestStaleRefresh(t *testing.T) {
	clk := &fakeClock{t: t0}
	b, _, reg := newTestBuilder(t, clk)
	b.Seen(tickAt{"a", "X", t0}.tick())
	rec, states := testMarket(t)
	defer rec.Release()
	b.Refresh() // before any step: nothing to rebuild
	b.Step(rec, features.Market{}, states)
	venue := func() (bool, float64) {
		m := decodeMacro(t, get(t, b, "/v1/macro").Body.Bytes())
		return m.Venues[0].Stale, f(m.Venues[0].SecondsSinceTick)
	}
	if st, age := venue(); st || age != 0 {
		t.Fatalf("fresh venue: stale %v age %v", st, age)
	}
	clk.Add(time.Second)
	b.Refresh() // within Refresh of the step: no rebuild
	if _, age := venue(); age != 0 {
		t.Fatalf("rebuilt too early: age %v", age)
	}
	clk.Add(10 * time.Second)
	b.Refresh()
	if st, age := venue(); !st || age != 11 {
		t.Fatalf("after 11 s of silence: stale %v age %v", st, age)
	}
	if n := testutil.ToFloat64(b.m.builds.WithLabelValues("refresh")); n != 1 {
		t.Fatalf("%v refresh builds", n)
	}
	// A new tick and a step make it fresh again.
	b.Seen(tickAt{"a", "X", clk.Now()}.tick())
	b.Step(rec, features.Market{}, states)
	if st, _ := venue(); st {
		t.Fatal("still stale after a tick")
	}
	_ = reg
}

// TestMacroServeAllocs: serving the prepared macro allocates nothing of its
// own (the recorder's header map aside, which net/http reuses per request).
func TestMacroServeAllocs(t *testing.T) {
	clk := &fakeClock{t: t0}
	b, _, _ := newTestBuilder(t, clk)
	rec, states := testMarket(t)
	defer rec.Release()
	b.Step(rec, features.Market{}, states)
	req := httptest.NewRequest("GET", "/v1/macro", nil)
	w := &nopWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(100, func() {
		clear(w.h)
		b.ServeHTTP(w, req)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per request", allocs)
	}
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}
