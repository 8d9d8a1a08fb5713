package ingest

import (
	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/ingest/internal/jsontape"
)

// JSONParser parses frames into simdjson-go's tape, so that venue decoders
// are written once against simdjson-go's Iter/Object/Array API: with
// simdjson-go itself where the CPU supports it (AVX2 and CLMUL), otherwise
// with jsontape.Build, a portable parser that produces the same tape. Decoders
// therefore give identical ticks on both paths by construction, and tests
// compare the two on the same input.
//
// A JSONParser is not safe for concurrent use.
type JSONParser struct {
	simd bool
	pj   *simdjson.ParsedJson
	fb   simdjson.ParsedJson // the fallback's reused tape
}

// NewJSONParser returns a parser on the simdjson-go path when the CPU
// supports it and forceFallback is false, on the portable path otherwise.
func NewJSONParser(forceFallback bool) *JSONParser {
	return &JSONParser{simd: !forceFallback && simdjson.SupportedCPU()}
}

// SIMD reports whether the parser uses simdjson-go.
func (p *JSONParser) SIMD() bool { return p.simd }

// errJSON is wrapped by the error of any frame that is not valid JSON, on
// both paths.
var errJSON = jsontape.ErrInvalid

// Parse parses b. The result (and its Iter's strings) is valid until the
// next call to Parse; b must not change meanwhile.
func (p *JSONParser) Parse(b []byte) (pj *simdjson.ParsedJson, err error) {
	if !p.simd {
		if err := jsontape.Build(b, &p.fb); err != nil {
			return nil, err
		}
		return &p.fb, nil
	}
	defer func() {
		// simdjson-go works on untrusted input through assembly and tape
		// offsets; never let a bug there take the daemon down.
		if r := recover(); r != nil {
			p.pj, pj, err = nil, nil, errJSON
		}
	}()
	// simdjson-go detaches its internal buffers from the ParsedJson it
	// reuses and re-attaches them only on success; put the header back
	// after a failure so a malformed frame does not cost the next parse a
	// fresh allocation.
	var saved simdjson.ParsedJson
	if p.pj != nil {
		saved = *p.pj
	}
	res, err := simdjson.Parse(b, p.pj, simdOpts...)
	if err != nil {
		if p.pj != nil {
			*p.pj = saved
		}
		return nil, errJSON
	}
	p.pj = res
	return res, nil
}
