package jsontape

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/minio/simdjson-go"
)

// simdOpts are the options ingest parses with: strings without escapes stay
// views of the message, as Build leaves them.
var simdOpts = []simdjson.ParserOption{simdjson.WithCopyStrings(false)}

// simdReuse is simdRef's reused ParsedJson (tests using it run serially).
var simdReuse *simdjson.ParsedJson

// simdRef parses with simdjson-go itself (the reference for Build),
// turning a panic into an error. The result is valid until the next call.
func simdRef(b []byte) (pj *simdjson.ParsedJson, err error) {
	defer func() {
		if r := recover(); r != nil {
			simdReuse, pj, err = nil, nil, fmt.Errorf("simdjson-go panicked: %v", r)
		}
	}()
	// As in JSONParser.Parse: put the header back after a failure.
	var saved simdjson.ParsedJson
	if simdReuse != nil {
		saved = *simdReuse
	}
	pj, err = simdjson.Parse(b, simdReuse, simdOpts...)
	if err != nil {
		if simdReuse != nil {
			*simdReuse = saved
		}
		return nil, err
	}
	simdReuse = pj
	return pj, nil
}

// dumpTape walks pj through simdjson-go's Iter/Object/Array API and writes
// the type and value of every element, so two tapes that walk alike give
// the same dump. A panic while walking is returned as an error.
func dumpTape(pj *simdjson.ParsedJson) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("walk panicked: %v", r)
		}
	}()
	var sb strings.Builder
	it := pj.Iter()
	if err := dumpIter(&sb, &it, 0); err != nil {
		return sb.String(), err
	}
	// The whole-document views must agree too.
	it = pj.Iter()
	js, err := it.MarshalJSON()
	fmt.Fprintf(&sb, "\njson %q err %v\n", js, err)
	err = pj.ForEach(func(i simdjson.Iter) error {
		v, err := i.Interface()
		fmt.Fprintf(&sb, "iface %#v err %v\n", v, err)
		return nil
	})
	fmt.Fprintf(&sb, "foreach err %v\n", err)
	return sb.String(), nil
}

func dumpIter(sb *strings.Builder, it *simdjson.Iter, depth int) error {
	for {
		typ := it.Advance()
		if typ == simdjson.TypeNone {
			return nil
		}
		if err := dumpValue(sb, it, typ, depth); err != nil {
			return err
		}
	}
}

func dumpValue(sb *strings.Builder, it *simdjson.Iter, typ simdjson.Type, depth int) error {
	fmt.Fprintf(sb, "%*s%v ", depth, "", typ)
	switch typ {
	case simdjson.TypeRoot:
		var sub simdjson.Iter
		t, r, err := it.Root(&sub)
		fmt.Fprintf(sb, "%v %v\n", t, err)
		if err != nil {
			return nil
		}
		return dumpValue(sb, r, t, depth+1)
	case simdjson.TypeObject:
		obj, err := it.Object(nil)
		if err != nil {
			fmt.Fprintf(sb, "err %v\n", err)
			return nil
		}
		sb.WriteString("{\n")
		var el simdjson.Iter
		for {
			name, t, err := obj.NextElement(&el)
			if err != nil {
				fmt.Fprintf(sb, "%*serr %v\n", depth, "", err)
				break
			}
			if t == simdjson.TypeNone {
				break
			}
			fmt.Fprintf(sb, "%*skey %q\n", depth+1, "", name)
			if err := dumpValue(sb, &el, t, depth+2); err != nil {
				return err
			}
		}
		fmt.Fprintf(sb, "%*s}\n", depth, "")
	case simdjson.TypeArray:
		arr, err := it.Array(nil)
		if err != nil {
			fmt.Fprintf(sb, "err %v\n", err)
			return nil
		}
		sb.WriteString("[\n")
		sub := arr.Iter()
		if err := dumpIter(sb, &sub, depth+1); err != nil {
			return err
		}
		fmt.Fprintf(sb, "%*s]\n", depth, "")
	case simdjson.TypeString:
		s, err := it.String()
		fmt.Fprintf(sb, "%q %v\n", s, err)
	case simdjson.TypeInt:
		v, err := it.Int()
		fmt.Fprintf(sb, "%d %v\n", v, err)
	case simdjson.TypeUint:
		v, err := it.Uint()
		fmt.Fprintf(sb, "%d %v\n", v, err)
	case simdjson.TypeFloat:
		v, fl, err := it.FloatFlags()
		fmt.Fprintf(sb, "%b %v %d %v\n", v, v, fl, err)
	case simdjson.TypeBool:
		v, err := it.Bool()
		fmt.Fprintf(sb, "%v %v\n", v, err)
	case simdjson.TypeNull:
		sb.WriteString("null\n")
	default:
		fmt.Fprintf(sb, "tag %v\n", it.PeekNextTag())
	}
	return nil
}

