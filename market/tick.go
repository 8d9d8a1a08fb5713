// Package market holds signald's domain types: the normalized Tick with its
// wire format and id, and the detectors' Signal and InstrumentState. It
// imports nothing else of signald, so that ingest, features, regime, store
// and outside programs can share these types without pulling in each other.
//
// A Tick is the one normalized event type that flows through signald: the
// transport carries its binary encoding, the store persists it, and the
// feature engine consumes it.
package market

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
)

// Kind is the type of a normalized event.
type Kind uint8

const (
	KindUnknown     Kind = 0
	KindTrade       Kind = 1 // a trade; Side is the taker's side
	KindQuote       Kind = 2 // best bid and offer
	KindBookDelta   Kind = 3 // one L2 level: absolute size at Price on Side; 0 removes it
	KindSnapshot    Kind = 4 // one L2 level of a full snapshot
	KindFunding     Kind = 5 // funding rate in Price
	KindLiquidation Kind = 6 // a forced trade
	KindGap         Kind = 7 // data is missing for the instrument (disconnect, resync)
)

var kindNames = [...]string{"unknown", "trade", "quote", "book_delta", "snapshot", "funding", "liquidation", "gap"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), nil
		}
	}
	return KindUnknown, fmt.Errorf("unknown kind %q", s)
}

// Side is a trade's taker side or a book level's side.
type Side int8

const (
	SideUnknown Side = 0
	SideBuy     Side = 1 // taker bought; for book levels: bid
	SideSell    Side = -1
)

func (s Side) String() string {
	switch s {
	case SideBuy:
		return "buy"
	case SideSell:
		return "sell"
	}
	return ""
}

// Tick is one normalized market event. Times are nanoseconds since the Unix
// epoch; ExchTS is 0 when the venue did not send one.
//
// The price and size fields mean different things by Kind:
//
//	Kind         Price, Size            BidPx, BidSz, AskPx, AskSz   Side
//	trade        trade price and size   unused (0)                   taker's side
//	liquidation  fill price and size    unused (0)                   side of the forced order (a long
//	                                                                  liquidated is a forced sell)
//	quote        unused (0)             best bid and ask, sizes      unknown
//	book_delta   level price, absolute  unused (0)                   buy: bid level, sell: ask level
//	snapshot     size (0 removes it)
//	funding      funding rate           BidPx: mark price,           unknown
//	                                    AskPx: index price (0 when
//	                                    the venue sends none)
//	gap          unused (0)             unused (0)                   unknown
type Tick struct {
	ID         uint64 // deterministic content hash, the deduplication key downstream (ComputeID)
	Venue      string // e.g. "binance"
	Instrument string // normalized: BASE-QUOTE, BASE-QUOTE-PERP, BASE-QUOTE-<expiry>
	Symbol     string // the venue's own symbol, e.g. "BTCUSDT"
	Kind       Kind
	Side       Side
	ExchTS     int64 // the venue's event time; 0 when not sent
	RecvTS     int64 // when the frame was received (recorded time when replaying)
	Price      float64
	Size       float64
	TradeID    uint64 // the venue's trade id, parsed to a number; 0 when none
	BidPx      float64
	BidSz      float64
	AskPx      float64
	AskSz      float64
	Seq        uint64 // venue sequence (Binance: final update id u); 0 when none
	// IngestTS is the wall-clock time signald took the tick in: equal to
	// RecvTS live, the replay time when replaying a capture. Tick-to-storage
	// latency is measured from it. It is not part of ID.
	IngestTS int64
	// Origin and OriginSeq let the consumers count what was lost between
	// ingest and them (a Redis tail lost in a crash, an external trim):
	// Origin is the publishing ingest run (random, fixed for the run; 0: not
	// sequenced), OriginSeq numbers its ticks 1, 2, 3... per venue and
	// instrument in publish order. Neither is part of ID. Wire minor 1.
	Origin    uint64
	OriginSeq uint64
}

// EventTS is the time the tick belongs to: exchange time when the venue sent
// one, receive time otherwise.
func (t *Tick) EventTS() int64 {
	if t.ExchTS != 0 {
		return t.ExchTS
	}
	return t.RecvTS
}

// Wire format: one byte major version, one byte minor version, then the
// fields in declaration order, little endian; strings are a uvarint length and
// bytes. Consumers accept any minor version of a major they know (new fields
// are appended) and reject an unknown major.
//
// Minor 1 appended Origin and OriginSeq. ComputeID hashes the minor-0 layout
// whatever the current minor, so ids never change with the format.
const (
	WireMajor = 1
	WireMinor = 1
)

// ErrUnknownMajor marks an encoding from a newer, incompatible producer.
var ErrUnknownMajor = errors.New("unknown tick wire major version")

// AppendBinary appends the wire encoding of t to b.
func (t *Tick) AppendBinary(b []byte) []byte {
	b = t.appendV0(b, WireMinor)
	b = binary.LittleEndian.AppendUint64(b, t.Origin)
	return binary.LittleEndian.AppendUint64(b, t.OriginSeq)
}

