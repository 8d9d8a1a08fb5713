package ingest

// Field access on the simdjson-go tape (the same tape on both JSON paths):
// every accessor names the field it reads in the ParseError it returns.

import (
	"math"
	"strconv"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// labelOf returns b when it is one of known, else "other": metric labels
// must not take arbitrary values from the wire.
func labelOf(b []byte, known ...string) string {
	for _, k := range known {
		if string(b) == k {
			return k
		}
	}
	return "other"
}

func perrf(r Reason, field string) *ParseError { return &ParseError{Reason: r, Field: field} }

// ---- tape access ----

// jfield is one member of an object, or one element of an array.
type jfield struct {
	it  simdjson.Iter
	typ simdjson.Type
}

// getFields walks obj once and fills dst[i] with the member named keys[i];
// absent members have typ TypeNone. A key read twice is malformed (the two
// JSON paths must never disagree on which one wins).
func getFields(obj *simdjson.Object, keys []string, dst []jfield) *ParseError {
	for i := range dst {
		dst[i].typ = simdjson.TypeNone
	}
	var el simdjson.Iter
	for {
		name, typ, err := obj.NextElementBytes(&el)
		if err != nil {
			return errBadJSON()
		}
		if typ == simdjson.TypeNone {
			return nil
		}
		for i, k := range keys {
			if k == string(name) {
				if dst[i].typ != simdjson.TypeNone {
					return &ParseError{Reason: ReasonDuplicateField, Field: k}
				}
				dst[i] = jfield{it: el, typ: typ}
				break
			}
		}
	}
}

// present reports whether every field of fl was found.
func present(fl []jfield) bool {
	for i := range fl {
		if fl[i].typ == simdjson.TypeNone {
			return false
		}
	}
	return true
}

// objectFields reads the object f into dst.
func objectFields(f *jfield, keys []string, dst []jfield, field string) *ParseError {
	if f.typ != simdjson.TypeObject {
		return typeErr(f, field)
	}
	var obj simdjson.Object
	if _, err := f.it.Object(&obj); err != nil {
		return errBadJSON()
	}
	return getFields(&obj, keys, dst)
}

func typeErr(f *jfield, field string) *ParseError {
	if f.typ == simdjson.TypeNone {
		return &ParseError{Reason: ReasonMissingField, Field: field}
	}
	return &ParseError{Reason: ReasonBadType, Field: field}
}

// side reads a "buy"/"sell" string member; anything else is malformed and
// reported under field.
func (f *jfield) side(field string) (market.Side, *ParseError) {
	b, perr := f.str(field)
	if perr != nil {
		return 0, perr
	}
	switch string(b) {
	case "buy":
		return market.SideBuy, nil
	case "sell":
		return market.SideSell, nil
	}
	return 0, &ParseError{Reason: ReasonBadType, Field: field}
}

// str returns a string member.
func (f *jfield) str(field string) ([]byte, *ParseError) {
	if f.typ != simdjson.TypeString {
		return nil, typeErr(f, field)
	}
	b, err := f.it.StringBytes()
	if err != nil {
		return nil, errBadJSON()
	}
	return b, nil
}

// strOr returns a string member, or nil when absent or not a string.
func (f *jfield) strOr() []byte {
	if f.typ != simdjson.TypeString {
		return nil
	}
	b, _ := f.it.StringBytes()
	return b
}

// dec returns a non-negative finite decimal sent as a string.
func (f *jfield) dec(field string) (float64, []byte, *ParseError) {
	b, err := f.str(field)
	if err != nil {
		return 0, nil, err
	}
	v, err := decString(b, field)
	if err != nil {
		return 0, nil, err
	}
	return v, b, nil
}

// decString parses the text of dec.
func decString(b []byte, field string) (float64, *ParseError) {
	v, ok := parseDecimal(b)
	if !ok || math.IsInf(v, 0) || math.IsNaN(v) || math.Signbit(v) {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, nil
}

// num returns a finite number sent as a JSON number or a decimal string
// (any sign: funding rates are negative).
func (f *jfield) num(field string) (float64, *ParseError) {
	var v float64
	switch f.typ {
	case simdjson.TypeString:
		b, _ := f.it.StringBytes()
		var ok bool
		if len(b) > 0 && b[0] == '-' {
			v, ok = parseDecimal(b[1:])
			v = -v
		} else {
			v, ok = parseDecimal(b)
		}
		if !ok {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
	case simdjson.TypeFloat, simdjson.TypeInt, simdjson.TypeUint:
		var err error
		if v, err = f.it.Float(); err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
	default:
		return 0, typeErr(f, field)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, nil
}

// pos returns a non-negative finite number sent as a JSON number or a
// decimal string.
func (f *jfield) pos(field string) (float64, *ParseError) {
	v, err := f.num(field)
	if err == nil && math.Signbit(v) {
		err = &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return v, err
}

// uint returns a non-negative integer sent as a JSON number or a string of
// digits.
func (f *jfield) uint(field string) (uint64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Uint()
		if err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	case simdjson.TypeString:
		b, _ := f.it.StringBytes()
		v, ok := parseDigits(b)
		if !ok {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	}
	return 0, typeErr(f, field)
}

// int returns an integer (any sign) sent as a JSON number.
func (f *jfield) int(field string) (int64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt:
		v, err := f.it.Int()
		if err != nil {
			return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
		}
		return v, nil
	case simdjson.TypeUint:
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return 0, typeErr(f, field)
}

// msTime converts a millisecond timestamp field to ns.
func (f *jfield) msTime(field string) (int64, *ParseError) {
	v, err := f.uint(field)
	if err != nil {
		return 0, err
	}
	if v > maxMillis {
		return 0, &ParseError{Reason: ReasonBadNumber, Field: field}
	}
	return int64(v) * 1e6, nil
}

// The accessors below keep the rules of the Bitfinex, Gemini, Deribit,
// KuCoin, Gate.io, BitMEX and HTX parsers, which differ from num, int and
// uint in what they accept.

// numJSON returns a finite number sent as a JSON number (not a string).
func (f *jfield) numJSON(field string) (float64, *ParseError) {
	switch f.typ {
	case simdjson.TypeFloat, simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Float()
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	}
	return 0, typeErr(f, field)
}

// numOrNull is numJSON that takes null as 0, false.
func (f *jfield) numOrNull(field string) (float64, bool, *ParseError) {
	if f.typ == simdjson.TypeNull {
		return 0, false, nil
	}
	v, err := f.numJSON(field)
	return v, err == nil, err
}

// nonNeg is numJSON that must not be below zero.
func (f *jfield) nonNeg(field string) (float64, *ParseError) {
	v, err := f.numJSON(field)
	if err == nil && v < 0 {
		err = perrf(ReasonBadNumber, field)
	}
	return v, err
}

// intJSON returns an integer sent as a JSON number, a float with an
// integral value too (some venues send 1.0).
func (f *jfield) intJSON(field string) (int64, *ParseError) {
	switch f.typ {
	case simdjson.TypeInt, simdjson.TypeUint:
		v, err := f.it.Int()
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeFloat:
		v, _ := f.it.Float()
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, perrf(ReasonBadNumber, field)
		}
		return int64(v), nil
	}
	return 0, typeErr(f, field)
}

// seqNum returns a non-negative integer sent as a JSON number (as intJSON)
// or a string of up to 20 digits (KuCoin sends sequences as strings).
func (f *jfield) seqNum(field string) (uint64, *ParseError) {
	switch f.typ {
	case simdjson.TypeString:
		b, err := f.it.StringBytes()
		if err != nil {
			return 0, perrf(ReasonBadJSON, field)
		}
		v, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			return 0, perrf(ReasonBadNumber, field)
		}
		return v, nil
	case simdjson.TypeUint:
		v, _ := f.it.Uint()
		return v, nil
	}
	v, err := f.intJSON(field)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return uint64(v), nil
}

// arrayIter returns an iterator over the array f.
func (f *jfield) arrayIter(field string) (simdjson.Iter, *ParseError) {
	var arr simdjson.Array
	if f.typ != simdjson.TypeArray {
		return simdjson.Iter{}, typeErr(f, field)
	}
	if _, err := f.it.Array(&arr); err != nil {
		return simdjson.Iter{}, errBadJSON()
	}
	return arr.Iter(), nil
}

// elems returns the array f as a jfield that advance moves through its
// elements in place (next copies each one out).
func (f *jfield) elems(field string) (jfield, *ParseError) {
	it, perr := f.arrayIter(field)
	return jfield{it: it}, perr
}

// advance moves an elems jfield to its next element; false past the last.
func (f *jfield) advance() bool {
	f.typ = f.it.Advance()
	return f.typ != simdjson.TypeNone
}

// next advances an array iterator to its next element.
func next(it *simdjson.Iter) (jfield, bool) {
	typ := it.Advance()
	if typ == simdjson.TypeNone {
		return jfield{}, false
	}
	return jfield{it: *it, typ: typ}, true
}

// sideWord reads a taker or level side written "buy"/"bid" or "sell"/"ask"
// (Gemini, KuCoin, Gate.io, Huobi, Deribit).
func sideWord(b []byte) (market.Side, *ParseError) {
	switch string(b) {
	case "buy", "bid":
		return market.SideBuy, nil
	case "sell", "ask":
		return market.SideSell, nil
	case "":
		return 0, perrf(ReasonMissingField, "side")
	}
	return 0, perrf(ReasonBadType, "side")
}

// ---- fieldReader ----

// fieldReader reads tape fields through the jfield accessors and keeps the
// first error, so a parser reads a message's fields in a row and checks err
// once. After an error every read returns the zero value without looking
// at its field, so err is the error the first failing read (or fail) gave,
// in the order of the calls: the same Reason and Field as checking after
// each read. Use it as a local value (it does not escape); check err before
// anything with an effect (books, metrics, out), and call the parsers' own
// helpers as `if r.err == nil { v, r.err = ... }`.
type fieldReader struct{ err *ParseError }

// levelArray is feedCore.levelArray, skipped after an error (it appends
// to c.lv).
func (r *fieldReader) levelArray(c *feedCore, f *jfield, side market.Side, field string) {
	if r.err == nil {
		r.err = c.levelArray(f, side, field)
	}
}

// levelRows is feedCore.levelRows, skipped after an error.
func (r *fieldReader) levelRows(c *feedCore, f *jfield, side market.Side, field string, withTime bool) {
	if r.err == nil {
		r.err = c.levelRows(f, side, field, withTime)
	}
}

// fail records a Reason for field unless an error is already kept.
func (r *fieldReader) fail(reason Reason, field string) {
	if r.err == nil {
		r.err = perrf(reason, field)
	}
}

// The methods below are the jfield accessors (and helpers) of the same
// names.

func (r *fieldReader) objectFields(f *jfield, keys []string, dst []jfield, field string) {
	if r.err == nil {
		r.err = objectFields(f, keys, dst, field)
	}
}

func (r *fieldReader) str(f *jfield, field string) []byte {
	if r.err != nil {
		return nil
	}
	b, perr := f.str(field)
	r.err = perr
	return b
}

func (r *fieldReader) side(f *jfield, field string) market.Side {
	if r.err != nil {
		return 0
	}
	v, perr := f.side(field)
	r.err = perr
	return v
}

func (r *fieldReader) dec(f *jfield, field string) float64 {
	v, _ := r.decText(f, field)
	return v
}

// decText is dec that also returns the decimal's text.
func (r *fieldReader) decText(f *jfield, field string) (float64, []byte) {
	if r.err != nil {
		return 0, nil
	}
	v, b, perr := f.dec(field)
	r.err = perr
	return v, b
}

func (r *fieldReader) decString(b []byte, field string) float64 {
	if r.err != nil {
		return 0
	}
	v, perr := decString(b, field)
	r.err = perr
	return v
}

func (r *fieldReader) num(f *jfield, field string) float64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.num(field)
	r.err = perr
	return v
}

func (r *fieldReader) pos(f *jfield, field string) float64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.pos(field)
	r.err = perr
	return v
}

func (r *fieldReader) uint(f *jfield, field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.uint(field)
	r.err = perr
	return v
}

func (r *fieldReader) int(f *jfield, field string) int64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.int(field)
	r.err = perr
	return v
}

