package ingest

import (
	"testing"

	"github.com/minio/simdjson-go"

	"github.com/signald-dev/signald/market"
)

// readerFields parses an object with keys and returns its members.
func readerFields(t *testing.T, js string, keys []string) []jfield {
	t.Helper()
	pj, err := NewJSONParser(true).Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	it := pj.Iter()
	it.Advance()
	typ, root, err := it.Root(nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]jfield, len(keys))
	rf := jfield{it: *root, typ: typ}
	if perr := objectFields(&rf, keys, dst, "root"); perr != nil {
		t.Fatal(perr)
	}
	return dst
}

// TestFieldReaderKeepsFirstError: the reader returns what the accessors
// return until one fails, then zero values, and err stays that first
// failure (the Reason and Field a check after each read would have given).
func TestFieldReaderKeepsFirstError(t *testing.T) {
	keys := []string{"p", "q", "s", "bad", "ts", "n"}
	d := readerFields(t, `{"p":"1.5","q":"2","s":"sell","bad":"x","ts":1700000000000,"n":-3}`, keys)

	var r fieldReader
	if px, sz, sd, ts := r.dec(&d[0], "p"), r.dec(&d[1], "q"), r.side(&d[2], "s"), r.msTime(&d[4], "ts"); r.err != nil ||
		px != 1.5 || sz != 2 || sd != market.SideSell || ts != 1700000000000*1e6 {
		t.Fatalf("good reads: %v %v %v %v, err %v", px, sz, sd, ts, r.err)
	}

	r = fieldReader{}
	px := r.dec(&d[0], "p")
	bad := r.dec(&d[3], "bad")   // fails: bad_number
	miss := r.str(&d[5], "n")    // would fail too (bad_type), but is not read
	ts := r.msTime(&d[4], "ts")  // fine, but after the error
	r.fail(ReasonBadSymbol, "s") // ignored: an error is kept
	if px != 1.5 || bad != 0 || miss != nil || ts != 0 {
		t.Errorf("values %v %v %q %v", px, bad, miss, ts)
	}
	if r.err == nil || r.err.Reason != ReasonBadNumber || r.err.Field != "bad" {
		t.Fatalf("err %+v, want bad_number on bad", r.err)
	}
	_, _, want := d[3].dec("bad")
	if *r.err != *want {
		t.Errorf("err %+v, the accessor gives %+v", r.err, want)
	}

	var absent jfield
	absent.typ = simdjson.TypeNone
	r = fieldReader{}
	if r.uint(&absent, "id"); r.err == nil || r.err.Reason != ReasonMissingField || r.err.Field != "id" {
		t.Errorf("absent: %+v", r.err)
	}
}

// TestFieldReaderAllocs: reading through the reader allocates nothing.
func TestFieldReaderAllocs(t *testing.T) {
	keys := []string{"p", "q", "s", "ts"}
	d := readerFields(t, `{"p":"1.5","q":"2","s":"buy","ts":1700000000000}`, keys)
	var sink float64
	allocs := testing.AllocsPerRun(100, func() {
		var r fieldReader
		px, sz := r.dec(&d[0], "p"), r.dec(&d[1], "q")
		sd, ts := r.side(&d[2], "s"), r.msTime(&d[3], "ts")
		if r.err != nil {
			t.Fatal(r.err)
		}
		sink += px + sz + float64(sd) + float64(ts)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per read of four fields, want 0", allocs)
	}
	_ = sink
}
