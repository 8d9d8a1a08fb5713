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