// appendV0 appends the fields of minor version 0 under the given minor byte.
func (t *Tick) appendV0(b []byte, minor byte) []byte {
	b = append(b, WireMajor, minor)
	b = binary.LittleEndian.AppendUint64(b, t.ID)
	b = appendString(b, t.Venue)
	b = appendString(b, t.Instrument)
	b = appendString(b, t.Symbol)
	b = append(b, byte(t.Kind), byte(t.Side))
	b = binary.LittleEndian.AppendUint64(b, uint64(t.ExchTS))
	b = binary.LittleEndian.AppendUint64(b, uint64(t.RecvTS))
	for _, f := range [...]float64{t.Price, t.Size} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.LittleEndian.AppendUint64(b, t.TradeID)
	for _, f := range [...]float64{t.BidPx, t.BidSz, t.AskPx, t.AskSz} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	b = binary.LittleEndian.AppendUint64(b, t.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(t.IngestTS))
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalBinary decodes the wire encoding produced by AppendBinary.
func (t *Tick) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return errors.New("tick: short buffer")
	}
	if b[0] != WireMajor {
		return fmt.Errorf("tick: %w %d (this build reads %d)", ErrUnknownMajor, b[0], WireMajor)
	}
	d := decoder{b: b[2:]}
	t.ID = d.u64()
	t.Venue = d.str()
	t.Instrument = d.str()
	t.Symbol = d.str()
	t.Kind = Kind(d.byte())
	t.Side = Side(int8(d.byte()))
	t.ExchTS = int64(d.u64())
	t.RecvTS = int64(d.u64())
	t.Price = d.f64()
	t.Size = d.f64()
	t.TradeID = d.u64()
	t.BidPx = d.f64()
	t.BidSz = d.f64()
	t.AskPx = d.f64()
	t.AskSz = d.f64()
	t.Seq = d.u64()
	t.IngestTS = int64(d.u64())
	t.Origin, t.OriginSeq = 0, 0
	if b[1] >= 1 {
		t.Origin = d.u64()
		t.OriginSeq = d.u64()
	}
	if d.err != nil {
		return fmt.Errorf("tick: %w", d.err)
	}
	// Bytes beyond the fields we know are a newer minor version's additions.
	return nil
}

type decoder struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated encoding")

func (d *decoder) take(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u64() uint64 {
	v := d.take(8)
	if v == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(v)
}

func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *decoder) byte() byte {
	v := d.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (d *decoder) str() string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

// Batch wire format, one transport entry per frame (a 2,000-level snapshot is
// one entry, not 2,000): byte 'B', major, minor, uvarint count, then per tick
// a uvarint length and the tick's encoding as AppendBinary writes it. The
// per-tick length lets a reader skip fields a newer minor version appended.
const batchMagic = 'B'

// AppendBatch appends the batch encoding of ticks to b.
func AppendBatch(b []byte, ticks []Tick) []byte {
	b = append(b, batchMagic, WireMajor, WireMinor)
	b = binary.AppendUvarint(b, uint64(len(ticks)))
	var scratch [192]byte
	for i := range ticks {
		enc := ticks[i].AppendBinary(scratch[:0])
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

// DecodeBatch appends the ticks of a batch encoding to out. It also accepts
// a single tick's encoding (AppendBinary), so entries of either form can share
// a stream.
func DecodeBatch(b []byte, out []Tick) ([]Tick, error) {
	if len(b) > 0 && b[0] != batchMagic {
		var t Tick
		if err := t.UnmarshalBinary(b); err != nil {
			return out, err
		}
		return append(out, t), nil
	}
	if len(b) < 3 {
		return out, errors.New("tick batch: short buffer")
	}
	if b[1] != WireMajor {
		return out, fmt.Errorf("tick batch: %w %d (this build reads %d)", ErrUnknownMajor, b[1], WireMajor)
	}
	d := decoder{b: b[3:]}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)) {
		return out, errors.New("tick batch: bad count")
	}
	d.b = d.b[k:]
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(d.b)
		if k <= 0 || l > uint64(len(d.b)-k) {
			return out, fmt.Errorf("tick batch: tick %d: %w", i, errTruncated)
		}
		var t Tick
		if err := t.UnmarshalBinary(d.b[k : k+int(l)]); err != nil {
			return out, fmt.Errorf("tick batch: tick %d: %w", i, err)
		}
		out = append(out, t)
		d.b = d.b[k+int(l):]
	}
	if len(d.b) != 0 {
		return out, fmt.Errorf("tick batch: %d trailing bytes", len(d.b))
	}
	return out, nil
}

// ComputeID sets t.ID to a hash of every other field. Replaying the same
// frames yields the same ids, which is what lets the store deduplicate
// redelivered or re-ingested ticks.
func (t *Tick) ComputeID() {
	var buf [192]byte
	ingestTS := t.IngestTS
	t.ID, t.IngestTS = 0, 0
	t.ID = xxhash.Sum64(t.appendV0(buf[:0], 0))
	t.IngestTS = ingestTS
}
