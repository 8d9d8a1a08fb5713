package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The HTTP API. /v1/macro is served from prepared bytes swapped in once per
// step (an atomic pointer load per request, no encoding, no allocation of
// our own); the other endpoints compute small answers on request.

var (
	hdrNoCache    = []string{"no-cache"}
	hdrVary       = []string{"Accept-Encoding"}
	hdrJSON       = []string{"application/json"}
	hdrText       = []string{"text/plain; charset=utf-8"}
	bodyOK        = []byte("ok\n")
	bodyReady     = []byte("ready\n")
	lenOK         = []string{strconv.Itoa(len(bodyOK))}
	lenReady      = []string{strconv.Itoa(len(bodyReady))}
	formatArrowQ  = "arrow"
	errBadFormat  = "format: want json (the default) or arrow"
	hdrStepHeader = "X-Signald-Step"
)

// ServeHTTP serves /v1/macro: JSON, gzipped JSON when the client accepts
// it, or Arrow IPC (stream format) with ?format=arrow; each with its ETag,
// and 304 for a matching If-None-Match.
func (b *macroBuilder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := b.snap.Load()
	var v *variant
	switch f, ok := queryValue(r.URL.RawQuery, "format"); {
	case !ok || f == "json":
		v = &s.json
		if acceptsGzip(r.Header["Accept-Encoding"]) {
			v = &s.gz
		}
	case f == formatArrowQ:
		v = &s.arrow
		if len(v.body) == 0 {
			writeError(w, http.StatusInternalServerError, "macro: the Arrow form of this step could not be built (see the log)")
			return
		}
	default:
		writeError(w, http.StatusBadRequest, errBadFormat)
		return
	}
	h := w.Header()
	h["Etag"] = v.etagHdr
	h["Cache-Control"] = hdrNoCache
	h["Vary"] = hdrVary
	h[hdrStepHeader] = s.stepHdr
	if etagMatch(r.Header["If-None-Match"], v.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = v.ctype
	h["Content-Length"] = v.clen
	if v.encoding != nil {
		h["Content-Encoding"] = v.encoding
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(v.body)
	}
}

// serveVariant serves a prepared body with its ETag.
func serveVariant(w http.ResponseWriter, r *http.Request, v *variant) {
	h := w.Header()
	h["Etag"] = v.etagHdr
	h["Cache-Control"] = hdrNoCache
	if etagMatch(r.Header["If-None-Match"], v.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = v.ctype
	h["Content-Length"] = v.clen
	w.WriteHeader(http.StatusOK)
	w.Write(v.body)
}

// queryValue finds key's first value in a raw query without parsing it into
// a map (no allocation unless the value is escaped).
func queryValue(raw, key string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == key {
			if strings.ContainsAny(v, "%+") {
				if u, err := url.QueryUnescape(v); err == nil {
					return u, true
				}
			}
			return v, true
		}
	}
	return "", false
}

// acceptsGzip reports whether an Accept-Encoding header lists gzip with a
// non-zero quality.
func acceptsGzip(vals []string) bool {
	for _, v := range vals {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

// etagMatch implements If-None-Match's weak comparison: etag matches "*" or
// any listed tag, with or without W/.
func etagMatch(vals []string, etag string) bool {
	for _, v := range vals {
		for v != "" {
			var tag string
			tag, v, _ = strings.Cut(v, ",")
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == etag || tag == "*" {
				return true
			}
		}
	}
	return false
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	body, _ := json.Marshal(apiError{msg})
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

func (b *macroBuilder) serveSignals(w http.ResponseWriter, r *http.Request) {
	q, err := parseSignalQuery(r.URL.Query(), b.cfg.SignalRing)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	b.mu.Lock()
	resp := b.ring.query(q)
	b.mu.Unlock()
	body, err := json.Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "signals: "+err.Error())
		return
	}
	w.Header()["Content-Type"] = hdrJSON
	w.Write(append(body, '\n'))
}

// apiMux routes the API; pipeline-independent so tests can serve it.
func apiMux(b *macroBuilder, m *httpMetrics, ready func() bool, reg *prometheus.Registry, pprofOn bool) *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern, name string, h http.Handler) { mux.Handle(pattern, m.instrument(name, h)) }
	handle("GET /v1/macro", "macro", b)
	handle("GET /v1/instruments", "instruments", http.HandlerFunc(b.serveInstruments))
	handle("GET /v1/instruments/{id}/features", "instrument_features", http.HandlerFunc(b.serveFeatures))
	handle("GET /v1/signals", "signals", http.HandlerFunc(b.serveSignals))
	if reg != nil {
		handle("GET /metrics", "metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	}
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	handle("GET /healthz", "healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = hdrText
		h["Content-Length"] = lenOK
		w.Write(bodyOK)
	}))
	handle("GET /readyz", "readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Steps done so far, and when the first one was published (wall
		// clock, ns): for load tools that wait for the first step.
		h := w.Header()
		h[hdrStepHeader] = []string{strconv.FormatInt(b.steps.Load(), 10)}
		if t := b.firstStep.Load(); t != 0 {
			h["X-Signald-First-Step-Unix-Nano"] = []string{strconv.FormatInt(t, 10)}
		}
		if !ready() {
			http.Error(w, "not ready: starting or stopping", http.StatusServiceUnavailable)
			return
		}
		h["Content-Type"] = hdrText
		h["Content-Length"] = lenReady
		w.Write(bodyReady)
	}))
	return mux
}

