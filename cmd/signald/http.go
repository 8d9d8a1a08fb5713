package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/regime"
)

// staleAfter marks a venue stale when it sent nothing for this long.
const staleAfter = 10 * time.Second

// macroBuilder keeps the latest market summary. It is rebuilt once per
// feature step, on the feature stage's goroutine, and served as prepared
// bytes: a request never computes anything.
type macroBuilder struct {
	mu      sync.Mutex
	venues  map[string]*venueState
	signals []regime.Signal // latest, newest last
	snap    atomic.Pointer[macroSnap]
}

type venueState struct {
	lastRecv, lastIngest int64
	ticks                int64
}

type macroSnap struct {
	body []byte
	etag string
}

func newMacroBuilder() *macroBuilder {
	m := &macroBuilder{venues: map[string]*venueState{}}
	m.publish(map[string]any{"status": "warming up: no feature step completed yet", "instruments": []any{}})
	return m
}

func (m *macroBuilder) seen(t *ingest.Tick) {
	m.mu.Lock()
	v := m.venues[t.Venue]
	if v == nil {
		v = &venueState{}
		m.venues[t.Venue] = v
	}
	v.lastRecv, v.lastIngest = t.RecvTS, t.IngestTS
	v.ticks++
	m.mu.Unlock()
}

func (m *macroBuilder) signal(s regime.Signal) {
	m.mu.Lock()
	m.signals = append(m.signals, s)
	if len(m.signals) > 50 {
		m.signals = m.signals[len(m.signals)-50:]
	}
	m.mu.Unlock()
}

type jsonFloat float64

// MarshalJSON writes NaN and Inf (features still warming up) as null.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 64), nil
}

// summaryCols are the per-instrument columns the summary shows (the
// record has ~1,500).
var summaryCols = func() map[string]bool {
	out := map[string]bool{}
	for _, c := range features.SummaryColumns {
		out[c] = true
	}
	return out
}()

// step rebuilds the snapshot from a feature batch, the market aggregates of
// the same step and the detector states.
func (m *macroBuilder) step(rec arrow.Record, market features.Market, states any) {
	type row struct {
		Venue      string               `json:"venue"`
		Instrument string               `json:"instrument"`
		Features   map[string]jsonFloat `json:"features"`
	}
	var stepTime time.Time
	rows := make([]row, rec.NumRows())
	sch := rec.Schema()
	for c := 0; c < int(rec.NumCols()); c++ {
		col := rec.Column(c)
		name := sch.Field(c).Name
		for i := range rows {
			switch a := col.(type) {
			case *array.Timestamp:
				if name == "time" {
					stepTime = time.Unix(0, int64(a.Value(i))).UTC()
				}
			case *array.String:
				switch name {
				case "venue":
					rows[i].Venue = a.Value(i)
				case "instrument":
					rows[i].Instrument = a.Value(i)
				}
			case *array.Float64:
				if !summaryCols[name] {
					continue
				}
				if rows[i].Features == nil {
					rows[i].Features = map[string]jsonFloat{}
				}
				rows[i].Features[name] = jsonFloat(a.Value(i))
			}
		}
	}
	now := time.Now()
	m.mu.Lock()
	type venue struct {
		Venue            string  `json:"venue"`
		LastRecv         string  `json:"last_recv"`
		SecondsSinceTick float64 `json:"seconds_since_tick"`
		Stale            bool    `json:"stale"`
		Ticks            int64   `json:"ticks"`
	}
	venues := make([]venue, 0, len(m.venues))
	for name, v := range m.venues {
		age := now.Sub(time.Unix(0, v.lastIngest))
		venues = append(venues, venue{name, time.Unix(0, v.lastRecv).UTC().Format(time.RFC3339Nano), age.Seconds(), age > staleAfter, v.ticks})
	}
	sigs := append([]regime.Signal{}, m.signals...) // [] rather than null when none yet
	m.mu.Unlock()
	sort.Slice(venues, func(i, j int) bool { return venues[i].Venue < venues[j].Venue })
	agg := map[string]jsonFloat{}
	for i, d := range features.MarketCatalog() {
		agg[d.Name] = jsonFloat(market.Values[i])
	}
	m.publish(map[string]any{
		"step_time":      stepTime.Format(time.RFC3339Nano),
		"generated_at":   now.UTC().Format(time.RFC3339Nano),
		"schema_version": schemaVersion(sch),
		"instruments":    rows,
		"market":         agg,
		"regimes":        states,
		"venues":         venues,
		"recent_signals": sigs,
	})
}

func schemaVersion(s *arrow.Schema) string {
	if i := s.Metadata().FindKey(features.SchemaVersionKey); i >= 0 {
		return s.Metadata().Values()[i]
	}
	return ""
}

func (m *macroBuilder) publish(v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	m.snap.Store(&macroSnap{body: body, etag: `"` + strconv.FormatUint(xxhash.Sum64(body), 16) + `"`})
}

func (m *macroBuilder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := m.snap.Load()
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == s.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.body)
}

// serveHTTP runs the API on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, p *pipeline, reg *prometheus.Registry, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/macro", p.macro)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if p.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready: starting or stopping", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("http: serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
