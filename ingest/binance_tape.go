package ingest

import (
	"bytes"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// extractSIMD parses frame with the shared JSONParser (simdjson-go) and
// fills the extracted fields from its tape.
func (p *BinanceParser) extractSIMD(frame []byte) *ParseError {
	pj, err := p.jp.Parse(frame)
	if err != nil {
		return errBadJSON()
	}
	it := pj.Iter()
	if it.AdvanceInto() != simdjson.TagRoot {
		return errBadJSON()
	}
	return p.simdRoot(&it, it.AdvanceInto())
}

// simdRoot extracts the fields of the document whose first tag (inside
// its root) is tag.
func (p *BinanceParser) simdRoot(it *simdjson.Iter, tag simdjson.Tag) *ParseError {
	switch tag {
	case simdjson.TagObjectStart:
		p.rootType = jObject
	case simdjson.TagArrayStart:
		p.rootType = jArray
		return nil
	default:
		return errBadJSON()
	}
	var obj simdjson.Object
	if _, err := it.Object(&obj); err != nil {
		return errBadJSON()
	}
	return p.simdObject(&obj, &p.top, true)
}

func (p *BinanceParser) simdObject(obj *simdjson.Object, f *fields, top bool) *ParseError {
	var el simdjson.Iter
	for {
		name, typ, err := obj.NextElementBytes(&el)
		if err != nil {
			return errBadJSON()
		}
		if typ == simdjson.TypeNone {
			return nil
		}
		k := keyIndex(name)
		if k < 0 || (k == kData && !top) {
			continue
		}
		s := f.set(k)
		switch typ {
		case simdjson.TypeString:
			b, err := el.StringBytes()
			if err != nil {
				return errBadJSON()
			}
			s.t, s.str = jString, b
		case simdjson.TypeInt:
			v, err := el.Int()
			if err != nil {
				return errBadJSON()
			}
			if v >= 0 {
				s.t, s.u = jUint, uint64(v)
			} else {
				s.t = jNegInt
			}
		case simdjson.TypeUint:
			v, err := el.Uint()
			if err != nil {
				return errBadJSON()
			}
			s.t, s.u = jUint, v
		case simdjson.TypeFloat:
			s.t = jFloat
		case simdjson.TypeBool:
			v, err := el.Bool()
			if err != nil {
				return errBadJSON()
			}
			s.t, s.b = jBool, v
		case simdjson.TypeNull:
			s.t = jNull
		case simdjson.TypeObject:
			s.t = jObject
			if k == kData {
				sub := &p.simdSub // a local would escape through the recursion
				if _, err := el.Object(sub); err != nil {
					return errBadJSON()
				}
				if perr := p.simdObject(sub, &p.data, false); perr != nil {
					return perr
				}
			}
		case simdjson.TypeArray:
			s.t = jArray
			if isLevelKey(k) {
				if perr := simdLevels(&el, s); perr != nil {
					return perr
				}
			}
		default:
			return errBadJSON()
		}
	}
}

// simdLevels collects [[price, size, ...], ...] string pairs into s.lv, or
// sets s.lvBad.
func simdLevels(el *simdjson.Iter, s *slot) *ParseError {
	var arr, lvl simdjson.Array
	if _, err := el.Array(&arr); err != nil {
		return errBadJSON()
	}
	it := arr.Iter()
	for {
		switch it.Advance() {
		case simdjson.TypeNone:
			return nil
		case simdjson.TypeArray:
		default:
			s.lvBad = true
			return nil
		}
		if _, err := it.Array(&lvl); err != nil {
			return errBadJSON()
		}
		li := lvl.Iter()
		if li.Advance() != simdjson.TypeString {
			s.lvBad = true
			return nil
		}
		px, err := li.StringBytes()
		if err != nil {
			return errBadJSON()
		}
		if li.Advance() != simdjson.TypeString {
			s.lvBad = true
			return nil
		}
		sz, err := li.StringBytes()
		if err != nil {
			return errBadJSON()
		}
		s.lv = append(s.lv, rawLevel{px, sz})
	}
}

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
	if !p.useSIMD || len(frames) < 2 {
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
		p.rootType = jNone
		var perr *ParseError
		switch typ {
		case simdjson.TypeObject:
			p.rootType = jObject
			if _, err := el.Object(&p.batchObj); err != nil {
				perr = errBadJSON()
			} else {
				perr = p.simdObject(&p.batchObj, &p.top, true)
			}
		case simdjson.TypeArray:
			p.rootType = jArray
		default:
			perr = errBadJSON()
		}
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
