// Package jsontape builds simdjson-go's tape without SIMD instructions, for
// CPUs without AVX2 and CLMUL: ingest.JSONParser calls Build there, so the
// venue decoders read the same tape on every CPU.
package jsontape

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unsafe"

	"github.com/minio/simdjson-go"
)

// The portable tape builder. simdjson-go (v0.4.5) parses in two stages: stage
// 1 (assembly) finds the structural characters, stage 2 walks them and writes
// the tape. Build does both in one scalar pass, but keeps every rule that
// decides what the tape looks like and what is rejected:
//
//   - the message is bytes.TrimSpace(b) (so Unicode spaces at either end are
//     trimmed too) and string offsets on the tape are relative to it;
//   - the root must be an object or an array and nothing may follow it;
//   - between tokens only space, \t, \n and \r are whitespace;
//   - strings without escapes point into Message (copyStrings=false); a
//     string with any escape is decoded into Strings.B; control characters
//     (< 0x20) inside strings are rejected; UTF-8 is not validated; \u
//     escapes follow simdjson's arithmetic, including its lenient handling
//     of surrogates (uint32 wrap-around, lone low halves encoded as is) and
//     its digit table, which reads ' ' through '/' as 0;
//   - numbers follow simdjson-go's parseNumber: int64 ('l') when the integer
//     fits, else uint64 ('u'), else float64 ('d') flagged
//     FloatOverflowedInteger (also for integers of more than 20 characters);
//     floats as strconv.ParseFloat parses them, so "-00.5" is accepted and
//     1e400 rejected, as there;
//   - true/false/null may be followed by NUL, which stage 1 does not treat as
//     a token boundary, so the bytes after it up to the next structural
//     character are skipped, as simdjson-go does.
//
// Known differences: none found (see jsontape_test.go: captures, generated
// and mutated inputs, fuzzing). One rule is inferred rather than read: a '"'
// among the four digits of a \u escape makes simdjson-go's string run past
// the quote stage 1 ended it at, and every such input tried fails there, so
// Build rejects it outright. Error values differ in text only (all wrap
// ErrInvalid).
//
// Objects and arrays are linked through their start entries while open (the
// payload holds the parent's index until the scope closes), so no stack is
// needed and deep nesting costs nothing extra.

const (
	tapeShift    = simdjson.JSONTAGOFFSET
	tapeValMask  = simdjson.JSONVALUEMASK
	tapeRoot     = uint64('r') << tapeShift
	tapeString   = uint64('"') << tapeShift
	tapeInt      = uint64('l') << tapeShift
	tapeUint     = uint64('u') << tapeShift
	tapeFloat    = uint64('d') << tapeShift
	tapeTrue     = uint64('t') << tapeShift
	tapeFalse    = uint64('f') << tapeShift
	tapeNull     = uint64('n') << tapeShift
	tapeObjStart = uint64('{') << tapeShift
	tapeArrStart = uint64('[') << tapeShift
)

// Where Build's string state returns to.
const (
	afterKey = iota
	afterObjectValue
	afterArrayValue
)

// ErrInvalid is wrapped by every error of Build.
var ErrInvalid = errors.New("invalid json")

// Errors of the portable path; all of them wrap ErrInvalid.
var (
	errTapeEmpty    = fmt.Errorf("%w: empty message", ErrInvalid)
	errTapeRoot     = fmt.Errorf("%w: root is not an object or array", ErrInvalid)
	errTapeTrailing = fmt.Errorf("%w: data after the root value", ErrInvalid)
	errTapeToken    = fmt.Errorf("%w: unexpected character", ErrInvalid)
	errTapeEOF      = fmt.Errorf("%w: unexpected end of message", ErrInvalid)
	errTapeString   = fmt.Errorf("%w: bad string", ErrInvalid)
	errTapeNumber   = fmt.Errorf("%w: bad number", ErrInvalid)
	errTapeAtom     = fmt.Errorf("%w: bad literal", ErrInvalid)
)