// diffTape parses b with simdjson-go and with Build (into fb, reused)
// and describes the first difference; "" means none.
func diffTape(b []byte, fb *simdjson.ParsedJson) string {
	in := slices.Clone(b) // simdjson-go must not see Build's writes, nor the other way
	want, werr := simdRef(in)
	gerr := Build(b, fb)
	if (werr == nil) != (gerr == nil) {
		return fmt.Sprintf("simdjson-go err %v, Build err %v", werr, gerr)
	}
	// The walk over Build's tape must not panic, even on a rejected
	// frame (nothing should walk it then, but pj is left consistent).
	got, err := dumpTape(fb)
	if err != nil {
		return "Build tape: " + err.Error()
	}
	if werr != nil {
		return ""
	}
	if !slices.Equal(want.Tape, fb.Tape) {
		return fmt.Sprintf("tape differs\nsimdjson-go %s\nbuildTape   %s", fmtTape(want.Tape), fmtTape(fb.Tape))
	}
	if !bytes.Equal(want.Message, fb.Message) {
		return fmt.Sprintf("message differs: %q vs %q", want.Message, fb.Message)
	}
	if !bytes.Equal(want.Strings.B, fb.Strings.B) {
		return fmt.Sprintf("strings differ: %q vs %q", want.Strings.B, fb.Strings.B)
	}
	wd, err := dumpTape(want)
	if err != nil {
		return "simdjson-go tape: " + err.Error()
	}
	if wd != got {
		return fmt.Sprintf("walks differ\nsimdjson-go:\n%s\nbuildTape:\n%s", wd, got)
	}
	return ""
}

func fmtTape(t []uint64) string {
	var sb strings.Builder
	for i, v := range t {
		fmt.Fprintf(&sb, " %d:%c/%x", i, byte(v>>56), v&simdjson.JSONVALUEMASK)
	}
	return sb.String()
}

func needSIMD(tb testing.TB) {
	tb.Helper()
	if !simdjson.SupportedCPU() {
		tb.Skip("simdjson-go needs AVX2 and CLMUL; the differential test has no reference on this CPU")
	}
}

