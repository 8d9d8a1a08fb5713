// Package api is signald's HTTP API: /v1/macro (the macro package's
// prepared snapshot), /v1/instruments and their latest features,
// /v1/signals (a ring of recent signals), /metrics, /healthz and /readyz.
// /v1/macro is served from prepared bytes swapped in once per step (an
// atomic pointer load per request, no encoding, no allocation of our own);
// the other endpoints compute small answers on request.
package api

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/macro"
	"github.com/signald-dev/signald/market"
)

// Problem is one reason /readyz answers 503.
type Problem struct {
	Component string `json:"component"` // e.g. "store", "venue binance", "pipeline"
	Reason    string `json:"reason"`
}

// DefaultSignalRing is the default capacity of the ring behind /v1/signals.
const DefaultSignalRing = 4096

// Config configures the API. The zero value serves every /v1 endpoint,
// always ready, without /metrics or profiles.
type Config struct {
	// Macro configures the builder of /v1/macro.
	Macro macro.Config
	// SignalRing is the capacity of the ring of recent signals behind
	// /v1/signals; default 4096.
	SignalRing int
	// Ready answers /readyz (false: 503, starting or stopping); default:
	// always ready.
	Ready func() bool
	// Problems, when set, names what keeps the service from doing its job
	// (a store that cannot write, a venue not connected): /readyz is 503
	// with them in a JSON body while there are any.
	Problems func() []Problem
	// AckTrimmed, when set, serves POST /v1/admin/trimmed/ack?stream=S&group=G:
	// an operator acknowledges that group lost unread entries of stream to
	// a trim (the flag signald_transport_trimmed_unread goes back to 0).
	AckTrimmed func(stream, group string) bool
	// Gatherer is served on /metrics; nil: no /metrics.
	Gatherer prometheus.Gatherer
	// Pprof serves Go profiles under /debug/pprof/.
	Pprof bool
	// MaxConns bounds the open connections (see connLimiter); default 1024.
	MaxConns int
}

func (c *Config) setDefaults() {
	if c.SignalRing <= 0 {
		c.SignalRing = DefaultSignalRing
	}
	if c.Ready == nil {
		c.Ready = func() bool { return true }
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
}

// Server holds what the API serves and serves it. The feature stage feeds
// it through Tick, Signal and Step; requests read it concurrently.
type Server struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	macro *macro.Builder
	mux   http.Handler

	mu   sync.Mutex // guards ring
	ring *signalRing

	rowsMu     sync.RWMutex
	rows       *rowSnap // the latest feature record, for /v1/instruments
	fieldNames fieldNameCache
}

// New returns the API. Its metrics (and the macro builder's) go to reg (nil:
// not registered).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, m: newMetrics(reg), macro: macro.New(cfg.Macro, log, reg), ring: newSignalRing(cfg.SignalRing)}
	s.mux = jsonErrors{s.routes(reg)}
	return s
}

// Tick records a tick (for venue freshness).
func (s *Server) Tick(t *market.Tick) { s.macro.Seen(t) }

// Signal records a detector output: into the ring behind /v1/signals, and
// into the macro view.
func (s *Server) Signal(sig market.Signal) {
	s.mu.Lock()
	if s.ring.add(sig) {
		s.m.evicted.Inc()
	}
	s.mu.Unlock()
	s.macro.Signal(sig)
}

// Step takes a step's feature record (retained for /v1/instruments while it
// is the latest) and the detectors' states, and rebuilds the macro view.
func (s *Server) Step(rec arrow.Record, mkt features.Market, states []market.InstrumentState) {
	// The rows come first: a client that sees the step counted on /readyz
	// finds its features.
	s.setRows(rec, s.macro.Steps()+1)
	s.macro.Step(rec, mkt, states)
}
