package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/signald-dev/signald/market"
)

// wsTestServer is a scripted local venue for connection-manager tests of
// any Feed: websocket connections are handed to the test (accept) to script
// (send frames, read what the client sent, drop the connection), and plain
// HTTP requests go to rest (REST snapshots). Point a feed at it with
// FeedConfig{Endpoint: s.wsURL(), RESTEndpoint: s.httpURL()}.
type wsTestServer struct {
	t     testing.TB
	srv   *httptest.Server
	conns chan *wsServerConn
	rest  func(r *http.Request) (status int, body string)
	hits  atomic.Int64 // REST requests served
	// retryAfter, if set, is sent as the Retry-After header of REST
	// answers with status 429.
	retryAfter string
	ctx        context.Context
	stop       context.CancelFunc
}

// wsServerConn is one accepted client connection.
type wsServerConn struct {
	c    *websocket.Conn
	url  *url.URL    // the URL the client dialled
	recv chan wsRecv // frames the client sent
	ctx  context.Context
	done chan struct{}
}

// wsRecv is a frame the client sent (timing is checked at the sender:
// arrival times carry the load of the machine).
type wsRecv struct {
	frame string
}

func newWSTestServer(t testing.TB, rest func(r *http.Request) (int, string)) *wsTestServer {
	s := &wsTestServer{t: t, conns: make(chan *wsServerConn, 16), rest: rest}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(func() {
		s.stop()
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

func (s *wsTestServer) wsURL() string   { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }
func (s *wsTestServer) httpURL() string { return s.srv.URL }

func (s *wsTestServer) handle(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.hits.Add(1)
		if s.rest == nil {
			http.NotFound(w, r)
			return
		}
		code, body := s.rest(r)
		if code == http.StatusTooManyRequests && s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		w.WriteHeader(code)
		w.Write([]byte(body))
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(-1)
	sc := &wsServerConn{c: c, url: r.URL, recv: make(chan wsRecv, 1024), ctx: s.ctx, done: make(chan struct{})}
	go func() { // read what the client sends (and answer its pings)
		defer close(sc.recv)
		for {
			_, b, err := c.Read(s.ctx)
			if err != nil {
				return
			}
			select {
			case sc.recv <- wsRecv{string(b)}:
			default:
			}
		}
	}()
	select {
	case s.conns <- sc:
	case <-s.ctx.Done():
		c.CloseNow()
		return
	}
	// The handler must not return while the test scripts the connection.
	select {
	case <-sc.done:
	case <-s.ctx.Done():
		c.CloseNow()
	}
}

// accept waits for the client's next connection.
func (s *wsTestServer) accept(timeout time.Duration) *wsServerConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(timeout):
		s.t.Fatalf("no connection within %v", timeout)
		return nil
	}
}

// send writes one text frame; false once the connection is gone.
func (c *wsServerConn) send(frame string) bool {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageText, []byte(frame)) == nil
}

// sendBinary writes one binary frame.
func (c *wsServerConn) sendBinary(frame []byte) bool {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	return c.c.Write(ctx, websocket.MessageBinary, frame) == nil
}

// drop ends the connection abruptly (no close handshake), as a network
// failure would.
func (c *wsServerConn) drop() {
	c.c.CloseNow()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

// expect waits for the next frame the client sent.
func (c *wsServerConn) expect(t testing.TB, timeout time.Duration) wsRecv {
	t.Helper()
	select {
	case r, ok := <-c.recv:
		if !ok {
			t.Fatal("connection closed while expecting a client frame")
		}
		return r
	case <-time.After(timeout):
		t.Fatalf("no client frame within %v", timeout)
		return wsRecv{}
	}
}

// collector drains an Ingestor's queue in the background.
type collector struct {
	mu      sync.Mutex
	batches [][]market.Tick
	done    chan struct{}
}

func collect2(q <-chan []market.Tick) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for b := range q {
			c.mu.Lock()
			c.batches = append(c.batches, b)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) snapshot() [][]market.Tick {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]market.Tick(nil), c.batches...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