// tapeCases are hand-written frames around the edges of simdjson-go's rules.
var tapeCases = []string{
	// structure
	`{}`, `[]`, `{"a":{}}`, `[[]]`, `[{}]`, `[[],[[]],{}]`, `{"a":[],"b":{}}`,
	strings.Repeat("[", 200) + strings.Repeat("]", 200),
	strings.Repeat(`{"a":`, 150) + "1" + strings.Repeat("}", 150),
	strings.Repeat("[", 200) + strings.Repeat("]", 199),
	` { "a" : [ 1 , 2 , { "b" : null } ] , "c" : "d" } `,
	"\t\r\n{\n\t\"a\"\r:\n1\t}\r\n",
	"\v{}\f", "\u00a0{}\u00a0", "\u2003[1]\u0085", "{}\u0000", "\u0000{}",
	`{"a":1}{"b":2}`, "{\"a\":1}\n{\"b\":2}", `[1] `, `[1]x`, `[1]]`, `[1]}`, `{"a":1]`, `[1}`,
	`"abc"`, `123`, `true`, `null`, ``, ` `, `{`, `[`, `}`, `]`, `{"a"}`, `{"a":}`, `{:1}`,
	`{"a" 1}`, `{"a"::1}`, `{,}`, `[,]`, `[1,]`, `{"a":1,}`, `[,1]`, `[1,,2]`, `[1 2]`,
	`{"a":1 "b":2}`, `{"a":1,"b"}`, `{1:2}`, `{null:1}`, `[1:2]`, `{"a":1:2}`,
	// atoms
	`[true,false,null]`, `[true ,false ,null ]`, `[tru]`, `[truee]`, `[nul]`, `[nulll]`,
	`[fals]`, `[falsee]`, `[false]`, `{"a":false}`, `[True]`, `[NULL]`, `[t]`, `[f]`, `[n]`,
	"[true\x00]", "[null\x00abc]", "[false\x00\\\"]", "[true\x00\"]", "[null\x00 1]",
	"{\"a\":true\x00}", "[true\x00\\\\\"]", "[true[]]", "[true{}]", "[true\"\"]", "[true:1]",
	// strings
	`[""]`, `["a"]`, `["ab\"cd"]`, `["\\"]`, `["\\\\"]`, `["\/\b\f\n\r\t"]`, `["\u0041"]`,
	`["\u00e9\u00E9"]`, `["\u20ac"]`, `["\ud83d\ude00"]`, `["\uD83D\uDE00x"]`, `["\udbff\udfff"]`,
	`["\ud800"]`, `["\ud800x"]`, `["\ud800\n"]`, `["\ud800\u0041"]`, `["\ud800\ue000"]`,
	`["\udbff\u1234"]`, `["\udc00"]`, `["\udfff\ud800"]`, `["\u0000"]`, `["\u"]`, `["\u12"]`,
	`["\u123"]`, `["\u0 00"]`, `["\u !#/"]`, `["\u0","00"]`, `["\u,,,,"]`, `["\u0"," "]`, `["\u0",",","x"]`, `{"a":"\u0","b":"c"}`,
	`["\u""""]`, `["\u0"  "]`, `["\u0" ,"]`, `["\u0"  "", "x"]`, `{"\u0"  ":1}`, `["\ud800\u0"," "]`, `["\ud800\u ,-."]`, `["\u123g"]`, `["\uG123"]`, `["\x"]`, `["\a"]`, `["\'"]`, `["\ "]`, `["\`,
	`["abc`, `["abc]`, `["abc\"]`, `"`, `["a"`, `{"a":"b`, `{"a`, `{"a\"":1}`,
	"[\"a\x01b\"]", "[\"a\x1fb\"]", "[\"\tb\"]", "[\"a\nb\"]", "[\"a\x7fb\"]",
	"[\"\xff\xfe\"]", "[\"\xc3\"]", "[\"\xed\xa0\x80\"]", `["héllo wörld ✓ 日本語 😀"]`,
	"[\"\\u00e9\xff\"]", "[\xff]", "{\"\xff\":1}", `{"":""}`, `{"a":"","":"a"}`,
	`["` + strings.Repeat("x", 5000) + `"]`, `["` + strings.Repeat(`\n`, 600) + `"]`,
	`["` + strings.Repeat("é", 100) + `\u00e9` + strings.Repeat("x", 63) + `"]`,
	`["a","b\n","c","\u0064"]`, `{"a\u0000b":1,"k":"v"}`,
	// numbers
	`[0]`, `[-0]`, `[1]`, `[-1]`, `[00]`, `[01]`, `[-01]`, `[-00]`, `[0.0]`, `[-0.0]`, `[00.5]`,
	`[-00.5]`, `[0e0]`, `[-0e0]`, `[01e1]`, `[0.5e-3]`, `[1.]`, `[.5]`, `[-.5]`, `[1.e5]`, `[1e]`,
	`[1e+]`, `[1e-]`, `[1E5]`, `[1e+05]`, `[1e-05]`, `[1.5E+10]`, `[-]`, `[--1]`, `[+1]`, `[1+2]`,
	`[1-2]`, `[0-1]`, `[1e5e5]`, `[1.2.3]`, `[1ee5]`, `[1e5.5]`, `[1.5e+-3]`, `[1x]`, `[1"a"]`,
	`[1{}]`, `[1[]]`, `[0x10]`, `[Infinity]`, `[NaN]`, `[-Infinity]`, `[1_000]`,
	`[9223372036854775807]`, `[9223372036854775808]`, `[-9223372036854775808]`,
	`[-9223372036854775809]`, `[18446744073709551615]`, `[18446744073709551616]`,
	`[99999999999999999999]`, `[100000000000000000000]`, `[-99999999999999999999]`,
	`[123456789012345678901234567890]`, `[-123456789012345678901234567890]`,
	`[000000000000000000001]`, `[-000000000000000000001]`, `[-0000000000000000001]`,
	`[1e308]`, `[1.7976931348623157e308]`, `[1.7976931348623159e308]`, `[1e309]`, `[-1e309]`,
	`[1e-320]`, `[4.9e-324]`, `[2.4e-324]`, `[1e-400]`, `[-1e-400]`, `[1e400]`,
	`[0.1]`, `[0.3]`, `[2.2250738585072011e-308]`, `[2.2250738585072014e-308]`,
	`[9007199254740993]`, `[9007199254740993.0]`, `[9007199254740992.0]`, `[1.00000000000000011102230246251565404236316680908203125]`,
	`[61737.63000000]`, `[0.00000000]`, `[1.54698000]`, `[123456789.123456789]`,
	`[1234567890123456789.0]`, `[12345678901234567890.0]`, `[1e22]`, `[1e23]`, `[1.5e-22]`,
	`[1.5e-23]`, `[123e20]`, `[123e-30]`, `[5e-324]`, `[1e00000000000000000000001]`,
	`[0e99999999999999999999]`, `[1e-99999999999999999999]`, `[1e99999999999999999999]`,
	`{"a":1,"b":-2,"c":3.5,"d":-4.5e-7,"e":18446744073709551615}`,
	`[1,2,3]`, `[1 ,2 ,3 ]`, "[1\t,2\n,3\r]", `{"a":1 }`, `{"a":1:}`,
	// venue-like
	`{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],"a":[]}`,
	`[0,[["5541.2","1.1","1562345678.1234"]],"book-10",[2]]`,
	`{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw","data":{"timestamp":1,"change_id":2,"bids":[["new",3.5,10.0]]}}}`,
}

func TestBuildTapeMatchesSimdjson(t *testing.T) {
	needSIMD(t)
	var fb simdjson.ParsedJson
	for _, c := range tapeCases {
		if d := diffTape([]byte(c), &fb); d != "" {
			t.Errorf("%q: %s", c, d)
		}
	}
}

// TestBuildTapeAccepts pins what Build must accept or reject on its own,
// so the rules hold on machines without a SIMD reference too.
func TestBuildTapeAccepts(t *testing.T) {
	var pj simdjson.ParsedJson
	for _, c := range []string{`{}`, `[1,-2,3.5,"x\n",true,false,null,{"a":[]}]`, ` [1] `, "\v[]"} {
		if err := Build([]byte(c), &pj); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, c := range []string{``, `1`, `"a"`, `[1,]`, `[01]`, `["a`, "[\"\x01\"]", `[1]x`, `[1e400]`, `["\ud800"]`} {
		if err := Build([]byte(c), &pj); err == nil {
			t.Errorf("%q: accepted", c)
		}
	}
}

// TestBuildTapeValues checks the tape through the public API against values
// written out by hand.
func TestBuildTapeValues(t *testing.T) {
	var pj simdjson.ParsedJson
	in := `{"i":-42,"u":18446744073709551615,"big":18446744073709551616,"f":1.5e3,"s":"a\u00e9\ud83d\ude00","r":"raw","t":true,"n":null}`
	if err := Build([]byte(in), &pj); err != nil {
		t.Fatal(err)
	}
	it := pj.Iter()
	if it.Advance() != simdjson.TypeRoot {
		t.Fatal("no root")
	}
	_, root, err := it.Root(nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := root.Object(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := obj.Map(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"i": int64(-42), "u": uint64(18446744073709551615), "big": 18446744073709551616.0,
		"f": 1500.0, "s": "aé😀", "r": "raw", "t": true, "n": nil}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", m, want)
	}
	// Map consumed obj; FindKey works on a fresh view.
	if obj, err = root.Object(nil); err != nil {
		t.Fatal(err)
	}
	var el simdjson.Element
	if obj.FindKey("big", &el) == nil {
		t.Fatal("no key big")
	}
	if _, fl, err := el.Iter.FloatFlags(); err != nil || !fl.Contains(simdjson.FloatOverflowedInteger) {
		t.Errorf("big: flags %v err %v, want FloatOverflowedInteger", fl, err)
	}
	// "raw" has no escape: it points into the message, not the string buffer.
	if obj.FindKey("r", &el) == nil {
		t.Fatal("no key r")
	}
	if b, err := el.Iter.StringBytes(); err != nil || &b[0] != &pj.Message[bytes.Index(pj.Message, []byte("raw"))] {
		t.Errorf("r: %q %v is not a view of the message", b, err)
	}
}

// captureFrames returns the frames of the recorded captures: every frame of
// the cryptofeed websocket files and the first 5000 lines of each
// hftbacktest file. ok is false without /work/shared.
func captureFrames(tb testing.TB) (frames [][]byte, ok bool) {
	tb.Helper()
	const root = "/work/shared/captures"
	if _, err := os.Stat(root); err != nil {
		return nil, false
	}
	ws, _ := filepath.Glob(filepath.Join(root, "cryptofeed", "*.ws.*"))
	for _, p := range ws {
		if strings.HasPrefix(filepath.Base(p), "HUOBI") {
			continue // gzip frames as Python bytes literals
		}
		f, err := os.Open(p)
		if err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, cryptofeedFrames(tb, f, 0)...)
		f.Close()
	}
	gz, _ := filepath.Glob(filepath.Join(root, "hftbacktest", "*.gz"))
	for _, p := range gz {
		frames = append(frames, hftFrames(tb, p, 5000)...)
	}
	return frames, true
}

// cryptofeedFrames reads `<ts>: <frame>` lines, skipping connection and
// client lines; max 0 means all.
func cryptofeedFrames(tb testing.TB, r io.Reader, max int) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() && (max == 0 || len(out) < max) {
		line := sc.Bytes()
		if bytes.Contains(line, []byte(" <-> ")) || bytes.Contains(line, []byte(" <- ")) {
			continue
		}
		_, frame, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		out = append(out, slices.Clone(frame))
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// hftFrames reads the first max `<ns> <frame>` lines of a gzip file.
func hftFrames(tb testing.TB, path string, max int) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	return hftLines(tb, zr, max)
}

// hftLines reads the first max `<ns> <frame>` lines of r.
func hftLines(tb testing.TB, r io.Reader, max int) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() && len(out) < max {
		_, frame, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		if ok {
			out = append(out, slices.Clone(frame))
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// testdataFrames returns the frames copied into testdata/json (see
// testdata/README.md): cryptofeed-format .lines files and hftbacktest-format
// .hft files.
func testdataFrames(tb testing.TB) [][]byte {
	tb.Helper()
	var frames [][]byte
	paths, _ := filepath.Glob("../../../testdata/json/*")
	for _, p := range paths {
		switch {
		case strings.HasSuffix(p, ".hft"):
			f, err := os.Open(p)
			if err != nil {
				tb.Fatal(err)
			}
			frames = append(frames, hftLines(tb, f, 1<<30)...)
			f.Close()
		case strings.HasSuffix(p, ".lines"):
			f, err := os.Open(p)
			if err != nil {
				tb.Fatal(err)
			}
			frames = append(frames, cryptofeedFrames(tb, f, 0)...)
			f.Close()
		}
	}
	if len(frames) < 100 {
		tb.Fatalf("testdata/json holds %d frames, want a few hundred", len(frames))
	}
	return frames
}

func TestBuildTapeTestdataFrames(t *testing.T) {
	needSIMD(t)
	var fb simdjson.ParsedJson
	bad := 0
	for _, fr := range testdataFrames(t) {
		if d := diffTape(fr, &fb); d != "" {
			if bad++; bad <= 5 {
				t.Errorf("%.200q: %s", fr, d)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d frames differ", bad)
	}
}

func TestBuildTapeCaptures(t *testing.T) {
	needSIMD(t)
	frames, ok := captureFrames(t)
	if !ok {
		t.Skip("/work/shared/captures is absent; the testdata/json excerpt is checked by TestBuildTapeTestdataFrames")
	}
	if len(frames) < 10000 {
		t.Fatalf("only %d capture frames found", len(frames))
	}
	var fb simdjson.ParsedJson
	bad, invalid := 0, 0
	for _, fr := range frames {
		if d := diffTape(fr, &fb); d != "" {
			if bad++; bad <= 5 {
				t.Errorf("%.300q: %s", fr, d)
			}
		}
		if Build(fr, &fb) != nil {
			invalid++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d frames differ", bad, len(frames))
	}
	t.Logf("%d capture frames, %d rejected by both parsers", len(frames), invalid)
}

// TestBuildTapeMutations flips, drops and duplicates bytes of real frames
// and checks Build against simdjson-go on each variant.
func TestBuildTapeMutations(t *testing.T) {
	needSIMD(t)
	var fb simdjson.ParsedJson
	frames := testdataFrames(t)
	alphabet := []byte("{}[],:\"\\ \t\n0-.eE+ntfu\x00\x01\xff")
	bad := 0
	for k, fr := range frames {
		if len(fr) > 4096 {
			continue
		}
		for j := 0; j < 24; j++ {
			m := slices.Clone(fr)
			p := (k*131 + j*977) % len(m)
			switch j % 3 {
			case 0:
				m[p] = alphabet[(k+j)%len(alphabet)]
			case 1:
				m = append(m[:p], m[p+1:]...)
			case 2:
				m = slices.Insert(m, p, alphabet[(k*7+j)%len(alphabet)])
			}
			if d := diffTape(m, &fb); d != "" {
				if bad++; bad <= 5 {
					t.Errorf("%q: %s", m, d)
				}
			}
		}
	}
}

func FuzzBuildTape(f *testing.F) {
	for _, c := range tapeCases {
		f.Add([]byte(c))
	}
	for i, fr := range testdataFrames(f) {
		if i%4 == 0 && len(fr) < 4096 {
			f.Add(fr)
		}
	}
	ref := simdjson.SupportedCPU()
	var fb simdjson.ParsedJson
	f.Fuzz(func(t *testing.T, b []byte) {
		if !ref {
			// No reference: Build must still never panic, and a
			// tape it accepts must walk without panicking.
			if Build(b, &fb) == nil {
				if _, err := dumpTape(&fb); err != nil {
					t.Fatal(err)
				}
			}
			return
		}
		if d := diffTape(b, &fb); d != "" {
			t.Fatalf("%q: %s", b, d)
		}
	})
}

// typicalFrames returns small venue frames and a REST book snapshot from
// testdata.
func typicalFrames(tb testing.TB) (small [][]byte, snapshot []byte) {
	tb.Helper()
	for _, fr := range hftFrames(tb, "../../../testdata/binance/binance_usdm_btcusdt_20240808_head1500.gz", 1500) {
		switch {
		case len(fr) > 20000 && snapshot == nil:
			snapshot = fr
		case len(fr) >= 100 && len(fr) <= 500 && len(small) < 200:
			small = append(small, fr)
		}
	}
	if len(small) < 100 || snapshot == nil {
		tb.Fatalf("testdata: %d small frames, snapshot %d bytes", len(small), len(snapshot))
	}
	return small, snapshot
}

func TestBuildTapeAllocs(t *testing.T) {
	small, snap := typicalFrames(t)
	var pj simdjson.ParsedJson
	for _, fr := range append(small, snap) { // warm up to the largest frame
		if err := Build(fr, &pj); err != nil {
			t.Fatal(err)
		}
	}
	esc := []byte(`{"s":"a\u00e9\n","p":"1.5","q":[1,2.5,-3e-7,18446744073709551616]}`)
	for _, fr := range [][]byte{small[0], small[len(small)-1], snap, esc} {
		allocs := testing.AllocsPerRun(100, func() {
			if err := Build(fr, &pj); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d-byte frame: %v allocations per parse, want 0", len(fr), allocs)
		}
	}
	// A rejected frame must not cost the next parse its buffers either.
	truncated := []byte(`{"a":[1,2,`)
	allocs := testing.AllocsPerRun(100, func() {
		if Build(truncated, &pj) == nil {
			t.Fatal("truncated frame accepted")
		}
		if err := Build(small[0], &pj); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("error then parse: %v allocations, want 0", allocs)
	}
}

// BenchmarkJSONPaths compares the two JSON paths in one run: MB/s of
// simdjson-go and of Build on the same frames.
func BenchmarkJSONPaths(b *testing.B) {
	small, snap := typicalFrames(b)
	size := 0
	for _, fr := range small {
		size += len(fr)
	}
	inputs := []struct {
		name   string
		frames [][]byte
		bytes  int
	}{
		{"small", small, size / len(small)},
		{"snapshot", [][]byte{snap}, len(snap)},
	}
	for _, in := range inputs {
		b.Run(in.name+"/simdjson", func(b *testing.B) {
			if !simdjson.SupportedCPU() {
				b.Skip("no AVX2/CLMUL")
			}
			var pj *simdjson.ParsedJson
			b.SetBytes(int64(in.bytes))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				var err error
				if pj, err = simdjson.Parse(in.frames[i%len(in.frames)], pj, simdOpts...); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/Build", func(b *testing.B) {
			var pj simdjson.ParsedJson
			b.SetBytes(int64(in.bytes))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := Build(in.frames[i%len(in.frames)], &pj); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBuildTapeGenerated compares the two parsers on generated input: every
// escape at every offset around simdjson-go's 32- and 64-byte blocks,
// random numbers, and random documents with and without a corrupted byte.
func TestBuildTapeGenerated(t *testing.T) {
	needSIMD(t)
	var fb simdjson.ParsedJson
	bad, total, accepted := 0, 0, 0
	check := func(b []byte) {
		if d := diffTape(b, &fb); d != "" {
			if bad++; bad <= 5 {
				t.Errorf("%q: %s", b, d)
			}
		}
		total++
		if Build(b, &fb) == nil {
			accepted++
		}
	}
	escapes := []string{`\n`, `\"`, `\\`, `\/`, `\u00e9`, `\u20AC`, `\ud83d\ude00`, `\ud800\u 00`, `\u 0-/`,
		`\ud800`, `\x`, `\u12`, "\x01", `\u0"00`, `"`, `\`}
	for _, e := range escapes {
		for pre := 0; pre < 70; pre++ {
			for _, post := range []int{0, 1, 30, 33} {
				s := `{"k":"` + strings.Repeat("a", pre) + e + strings.Repeat("b", post) + `","n":1}`
				check([]byte(s))
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	num := func() string {
		var sb strings.Builder
		if rng.IntN(3) == 0 {
			sb.WriteByte('-')
		}
		for n := 1 + rng.IntN(22); n > 0; n-- {
			sb.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			sb.WriteByte('.')
			for n := 1 + rng.IntN(20); n > 0; n-- {
				sb.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(3) == 0 {
			sb.WriteString([]string{"e", "E", "e+", "e-", "E-"}[rng.IntN(5)])
			sb.WriteString(strconv.Itoa(rng.IntN(400)))
		}
		return sb.String()
	}
	for i := 0; i < 20000; i++ {
		check([]byte("[" + num() + "," + num() + "]"))
	}
	var gen func(sb *strings.Builder, depth int)
	gen = func(sb *strings.Builder, depth int) {
		switch k := rng.IntN(10); {
		case k < 2 && depth < 6:
			sb.WriteByte('{')
			for n := rng.IntN(5); n > 0; n-- {
				sb.WriteString(`"` + escapes[rng.IntN(6)] + `key":`)
				gen(sb, depth+1)
				if n > 1 {
					sb.WriteByte(',')
				}
			}
			sb.WriteByte('}')
		case k < 4 && depth < 6:
			sb.WriteByte('[')
			for n := rng.IntN(5); n > 0; n-- {
				gen(sb, depth+1)
				if n > 1 {
					sb.WriteString([]string{",", " , ", ",\n"}[rng.IntN(3)])
				}
			}
			sb.WriteByte(']')
		case k < 6:
			sb.WriteString(num())
		case k < 8:
			sb.WriteString(`"` + strings.Repeat("x", rng.IntN(40)) + escapes[rng.IntN(len(escapes))] + `"`)
		default:
			sb.WriteString([]string{"true", "false", "null", "true\x00", "nul"}[rng.IntN(5)])
		}
	}
	for i := 0; i < 5000; i++ {
		var sb strings.Builder
		sb.WriteByte('[')
		gen(&sb, 0)
		sb.WriteByte(']')
		b := []byte(sb.String())
		check(b)
		b[rng.IntN(len(b))] = "{}[],:\"\\ 0-.eE\x00\xff"[rng.IntN(16)]
		check(b)
	}
	// Large documents: simdjson-go splits stage 1 into chunks of about 1400
	// structural characters and runs it on a second goroutine above 8 KB.
	frames := testdataFrames(t)
	bigOK := 0
	for i := 0; i < 40; i++ {
		var sb strings.Builder
		sb.WriteByte('[')
		for n := 20 + rng.IntN(200); n > 0; n-- {
			sb.Write(frames[rng.IntN(len(frames))])
			sb.WriteString(`,"` + escapes[rng.IntN(7)] + strings.Repeat("y", rng.IntN(70)) + `",`)
		}
		sb.WriteString("0]")
		if Build([]byte(sb.String()), &fb) == nil {
			bigOK++
		}
		b := []byte(sb.String())
		check(b)
		b[rng.IntN(len(b))] = "{}[],:\"\\ 0-.eE\x00\xff"[rng.IntN(16)]
		check(b)
	}
	if bigOK < 40 {
		t.Errorf("%d of 40 large valid documents accepted", bigOK)
	}
	if bad > 0 {
		t.Errorf("%d inputs differ", bad)
	}
	// Both outcomes must be well represented for the comparison to mean
	// something.
	if accepted < total/4 || accepted > total*3/4 {
		t.Errorf("%d of %d generated inputs accepted, want a mix", accepted, total)
	}
	t.Logf("%d generated inputs, %d accepted", total, accepted)
}

var updateTapeGolden = flag.Bool("update-tape-golden", false, "rewrite testdata/json/tapes.golden from simdjson-go")

const tapeGoldenPath = "../../../testdata/json/tapes.golden"

// tapeDigest hashes what a tape shows: its entries, the string buffer and
// the walk through simdjson-go's API; "err" for a rejected frame.
func tapeDigest(pj *simdjson.ParsedJson, err error) string {
	if err != nil {
		return "err"
	}
	h := xxhash.New()
	for _, v := range pj.Tape {
		h.Write(binary.LittleEndian.AppendUint64(nil, v))
	}
	h.Write(pj.Strings.B)
	d, werr := dumpTape(pj)
	if werr != nil {
		return "walk-panic"
	}
	h.WriteString(d)
	return fmt.Sprintf("%016x", h.Sum64())
}

// TestBuildTapeGolden checks Build against digests of simdjson-go's
// tapes kept in testdata, so the portable path is verified on the CPUs that
// use it, where simdjson-go cannot run. Where simdjson-go runs, the digests
// are checked against it too, so they cannot go stale.
// Regenerate: go test ./ingest -run TestBuildTapeGolden -update-tape-golden
func TestBuildTapeGolden(t *testing.T) {
	inputs := testdataFrames(t)
	for _, c := range tapeCases {
		inputs = append(inputs, []byte(c))
	}
	key := func(b []byte) string { return fmt.Sprintf("%016x", xxhash.Sum64(b)) }
	if *updateTapeGolden {
		needSIMD(t)
		var sb strings.Builder
		sb.WriteString("# xxhash64(frame) digest(simdjson-go tape); see TestBuildTapeGolden\n")
		seen := map[string]bool{}
		for _, in := range inputs {
			if k := key(in); !seen[k] {
				seen[k] = true
				pj, err := simdRef(slices.Clone(in))
				fmt.Fprintf(&sb, "%s %s\n", k, tapeDigest(pj, err))
			}
		}
		if err := os.WriteFile(tapeGoldenPath, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	raw, err := os.ReadFile(tapeGoldenPath)
	if err != nil {
		t.Fatal(err)
	}
	golden := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			golden[k] = v
		}
	}
	var fb simdjson.ParsedJson
	ref := simdjson.SupportedCPU()
	bad := 0
	for _, in := range inputs {
		want, ok := golden[key(in)]
		if !ok {
			t.Fatalf("%.100q has no digest in %s: regenerate it (-update-tape-golden)", in, tapeGoldenPath)
		}
		if ref {
			pj, err := simdRef(slices.Clone(in))
			if d := tapeDigest(pj, err); d != want {
				t.Fatalf("%.100q: simdjson-go gives %s, %s says %s: regenerate it", in, d, tapeGoldenPath, want)
			}
		}
		if got := tapeDigest(&fb, Build(in, &fb)); got != want {
			if bad++; bad <= 5 {
				t.Errorf("%.200q: Build digest %s, simdjson-go's %s", in, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d inputs differ from simdjson-go's tapes", bad, len(inputs))
	}
}

// TestBuildTapeExhaustive compares the two parsers on every string of up to
// two bytes over an alphabet of JSON's special characters, in several
// contexts. (A one-off run with up to four bytes, 2.4 million inputs, found
// no difference either; it takes minutes.)
func TestBuildTapeExhaustive(t *testing.T) {
	needSIMD(t)
	alpha := []byte("{}[],:\"\\ 01-.e+tnu\x00\x01a\tE/")
	wraps := [][2]string{{"[", "]"}, {`{"a":`, "}"}, {`["`, `"]`}, {`["\u`, `"]`},
		{`["\ud800\u`, `"]`}, {"[tru", "]"}, {"[1", "]"}, {"", ""}}
	var fb simdjson.ParsedJson
	bad := 0
	var rec func(cur []byte, depth int)
	rec = func(cur []byte, depth int) {
		for _, w := range wraps {
			in := append(append([]byte(w[0]), cur...), w[1]...)
			want, werr := simdRef(slices.Clone(in))
			gerr := Build(in, &fb)
			if (werr == nil) != (gerr == nil) || werr == nil && (!slices.Equal(want.Tape, fb.Tape) || !bytes.Equal(want.Strings.B, fb.Strings.B)) {
				if bad++; bad <= 5 {
					t.Errorf("%q: simdjson-go err %v, Build err %v", in, werr, gerr)
				}
			}
		}
		if depth > 0 {
			for _, c := range alpha {
				rec(append(cur, c), depth-1)
			}
		}
	}
	rec(nil, 2)
}
