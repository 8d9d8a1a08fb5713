package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/market"
)

// ParquetOptions configures the embedded Parquet store.
type ParquetOptions struct {
	// Dir holds the files: Dir/ticks/<day>/ and Dir/signals/<day>/. Default "./data".
	Dir string
	// CompactAt merges a day's files once it has this many. Default 64.
	CompactAt int
	// ReadOnly leaves corrupt files where they are (a backtest, an outside
	// tool): they are skipped and reported by Quarantined. Otherwise they
	// are moved under Dir/_quarantine.
	ReadOnly bool
	// Strict fails a read at the first corrupt file instead of skipping it.
	Strict bool
}

// Parquet stores ticks and signals as Parquet files under a directory, for
// the embedded default that needs no server. Every insert is written to a
// temporary file, synced and renamed into place before InsertTicks returns,
// so an acknowledged batch survives a crash. File names carry the batch's
// time range and a hash of its ids: retrying the same batch rewrites the same
// file. Reads deduplicate by id; compaction merges a day's small files.
type Parquet struct {
	dir       string
	compactAt int
	log       *slog.Logger
	m         *Metrics
	mem       memory.Allocator
	mu        sync.Mutex // serializes compaction against itself
	readOnly  bool
	strict    bool
	writeHealth

	qmu         sync.Mutex
	quarantined []QuarantinedFile
}

// QuarantinedFile is a data file that could not be read: corrupt,
// truncated, or of another schema.
type QuarantinedFile struct {
	Path   string // where it was found
	Moved  string // where it is now ("" when left in place: ReadOnly)
	Reason string
}

var _ Store = (*Parquet)(nil)

// OpenParquet creates the directories if needed.
func OpenParquet(opts ParquetOptions, logger *slog.Logger, reg prometheus.Registerer) (*Parquet, error) {
	if opts.Dir == "" {
		opts.Dir = "./data"
	}
	if opts.CompactAt <= 0 {
		opts.CompactAt = 64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"ticks", "signals"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("parquet store: %w", err)
		}
	}
	return &Parquet{dir: opts.Dir, compactAt: opts.CompactAt, readOnly: opts.ReadOnly, strict: opts.Strict,
		log: logger, m: NewMetrics(reg), mem: memory.DefaultAllocator}, nil
}

var tickSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "venue", Type: arrow.BinaryTypes.String},
	{Name: "instrument", Type: arrow.BinaryTypes.String},
	{Name: "symbol", Type: arrow.BinaryTypes.String},
	{Name: "kind", Type: arrow.PrimitiveTypes.Uint8},
	{Name: "side", Type: arrow.PrimitiveTypes.Int8},
	{Name: "exch_ts", Type: arrow.PrimitiveTypes.Int64},
	{Name: "recv_ts", Type: arrow.PrimitiveTypes.Int64},
	{Name: "ingest_ts", Type: arrow.PrimitiveTypes.Int64},
	{Name: "price", Type: arrow.PrimitiveTypes.Float64},
	{Name: "size", Type: arrow.PrimitiveTypes.Float64},
	{Name: "trade_id", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "bid_px", Type: arrow.PrimitiveTypes.Float64},
	{Name: "bid_sz", Type: arrow.PrimitiveTypes.Float64},
	{Name: "ask_px", Type: arrow.PrimitiveTypes.Float64},
	{Name: "ask_sz", Type: arrow.PrimitiveTypes.Float64},
	{Name: "seq", Type: arrow.PrimitiveTypes.Uint64},
}, nil)

var signalSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Uint64},
	{Name: "time", Type: arrow.PrimitiveTypes.Int64},
	{Name: "venue", Type: arrow.BinaryTypes.String},
	{Name: "instrument", Type: arrow.BinaryTypes.String},
	{Name: "type", Type: arrow.BinaryTypes.String},
	{Name: "state", Type: arrow.BinaryTypes.String},
	{Name: "score", Type: arrow.PrimitiveTypes.Float64},
	{Name: "model_version", Type: arrow.BinaryTypes.String},
	{Name: "explanation", Type: arrow.BinaryTypes.String},
	// values is Signal.Values as a JSON object ("" when empty); files
	// written before it existed lack the column and read as no values.
	{Name: "values", Type: arrow.BinaryTypes.String},
}, nil)

