package ingest

// Number, time and symbol parsing shared by the feeds, and the text helpers
// of the venues' book checksums.

import (
	"bytes"
	"hash/crc32"
	"math"
	"strconv"
	"time"
)

// parseDigits parses 1 to 19 plain decimal digits.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		v = v*10 + uint64(ch-'0')
	}
	return v, true
}

// parseSecondsDecimal parses "1618678133.365913" (epoch seconds with up to
// nine fractional digits) to ns.
func parseSecondsDecimal(b []byte) (int64, bool) {
	dot := len(b)
	for i, ch := range b {
		if ch == '.' {
			dot = i
			break
		}
	}
	sec, ok := parseDigits(b[:dot])
	if !ok || sec > math.MaxInt64/1_000_000_000-1 {
		return 0, false
	}
	var frac int64
	if dot < len(b) {
		f := b[dot+1:]
		if len(f) == 0 || len(f) > 9 {
			return 0, false
		}
		v, ok := parseDigits(f)
		if !ok {
			return 0, false
		}
		frac = int64(v)
		for i := len(f); i < 9; i++ {
			frac *= 10
		}
	}
	return int64(sec)*1e9 + frac, true
}

// parseRFC3339 parses "2021-04-17T16:43:37.075687Z" to ns since the epoch:
// the UTC form the venues send, parsed without allocating; any other
// layout goes to time.Parse.
func parseRFC3339(b []byte) (int64, bool) {
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' && b[len(b)-1] == 'Z' {
		num := func(s []byte) (int, bool) {
			v, ok := parseDigits(s)
			return int(v), ok
		}
		y, ok1 := num(b[0:4])
		mo, ok2 := num(b[5:7])
		d, ok3 := num(b[8:10])
		h, ok4 := num(b[11:13])
		mi, ok5 := num(b[14:16])
		s, ok6 := num(b[17:19])
		rest := b[19 : len(b)-1]
		var ns int64
		okf := true
		if len(rest) > 0 {
			if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
				okf = false
			} else {
				v, ok := parseDigits(rest[1:])
				okf = ok
				ns = int64(v)
				for i := len(rest) - 1; i < 9; i++ {
					ns *= 10
				}
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && okf && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 61 {
			return time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC).UnixNano() + ns, true
		}
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

// msToNS converts epoch milliseconds, rejecting values out of range.
func msToNS(ms int64, field string) (int64, *ParseError) {
	if ms < 0 || ms > math.MaxInt64/1_000_000 {
		return 0, perrf(ReasonBadNumber, field)
	}
	return ms * 1_000_000, nil
}

// appendJSNumber appends f as JavaScript's Number.prototype.toString writes
// it: the shortest round-trip digits, fixed notation for 1e-6 <= |f| < 1e21,
// exponent notation ("1e-7", "1.5e+21") otherwise (ECMA-262 Number::toString). Bitfinex computes its
// book checksums over this text.
func appendJSNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	a := math.Abs(f)
	if a >= 1e-6 && a < 1e21 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, 'e', -1, 64) // 1.5e-07
	e := bytes.IndexByte(dst[n:], 'e') + n
	// Drop the exponent's leading zeros: Go writes at least two digits.
	i := e + 2
	j := i
	for j < len(dst)-1 && dst[j] == '0' {
		j++
	}
	return append(dst[:i], dst[j:]...)
}

// checksumText appends a Kraken-style checksum term: the decimal text
// without its point and without leading zeros.
func checksumText(dst []byte, s string) []byte {
	lead := true
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '.' {
			continue
		}
		if lead && ch == '0' {
			continue
		}
		lead = false
		dst = append(dst, ch)
	}
	return dst
}

// crc32IEEE is the checksum Kraken and OKX use.
func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// formatFixed formats v with prec decimals (Kraken v2 books send numbers;
// the checksum is over their text at the pair's precision).
func formatFixed(dst []byte, v float64, prec int) []byte {
	return strconv.AppendFloat(dst, v, 'f', prec, 64)
}

// splitQuote splits a concatenated pair ("btcusd", "BTCUSDT") with the
// longest quote asset of quotes that ends it, upper-cased.
func splitQuote(pair string, quotes []string) (base, quote string, ok bool) {
	up := []byte(pair)
	for i, ch := range up {
		if ch >= 'a' && ch <= 'z' {
			up[i] = ch - 'a' + 'A'
		}
	}
	s := string(up)
	for _, q := range quotes {
		if len(s) > len(q) && s[len(s)-len(q):] == q {
			return s[:len(s)-len(q)], q, true
		}
	}
	return "", "", false
}

// monthIndex maps "JAN".."DEC" to 1..12.
func monthIndex(s string) int {
	for i, m := range [...]string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"} {
		if s == m {
			return i + 1
		}
	}
	return 0
}