// charClass bits.
const (
	ccWS     = 1 << iota // space, \t, \n, \r: whitespace for stage 1
	ccStruct             // { } [ ] , :
	ccStrEnd             // '"', '\\' or a control character: ends the fast string scan
	ccAtomOK             // may follow true/false/null (simdjson's isNotStructuralOrWhitespace == 0)
)

// Number scan flags, as in simdjson-go's parse_number.go.
const (
	nPart = 1 << iota
	nFloatOnly
	nMinus
	nEOV
	nDigit
	nMustDigit
)

var (
	charClass [256]uint8
	numRune   [256]uint8
)

func init() {
	for _, c := range " \t\n\r" {
		charClass[c] |= ccWS | ccAtomOK
	}
	for _, c := range "{}[],:" {
		charClass[c] |= ccStruct | ccAtomOK
	}
	charClass[0] |= ccAtomOK
	for c := 0; c < 0x20; c++ {
		charClass[c] |= ccStrEnd
	}
	charClass['"'] |= ccStrEnd
	charClass['\\'] |= ccStrEnd

	for c := '0'; c <= '9'; c++ {
		numRune[c] = nPart | nDigit
	}
	numRune['.'] = nPart | nFloatOnly | nMustDigit
	numRune['+'] = nPart
	numRune['-'] = nPart | nMinus | nMustDigit
	numRune['e'] = nPart | nFloatOnly
	numRune['E'] = nPart | nFloatOnly
	for _, c := range ",}] \t\r\n:" {
		numRune[c] = nEOV
	}
}

