package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/signald-dev/signald/macro"
)

var (
	hdrJSON   = []string{"application/json"}
	hdrText   = []string{"text/plain; charset=utf-8"}
	bodyOK    = []byte("ok\n")
	bodyReady = []byte("ready\n")
	lenOK     = []string{strconv.Itoa(len(bodyOK))}
	lenReady  = []string{strconv.Itoa(len(bodyReady))}
)

const hdrStepHeader = "X-Signald-Step"

func (s *Server) serveSignals(w http.ResponseWriter, r *http.Request) {
	q, err := parseSignalQuery(r.URL.Query(), s.cfg.SignalRing)
	if err != nil {
		macro.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	resp := s.ring.query(q)
	s.mu.Unlock()
	body, err := json.Marshal(resp)
	if err != nil {
		macro.WriteError(w, http.StatusInternalServerError, "signals: "+err.Error())
		return
	}
	w.Header()["Content-Type"] = hdrJSON
	w.Write(append(body, '\n'))
}

// routes builds the API's mux.
func (s *Server) routes(reg prometheus.Registerer) *http.ServeMux {
	mux := http.NewServeMux()
	m := s.m
	handle := func(pattern, name string, h http.Handler) { mux.Handle(pattern, m.instrument(name, h)) }
	handle("GET /v1/macro", "macro", s.macro)
	handle("GET /v1/instruments", "instruments", http.HandlerFunc(s.serveInstruments))
	handle("GET /v1/instruments/{id}/features", "instrument_features", http.HandlerFunc(s.serveFeatures))
	handle("GET /v1/signals", "signals", http.HandlerFunc(s.serveSignals))
	if g := s.cfg.Gatherer; g != nil {
		handle("GET /metrics", "metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{Registry: reg}))
	}
	if s.cfg.Pprof {
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
	if s.cfg.AckTrimmed != nil {
		handle("POST /v1/admin/trimmed/ack", "trimmed_ack", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stream, group := r.URL.Query().Get("stream"), r.URL.Query().Get("group")
			if stream == "" || group == "" {
				macro.WriteError(w, http.StatusBadRequest, "say which flag: ?stream=<stream>&group=<group> (signald_transport_trimmed_unread's labels)")
				return
			}
			if !s.cfg.AckTrimmed(stream, group) {
				macro.WriteError(w, http.StatusNotFound, fmt.Sprintf("no trimmed_unread flag is up for stream %q and group %q", clip(stream), clip(group)))
				return
			}
			w.Header()["Content-Type"] = []string{"application/json"}
			w.Write([]byte(`{"acknowledged":true}` + "\n"))
		}))
	}
	handle("GET /readyz", "readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Steps done so far, and when the first one was published (wall
		// clock, ns): for load tools that wait for the first step.
		h := w.Header()
		h[hdrStepHeader] = []string{strconv.FormatInt(s.macro.Steps(), 10)}
		if t := s.macro.FirstStep(); t != 0 {
			h["X-Signald-First-Step-Unix-Nano"] = []string{strconv.FormatInt(t, 10)}
		}
		var problems []Problem
		if !s.cfg.Ready() {
			problems = append(problems, Problem{Component: "pipeline", Reason: "starting or stopping"})
		}
		if s.cfg.Problems != nil {
			problems = append(problems, s.cfg.Problems()...)
		}
		if len(problems) > 0 {
			h["Content-Type"] = []string{"application/json"}
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(struct {
				Ready    bool      `json:"ready"`
				Problems []Problem `json:"problems"`
			}{false, problems})
			return
		}
		h["Content-Type"] = hdrText
		h["Content-Length"] = lenReady
		w.Write(bodyReady)
	}))
	return mux
}

// jsonErrors answers the paths and methods no route serves with the API's
// JSON error (the mux's own are text/plain), keeping the mux's status and
// Allow header.
type jsonErrors struct{ mux *http.ServeMux }

func (j jsonErrors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := j.mux.Handler(r)
	if pattern != "" {
		j.mux.ServeHTTP(w, r)
		return
	}
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == 0 || probe.code < 400 { // a redirect (path cleaning) or the like
		j.mux.ServeHTTP(w, r)
		return
	}
	if allow := probe.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	msg := fmt.Sprintf("no endpoint %s %s (see docs/http-api.md)", r.Method, clip(r.URL.Path))
	if probe.code == http.StatusMethodNotAllowed {
		msg = fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, clip(r.URL.Path), probe.header.Get("Allow"))
	}
	macro.WriteError(w, probe.code, msg)
}

// statusProbe records the status and headers a handler writes, dropping
// the body.
type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// Handler is the API: every endpoint, counted and timed.
func (s *Server) Handler() http.Handler { return s.mux }

// Run serves the API on ln until ctx ends, then shuts the server down
// (waiting up to 5 s for requests in flight); ln is closed.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	lim := newConnLimiter(s.cfg.MaxConns, s.m)
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10, ConnState: lim.track}
	s.log.Info("http: serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	// Keep venue freshness moving when no step closes (every venue silent).
	tick := time.NewTicker(s.macro.RefreshEvery())
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			s.macro.Refresh()
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
func (m *metrics) instrument(name string, h http.Handler) http.Handler {
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
