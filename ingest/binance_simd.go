package ingest

import (
	"github.com/minio/simdjson-go"
)

// extractSIMD parses frame with simdjson-go, reusing the parser's tape, and
// fills the extracted fields.
func (p *BinanceParser) extractSIMD(frame []byte) (perr *ParseError) {
	defer func() {
		// simdjson-go works on untrusted input through assembly and tape
		// offsets; never let a bug there take the daemon down.
		if r := recover(); r != nil {
			p.pj = nil // its state is unknown: start over
			perr = errBadJSON()
		}
	}()
	// simdjson-go detaches its internal buffers (about 100 KB) from the
	// ParsedJson it reuses and re-attaches them only on success; put the
	// header back after a failure so a malformed frame does not cost the
	// next parse a fresh allocation.
	var saved simdjson.ParsedJson
	if p.pj != nil {
		saved = *p.pj
	}
	pj, err := simdjson.Parse(frame, p.pj, simdOpts...)
	if err != nil {
		if p.pj != nil {
			*p.pj = saved
		}
		return errBadJSON()
	}
	p.pj = pj
	it := pj.Iter()
	if it.AdvanceInto() != simdjson.TagRoot {
		return errBadJSON()
	}
	switch it.AdvanceInto() {
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
