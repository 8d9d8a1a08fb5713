package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUnknownPathsAnswerJSON: every path or method no route serves gets
// the API's JSON error, with the mux's status and Allow header.
func TestUnknownPathsAnswerJSON(t *testing.T) {
	s, _, _ := newTestServer(true)
	cases := []struct {
		method, path string
		code         int
		phrase       string
	}{
		{"GET", "/nope", http.StatusNotFound, "no endpoint GET /nope"},
		{"GET", "/v1/instruments/x/nope", http.StatusNotFound, "no endpoint"},
		{"DELETE", "/v1/signals", http.StatusMethodNotAllowed, "method not allowed"},
		{"POST", "/v1/macro", http.StatusMethodNotAllowed, "GET"},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.code {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, w.Code, c.code)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q, want JSON", c.method, c.path, ct)
		}
		var body struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, c.phrase) {
			t.Errorf("%s %s: body %q (%v), want an error mentioning %q", c.method, c.path, w.Body, err, c.phrase)
		}
		if c.code == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", c.method, c.path)
		}
	}
	if w := get(t, s.Handler(), "/healthz"); w.Code != http.StatusOK {
		t.Errorf("/healthz: %d", w.Code)
	}
}
