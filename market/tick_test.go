package market

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
)

func sampleTicks() []Tick {
	ts := []Tick{
		{Venue: "binance", Instrument: "BTC-USDT", Symbol: "BTCUSDT", Kind: KindTrade, Side: SideSell, ExchTS: 1723161255342000000,
			RecvTS: 1723161254087896568, Price: 61837.63, Size: 0.02, TradeID: 3735683259, IngestTS: 99},
		{Venue: "binance-usdm", Instrument: "BTC-USDT-PERP", Symbol: "BTCUSDT", Kind: KindQuote, RecvTS: 5,
			BidPx: 61800.2, BidSz: 2.507, AskPx: 61800.3, AskSz: 2.51, Seq: 5123107839020},
		{Venue: "x", Instrument: "ü-€", Kind: KindBookDelta, Side: SideBuy, Price: math.Inf(1), Size: 0, Seq: math.MaxUint64, ExchTS: -1,
			Origin: 0x1234_5678_9abc_def0, OriginSeq: 42},
	}
	for i := range ts {
		ts[i].ComputeID()
	}
	return ts
}

func TestTickRoundTrip(t *testing.T) {
	for _, want := range sampleTicks() {
		var got Tick
		if err := got.UnmarshalBinary(want.AppendBinary(nil)); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

func TestComputeIDIgnoresIngestTime(t *testing.T) {
	a := sampleTicks()[0]
	b := a
	b.IngestTS = 12345
	b.ComputeID()
	if a.ID != b.ID || b.IngestTS != 12345 {
		t.Fatalf("ids %d %d, ingest %d", a.ID, b.ID, b.IngestTS)
	}
	b.Price += 0.01
	b.ComputeID()
	if a.ID == b.ID {
		t.Fatal("a different price kept the id")
	}
}

func TestBatchRoundTrip(t *testing.T) {
	want := sampleTicks()
	enc := AppendBatch(nil, want)
	got, err := DecodeBatch(enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d ticks, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("tick %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// A single tick's encoding is read too.
	one, err := DecodeBatch(want[1].AppendBinary(nil), nil)
	if err != nil || len(one) != 1 || one[0] != want[1] {
		t.Fatalf("single: %v %+v", err, one)
	}
	if got, err := DecodeBatch(AppendBatch(nil, nil), nil); err != nil || len(got) != 0 {
		t.Fatalf("empty batch: %v %v", got, err)
	}
}

func TestBatchNewerMinorAndMajor(t *testing.T) {
	tk := sampleTicks()[0]
	// A newer minor version appends a field: older readers skip it.
	enc := tk.AppendBinary(nil)
	enc[1] = WireMinor + 1
	enc = append(enc, 1, 2, 3, 4)
	var b []byte
	b = append(b, batchMagic, WireMajor, WireMinor+1, 1)
	b = binary.AppendUvarint(b, uint64(len(enc)))
	b = append(b, enc...)
	got, err := DecodeBatch(b, nil)
	if err != nil || len(got) != 1 || got[0] != tk {
		t.Fatalf("newer minor: %v %+v", err, got)
	}
	// An unknown major is refused with ErrUnknownMajor, for dead-lettering.
	b[1] = WireMajor + 1
	if _, err := DecodeBatch(b, nil); !errors.Is(err, ErrUnknownMajor) {
		t.Fatalf("unknown major: %v", err)
	}
}

func TestBatchCorruptNeverPanics(t *testing.T) {
	enc := AppendBatch(nil, sampleTicks())
	for cut := 0; cut < len(enc); cut++ {
		if _, err := DecodeBatch(enc[:cut], nil); err == nil && cut > 0 {
			t.Fatalf("truncated at %d/%d: no error", cut, len(enc))
		}
	}
	for i := range enc {
		bad := append([]byte(nil), enc...)
		bad[i] ^= 0xff
		DecodeBatch(bad, nil) // must not panic; may or may not fail
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, sampleTicks()))
	f.Add(sampleTicks()[0].AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		ticks, err := DecodeBatch(b, nil)
		if err != nil {
			return
		}
		// What decodes must re-encode to something that decodes the same.
		again, err := DecodeBatch(AppendBatch(nil, ticks), nil)
		if err != nil || len(again) != len(ticks) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func TestSignalValidate(t *testing.T) {
	good := Signal{Time: 1723161255300000000, Venue: "binance", Instrument: "BTC-USDT", Type: TypeTrendCall, State: "long",
		Score: 0.5, ModelVersion: "trend-v1"}
	good.ComputeID()
	if err := good.Validate(); err != nil {
		t.Fatalf("a detector's signal: %v", err)
	}
	// What `XADD ... d '{"id":1}'` decodes to.
	hand := Signal{ID: 1}
	err := hand.Validate()
	if err == nil {
		t.Fatal("an empty signal passed")
	}
	for _, want := range []string{"venue is empty", "instrument is empty", `type ""`, "model_version is empty", "time 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	forged := good
	forged.ID++
	if err := forged.Validate(); err == nil || !strings.Contains(err.Error(), "id") {
		t.Fatalf("a wrong id: %v", err)
	}
	nan := good
	nan.Score = math.NaN()
	if err := nan.Validate(); err == nil || !strings.Contains(err.Error(), "score") {
		t.Fatalf("a NaN score: %v", err)
	}
}
