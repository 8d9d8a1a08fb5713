package ingest

import (
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/signald-dev/signald/market"
)

// TestBookMatchesMap drives a Book and a map with the same random updates and
// compares the sorted levels after each one.
func TestBookMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var b Book
	ref := map[market.Side]map[float64]float64{market.SideBuy: {}, market.SideSell: {}}
	for i := range 20000 {
		side := market.SideBuy
		if r.IntN(2) == 0 {
			side = market.SideSell
		}
		px := float64(100 + r.IntN(50))
		sz := float64(r.IntN(4)) // 0 removes
		b.Set(side, px, sz, "", "")
		if sz == 0 {
			delete(ref[side], px)
		} else {
			ref[side][px] = sz
		}
		for _, s := range []market.Side{market.SideBuy, market.SideSell} {
			var want []float64
			for p := range ref[s] {
				want = append(want, p)
			}
			sort.Float64s(want)
			if s == market.SideBuy {
				sort.Sort(sort.Reverse(sort.Float64Slice(want)))
			}
			got := b.Side(s)
			if len(got) != len(want) {
				t.Fatalf("step %d side %v: %d levels, want %d", i, s, len(got), len(want))
			}
			for j, p := range want {
				if got[j].Px != p || got[j].Sz != ref[s][p] {
					t.Fatalf("step %d side %v level %d: %v, want %v x %v", i, s, j, got[j], p, ref[s][p])
				}
			}
		}
	}
}

func TestBookCrossedAndTruncate(t *testing.T) {
	var b Book
	b.Set(market.SideBuy, 100, 1, "100.0", "1")
	b.Set(market.SideBuy, 99, 2, "", "")
	b.Set(market.SideSell, 101, 1, "", "")
	if b.Crossed() {
		t.Fatal("100/101 reported crossed")
	}
	bid, ask, ok := b.Best()
	if !ok || bid.Px != 100 || bid.PxText != "100.0" || ask.Px != 101 {
		t.Fatalf("best %v %v %v", bid, ask, ok)
	}
	b.Set(market.SideSell, 100, 1, "", "")
	if !b.Crossed() {
		t.Fatal("bid 100 ask 100 not reported crossed")
	}
	b.Truncate(1)
	if b.Len(market.SideBuy) != 1 || b.Len(market.SideSell) != 1 {
		t.Fatalf("truncate: %d/%d levels", b.Len(market.SideBuy), b.Len(market.SideSell))
	}
	b.Clear()
	if _, _, ok := b.Best(); ok {
		t.Fatal("cleared book has a best level")
	}
}