func (r *fieldReader) msTime(f *jfield, field string) int64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.msTime(field)
	r.err = perr
	return v
}

func (r *fieldReader) numJSON(f *jfield, field string) float64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.numJSON(field)
	r.err = perr
	return v
}

func (r *fieldReader) numOrNull(f *jfield, field string) (float64, bool) {
	if r.err != nil {
		return 0, false
	}
	v, ok, perr := f.numOrNull(field)
	r.err = perr
	return v, ok
}

func (r *fieldReader) nonNeg(f *jfield, field string) float64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.nonNeg(field)
	r.err = perr
	return v
}

func (r *fieldReader) intJSON(f *jfield, field string) int64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.intJSON(field)
	r.err = perr
	return v
}

func (r *fieldReader) seqNum(f *jfield, field string) uint64 {
	if r.err != nil {
		return 0
	}
	v, perr := f.seqNum(field)
	r.err = perr
	return v
}

func (r *fieldReader) arrayIter(f *jfield, field string) simdjson.Iter {
	if r.err != nil {
		return simdjson.Iter{}
	}
	it, perr := f.arrayIter(field)
	r.err = perr
	return it
}

func (r *fieldReader) elems(f *jfield, field string) jfield {
	if r.err != nil {
		return jfield{}
	}
	e, perr := f.elems(field)
	r.err = perr
	return e
}

func (r *fieldReader) sideWord(b []byte) market.Side {
	return r.sideWordAs(b, "")
}

// sideWordAs is sideWord reporting its error under field ("" keeps
// sideWord's "side").
func (r *fieldReader) sideWordAs(b []byte, field string) market.Side {
	if r.err != nil {
		return 0
	}
	v, perr := sideWord(b)
	if perr != nil && field != "" {
		perr = perrf(perr.Reason, field)
	}
	r.err = perr
	return v
}

func (r *fieldReader) msToNS(ms int64, field string) int64 {
	if r.err != nil {
		return 0
	}
	v, perr := msToNS(ms, field)
	r.err = perr
	return v
}

// sym reads the string field f and looks it up as a venue symbol
// (feedCore.sym, which counts it).
func (r *fieldReader) sym(c *feedCore, f *jfield, field string) *symEntry {
	return r.symOf(c, r.str(f, field), field)
}

// symOf is sym on a symbol already read.
func (r *fieldReader) symOf(c *feedCore, b []byte, field string) *symEntry {
	if r.err != nil {
		return nil
	}
	s, perr := c.sym(b, field)
	r.err = perr
	return s
}
