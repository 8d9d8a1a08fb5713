package ingest

import (
	"fmt"
	"sort"
	"strings"

	"github.com/signald-dev/signald/market"
)

// bookRebuilder rebuilds books from published tick batches the way a
// downstream consumer would, and notes everything a consumer could not
// accept: book deltas for an instrument after a gap and before a fresh
// snapshot, and crossed books.
//
// Conventions it checks (the ones the Feed contract gives): a batch's first
// market.KindSnapshot tick of an instrument starts a new book for it; market.KindGap
// invalidates the instrument's book until then.
type bookRebuilder struct {
	books  map[string]*Book
	synced map[string]bool
	gaps   map[string]int
	errs   []string
}

func newBookRebuilder() *bookRebuilder {
	return &bookRebuilder{books: map[string]*Book{}, synced: map[string]bool{}, gaps: map[string]int{}}
}

func (r *bookRebuilder) book(inst string) *Book {
	b := r.books[inst]
	if b == nil {
		b = &Book{}
		r.books[inst] = b
	}
	return b
}

func (r *bookRebuilder) apply(batch []market.Tick) {
	started := map[string]bool{}
	for _, t := range batch {
		switch t.Kind {
		case market.KindGap:
			r.gaps[t.Instrument]++
			r.synced[t.Instrument] = false
			r.book(t.Instrument).Clear()
		case market.KindSnapshot:
			if !started[t.Instrument] {
				started[t.Instrument] = true
				r.book(t.Instrument).Clear()
				r.synced[t.Instrument] = true
			}
			r.book(t.Instrument).Set(t.Side, t.Price, t.Size, "", "")
		case market.KindBookDelta:
			if !r.synced[t.Instrument] {
				r.errs = append(r.errs, fmt.Sprintf("%s: delta (seq %d) while out of sync", t.Instrument, t.Seq))
				continue
			}
			r.book(t.Instrument).Set(t.Side, t.Price, t.Size, "", "")
		}
	}
	for inst := range started {
		if r.books[inst].Crossed() {
			r.errs = append(r.errs, inst+": crossed after a batch")
		}
	}
}

// bookString renders a book for comparison.
func bookString(b *Book) string {
	var sb strings.Builder
	for _, side := range []market.Side{market.SideBuy, market.SideSell} {
		for _, l := range b.Side(side) {
			fmt.Fprintf(&sb, "%s %v %v\n", side, l.Px, l.Sz)
		}
	}
	return sb.String()
}

// refBook is a naive reference book: maps of price to size.
type refBook struct{ bids, asks map[float64]float64 }

func newRefBook() *refBook { return &refBook{map[float64]float64{}, map[float64]float64{}} }

func (r *refBook) set(side market.Side, px, sz float64) {
	m := r.asks
	if side == market.SideBuy {
		m = r.bids
	}
	if sz == 0 {
		delete(m, px)
	} else {
		m[px] = sz
	}
}

func (r *refBook) String() string {
	var sb strings.Builder
	for _, s := range []struct {
		side market.Side
		m    map[float64]float64
		desc bool
	}{{market.SideBuy, r.bids, true}, {market.SideSell, r.asks, false}} {
		px := make([]float64, 0, len(s.m))
		for p := range s.m {
			px = append(px, p)
		}
		sort.Float64s(px)
		if s.desc {
			for i, j := 0, len(px)-1; i < j; i, j = i+1, j-1 {
				px[i], px[j] = px[j], px[i]
			}
		}
		for _, p := range px {
			fmt.Fprintf(&sb, "%s %v %v\n", s.side, p, s.m[p])
		}
	}
	return sb.String()
}
