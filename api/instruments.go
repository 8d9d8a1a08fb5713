package api

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/signald-dev/signald/features"
	"github.com/signald-dev/signald/macro"
)

// rowSnap is the latest feature record, indexed by instrument, behind
// /v1/instruments. The record is retained while it is the latest one;
// readers hold Server.rowsMu (read) while they use it.
type rowSnap struct {
	rec      arrow.Record
	step     int64
	stepTime int64
	byID     map[string]int   // "venue:instrument" -> row
	byInst   map[string][]int // instrument -> rows (one per venue)
	ids      []string         // in row order
	list     macro.Prepared   // the /v1/instruments body
}

// setRows makes rec the latest record. The index is reused while the rows
// stay the same instruments (the usual case: the engine emits a row for
// every known instrument each step).
func (s *Server) setRows(rec arrow.Record, step int64) {
	rec.Retain()
	snap := &rowSnap{rec: rec, step: step}
	sch := rec.Schema()
	n := int(rec.NumRows())
	var venues, insts *array.String
	if idx := sch.FieldIndices(features.ColVenue); len(idx) == 1 {
		venues, _ = rec.Column(idx[0]).(*array.String)
	}
	if idx := sch.FieldIndices(features.ColInstrument); len(idx) == 1 {
		insts, _ = rec.Column(idx[0]).(*array.String)
	}
	if idx := sch.FieldIndices(features.ColTime); len(idx) == 1 && n > 0 {
		if a, ok := rec.Column(idx[0]).(*array.Timestamp); ok {
			snap.stepTime = int64(a.Value(0))
		}
	}
	s.rowsMu.RLock()
	old := s.rows
	s.rowsMu.RUnlock()
	same := old != nil && len(old.ids) == n && venues != nil && insts != nil
	for i := 0; same && i < n; i++ {
		id := old.ids[i]
		v, in := venues.Value(i), insts.Value(i)
		same = len(id) == len(v)+1+len(in) && id[:len(v)] == v && id[len(v)] == ':' && id[len(v)+1:] == in
	}
	if same {
		snap.byID, snap.byInst, snap.ids, snap.list = old.byID, old.byInst, old.ids, old.list
	} else {
		snap.byID, snap.byInst, snap.ids = make(map[string]int, n), make(map[string][]int, n), make([]string, 0, n)
		if venues != nil && insts != nil {
			for i := range n {
				id := venues.Value(i) + ":" + insts.Value(i) // a new string: safe to keep
				snap.byID[id] = i
				inst := id[len(venues.Value(i))+1:]
				snap.byInst[inst] = append(snap.byInst[inst], i)
				snap.ids = append(snap.ids, id)
			}
		}
		body, _ := json.Marshal(struct {
			Instruments []string `json:"instruments"`
		}{snap.ids})
		snap.list = macro.NewPrepared(body, "application/json", "")
	}
	s.rowsMu.Lock()
	s.rows = snap
	s.rowsMu.Unlock()
	if old != nil {
		old.rec.Release()
	}
}

func (s *Server) serveInstruments(w http.ResponseWriter, r *http.Request) {
	s.rowsMu.RLock()
	snap := s.rows
	s.rowsMu.RUnlock()
	if snap == nil {
		macro.WriteError(w, http.StatusServiceUnavailable, "no feature step completed yet")
		return
	}
	snap.list.Serve(w, r)
}

// serveFeatures answers /v1/instruments/{id}/features: the instrument's row
// of the latest feature record as {name: value}, NaN as null, in column
// order.
func (s *Server) serveFeatures(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.rowsMu.RLock()
	defer s.rowsMu.RUnlock()
	snap := s.rows
	if snap == nil {
		macro.WriteError(w, http.StatusServiceUnavailable, "no feature step completed yet: try again in a few steps")
		return
	}
	row, ok := snap.byID[id]
	if !ok && !strings.Contains(id, ":") {
		switch rows := snap.byInst[id]; len(rows) {
		case 0:
		case 1:
			row, ok = rows[0], true
		default:
			ids := make([]string, len(rows))
			for i, rw := range rows {
				ids[i] = snap.ids[rw]
			}
			macro.WriteError(w, http.StatusNotFound, fmt.Sprintf("instrument %q is ambiguous: it trades on %d venues (%s); ask for venue:instrument", clip(id), len(rows), strings.Join(ids, ", ")))
			return
		}
	}
	if !ok {
		macro.WriteError(w, http.StatusNotFound, fmt.Sprintf("no instrument %q in the latest step (%d instruments; GET /v1/instruments lists them; ids are venue:instrument, or the instrument alone when only one venue has it)", clip(id), len(snap.ids)))
		return
	}
	sch := snap.rec.Schema()
	names := s.fieldNames.get(sch)
	buf := make([]byte, 0, 64+24*len(names))
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendQuote(buf, snap.ids[row])
	buf = append(buf, `,"step":`...)
	buf = strconv.AppendInt(buf, snap.step, 10)
	buf = append(buf, `,"time":`...)
	buf = strconv.AppendQuote(buf, time.Unix(0, snap.stepTime).UTC().Format(time.RFC3339Nano))
	buf = append(buf, `,"schema_version":`...)
	buf = strconv.AppendQuote(buf, macro.SchemaVersion(sch))
	buf = append(buf, `,"features":{`...)
	first := true
	for c, name := range names {
		if name == nil {
			continue
		}
		a := snap.rec.Column(c).(*array.Float64)
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, name...)
		if x := a.Value(row); a.IsNull(row) || math.IsNaN(x) || math.IsInf(x, 0) {
			buf = append(buf, "null"...)
		} else {
			buf = strconv.AppendFloat(buf, x, 'g', -1, 64)
		}
	}
	buf = append(buf, "}}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(buf)
}

// fieldNameCache holds, for the latest schema, each float64 column's JSON
// key (`"name":`), nil for other columns.
type fieldNameCache struct {
	mu     sync.Mutex
	schema *arrow.Schema
	names  [][]byte
}

func (c *fieldNameCache) get(sch *arrow.Schema) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.schema == sch {
		return c.names
	}
	c.names = make([][]byte, sch.NumFields())
	for i, f := range sch.Fields() {
		if f.Type.ID() == arrow.FLOAT64 {
			k, _ := json.Marshal(f.Name)
			c.names[i] = append(k, ':')
		}
	}
	c.schema = sch
	return c.names
}

// clip bounds what an error echoes of a client's input.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
