package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/macro"
	"github.com/signald-dev/signald/market"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// record builds a feature record like the engine's (time, venue,
// instrument, float64 columns) from "venue:instrument" ids and their values
// per column; a missing value is NaN.
func record(stepTime int64, cols []string, ids []string, vals map[string][]float64) arrow.Record {
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
	for row, id := range ids {
		venue, inst, _ := strings.Cut(id, ":")
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(stepTime))
		b.Field(1).(*array.StringBuilder).Append(venue)
		b.Field(2).(*array.StringBuilder).Append(inst)
		for c, name := range cols {
			x := math.NaN()
			if v := vals[name]; row < len(v) {
				x = v[row]
			}
			b.Field(3 + c).(*array.Float64Builder).Append(x)
		}
	}
	return b.NewRecord()
}

// testMarket: five instruments on two venues, as the macro tests use.
func testMarket(t *testing.T) (arrow.Record, []market.InstrumentState) {
	nan := math.NaN()
	rec := record(t0.UnixNano(), []string{"mid", "mid_ret_sum_60", "mid_ret_rv_60", "other"},
		[]string{"a:X", "a:Y", "a:Z", "b:W", "b:X"}, map[string][]float64{
			"mid":            {100, 50, 7, 1, 101},
			"mid_ret_sum_60": {0.02, -0.01, nan, 0.05, 0},
			"mid_ret_rv_60":  {0.01, 0.04, nan, 0.03, 0.02},
			"other":          {1},
		})
	states := []market.InstrumentState{
		{Venue: "a", Instrument: "X", Warm: true, Regime: "calm", Trend: 1, Novelty: 0.5},
		{Venue: "a", Instrument: "Y", Warm: true, Regime: "volatile", Trend: -1, Novelty: 3},
		{Venue: "b", Instrument: "X", Warm: true, Regime: "calm", Trend: 0, Novelty: 2},
		{Venue: "b", Instrument: "W", Warm: true, Regime: "trending", Trend: 1, Novelty: 0},
	}
	return rec, states
}