// Build parses b into pj's tape without SIMD instructions, producing
// exactly the tape simdjson-go would with WithCopyStrings(false) (same tags,
// payloads and string storage), reusing pj's memory. On error pj holds no
// valid tape.
func Build(b []byte, pj *simdjson.ParsedJson) error {
	msg := bytes.TrimSpace(b)
	n := len(msg)
	pj.Message = msg
	if pj.Strings == nil {
		pj.Strings = &simdjson.TStrings{B: make([]byte, 0, 128)}
	}
	tape := pj.Tape[:0]
	if want := n/4 + 8; cap(tape) < want {
		tape = make([]uint64, 0, want)
	}
	strs := pj.Strings.B[:0]

	var (
		i     int
		scope int // tape index of the innermost open object/array (0: root)
		err   error
		c     byte
		open  int
		j     int
		after int // where str returns
	)

	tape = append(tape, tapeRoot)
	if n == 0 {
		err = errTapeEmpty
		goto fail
	}
	switch msg[0] {
	case '{':
		tape = append(tape, tapeObjStart) // parent 0
		scope = 1
		i = 1
		goto objectBegin
	case '[':
		tape = append(tape, tapeArrStart)
		scope = 1
		i = 1
		goto arrayBegin
	default:
		err = errTapeRoot
		goto fail
	}

objectBegin:
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n {
		err = errTapeEOF
		goto fail
	}
	switch msg[i] {
	case '"':
		after = afterKey
		goto str
	case '}':
		goto scopeEnd
	}
	err = errTapeToken
	goto fail

objectKey:
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n || msg[i] != ':' {
		err = errTapeToken
		goto fail
	}
	i++
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n {
		err = errTapeEOF
		goto fail
	}
	after = afterObjectValue
	goto value

objectContinue:
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n {
		err = errTapeEOF
		goto fail
	}
	switch msg[i] {
	case ',':
		i++
		for i < n && charClass[msg[i]]&ccWS != 0 {
			i++
		}
		if i >= n || msg[i] != '"' {
			err = errTapeToken
			goto fail
		}
		after = afterKey
		goto str
	case '}':
		goto scopeEnd
	}
	err = errTapeToken
	goto fail

scopeEnd:
	// msg[i] closes the scope at tape[scope]: link both ends and resume
	// the parent.
	open = scope
	scope = int(tape[open] & tapeValMask)
	tape = append(tape, uint64(msg[i])<<tapeShift|uint64(open))
	tape[open] = tape[open]&^tapeValMask | uint64(len(tape))
	i++
	switch tape[scope] >> tapeShift {
	case '[':
		goto arrayContinue
	case '{':
		goto objectContinue
	}
	// The root is closed: only whitespace may follow (none does after
	// TrimSpace, unless the message ends in bytes TrimSpace keeps).
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i < n {
		err = errTapeTrailing
		goto fail
	}
	tape[0] = tapeRoot | uint64(len(tape)+1)
	tape = append(tape, tapeRoot)
	pj.Tape = tape
	pj.Strings.B = strs
	return nil

arrayBegin:
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n {
		err = errTapeEOF
		goto fail
	}
	if msg[i] == ']' {
		goto scopeEnd
	}

arrayValue:
	after = afterArrayValue
	goto value

arrayContinue:
	for i < n && charClass[msg[i]]&ccWS != 0 {
		i++
	}
	if i >= n {
		err = errTapeEOF
		goto fail
	}
	switch msg[i] {
	case ',':
		i++
		for i < n && charClass[msg[i]]&ccWS != 0 {
			i++
		}
		if i >= n {
			err = errTapeEOF
			goto fail
		}
		goto arrayValue
	case ']':
		goto scopeEnd
	}
	err = errTapeToken
	goto fail

value:
	// The value at msg[i] of an object member or array element (after);
	// an object or array resumes its parent at scopeEnd.
	c = msg[i]
	switch {
	case c == '"':
		goto str
	case c == '-' || c-'0' <= 9:
		if i, tape, err = parseTapeNumber(msg, i, tape); err != nil {
			goto fail
		}
	case c == '{':
		tape = append(tape, tapeObjStart|uint64(scope))
		scope = len(tape) - 1
		i++
		goto objectBegin
	case c == '[':
		tape = append(tape, tapeArrStart|uint64(scope))
		scope = len(tape) - 1
		i++
		goto arrayBegin
	default:
		if i, tape, err = parseTapeAtom(msg, i, tape); err != nil {
			goto fail
		}
	}
	if after == afterObjectValue {
		goto objectContinue
	}
	goto arrayContinue

str:
	// The string at msg[i]; the common one, without escapes, inline.
	for j = i + 1; j+8 <= n; j += 8 {
		if m := strStopMask(binary.LittleEndian.Uint64(msg[j:])); m != 0 {
			j += bits.TrailingZeros64(m) >> 3
			goto strStop
		}
	}
	for ; j < n && charClass[msg[j]]&ccStrEnd == 0; j++ {
	}
strStop:
	if j < n && msg[j] == '"' {
		tape = append(tape, tapeString|uint64(i+1), uint64(j-i-1))
		i = j + 1
	} else if i, tape, strs, err = stringSlow(msg, i, j, tape, strs); err != nil {
		goto fail
	}
	switch after {
	case afterKey:
		goto objectKey
	case afterObjectValue:
		goto objectContinue
	}
	goto arrayContinue

fail:
	// Keep the buffers for the next parse, but no usable tape.
	pj.Tape = tape[:0]
	pj.Strings.B = strs[:0]
	return err
}

// parseTapeAtom writes true, false or null starting at msg[i] and returns the
// index after it.
func parseTapeAtom(msg []byte, i int, tape []uint64) (int, []uint64, error) {
	rest := msg[i:]
	var l int
	var tag uint64
	switch {
	case len(rest) >= 5 && binary.LittleEndian.Uint32(rest) == 0x65757274: // "true"
		l, tag = 4, tapeTrue
	case len(rest) >= 6 && binary.LittleEndian.Uint32(rest) == 0x736c6166 && rest[4] == 'e': // "fals"
		l, tag = 5, tapeFalse
	case len(rest) >= 5 && binary.LittleEndian.Uint32(rest) == 0x6c6c756e: // "null"
		l, tag = 4, tapeNull
	default:
		return i, tape, errTapeAtom
	}
	if charClass[rest[l]]&ccAtomOK == 0 {
		return i, tape, errTapeAtom
	}
	tape = append(tape, tag)
	i += l
	if msg[i] == 0 {
		i = skipRun(msg, i)
	}
	return i, tape, nil
}