func ticksRecord(mem memory.Allocator, ticks []market.Tick) arrow.Record {
	b := array.NewRecordBuilder(mem, tickSchema)
	defer b.Release()
	f := b.Fields()
	for i := range ticks {
		t := &ticks[i]
		f[0].(*array.Uint64Builder).Append(t.ID)
		f[1].(*array.StringBuilder).Append(t.Venue)
		f[2].(*array.StringBuilder).Append(t.Instrument)
		f[3].(*array.StringBuilder).Append(t.Symbol)
		f[4].(*array.Uint8Builder).Append(uint8(t.Kind))
		f[5].(*array.Int8Builder).Append(int8(t.Side))
		f[6].(*array.Int64Builder).Append(t.ExchTS)
		f[7].(*array.Int64Builder).Append(t.RecvTS)
		f[8].(*array.Int64Builder).Append(t.IngestTS)
		f[9].(*array.Float64Builder).Append(t.Price)
		f[10].(*array.Float64Builder).Append(t.Size)
		f[11].(*array.Uint64Builder).Append(t.TradeID)
		f[12].(*array.Float64Builder).Append(t.BidPx)
		f[13].(*array.Float64Builder).Append(t.BidSz)
		f[14].(*array.Float64Builder).Append(t.AskPx)
		f[15].(*array.Float64Builder).Append(t.AskSz)
		f[16].(*array.Uint64Builder).Append(t.Seq)
	}
	return b.NewRecord()
}

func recordTicks(rec arrow.Record, out []market.Tick) []market.Tick {
	c := rec.Columns()
	for i := 0; i < int(rec.NumRows()); i++ {
		out = append(out, market.Tick{
			ID:         c[0].(*array.Uint64).Value(i),
			Venue:      c[1].(*array.String).Value(i),
			Instrument: c[2].(*array.String).Value(i),
			Symbol:     c[3].(*array.String).Value(i),
			Kind:       market.Kind(c[4].(*array.Uint8).Value(i)),
			Side:       market.Side(c[5].(*array.Int8).Value(i)),
			ExchTS:     c[6].(*array.Int64).Value(i),
			RecvTS:     c[7].(*array.Int64).Value(i),
			IngestTS:   c[8].(*array.Int64).Value(i),
			Price:      c[9].(*array.Float64).Value(i),
			Size:       c[10].(*array.Float64).Value(i),
			TradeID:    c[11].(*array.Uint64).Value(i),
			BidPx:      c[12].(*array.Float64).Value(i),
			BidSz:      c[13].(*array.Float64).Value(i),
			AskPx:      c[14].(*array.Float64).Value(i),
			AskSz:      c[15].(*array.Float64).Value(i),
			Seq:        c[16].(*array.Uint64).Value(i),
		})
	}
	return out
}

func signalsRecord(mem memory.Allocator, sigs []market.Signal) arrow.Record {
	b := array.NewRecordBuilder(mem, signalSchema)
	defer b.Release()
	f := b.Fields()
	for i := range sigs {
		s := &sigs[i]
		f[0].(*array.Uint64Builder).Append(s.ID)
		f[1].(*array.Int64Builder).Append(s.Time)
		f[2].(*array.StringBuilder).Append(s.Venue)
		f[3].(*array.StringBuilder).Append(s.Instrument)
		f[4].(*array.StringBuilder).Append(s.Type)
		f[5].(*array.StringBuilder).Append(s.State)
		f[6].(*array.Float64Builder).Append(s.Score)
		f[7].(*array.StringBuilder).Append(s.ModelVersion)
		f[8].(*array.StringBuilder).Append(s.Explanation)
		v := ""
		if len(s.Values) > 0 {
			v = string(marshalValues(s.Values))
		}
		f[9].(*array.StringBuilder).Append(v)
	}
	return b.NewRecord()
}