// newTestServer is an API with a ring of 4 whose readiness is ready.
func newTestServer(ready bool) (*Server, *metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	s := New(Config{
		Macro:      macro.Config{Returns: []string{"mid_ret_sum_60"}},
		SignalRing: 4, Ready: func() bool { return ready }, Gatherer: reg,
	}, nil, reg)
	return s, s.m, reg
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

func f(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func TestInstrumentFeatures(t *testing.T) {
	b, _, _ := newTestServer(true)
	mux := b.Handler()
	if w := get(t, mux, "/v1/instruments/X/features"); w.Code != 503 {
		t.Fatalf("before a step: %d", w.Code)
	}
	rec, states := testMarket(t)
	b.Step(rec, features.Market{}, states)
	rec.Release() // the builder keeps its own reference

	type resp struct {
		ID       string              `json:"id"`
		Step     int64               `json:"step"`
		Time     string              `json:"time"`
		Features map[string]*float64 `json:"features"`
		Error    string              `json:"error"`
	}
	fetch := func(id string) (int, resp) {
		w := get(t, mux, "/v1/instruments/"+id+"/features")
		var r resp
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v %s", id, err, w.Body)
		}
		return w.Code, r
	}
	code, r := fetch("a:X")
	if code != 200 || r.ID != "a:X" || r.Step != 1 || r.Time != "2026-03-04T05:06:07Z" || f(r.Features["mid"]) != 100 || f(r.Features["other"]) != 1 ||
		len(r.Features) != 4 {
		t.Fatalf("a:X: %d %+v", code, r)
	}
	// NaN is null, and present.
	if code, r := fetch("a:Y"); code != 200 || r.Features["other"] != nil || len(r.Features) != 4 {
		t.Fatalf("a:Y: %d %+v", code, r)
	}
	// The instrument alone, when one venue has it.
	if code, r := fetch("W"); code != 200 || r.ID != "b:W" || f(r.Features["mid"]) != 1 {
		t.Fatalf("W: %d %+v", code, r)
	}
	if code, r := fetch("X"); code != 404 || !strings.Contains(r.Error, "ambiguous") || !strings.Contains(r.Error, "a:X, b:X") {
		t.Fatalf("X: %d %+v", code, r)
	}
	for _, id := range []string{"NOPE", "c:X", "a:W"} {
		if code, r := fetch(id); code != 404 || !strings.Contains(r.Error, "no instrument") {
			t.Fatalf("%s: %d %+v", id, code, r)
		}
	}
	// The feature order is the record's.
	body := get(t, mux, "/v1/instruments/a:X/features").Body.String()
	if i, j := strings.Index(body, `"mid"`), strings.Index(body, `"other"`); i < 0 || j < i {
		t.Fatalf("column order lost: %s", body)
	}
	// The list.
	var list struct{ Instruments []string }
	w := get(t, mux, "/v1/instruments")
	json.Unmarshal(w.Body.Bytes(), &list)
	if fmt.Sprint(list.Instruments) != "[a:X a:Y a:Z b:W b:X]" {
		t.Fatalf("list %s", w.Body)
	}
	if get(t, mux, "/v1/instruments", "If-None-Match", w.Header().Get("ETag")).Code != 304 {
		t.Fatal("list: no 304")
	}
	// A later step replaces the row (and releases the old record).
	rec2 := record(t0.Add(time.Second).UnixNano(), []string{"mid"}, []string{"a:X"}, map[string][]float64{"mid": {200}})
	b.Step(rec2, features.Market{}, nil)
	rec2.Release()
	if code, r := fetch("X"); code != 200 || r.ID != "a:X" || f(r.Features["mid"]) != 200 || r.Step != 2 {
		t.Fatalf("after step 2: %d %+v", code, r)
	}
}

func TestSignalsEndpoint(t *testing.T) {
	b, m, _ := newTestServer(true) // ring capacity 4
	mux := b.Handler()
	type resp struct {
		Signals []struct {
			Seq  uint64 `json:"seq"`
			Time int64  `json:"time"`
		} `json:"signals"`
		Complete       bool   `json:"complete"`
		Evicted        uint64 `json:"evicted"`
		EvictedThrough *int64 `json:"evicted_through"`
		More           bool   `json:"more"`
		LastSeq        uint64 `json:"last_seq"`
		Capacity       int    `json:"capacity"`
		Error          string `json:"error"`
	}
	q := func(query string) (int, resp) {
		w := get(t, mux, "/v1/signals"+query)
		var r resp
		if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return w.Code, r
	}
	times := func(r resp) string {
		var s []string
		for _, x := range r.Signals {
			s = append(s, fmt.Sprint(x.Time-t0.UnixNano()))
		}
		return strings.Join(s, ",")
	}
	if code, r := q(""); code != 200 || len(r.Signals) != 0 || !r.Complete || r.Capacity != 4 {
		t.Fatalf("empty: %d %+v", code, r)
	}
	for i := range 3 { // times t0+0..2
		b.Signal(market.Signal{Time: t0.UnixNano() + int64(i), Venue: "a", Instrument: "X", Type: market.TypeRegimeChange})
	}
	if _, r := q("?since=" + fmt.Sprint(t0.UnixNano()+1)); times(r) != "1,2" || !r.Complete || r.More {
		t.Fatalf("since ns: %+v", r)
	}
	if _, r := q("?since=" + t0.Format(time.RFC3339Nano) + "&limit=2"); times(r) != "0,1" || !r.More || r.LastSeq != 2 {
		t.Fatalf("since RFC 3339, limit 2: %+v", r)
	}
	if _, r := q("?after=2"); times(r) != "2" || !r.Complete || r.LastSeq != 3 {
		t.Fatalf("after 2: %+v", r)
	}
	if _, r := q("?limit=2"); times(r) != "1,2" || !r.More {
		t.Fatalf("newest 2: %+v", r)
	}
	// Three more: the ring (4) evicts times 0 and 1.
	for i := 3; i < 6; i++ {
		b.Signal(market.Signal{Time: t0.UnixNano() + int64(i), Venue: "a", Instrument: "X", Type: market.TypeRegimeChange})
	}
	if n := testutil.ToFloat64(m.evicted); n != 2 {
		t.Fatalf("evicted metric %v", n)
	}
	if _, r := q("?since=" + t0.Format(time.RFC3339Nano)); r.Complete || r.Evicted != 2 || r.EvictedThrough == nil || *r.EvictedThrough != t0.UnixNano()+1 || times(r) != "2,3,4,5" {
		t.Fatalf("since before the ring: %+v", r)
	}
	if _, r := q("?since=" + fmt.Sprint(t0.UnixNano()+2)); !r.Complete || times(r) != "2,3,4,5" {
		t.Fatalf("since within the ring: %+v", r)
	}
	if _, r := q("?after=1"); r.Complete || times(r) != "2,3,4,5" {
		t.Fatalf("after 1 (seq 2 evicted): %+v", r)
	}
	if _, r := q("?after=2"); !r.Complete || r.Signals[0].Seq != 3 {
		t.Fatalf("after 2: %+v", r)
	}
	for _, bad := range []string{"?since=yesterday", "?limit=0", "?limit=5", "?after=x", "?since=1&after=1"} {
		if code, r := q(bad); code != 400 || r.Error == "" {
			t.Fatalf("%s: %d %+v", bad, code, r)
		}
	}
}

// TestRequestMetrics: requests are counted per handler and code, and timed.
func TestRequestMetrics(t *testing.T) {
	b, m, _ := newTestServer(false)
	mux := b.Handler()
	get(t, mux, "/v1/macro")
	get(t, mux, "/v1/macro")
	get(t, mux, "/v1/instruments/X/features")
	get(t, mux, "/healthz")
	if w := get(t, mux, "/readyz"); w.Code != 503 || w.Header().Get("X-Signald-Step") != "0" {
		t.Fatalf("readyz %d %v", w.Code, w.Header())
	}
	get(t, mux, "/v1/signals?limit=-1")
	for _, c := range []struct {
		handler, code string
		n             float64
	}{{"macro", "200", 2}, {"instrument_features", "503", 1}, {"healthz", "200", 1}, {"readyz", "503", 1}, {"signals", "400", 1}} {
		if n := testutil.ToFloat64(m.requests.WithLabelValues(c.handler, c.code)); n != c.n {
			t.Fatalf("%s %s: %v requests, want %v", c.handler, c.code, n, c.n)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 7 { // one series per handler registered
		t.Fatalf("%d duration series", n)
	}
	if w := get(t, mux, "/metrics"); !strings.Contains(w.Body.String(), `signald_http_request_duration_seconds_count{handler="macro"} 2`) {
		t.Fatal("/metrics lacks the macro histogram")
	}
}

// BenchmarkServe: /v1/macro through the mux and metrics middleware, against
// /healthz as the baseline in the same run (handler cost only; bench/httpload
// measures over TCP from another process).
func BenchmarkServe(b *testing.B) {
	t := &testing.T{}
	mb, _, _ := newTestServer(true)
	rec, states := testMarket(t)
	defer rec.Release()
	mb.Step(rec, features.Market{}, states)
	mux := mb.Handler()
	for _, path := range []string{"/healthz", "/v1/macro", "/v1/macro?format=arrow"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				mux.ServeHTTP(w, req)
			}
		})
	}
}

