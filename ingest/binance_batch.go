package ingest

import (
	"bytes"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// ParseBatch parses many frames with one simdjson-go call, which spreads
// simdjson-go's fixed per-call cost over the batch (replay and capture
// have frames in bulk). The frames are parsed as the elements of one JSON
// array ("[f1,f2,...]"): simdjson-go v0.4.5's ParseND does not reuse its
// buffers (it never re-attaches them to the result), Parse does. It
// appends the ticks of every frame to out and, per frame, the end offset
// of its ticks in out to ends. A malformed frame gives no ticks and is
// counted as Parse counts it: a batch simdjson-go rejects as a whole, a
// frame with a NUL, and the fallback path go frame by frame, so the ticks
// are always those Parse gives frame by frame.
func (p *BinanceParser) ParseBatch(recvs []int64, frames [][]byte, out []market.Tick, ends []int) ([]market.Tick, []int) {
	one := func() ([]market.Tick, []int) {
		for i := range frames {
			out, _ = p.Parse(recvs[i], frames[i], out)
			ends = append(ends, len(out))
		}
		return out, ends
	}
	if !p.jp.SIMD() || len(frames) < 2 {
		return one()
	}
	p.batch = append(p.batch[:0], '[')
	for i, f := range frames {
		if bytes.IndexByte(f, 0) >= 0 {
			return one()
		}
		if i > 0 {
			p.batch = append(p.batch, ',')
		}
		p.batch = append(p.batch, f...)
	}
	p.batch = append(p.batch, ']')
	if p.jpBatch == nil {
		p.jpBatch = NewJSONParser(false)
	}
	pj, err := p.jpBatch.Parse(p.batch)
	if err != nil {
		return one()
	}
	// One element per frame (a frame of two documents would be two), or
	// frame by frame.
	var arr simdjson.Array
	it := pj.Iter()
	if it.AdvanceInto() != simdjson.TagRoot || it.AdvanceInto() != simdjson.TagArrayStart {
		return one()
	}
	if _, err := it.Array(&arr); err != nil {
		return one()
	}
	el := arr.Iter()
	n := 0
	for el.Advance() != simdjson.TypeNone {
		n++
	}
	if n != len(frames) {
		return one()
	}
	el = arr.Iter()
	for i := range frames {
		typ := el.Advance()
		p.m.frames.Inc()
		p.diff.ok = false
		m := len(out)
		p.top.reset()
		p.data.reset()
		p.rootArr = false
		perr := p.root(&el, typ)
		if perr == nil {
			out, perr = p.build(recvs[i], out, "", false)
		}
		if perr != nil {
			perr.Venue = p.venue
			p.m.malformed[perr.Reason].Inc()
			out = out[:m]
		}
		ends = append(ends, len(out))
	}
	return out, ends
}
