package pipeline

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/csv"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/signald-dev/signald/ingest"
	"github.com/signald-dev/signald/market"
	"github.com/signald-dev/signald/store"
)

// ReadTicks calls fn with the ticks of in, in receive-time order: a Parquet
// store directory, a Parquet tick file of the store's schema, or a capture
// (cryptofeed or hftbacktest, plain or gzip).
func ReadTicks(ctx context.Context, in string, log *slog.Logger, fn func([]market.Tick) error) error {
	st, err := os.Stat(in)
	if err != nil {
		return err
	}
	if st.IsDir() {
		p, err := store.OpenParquet(store.ParquetOptions{Dir: in}, log, nil)
		if err != nil {
			return err
		}
		defer p.Close()
		return p.ReadTicks(ctx, store.Query{}, fn)
	}
	magic := make([]byte, 4)
	if fh, err := os.Open(in); err == nil {
		_, _ = io.ReadFull(fh, magic)
		fh.Close()
	}
	if bytes.Equal(magic, []byte("PAR1")) {
		ticks, err := readParquetTicks(ctx, in)
		if err != nil {
			return err
		}
		return fn(ticks)
	}
	r, err := ingest.NewReplayer(ingest.ReplayConfig{Paths: []string{in}}, log, nil)
	if err != nil {
		return err
	}
	return r.Run(ctx, fn)
}

// readParquetTicks reads a Parquet file in the store's tick schema (columns
// found by name) and sorts the ticks by receive time.
func readParquetTicks(ctx context.Context, path string) ([]market.Tick, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mem := memory.DefaultAllocator
	tbl, err := pqarrow.ReadTable(ctx, f, parquet.NewReaderProperties(mem), pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, mem)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer tbl.Release()
	tr := array.NewTableReader(tbl, 64<<10)
	defer tr.Release()
	var out []market.Tick
	for tr.Next() {
		rec := tr.Record()
		col := func(name string) (arrow.Array, error) {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) == 0 {
				return nil, fmt.Errorf("%s: no column %q: not a tick file of the store's schema", path, name)
			}
			return rec.Column(idx[0]), nil
		}
		var cs [10]arrow.Array
		for i, name := range []string{"venue", "instrument", "kind", "side", "recv_ts", "price", "size", "bid_px", "bid_sz", "ask_px"} {
			if cs[i], err = col(name); err != nil {
				return nil, err
			}
		}
		askSz, err := col("ask_sz")
		if err != nil {
			return nil, err
		}
		id, _ := col("id")
		exch, _ := col("exch_ts")
		for i := range int(rec.NumRows()) {
			t := market.Tick{
				Venue:      cs[0].(*array.String).Value(i),
				Instrument: cs[1].(*array.String).Value(i),
				Kind:       market.Kind(cs[2].(*array.Uint8).Value(i)),
				Side:       market.Side(cs[3].(*array.Int8).Value(i)),
				RecvTS:     cs[4].(*array.Int64).Value(i),
				Price:      cs[5].(*array.Float64).Value(i),
				Size:       cs[6].(*array.Float64).Value(i),
				BidPx:      cs[7].(*array.Float64).Value(i),
				BidSz:      cs[8].(*array.Float64).Value(i),
				AskPx:      cs[9].(*array.Float64).Value(i),
				AskSz:      askSz.(*array.Float64).Value(i),
			}
			if a, ok := id.(*array.Uint64); ok {
				t.ID = a.Value(i)
			}
			if a, ok := exch.(*array.Int64); ok {
				t.ExchTS = a.Value(i)
			}
			out = append(out, t)
		}
	}
	if err := tr.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	slices.SortStableFunc(out, func(a, b market.Tick) int { return cmp.Compare(a.RecvTS, b.RecvTS) })
	return out, nil
}

// RecordWriter writes feature records to one file.
type RecordWriter struct {
	write func(arrow.Record) error
	close func() error
}

// Write appends rec.
func (w *RecordWriter) Write(rec arrow.Record) error { return w.write(rec) }

// Close finishes the file (footer, buffered rows); the Parquet writer also
// closes w.
func (w *RecordWriter) Close() error { return w.close() }

// NewRecordWriter writes records of schema to w as format: arrow (the IPC
// file format), parquet or csv (with a header).
func NewRecordWriter(format string, w io.WriteSeeker, schema *arrow.Schema) (*RecordWriter, error) {
	switch format {
	case "arrow":
		fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema))
		if err != nil {
			return nil, err
		}
		return &RecordWriter{write: fw.Write, close: fw.Close}, nil
	case "parquet":
		// ~1,500 columns: one row group per step would cost a column chunk
		// (and a codec) per column and step, so rows are buffered into row
		// groups of 64k rows; Snappy, because a zstd encoder per column chunk
		// is slow to set up.
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithMaxRowGroupLength(64<<10), parquet.WithDictionaryDefault(false))
		pw, err := pqarrow.NewFileWriter(schema, w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		if err != nil {
			return nil, err
		}
		return &RecordWriter{write: pw.WriteBuffered, close: pw.Close}, nil
	case "csv":
		cw := csv.NewWriter(w, schema, csv.WithHeader(true))
		return &RecordWriter{write: cw.Write, close: cw.Flush}, nil
	}
	return nil, fmt.Errorf("format %q: want arrow, parquet or csv", format)
}

// AppendTickJSON appends t as one JSON object with every field of the
// normalized model (kind and side as strings, times as ns since the epoch,
// null for a non-finite number): a line of `signald decode`'s NDJSON.
func AppendTickJSON(b []byte, t *market.Tick) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, t.ID, 10)
	b = append(b, `,"venue":`...)
	b = appendJSONString(b, t.Venue)
	b = append(b, `,"instrument":`...)
	b = appendJSONString(b, t.Instrument)
	b = append(b, `,"symbol":`...)
	b = appendJSONString(b, t.Symbol)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, t.Kind.String())
	b = append(b, `,"side":`...)
	b = appendJSONString(b, t.Side.String())
	b = append(b, `,"exch_ts":`...)
	b = strconv.AppendInt(b, t.ExchTS, 10)
	b = append(b, `,"recv_ts":`...)
	b = strconv.AppendInt(b, t.RecvTS, 10)
	for _, f := range []struct {
		name string
		v    float64
	}{{"price", t.Price}, {"size", t.Size}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = appendJSONFloat(b, f.v)
	}
	b = append(b, `,"trade_id":`...)
	b = strconv.AppendUint(b, t.TradeID, 10)
	for _, f := range []struct {
		name string
		v    float64
	}{{"bid_px", t.BidPx}, {"bid_sz", t.BidSz}, {"ask_px", t.AskPx}, {"ask_sz", t.AskSz}} {
		b = append(b, `,"`...)
		b = append(b, f.name...)
		b = append(b, `":`...)
		b = appendJSONFloat(b, f.v)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, t.Seq, 10)
	b = append(b, `,"ingest_ts":`...)
	b = strconv.AppendInt(b, t.IngestTS, 10)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// appendJSONFloat writes null for the non-finite values JSON cannot hold.
func appendJSONFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