// TestConcurrentStepsAndRequests: steps, refreshes, signals and requests at
// once (meant for -race): every answer is complete and of one step.
func TestConcurrentStepsAndRequests(t *testing.T) {
	b, _, _ := newTestServer(true)
	mux := b.Handler()
	rec, states := testMarket(t)
	defer rec.Release()
	b.Step(rec, features.Market{}, states)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for _, path := range []string{"/v1/macro", "/v1/macro?format=arrow", "/v1/instruments/a:X/features", "/v1/signals?limit=3", "/v1/instruments"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := get(t, mux, path)
				if w.Code != 200 {
					t.Errorf("%s: %d %s", path, w.Code, w.Body)
					return
				}
				if path == "/v1/macro" {
					var m struct{ Step, Instruments int64 }
					if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || fmt.Sprint(m.Step) != w.Header().Get("X-Signald-Step") || m.Instruments != 5 {
						t.Errorf("macro step %d under header %s, %d instruments", m.Step, w.Header().Get("X-Signald-Step"), m.Instruments)
						return
					}
				}
			}
		}()
	}
	for i := range 200 {
		now := t0.Add(time.Duration(i) * time.Second).UnixNano()
		b.Tick(&market.Tick{Venue: "a", Instrument: "X", RecvTS: now, IngestTS: now})
		b.Signal(market.Signal{Time: int64(i), Venue: "a", Instrument: "X", Type: market.TypeNovelty})
		b.Step(rec, features.Market{}, states)
		b.macro.Refresh()
	}
	close(stop)
	wg.Wait()
}