func recordSignals(rec arrow.Record, out []market.Signal) []market.Signal {
	c := rec.Columns()
	for i := 0; i < int(rec.NumRows()); i++ {
		out = append(out, market.Signal{
			ID: c[0].(*array.Uint64).Value(i), Time: c[1].(*array.Int64).Value(i),
			Venue: c[2].(*array.String).Value(i), Instrument: c[3].(*array.String).Value(i),
			Type: c[4].(*array.String).Value(i), State: c[5].(*array.String).Value(i),
			Score: c[6].(*array.Float64).Value(i), ModelVersion: c[7].(*array.String).Value(i),
			Explanation: c[8].(*array.String).Value(i),
		})
		if len(c) > 9 {
			if v := c[9].(*array.String).Value(i); v != "" {
				out[len(out)-1].Values = unmarshalValues(v)
			}
		}
	}
	return out
}

// marshalValues encodes values as a JSON object; NaN and ±Inf, which JSON
// cannot hold, become strings that unmarshalValues reads back.
func marshalValues(m map[string]float64) []byte {
	o := make(map[string]any, len(m))
	for k, v := range m {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			o[k] = strconv.FormatFloat(v, 'g', -1, 64)
		} else {
			o[k] = v
		}
	}
	b, _ := json.Marshal(o)
	return b
}

func unmarshalValues(s string) map[string]float64 {
	var raw map[string]any
	if json.Unmarshal([]byte(s), &raw) != nil {
		return nil
	}
	out := make(map[string]float64, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case float64:
			out[k] = x
		case string:
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				out[k] = f
			}
		}
	}
	return out
}

// writeFile writes rec to path atomically: temp file, fsync, rename, then
// fsync of the directory so the rename itself is durable.
func writeFile(path string, rec arrow.Record) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd))
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, props, pqarrow.DefaultWriterProps())
	if err != nil {
		f.Close()
		return err
	}
	if err := w.Write(rec); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil { // also closes f
		return err
	}
	// pqarrow closed the file; reopen to sync its contents.
	if err := syncPath(f.Name()); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncPath(dir)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// errCorruptFile marks a data file that cannot be read as the table's.
var errCorruptFile = errors.New("corrupt data file")

// readFile calls fn with the records of a data file of table. A file that
// cannot be read (corrupt, truncated, another schema) gives an error
// wrapping errCorruptFile; errors of fn are returned as they are.
func (p *Parquet) readFile(ctx context.Context, table, path string, fn func(arrow.Record) error) error {
	tbl, err := p.openTable(ctx, path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errCorruptFile, path, err)
	}
	defer tbl.Release()
	if err := checkSchema(table, tbl.Schema()); err != nil {
		return fmt.Errorf("%w: %s: %v", errCorruptFile, path, err)
	}
	tr := array.NewTableReader(tbl, 64<<10)
	defer tr.Release()
	for tr.Next() {
		if err := fn(tr.Record()); err != nil {
			return err
		}
	}
	if err := tr.Err(); err != nil {
		return fmt.Errorf("%w: %s: %v", errCorruptFile, path, err)
	}
	return nil
}

