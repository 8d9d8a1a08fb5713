package market

import (
	"encoding/binary"
	"testing"

	"github.com/signald-dev/signald/internal/gold"
)

// The wire bytes and ids are pinned: ClickHouse deduplicates by ID, so a
// change of ComputeID or of the encoding it hashes would store every
// re-ingested tick twice.
func TestTickWireGolden(t *testing.T) {
	ts := sampleTicks()
	for i, name := range []string{"tick_trade", "tick_quote", "tick_book_delta"} {
		gold.Bytes(t, ts[i].AppendBinary(nil), name)
	}
	gold.Bytes(t, AppendBatch(nil, ts), "tick_batch")
	var ids []byte
	for _, tk := range ts {
		ids = binary.LittleEndian.AppendUint64(ids, tk.ID)
	}
	gold.Bytes(t, ids, "tick_ids")
}

// Minor 0 encodings (written before Origin and OriginSeq) still decode, to
// the same ticks with no origin, and keep their ids.
func TestTickWireV10(t *testing.T) {
	want := sampleTicks()
	for i := range want {
		want[i].Origin, want[i].OriginSeq = 0, 0
	}
	for i, name := range []string{"tick_trade_v1.0", "tick_quote_v1.0", "tick_book_delta_v1.0"} {
		var got Tick
		if err := got.UnmarshalBinary(gold.Read(t, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want[i] {
			t.Fatalf("%s:\n got %+v\nwant %+v", name, got, want[i])
		}
		id := got.ID
		got.ComputeID()
		if got.ID != id {
			t.Fatalf("%s: id %d recomputes as %d", name, id, got.ID)
		}
	}
	got, err := DecodeBatch(gold.Read(t, "tick_batch_v1.0"), nil)
	if err != nil || len(got) != len(want) {
		t.Fatalf("v1.0 batch: %v, %d ticks", err, len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("v1.0 batch tick %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}
