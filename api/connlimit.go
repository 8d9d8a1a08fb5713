package api

import (
	"net"
	"net/http"
	"sync"
)

// connLimiter bounds the server's open connections. A flood of idle
// keep-alive connections once exhausted the daemon's descriptors and held
// hundreds of MB: at the bound, a new connection displaces an idle one (the
// client of an idle connection just reconnects), and only when every
// connection is busy with a request is the new one closed at once. Both are
// counted.
type connLimiter struct {
	max int
	m   *metrics

	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func newConnLimiter(max int, m *metrics) *connLimiter {
	return &connLimiter{max: max, m: m, state: make(map[net.Conn]http.ConnState)}
}

// track is the server's ConnState hook.
func (l *connLimiter) track(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateNew:
		if len(l.state) >= l.max && !l.shedIdle() {
			l.m.connsRejected.Inc()
			c.Close() // every other connection is busy: this one waits no slot
			return
		}
		l.state[c] = st
	case http.StateHijacked, http.StateClosed:
		delete(l.state, c)
	default:
		if _, ok := l.state[c]; ok {
			l.state[c] = st
		}
	}
	l.m.connsOpen.Set(float64(len(l.state)))
}

// shedIdle closes one idle connection to make room.
func (l *connLimiter) shedIdle() bool {
	for c, st := range l.state {
		if st == http.StateIdle {
			delete(l.state, c)
			c.Close()
			l.m.connsShed.Inc()
			return true
		}
	}
	return false
}
