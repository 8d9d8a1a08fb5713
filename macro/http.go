package macro

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Prepared is one prepared representation of a snapshot, with its header
// values prebuilt so that serving it allocates nothing.
type Prepared struct {
	body     []byte
	etag     string
	etagHdr  []string
	ctype    []string
	clen     []string
	encoding []string // Content-Encoding, nil for identity
}

// NewPrepared prepares body, of content type ctype and content encoding
// encoding ("" for identity), with its ETag.
func NewPrepared(body []byte, ctype, encoding string) Prepared {
	etag := `"` + strconv.FormatUint(xxhash.Sum64(body), 16) + `"`
	v := Prepared{body: body, etag: etag, etagHdr: []string{etag}, ctype: []string{ctype}, clen: []string{strconv.Itoa(len(body))}}
	if encoding != "" {
		v.encoding = []string{encoding}
	}
	return v
}

var (
	hdrNoCache    = []string{"no-cache"}
	hdrVary       = []string{"Accept-Encoding"}
	hdrJSON       = []string{"application/json"}
	formatArrowQ  = "arrow"
	errBadFormat  = "format: want json (the default) or arrow"
	hdrStepHeader = "X-Signald-Step"
)

// ServeHTTP serves /v1/macro: JSON, gzipped JSON when the client accepts
// it, or Arrow IPC (stream format) with ?format=arrow; each with its ETag,
// and 304 for a matching If-None-Match.
func (b *Builder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := b.snap.Load()
	var v *Prepared
	switch f, ok := queryValue(r.URL.RawQuery, "format"); {
	case !ok || f == "json":
		v = &s.json
		if acceptsGzip(r.Header["Accept-Encoding"]) {
			v = &s.gz
		}
	case f == formatArrowQ:
		v = &s.arrow
		if len(v.body) == 0 {
			WriteError(w, http.StatusInternalServerError, "macro: the Arrow form of this step could not be built (see the log)")
			return
		}
	default:
		WriteError(w, http.StatusBadRequest, errBadFormat)
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

// Serve writes the prepared body with its ETag, or 304 for a matching
// If-None-Match.
func (v *Prepared) Serve(w http.ResponseWriter, r *http.Request) {
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

// WriteError writes the API's error body, {"error": msg}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	body, _ := json.Marshal(apiError{msg})
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