// skipRun skips what simdjson-go's stage 1 does not mark after an atom that
// ends in NUL: everything up to whitespace, a structural character or an
// unescaped quote.
func skipRun(msg []byte, i int) int {
	bs := 0 // consecutive backslashes before msg[i]
	for ; i < len(msg); i++ {
		c := msg[i]
		if charClass[c]&(ccWS|ccStruct) != 0 {
			return i
		}
		switch c {
		case '"':
			if bs&1 == 0 {
				return i
			}
			bs = 0
		case '\\':
			bs++
		default:
			bs = 0
		}
	}
	return i
}

// stringSlow finishes the string whose opening quote is msg[i] when
// Build's scan stopped at msg[j] on something else than its closing quote: an
// escape (the string is decoded into strs), a control character or the end.
func stringSlow(msg []byte, i, j int, tape []uint64, strs []byte) (int, []uint64, []byte, error) {
	if j < len(msg) && msg[j] == '\\' {
		return decodeString(msg, i+1, j, tape, strs)
	}
	return i, tape, strs, errTapeString
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// strStopMask has the high bit set in each byte of w that is '"', '\\' or
// below 0x20 (other bytes may also be flagged, but not before the first true
// one, which is all the caller needs).
func strStopMask(w uint64) uint64 {
	q := w ^ (lsb * '"')
	s := w ^ (lsb * '\\')
	return ((q-lsb)&^q | (s-lsb)&^s | (w-lsb*0x20)&^w) & msb
}

// decodeString decodes the string starting at msg[start] whose first escape
// is at msg[j] into strs, the way simdjson-go's parse_string does.
func decodeString(msg []byte, start, j int, tape []uint64, strs []byte) (int, []uint64, []byte, error) {
	n := len(msg)
	off := len(strs)
	strs = append(strs, msg[start:j]...)
	for {
		// msg[j] is a backslash.
		if j+1 >= n {
			return j, tape, strs, errTapeString
		}
		e := msg[j+1]
		switch e {
		case '"', '\\', '/':
			strs = append(strs, e)
			j += 2
		case 'b':
			strs = append(strs, '\b')
			j += 2
		case 'f':
			strs = append(strs, '\f')
			j += 2
		case 'n':
			strs = append(strs, '\n')
			j += 2
		case 'r':
			strs = append(strs, '\r')
			j += 2
		case 't':
			strs = append(strs, '\t')
			j += 2
		case 'u':
			cp := tapeHex4(msg, j+2)
			j += 6
			if cp >= 0xd800 && cp < 0xdc00 {
				// simdjson takes the next \u escape as the low half
				// without checking its range, in uint32 arithmetic.
				if j+1 >= n || msg[j] != '\\' || msg[j+1] != 'u' {
					return j, tape, strs, errTapeString
				}
				cp2 := tapeHex4(msg, j+2)
				if (cp|cp2)>>16 != 0 {
					return j, tape, strs, errTapeString
				}
				cp = (((cp - 0xd800) << 10) | (cp2 - 0xdc00)) + 0x10000
				j += 6
			}
			var ok bool
			if strs, ok = appendCodepoint(strs, cp); !ok {
				return j, tape, strs, errTapeString
			}
		default:
			return j, tape, strs, errTapeString
		}
		// Copy up to the next quote, backslash or control character.
		k := j
		for k < n && charClass[msg[k]]&ccStrEnd == 0 {
			k++
		}
		strs = append(strs, msg[j:k]...)
		j = k
		if j >= n {
			return j, tape, strs, errTapeString
		}
		switch msg[j] {
		case '"':
			tape = append(tape, tapeString|simdjson.STRINGBUFBIT|uint64(off), uint64(len(strs)-off))
			return j + 1, tape, strs, nil
		case '\\':
			continue
		}
		return j, tape, strs, errTapeString // control character
	}
}

// tapeHex4 reads four hex digits at msg[i:] (see hexVal); any invalid or
// missing digit gives a value with high bits set, as simdjson's
// hex_to_u32_nocheck does.
func tapeHex4(msg []byte, i int) uint32 {
	if i+4 > len(msg) {
		return 0xffffffff
	}
	var v uint32
	for _, c := range msg[i : i+4] {
		d := hexVal[c]
		if d > 15 {
			return 0xffffffff
		}
		v = v<<4 | uint32(d)
	}
	return v
}

// hexVal is simdjson-go's digit table: its assembly indexes a table by
// c-'0', and the 16 bytes below the table are zero, so ' ' through '/' read
// as 0. '"' would also read as 0 but then ends the string beyond where stage
// 1 ended it, which simdjson-go rejects.
var hexVal = func() (t [256]uint8) {
	for i := range t {
		t[i] = 0xff
	}
	for c := 0x20; c < 0x30; c++ {
		if c != '"' {
			t[c] = 0
		}
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = uint8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = uint8(c - 'a' + 10)
		t[c-'a'+'A'] = uint8(c - 'a' + 10)
	}
	return t
}()

// appendCodepoint writes cp as UTF-8 without Go's surrogate check (as
// simdjson's codepoint_to_utf8); ok is false above U+10FFFF.
func appendCodepoint(dst []byte, cp uint32) ([]byte, bool) {
	switch {
	case cp <= 0x7f:
		return append(dst, byte(cp)), true
	case cp <= 0x7ff:
		return append(dst, byte(cp>>6)|0xc0, byte(cp&0x3f)|0x80), true
	case cp <= 0xffff:
		return append(dst, byte(cp>>12)|0xe0, byte(cp>>6&0x3f)|0x80, byte(cp&0x3f)|0x80), true
	case cp <= 0x10ffff:
		return append(dst, byte(cp>>18)|0xf0, byte(cp>>12&0x3f)|0x80, byte(cp>>6&0x3f)|0x80, byte(cp&0x3f)|0x80), true
	}
	return dst, false
}

// parseTapeNumber writes the number starting at msg[i] (a digit or '-') the way
// simdjson-go's parseNumber does and returns the index after it.
func parseTapeNumber(msg []byte, i int, tape []uint64) (int, []uint64, error) {
	n := len(msg)
	// Fast path: -?[1-9][0-9]{0,17} or -?0, followed by what ends a number,
	// is an int64 by every rule below.
	j := i
	if msg[j] == '-' {
		j++
	}
	d0 := j
	var v uint64
	for j < n && j-d0 < 18 {
		d := msg[j] - '0'
		if d > 9 {
			break
		}
		v = v*10 + uint64(d)
		j++
	}
	if nd := j - d0; nd > 0 && j < n && numRune[msg[j]] == nEOV && (nd == 1 || msg[d0] != '0') {
		if d0 != i {
			v = -v
		}
		return j, append(tape, tapeInt, v), nil
	}

	j = i
	found := uint8(0)
	for j < n {
		t := numRune[msg[j]]
		if t == 0 {
			return i, tape, errTapeNumber
		}
		if t == nEOV {
			break
		}
		if t&nMustDigit != 0 && (j+1 >= n || numRune[msg[j+1]]&nDigit == 0) {
			return i, tape, errTapeNumber
		}
		found |= t
		j++
	}
	s := msg[i:j]
	pos := len(s)
	flags := uint64(0)
	if found&nFloatOnly == 0 {
		if pos <= 20 {
			neg := found&nMinus != 0
			if !neg {
				if pos > 1 && s[0] == '0' {
					return i, tape, errTapeNumber
				}
			} else if pos > 2 && s[1] == '0' {
				return i, tape, errTapeNumber
			}
			switch v, kind := parseIntLike(s); kind {
			case intOK:
				return j, append(tape, tapeInt, v), nil
			case uintOK:
				if !neg {
					return j, append(tape, tapeUint, v), nil
				}
				flags = uint64(simdjson.FloatOverflowedInteger)
			case intRange:
				flags = uint64(simdjson.FloatOverflowedInteger)
			}
		} else {
			flags = uint64(simdjson.FloatOverflowedInteger)
		}
	}
	if pos > 1 && s[0] == '0' && numRune[s[1]]&nFloatOnly == 0 {
		return i, tape, errTapeNumber
	}
	f, ok := parseFloat(s)
	if !ok {
		return i, tape, errTapeNumber
	}
	return j, append(tape, tapeFloat|flags, math.Float64bits(f)), nil
}

// parseIntLike results.
const (
	intSyntax = iota // not -?[0-9]+: strconv.ParseInt would fail with ErrSyntax
	intOK            // fits int64: v is its two's complement
	uintOK           // non-negative, fits uint64 but not int64 (or negative and below MinInt64)
	intRange         // out of both ranges
)

// parseIntLike classifies s as strconv.ParseInt(s, 10, 64) and ParseUint
// would, without their error allocations.
func parseIntLike(s []byte) (uint64, int) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg = true
		s = s[1:]
	}
	if len(s) == 0 {
		return 0, intSyntax
	}
	var v uint64
	over := false
	for _, c := range s {
		d := uint64(c - '0')
		if d > 9 {
			return 0, intSyntax
		}
		hi, lo := bits.Mul64(v, 10)
		lo, carry := bits.Add64(lo, d, 0)
		if hi != 0 || carry != 0 {
			over = true
		}
		v = lo
	}
	switch {
	case over:
		return 0, intRange
	case neg && v <= 1<<63:
		return -v, intOK
	case neg:
		return 0, intRange
	case v <= math.MaxInt64:
		return v, intOK
	}
	return v, uintOK
}

