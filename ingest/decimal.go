package ingest

import (
	"math"
	"strconv"
	"unsafe"
)

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal parses a venue decimal string ("61837.63000000") and returns
// exactly what strconv.ParseFloat(s, 64) returns for it.
//
// Plain digits with an optional point, up to 19 significant digits and at
// most 22 fractional digits after trailing zeros are dropped, take the exact
// fast path: the mantissa is an integer below 2^53 and 10^k is exact, so one
// IEEE division (or multiplication) gives the correctly rounded result.
// Everything else (signs, exponents, long mantissas, hex floats, "inf", junk)
// goes to strconv itself, so rounding and acceptance match by construction.
func parseDecimal(b []byte) (float64, bool) {
	var mant uint64
	nd := 0  // significant digits in mant
	exp := 0 // decimal exponent applied to mant
	frac := false
	digit := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c-'0' <= 9 {
			digit = true
			if c == '0' && nd == 0 {
				if frac {
					exp--
				}
				continue
			}
			if nd == 19 {
				return parseDecimalSlow(b)
			}
			mant = mant*10 + uint64(c-'0')
			nd++
			if frac {
				exp--
			}
			continue
		}
		if c == '.' && !frac {
			frac = true
			continue
		}
		return parseDecimalSlow(b)
	}
	if !digit {
		return parseDecimalSlow(b) // "", "." : let strconv reject it
	}
	if mant == 0 {
		return 0, true
	}
	for exp < 0 && mant%10 == 0 {
		mant /= 10
		exp++
	}
	if mant > 1<<53 || exp < -22 {
		return parseDecimalSlow(b)
	}
	if exp == 0 {
		return float64(mant), true
	}
	return float64(mant) / pow10[-exp], true
}

func parseDecimalSlow(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64)
	return f, err == nil
}

// Number classes as simdjson-go tags them.
const (
	numInvalid = iota
	numInt     // fits int64
	numUint    // fits uint64 but not int64
	numFloat
)

// Number classification flags, ported from simdjson-go's parse_number.go so
// the fallback path accepts and types numbers exactly like the simdjson path.
const (
	nfPart = 1 << iota
	nfFloatOnly
	nfMinus
	nfEOV
	nfDigit
	nfMustHaveDigitNext
)

var numberRune = [256]uint8{
	'0': nfPart | nfDigit, '1': nfPart | nfDigit, '2': nfPart | nfDigit, '3': nfPart | nfDigit,
	'4': nfPart | nfDigit, '5': nfPart | nfDigit, '6': nfPart | nfDigit, '7': nfPart | nfDigit,
	'8': nfPart | nfDigit, '9': nfPart | nfDigit,
	'.':  nfPart | nfFloatOnly | nfMustHaveDigitNext,
	'+':  nfPart,
	'-':  nfPart | nfMinus | nfMustHaveDigitNext,
	'e':  nfPart | nfFloatOnly,
	'E':  nfPart | nfFloatOnly,
	',':  nfEOV,
	'}':  nfEOV,
	']':  nfEOV,
	' ':  nfEOV,
	'\t': nfEOV,
	'\r': nfEOV,
	'\n': nfEOV,
	':':  nfEOV,
}

// scanNumber classifies the JSON number at the start of buf the way
// simdjson-go does (including its leniencies) and returns its class, its
// value for numInt/numUint (int64 bits for numInt) and its length.
func scanNumber(buf []byte) (class int, val uint64, n int) {
	// Fast path: up to 18 plain digits (no sign, fraction or exponent, no
	// leading zero) followed by an end-of-value byte always fit int64.
	var v uint64
	i := 0
	for ; i < len(buf) && i < 19; i++ {
		c := buf[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + uint64(c)
	}
	if i > 0 && i <= 18 && (buf[0] != '0' || i == 1) && (i == len(buf) || numberRune[buf[i]] == nfEOV) {
		return numInt, v, i
	}
	return scanNumberPort(buf)
}

// scanNumberPort is simdjson-go's parseNumber, ported as is.
func scanNumberPort(buf []byte) (class int, val uint64, n int) {
	pos := 0
	var found uint8
	for i, v := range buf {
		t := numberRune[v]
		if t == 0 {
			return numInvalid, 0, 0
		}
		if t == nfEOV {
			break
		}
		if t&nfMustHaveDigitNext != 0 {
			if len(buf) < i+2 || numberRune[buf[i+1]]&nfDigit == 0 {
				return numInvalid, 0, 0
			}
		}
		found |= t
		pos = i + 1
	}
	if pos == 0 {
		return numInvalid, 0, 0
	}
	s := unsafe.String(&buf[0], pos)
	const maxIntLen = 20
	if found&nfFloatOnly == 0 && pos <= maxIntLen {
		if found&nfMinus == 0 {
			if pos > 1 && buf[0] == '0' {
				return numInvalid, 0, 0
			}
		} else if pos > 2 && buf[1] == '0' {
			return numInvalid, 0, 0
		}
		if i64, err := strconv.ParseInt(s, 10, 64); err == nil {
			return numInt, uint64(i64), pos
		}
		if found&nfMinus == 0 {
			if u64, err := strconv.ParseUint(s, 10, 64); err == nil {
				return numUint, u64, pos
			}
		}
	}
	if pos > 1 && buf[0] == '0' && numberRune[buf[1]]&nfFloatOnly == 0 {
		return numInvalid, 0, 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return numInvalid, 0, 0
	}
	return numFloat, math.Float64bits(f), pos
}
