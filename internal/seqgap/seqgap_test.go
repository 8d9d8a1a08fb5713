package seqgap

import (
	"math/rand/v2"
	"testing"
	"time"
)

func total(ls []Loss) (n uint64) {
	for _, l := range ls {
		n += l.Count()
	}
	return n
}

func TestInOrderAndRedeliveries(t *testing.T) {
	tr := New(Config{Delay: time.Second})
	k := Key{Origin: 7, Venue: "binance", Instrument: "BTC-USDT"}
	now := time.Unix(100, 0)
	var lost []Loss
	for _, n := range []uint64{1, 2, 3, 2, 3, 4, 1, 5} {
		lost = tr.Observe(k, n, now, lost)
	}
	lost = tr.Sweep(now.Add(time.Hour), lost)
	if len(lost) != 0 || tr.Holes() != 0 {
		t.Fatalf("lost %v holes %d", lost, tr.Holes())
	}
}

func TestHoleFilledLateIsNotLost(t *testing.T) {
	tr := New(Config{Delay: time.Minute})
	k := Key{Origin: 1, Venue: "v", Instrument: "i"}
	t0 := time.Unix(0, 0)
	var lost []Loss
	for _, n := range []uint64{1, 2, 5, 6} {
		lost = tr.Observe(k, n, t0, lost)
	}
	if tr.Holes() != 2 {
		t.Fatalf("holes %d, want 2", tr.Holes())
	}
	lost = tr.Sweep(t0.Add(30*time.Second), lost)
	lost = tr.Observe(k, 4, t0.Add(31*time.Second), lost)
	lost = tr.Observe(k, 3, t0.Add(32*time.Second), lost)
	lost = tr.Sweep(t0.Add(time.Hour), lost)
	if len(lost) != 0 || tr.Holes() != 0 {
		t.Fatalf("lost %v holes %d", lost, tr.Holes())
	}
}

func TestHoleCountedAfterDelay(t *testing.T) {
	tr := New(Config{Delay: time.Minute})
	k := Key{Origin: 1, Venue: "v", Instrument: "i"}
	t0 := time.Unix(0, 0)
	var lost []Loss
	for n := uint64(1); n <= 10; n++ {
		if n >= 4 && n <= 8 {
			continue // a lost Redis tail
		}
		lost = tr.Observe(k, n, t0, lost)
	}
	if lost = tr.Sweep(t0.Add(59*time.Second), lost); len(lost) != 0 {
		t.Fatalf("counted before the delay: %v", lost)
	}
	lost = tr.Sweep(t0.Add(61*time.Second), lost)
	if len(lost) != 1 || lost[0] != (Loss{Key: k, From: 4, To: 8}) {
		t.Fatalf("lost %v, want 4-8", lost)
	}
	// A late copy of a counted number is not counted again, nor un-counted.
	lost = tr.Observe(k, 6, t0.Add(62*time.Second), lost)
	lost = tr.Observe(k, 11, t0.Add(62*time.Second), lost)
	if total(lost) != 5 || tr.Holes() != 0 {
		t.Fatalf("lost %v holes %d", lost, tr.Holes())
	}
}

func TestMaxPendingBoundsMemory(t *testing.T) {
	tr := New(Config{Delay: time.Hour, MaxPending: 4})
	k := Key{Origin: 1, Venue: "v", Instrument: "i"}
	now := time.Unix(0, 0)
	var lost []Loss
	lost = tr.Observe(k, 1, now, lost)
	for n := uint64(3); n <= 20; n += 2 { // every even number lost
		lost = tr.Observe(k, n, now, lost)
	}
	if got := len(tr.keys[k].pending); got > 4 {
		t.Fatalf("%d pending, bound 4", got)
	}
	lost = tr.Sweep(now.Add(2*time.Hour), lost)
	if total(lost) != 9 {
		t.Fatalf("lost %d (%v), want 9 (2, 4, ..., 18)", total(lost), lost)
	}
}

// Random shuffles within a reorder distance, duplicates and dropped runs:
// the count is exact once everything is swept.
func TestRandomized(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewPCG(seed, 9))
		tr := New(Config{Delay: time.Second, MaxPending: 1 << 20})
		keys := []Key{{1, "a", "x"}, {1, "a", "y"}, {2, "a", "x"}}
		var want uint64
		type ev struct {
			k Key
			n uint64
		}
		var evs []ev
		for _, k := range keys {
			evs = append(evs, ev{k, 1}) // the first number is always seen
			for n := uint64(2); n <= 3000; n++ {
				if rng.IntN(50) == 0 {
					drop := uint64(1 + rng.IntN(20))
					if n+drop > 3000 {
						drop = 3000 - n
					}
					want += drop
					n += drop
					if n > 3000 {
						break
					}
				}
				evs = append(evs, ev{k, n})
				if rng.IntN(10) == 0 {
					evs = append(evs, ev{k, n}) // redelivered
				}
			}
			evs = append(evs, ev{k, 3001}) // the last is seen: a trailing loss is not knowable
		}
		// Shuffle locally (reordering within 30 positions).
		for i := range evs {
			j := min(len(evs)-1, i+rng.IntN(30))
			evs[i], evs[j] = evs[j], evs[i]
		}
		var lost []Loss
		now := time.Unix(0, 0)
		seen1 := map[Key]bool{}
		for _, e := range evs {
			if !seen1[e.k] && e.n != 1 {
				// keep the test's premise: the key's start is its number 1
				lost = tr.Observe(e.k, 1, now, lost)
			}
			seen1[e.k] = true
			lost = tr.Observe(e.k, e.n, now, lost)
		}
		lost = tr.Sweep(now.Add(time.Minute), lost)
		if total(lost) != want {
			t.Fatalf("seed %d: lost %d, want %d", seed, total(lost), want)
		}
	}
}

func TestFinishCountsLostTail(t *testing.T) {
	tr := New(Config{})
	k := Key{Origin: 1, Venue: "v", Instrument: "i"}
	now := time.Unix(0, 0)
	var lost []Loss
	for _, n := range []uint64{1, 2, 4, 5} {
		lost = tr.Observe(k, n, now, lost)
	}
	lost = tr.Finish(k, 9, lost) // 3 in a hole, 6-9 the lost tail
	if total(lost) != 5 || len(lost) != 2 || lost[1] != (Loss{Key: k, From: 6, To: 9}) {
		t.Fatalf("lost %v", lost)
	}
	never := Key{Origin: 1, Venue: "v", Instrument: "j"}
	if lost = tr.Finish(never, 3, nil); total(lost) != 3 {
		t.Fatalf("a key nothing of which arrived: %v", lost)
	}
	if lost = tr.Finish(k, 9, nil); len(lost) != 0 {
		t.Fatalf("finished twice: %v", lost)
	}
}