// serveHTTP runs the API on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, p *pipeline, reg *prometheus.Registry, log *slog.Logger) error {
	mux := apiMux(p.macro, p.hm, p.ready.Load, reg, p.cfg.Pprof)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Info("http: serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// Keep venue freshness moving when no step closes (every venue silent).
	tick := time.NewTicker(p.macro.cfg.Refresh / 2)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			p.macro.refresh()
		case <-ctx.Done():
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// httpMetrics are the API's metrics.
type httpMetrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	evicted      prometheus.Counter
	builds       *prometheus.CounterVec
	buildSeconds prometheus.Histogram
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_http_requests_total", Help: "HTTP requests answered, by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "signald_http_request_duration_seconds", Help: "Time to answer an HTTP request (handler only, from routing to the last write), by handler.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}, []string{"handler"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signald_http_signal_ring_evicted_total", Help: "Signals evicted from the ring behind /v1/signals (still in the store); responses say when a query reaches past them.",
		}),
		builds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signald_http_macro_builds_total", Help: "Macro snapshots built: once per feature step (step), or to keep venue freshness moving when no step closes (refresh).",
		}, []string{"reason"}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "signald_http_macro_build_seconds", Help: "Time to build the macro snapshot of a step (aggregation, JSON, gzip, Arrow), on the feature stage.",
			Buckets: []float64{100e-6, 250e-6, 500e-6, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.evicted, m.builds, m.buildSeconds)
	}
	return m
}

// Codes whose counters are resolved once per handler.
var commonCodes = [...]int{200, 304, 400, 404, 500, 503}

type instrumented struct {
	next  http.Handler
	dur   prometheus.Observer
	codes [len(commonCodes)]prometheus.Counter
	vec   *prometheus.CounterVec
	name  string
}

// instrument counts and times h's requests under name, without allocating
// per request (the status recorder is pooled, the counters resolved once).
func (m *httpMetrics) instrument(name string, h http.Handler) http.Handler {
	in := &instrumented{next: h, dur: m.duration.WithLabelValues(name), vec: m.requests, name: name}
	for i, c := range commonCodes {
		in.codes[i] = m.requests.WithLabelValues(name, strconv.Itoa(c))
	}
	return in
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

func (in *instrumented) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.code = w, 0
	in.next.ServeHTTP(sw, r)
	code := sw.code
	sw.ResponseWriter = nil
	statusWriters.Put(sw)
	in.dur.Observe(time.Since(start).Seconds())
	if code == 0 {
		code = http.StatusOK
	}
	for i, c := range commonCodes {
		if c == code {
			in.codes[i].Inc()
			return
		}
	}
	in.vec.WithLabelValues(in.name, strconv.Itoa(code)).Inc()
}