// exactPow10 are the powers of ten exactly representable in a float64.
var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloat returns what strconv.ParseFloat(s, 64) returns (ok is err ==
// nil). Short decimals take Clinger's exact fast path: a mantissa below 2^53
// times or divided by an exact power of ten is one correctly rounded
// operation, hence the same bits as strconv; the rest goes to strconv.
func parseFloat(s []byte) (float64, bool) {
	k := 0
	neg := false
	if k < len(s) && s[k] == '-' {
		neg = true
		k++
	}
	var mant uint64
	nd := 0 // significant digits in mant
	exp := 0
	digits := 0
	for ; k < len(s) && s[k]-'0' <= 9; k++ {
		digits++
		if mant == 0 && s[k] == '0' {
			continue
		}
		mant = mant*10 + uint64(s[k]-'0')
		nd++
		if nd > 19 {
			goto slow
		}
	}
	if digits == 0 {
		goto slow
	}
	if k < len(s) && s[k] == '.' {
		k++
		fd := 0
		for ; k < len(s) && s[k]-'0' <= 9; k++ {
			fd++
			exp--
			if mant == 0 && s[k] == '0' {
				continue
			}
			mant = mant*10 + uint64(s[k]-'0')
			nd++
			if nd > 19 {
				goto slow
			}
		}
		if fd == 0 {
			goto slow
		}
	}
	if k < len(s) && (s[k] == 'e' || s[k] == 'E') {
		k++
		eneg := false
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			eneg = s[k] == '-'
			k++
		}
		e, ed := 0, 0
		for ; k < len(s) && s[k]-'0' <= 9; k++ {
			ed++
			if e < 10000 {
				e = e*10 + int(s[k]-'0')
			}
		}
		if ed == 0 {
			goto slow
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if k != len(s) || mant >= 1<<53 {
		goto slow
	}
	{
		f := float64(mant) // exact: mant < 2^53
		switch {
		case mant == 0:
			f = 0
		case exp == 0:
		case exp > 0 && exp <= 22:
			f *= exactPow10[exp]
		case exp < 0 && exp >= -22:
			f /= exactPow10[-exp]
		default:
			goto slow
		}
		if neg {
			f = -f
		}
		return f, true
	}
slow:
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(s), len(s)), 64)
	return f, err == nil
}
