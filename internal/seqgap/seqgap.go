// Package seqgap counts what was lost between a producer and a consumer
// from the sequence numbers that arrive: each producer run (origin) numbers
// its ticks 1, 2, 3... per venue and instrument, and a consumer that sees
// the numbers jump knows how many ticks it will never see.
//
// Arrival is at-least-once and only roughly in order (a failed batch is
// retried after later ones succeeded), so a missing number is not lost at
// once: it is a hole until no number past it has arrived for Delay, or
// until more than MaxPending numbers wait behind holes of one key. Numbers
// at or below a key's high-water mark (redeliveries, or holes already
// counted) are ignored. A key's first number sets its start: what an origin
// sent before the consumer first heard of it cannot be known without state
// kept across restarts.
package seqgap

import (
	"slices"
	"time"
)

// Key identifies one numbered sequence.
type Key struct {
	Origin            uint64
	Venue, Instrument string
}

// Config tunes a Tracker; the zero value works.
type Config struct {
	// Delay is how long a hole may wait for its numbers. Default 60s.
	Delay time.Duration
	// MaxPending bounds the numbers kept behind holes per key. Default 65536.
	MaxPending int
}

// Tracker follows many keys. It is not safe for concurrent use.
type Tracker struct {
	cfg  Config
	keys map[Key]*seq
}

type seq struct {
	hwm     uint64    // every number <= hwm arrived or was counted lost
	pending []arrival // numbers > hwm+1 that arrived, ascending
}

type arrival struct {
	n  uint64
	at int64
}

// Loss is a run of numbers of one key counted lost.
type Loss struct {
	Key      Key
	From, To uint64 // inclusive
}

// Count is the number of ticks in the run.
func (l Loss) Count() uint64 { return l.To - l.From + 1 }

// New returns an empty tracker.
func New(cfg Config) *Tracker {
	if cfg.Delay <= 0 {
		cfg.Delay = 60 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1 << 16
	}
	return &Tracker{cfg: cfg, keys: make(map[Key]*seq)}
}

// Observe records number n of key k arriving at now, and appends to lost
// the runs it makes certain (numbers that overflowed MaxPending).
func (t *Tracker) Observe(k Key, n uint64, now time.Time, lost []Loss) []Loss {
	if n == 0 {
		return lost // not sequenced
	}
	s := t.keys[k]
	if s == nil {
		t.keys[k] = &seq{hwm: n}
		return lost
	}
	switch {
	case n <= s.hwm:
		return lost // a redelivery, or counted already
	case n == s.hwm+1:
		s.hwm = n
		s.absorb()
		return lost
	}
	i, found := slices.BinarySearchFunc(s.pending, n, func(a arrival, n uint64) int {
		switch {
		case a.n < n:
			return -1
		case a.n > n:
			return 1
		}
		return 0
	})
	if !found {
		s.pending = slices.Insert(s.pending, i, arrival{n: n, at: now.UnixNano()})
	}
	for len(s.pending) > t.cfg.MaxPending {
		lost = s.skipHole(k, lost)
	}
	return lost
}

// Sweep counts the holes whose next arrived number is older than Delay,
// appending them to lost. Call it periodically.
func (t *Tracker) Sweep(now time.Time, lost []Loss) []Loss {
	cut := now.Add(-t.cfg.Delay).UnixNano()
	for k, s := range t.keys {
		for len(s.pending) > 0 && s.pending[0].at <= cut {
			lost = s.skipHole(k, lost)
		}
	}
	return lost
}

// Finish is for a producer that knows its last number: once everything it
// sent was handled, the numbers of k after the last arrival up to last (a
// lost tail, which no later arrival can reveal) are counted lost, as the
// open holes are by Sweep.
func (t *Tracker) Finish(k Key, last uint64, lost []Loss) []Loss {
	s := t.keys[k]
	if s == nil {
		if last > 0 {
			lost = append(lost, Loss{Key: k, From: 1, To: last})
		}
		t.keys[k] = &seq{hwm: last}
		return lost
	}
	for len(s.pending) > 0 {
		lost = s.skipHole(k, lost)
	}
	if s.hwm < last {
		lost = append(lost, Loss{Key: k, From: s.hwm + 1, To: last})
		s.hwm = last
	}
	return lost
}

// Holes reports how many numbers are missing behind pending ones now (not
// yet counted lost).
func (t *Tracker) Holes() uint64 {
	var h uint64
	for _, s := range t.keys {
		last := s.hwm
		for _, a := range s.pending {
			h += a.n - last - 1
			last = a.n
		}
	}
	return h
}

// skipHole counts the hole before the first pending number lost.
func (s *seq) skipHole(k Key, lost []Loss) []Loss {
	first := s.pending[0].n
	lost = append(lost, Loss{Key: k, From: s.hwm + 1, To: first - 1})
	s.hwm = first
	s.pending = s.pending[1:]
	s.absorb()
	return lost
}

// absorb advances hwm over pending numbers that became contiguous.
func (s *seq) absorb() {
	i := 0
	for i < len(s.pending) && s.pending[i].n == s.hwm+1 {
		s.hwm++
		i++
	}
	if i > 0 {
		s.pending = s.pending[i:]
	}
	if len(s.pending) == 0 {
		s.pending = nil // let a long-drained backing array go
	}
}