// openTable reads a whole file; the Parquet reader can panic on some
// corrupt input, which is a corrupt file here, not a crash.
func (p *Parquet) openTable(ctx context.Context, path string) (tbl arrow.Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			tbl, err = nil, fmt.Errorf("unreadable: %v", r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return pqarrow.ReadTable(ctx, f, parquet.NewReaderProperties(p.mem), pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, p.mem)
}

// checkSchema accepts the table's schema, and for signals the older one
// without the values column.
func checkSchema(table string, got *arrow.Schema) error {
	want := tickSchema
	if table == "signals" {
		want = signalSchema
	}
	n := len(want.Fields())
	if table == "signals" && len(got.Fields()) == n-1 {
		n-- // written before signals carried values
	}
	if len(got.Fields()) != n {
		return fmt.Errorf("%d columns, want %d of the %s schema", len(got.Fields()), n, table)
	}
	for i := 0; i < n; i++ {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || !arrow.TypeEqual(g.Type, w.Type) {
			return fmt.Errorf("column %d is %s %s, want %s %s", i, g.Name, g.Type, w.Name, w.Type)
		}
	}
	return nil
}

// skipCorrupt handles a failed file read: a corrupt file is quarantined
// (moved aside, or only reported when read-only), counted and logged, and
// the read goes on (nil), unless the store is strict. Other errors are
// returned.
func (p *Parquet) skipCorrupt(table, path string, err error) error {
	if !errors.Is(err, errCorruptFile) || p.strict {
		return err
	}
	q := QuarantinedFile{Path: path, Reason: err.Error()}
	if !p.readOnly {
		rel, rerr := filepath.Rel(filepath.Join(p.dir, table), path)
		if rerr != nil {
			rel = filepath.Base(path)
		}
		dst := filepath.Join(p.dir, "_quarantine", table, strings.ReplaceAll(rel, string(filepath.Separator), "_"))
		if merr := os.MkdirAll(filepath.Dir(dst), 0o755); merr == nil {
			if merr = os.Rename(path, dst); merr == nil {
				q.Moved = dst
				_ = os.WriteFile(dst+".reason", []byte(q.Reason+"\n"), 0o644)
			}
		}
	}
	p.qmu.Lock()
	p.quarantined = append(p.quarantined, q)
	p.qmu.Unlock()
	p.m.quarantined.WithLabelValues(table).Inc()
	p.log.Error("store: unreadable data file skipped; the rest of the store goes on", "table", table, "path", path,
		"moved_to", q.Moved, "reason", q.Reason)
	return nil
}

// Quarantined lists the data files this store skipped as unreadable since
// it was opened.
func (p *Parquet) Quarantined() []QuarantinedFile {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return slices.Clone(p.quarantined)
}

// fileName encodes the batch's time range so reads can skip files.
func fileName(lo, hi int64, token string) string {
	return strconv.FormatInt(lo, 10) + "_" + strconv.FormatInt(hi, 10) + "_" + token + ".parquet"
}

func fileRange(name string) (lo, hi int64, ok bool) {
	parts := strings.SplitN(strings.TrimSuffix(name, ".parquet"), "_", 3)
	if len(parts) != 3 {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseInt(parts[0], 10, 64)
	hi, err2 := strconv.ParseInt(parts[1], 10, 64)
	return lo, hi, err1 == nil && err2 == nil
}

func day(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02") }

func (p *Parquet) InsertTicks(ctx context.Context, ticks []market.Tick) error {
	if len(ticks) == 0 {
		return nil
	}
	start := time.Now()
	err := insertByDay(ctx, p, "ticks", "t", ticks, func(t *market.Tick) (int64, uint64) { return t.RecvTS, t.ID }, ticksRecord)
	if err != nil {
		p.writeHealth.failed(time.Now(), err)
		return err
	}
	p.writeHealth.ok(time.Now())
	p.m.observeInsert("ticks", len(ticks), time.Since(start))
	p.m.observeTickLatency(ticks, time.Now())
	return nil
}

func (p *Parquet) InsertSignals(ctx context.Context, sigs []market.Signal) error {
	if len(sigs) == 0 {
		return nil
	}
	start := time.Now()
	err := insertByDay(ctx, p, "signals", "s", sigs, func(s *market.Signal) (int64, uint64) { return s.Time, s.ID }, signalsRecord)
	if err != nil {
		p.writeHealth.failed(time.Now(), err)
		return err
	}
	p.writeHealth.ok(time.Now())
	p.m.observeInsert("signals", len(sigs), time.Since(start))
	return nil
}

// insertByDay writes rows as one file per day of their time (as ClickHouse
// partitions), each named by its time range and a token of its ids, so a
// retried batch rewrites the same file instead of adding a copy.
func insertByDay[T any](ctx context.Context, p *Parquet, table, tokPrefix string, rows []T,
	key func(*T) (ns int64, id uint64), record func(memory.Allocator, []T) arrow.Record) error {
	byDay := map[string][]T{}
	for i := range rows {
		ns, _ := key(&rows[i])
		d := day(ns)
		byDay[d] = append(byDay[d], rows[i])
	}
	for d, part := range byDay {
		lo, _ := key(&part[0])
		hi := lo
		for i := range part {
			ns, _ := key(&part[i])
			lo, hi = min(lo, ns), max(hi, ns)
		}
		tok := dedupToken(tokPrefix, func(y func(uint64)) {
			for i := range part {
				_, id := key(&part[i])
				y(id)
			}
		})
		rec := record(p.mem, part)
		err := writeFile(filepath.Join(p.dir, table, d, fileName(lo, hi, tok)), rec)
		rec.Release()
		if err != nil {
			p.m.insertErrors.WithLabelValues(table).Inc()
			return fmt.Errorf("insert %d %s: %w", len(part), table, err)
		}
		if err := p.maybeCompact(ctx, table, d); err != nil {
			p.log.Warn("store: compaction failed; small files stay", "day", d, "err", err)
		}
	}
	return nil
}

// files lists the data files of table whose range overlaps [lo, hi).
func (p *Parquet) files(table string, lo, hi int64) ([]string, error) {
	days, err := os.ReadDir(filepath.Join(p.dir, table))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range days {
		if !d.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(p.dir, table, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			flo, fhi, ok := fileRange(e.Name())
			if !ok || fhi < lo || flo >= hi {
				continue
			}
			out = append(out, filepath.Join(p.dir, table, d.Name(), e.Name()))
		}
	}
	return out, nil
}

// loadTicks reads, filters and deduplicates the ticks of q, sorted.
func (p *Parquet) loadTicks(ctx context.Context, q Query) ([]market.Tick, error) {
	lo, hi := q.bounds()
	files, err := p.files("ticks", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read ticks: %w", err)
	}
	seen := map[uint64]struct{}{}
	var all, buf []market.Tick
	dups := 0
	for _, f := range files {
		err := p.readFile(ctx, "ticks", f, func(rec arrow.Record) error {
			buf = recordTicks(rec, buf[:0])
			for _, t := range buf {
				if t.RecvTS < lo || t.RecvTS >= hi || !q.wants(t.Instrument) {
					continue
				}
				if _, ok := seen[t.ID]; ok {
					dups++
					continue
				}
				seen[t.ID] = struct{}{}
				all = append(all, t)
			}
			return nil
		})
		if err := p.skipCorrupt("ticks", f, err); err != nil {
			return nil, fmt.Errorf("read ticks: %w", err)
		}
	}
	p.m.duplicates.WithLabelValues("ticks").Add(float64(dups))
	slices.SortFunc(all, tickCmp)
	return all, nil
}

func (p *Parquet) ReadTicks(ctx context.Context, q Query, fn func([]market.Tick) error) error {
	all, err := p.loadTicks(ctx, q)
	if err != nil {
		return err
	}
	const batch = 8192
	for i := 0; i < len(all); i += batch {
		if err := fn(all[i:min(i+batch, len(all))]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Parquet) CountTicks(ctx context.Context, q Query) (int64, error) {
	all, err := p.loadTicks(ctx, q)
	return int64(len(all)), err
}

func (p *Parquet) CountTicksByMinute(ctx context.Context, q Query) ([]MinuteCount, error) {
	all, err := p.loadTicks(ctx, q)
	if err != nil {
		return nil, err
	}
	type key struct {
		v, i string
		m    int64
	}
	counts := map[key]int64{}
	for i := range all {
		counts[key{all[i].Venue, all[i].Instrument, minuteOf(all[i].RecvTS)}]++
	}
	out := make([]MinuteCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, MinuteCount{Venue: k.v, Instrument: k.i, Minute: k.m, N: n})
	}
	slices.SortFunc(out, func(a, b MinuteCount) int {
		return cmp.Or(cmp.Compare(a.Venue, b.Venue), cmp.Compare(a.Instrument, b.Instrument), cmp.Compare(a.Minute, b.Minute))
	})
	return out, nil
}

func (p *Parquet) ReadSignals(ctx context.Context, q Query) ([]market.Signal, error) {
	lo, hi := q.bounds()
	files, err := p.files("signals", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read signals: %w", err)
	}
	seen := map[uint64]struct{}{}
	var out, buf []market.Signal
	for _, f := range files {
		err := p.readFile(ctx, "signals", f, func(rec arrow.Record) error {
			buf = recordSignals(rec, buf[:0])
			for _, s := range buf {
				if s.Time < lo || s.Time >= hi || !q.wants(s.Instrument) {
					continue
				}
				if _, ok := seen[s.ID]; ok {
					continue
				}
				seen[s.ID] = struct{}{}
				out = append(out, s)
			}
			return nil
		})
		if err := p.skipCorrupt("signals", f, err); err != nil {
			return nil, fmt.Errorf("read signals: %w", err)
		}
	}
	slices.SortFunc(out, signalCmp)
	return out, nil
}

// maybeCompact merges a day's files into one once there are CompactAt of
// them. The merged file is in place before the small ones are removed, so a
// crash in between leaves duplicates (removed on read), never a loss.
func (p *Parquet) maybeCompact(ctx context.Context, table, d string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dir := filepath.Join(p.dir, table, d)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if _, _, ok := fileRange(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	if len(names) < p.compactAt {
		return nil
	}
	var rec arrow.Record
	var lo, hi int64 = 1<<63 - 1, -1 << 63
	var ids []uint64
	var read []string // the files merged (not those quarantined)
	merge := func(n string, fn func(arrow.Record) error) error {
		err := p.readFile(ctx, table, filepath.Join(dir, n), fn)
		if err == nil {
			read = append(read, n)
			return nil
		}
		return p.skipCorrupt(table, filepath.Join(dir, n), err)
	}
	switch table {
	case "ticks":
		seen := map[uint64]struct{}{}
		var all, buf []market.Tick
		for _, n := range names {
			if err := merge(n, func(r arrow.Record) error {
				buf = recordTicks(r, buf[:0])
				for _, t := range buf {
					if _, ok := seen[t.ID]; !ok {
						seen[t.ID] = struct{}{}
						all = append(all, t)
						lo, hi = min(lo, t.RecvTS), max(hi, t.RecvTS)
						ids = append(ids, t.ID)
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		rec = ticksRecord(p.mem, all)
	case "signals":
		seen := map[uint64]struct{}{}
		var all, buf []market.Signal
		for _, n := range names {
			if err := merge(n, func(r arrow.Record) error {
				buf = recordSignals(r, buf[:0])
				for _, s := range buf {
					if _, ok := seen[s.ID]; !ok {
						seen[s.ID] = struct{}{}
						all = append(all, s)
						lo, hi = min(lo, s.Time), max(hi, s.Time)
						ids = append(ids, s.ID)
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		rec = signalsRecord(p.mem, all)
	default:
		return errors.New("unknown table " + table)
	}
	defer rec.Release()
	if len(read) == 0 {
		return nil
	}
	tok := dedupToken("c", func(y func(uint64)) {
		for _, id := range ids {
			y(id)
		}
	})
	merged := fileName(lo, hi, tok)
	if err := writeFile(filepath.Join(dir, merged), rec); err != nil {
		return err
	}
	for _, n := range read {
		if n != merged {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Parquet) Close() error { return nil }
