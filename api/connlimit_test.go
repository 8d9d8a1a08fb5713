package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A flood of idle keep-alive connections stays within the limit (idle ones
// are shed for new ones), the API keeps answering, and once the flood is
// gone the server holds no more goroutines than before it.
func TestConnectionFlood(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(Config{MaxConns: 32}, nil, reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	healthz := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	base := runtime.NumGoroutine()
	var conns []net.Conn
	for i := 0; i < 400; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := healthz(c); err != nil {
			t.Fatalf("connection %d: %v (the API stopped answering under the flood)", i, err)
		}
	}
	if open := testutil.ToFloat64(s.m.connsOpen); open > 32 {
		t.Fatalf("%v connections open, limit 32", open)
	}
	if shed := testutil.ToFloat64(s.m.connsShed); shed < 400-32 {
		t.Fatalf("%v idle connections shed, want at least %d", shed, 400-32)
	}
	for _, c := range conns {
		c.Close()
	}
	// The server's goroutines for the flood end (bounded wait).
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+5 {
		t.Fatalf("%d goroutines after the flood, %d before", n, base)
	}
}

// An error echoes at most 128 bytes of the id it was asked for.
func TestEchoedIDIsClipped(t *testing.T) {
	if got := clip(strings.Repeat("x", 10_000)); len(got) > 128+len("…") {
		t.Fatalf("clip kept %d bytes", len(got))
	}
	if clip("binance:BTC-USDT") != "binance:BTC-USDT" {
		t.Fatal("clip changed a short id")
	}
}

// /readyz names each failing component in a JSON body with 503, and is 200
// once nothing fails.
func TestReadyzNamesProblems(t *testing.T) {
	var problems []Problem
	s := New(Config{Problems: func() []Problem { return problems }}, nil, nil)
	if w := get(t, s.Handler(), "/readyz"); w.Code != 200 {
		t.Fatalf("healthy: %d %s", w.Code, w.Body)
	}
	problems = []Problem{{"store", "cannot write for 45s: insert deadline exceeded"}, {"venue kraken", "no connection open for 2m0s (1 configured)"}}
	w := get(t, s.Handler(), "/readyz")
	var body struct {
		Ready    bool      `json:"ready"`
		Problems []Problem `json:"problems"`
	}
	if w.Code != 503 || w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &body) != nil {
		t.Fatalf("failing: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if body.Ready || len(body.Problems) != 2 || body.Problems[1].Component != "venue kraken" {
		t.Fatalf("body %+v", body)
	}
}

// POST /v1/admin/trimmed/ack acknowledges a raised trimmed_unread flag; an
// unknown flag is a 404 naming it, a missing label a 400.
func TestAckTrimmed(t *testing.T) {
	up := map[[2]string]bool{{"sd:ticks:{0}", "store"}: true}
	s := New(Config{AckTrimmed: func(stream, group string) bool {
		k := [2]string{stream, group}
		was := up[k]
		delete(up, k)
		return was
	}}, nil, nil)
	post := func(q string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/v1/admin/trimmed/ack"+q, nil))
		return w
	}
	if w := post("?stream=sd:ticks:{0}&group=store"); w.Code != 200 || !strings.Contains(w.Body.String(), `"acknowledged":true`) {
		t.Fatalf("ack: %d %s", w.Code, w.Body)
	}
	if w := post("?stream=sd:ticks:{0}&group=store"); w.Code != 404 || !strings.Contains(w.Body.String(), "no trimmed_unread flag") {
		t.Fatalf("second ack: %d %s", w.Code, w.Body)
	}
	if w := post("?stream=x"); w.Code != 400 {
		t.Fatalf("no group: %d %s", w.Code, w.Body)
	}
}
