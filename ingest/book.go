package ingest

import (
	"sort"

	"github.com/signald-dev/signald/market"
)

// Level is one price level of a Book. PxText and SzText keep the venue's
// own text of the numbers for venues whose checksum is computed over it
// (Kraken, OKX); they are empty otherwise.
type Level struct {
	Px, Sz         float64
	PxText, SzText string
}

// Book is one instrument's L2 book with absolute sizes per price level.
// Levels are kept in sorted slices: books are at most a few thousand levels
// and most updates touch the top, where a slice is cheaper than a tree.
// A Book is not safe for concurrent use.
type Book struct {
	bids []Level // best (highest) first
	asks []Level // best (lowest) first
}

// Set sets the level at px on side (market.SideBuy: bids, market.SideSell: asks) to sz;
// sz == 0 removes the level. pxText and szText may be empty.
func (b *Book) Set(side market.Side, px, sz float64, pxText, szText string) {
	lv := &b.asks
	better := func(a, p float64) bool { return a < p }
	if side == market.SideBuy {
		lv = &b.bids
		better = func(a, p float64) bool { return a > p }
	}
	s := *lv
	i := sort.Search(len(s), func(i int) bool { return !better(s[i].Px, px) })
	found := i < len(s) && s[i].Px == px
	switch {
	case sz == 0 && found:
		*lv = append(s[:i], s[i+1:]...)
	case sz == 0:
	case found:
		s[i] = Level{px, sz, pxText, szText}
	default:
		s = append(s, Level{})
		copy(s[i+1:], s[i:])
		s[i] = Level{px, sz, pxText, szText}
		*lv = s
	}
}

// Clear removes every level.
func (b *Book) Clear() { b.bids, b.asks = b.bids[:0], b.asks[:0] }

// Len is the number of levels on side.
func (b *Book) Len(side market.Side) int {
	if side == market.SideBuy {
		return len(b.bids)
	}
	return len(b.asks)
}

// Side returns the levels of side, best first. The slice is the book's
// own: do not modify it, and do not keep it across Set.
func (b *Book) Side(side market.Side) []Level {
	if side == market.SideBuy {
		return b.bids
	}
	return b.asks
}

// Best returns the best bid and ask; ok is false when either side is empty.
func (b *Book) Best() (bid, ask Level, ok bool) {
	if len(b.bids) == 0 || len(b.asks) == 0 {
		return Level{}, Level{}, false
	}
	return b.bids[0], b.asks[0], true
}

// Crossed reports whether the best bid is at or above the best ask.
func (b *Book) Crossed() bool {
	bid, ask, ok := b.Best()
	return ok && bid.Px >= ask.Px
}

// Truncate keeps at most n levels per side (venues that maintain a book of
// fixed depth, such as Kraken's book-N, drop the levels pushed out).
func (b *Book) Truncate(n int) {
	if len(b.bids) > n {
		b.bids = b.bids[:n]
	}
	if len(b.asks) > n {
		b.asks = b.asks[:n]
	}
}
