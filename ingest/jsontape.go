package ingest

import (
	"errors"

	"github.com/minio/simdjson-go"
)

// buildTape parses b into pj's tape without SIMD instructions, producing
// exactly the tape simdjson-go would (same tags, payloads and string
// storage), reusing pj's memory.
//
// TODO(json-tape): not implemented yet; the json-tape branch replaces this.
func buildTape(b []byte, pj *simdjson.ParsedJson) error {
	return errors.New("portable json tape builder not implemented")
}
