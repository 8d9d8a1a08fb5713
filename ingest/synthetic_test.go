package ingest

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/signald-dev/signald/market"
)

func runSynthetic(t *testing.T, cfg SyntheticConfig) []market.Tick {
	t.Helper()
	s, err := NewSynthetic(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []market.Tick
	if err := s.Run(context.Background(), func(b []market.Tick) error {
		out = append(out, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSyntheticDeterministic: the same config gives the same ticks, another
// seed other ticks; times are ordered and within the configured span.
func TestSyntheticDeterministic(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := SyntheticConfig{Instruments: 40, Seed: 7, Start: start, Unpaced: true, Duration: 30 * time.Second}
	a, b := runSynthetic(t, cfg), runSynthetic(t, cfg)
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d and %d ticks", len(a), len(b))
	}
	for i := range a {
		a[i].IngestTS, b[i].IngestTS = 0, 0
		if a[i] != b[i] {
			t.Fatalf("tick %d differs:\n%+v\n%+v", i, a[i], b[i])
		}
	}
	cfg.Seed = 8
	c := runSynthetic(t, cfg)
	same := len(c) == len(a)
	for i := 0; same && i < len(a); i++ {
		same = a[i].ID == c[i].ID
	}
	if same {
		t.Fatal("seed 8 gave the ticks of seed 7")
	}
	end := start.Add(cfg.Duration).UnixNano()
	for i := range a {
		if a[i].RecvTS < start.UnixNano() || a[i].RecvTS > end {
			t.Fatalf("tick %d at %v, outside the span", i, time.Unix(0, a[i].RecvTS))
		}
		if i > 0 && a[i].RecvTS < a[i-1].RecvTS {
			t.Fatalf("tick %d goes back in time", i)
		}
	}
}

// TestSyntheticShape: every slot's instrument ticks, at about the configured
// rates, with sane quotes; every tenth slot shares its name with another
// venue; regimes change the volatility.
func TestSyntheticShape(t *testing.T) {
	const n, secs = 50, 600
	cfg := SyntheticConfig{Instruments: n, Seed: 1, Start: time.Unix(1e9, 0), Unpaced: true, Duration: secs * time.Second}
	s, _ := NewSynthetic(cfg, nil, nil)
	ids := s.Instruments()
	ticks := runSynthetic(t, cfg)
	quotes, trades := map[string]int{}, map[string]int{}
	byName := map[string]map[string]bool{}
	rets := map[string][]float64{}
	lastMid := map[string]float64{}
	for _, k := range ticks {
		id := k.Venue + ":" + k.Instrument
		if byName[k.Instrument] == nil {
			byName[k.Instrument] = map[string]bool{}
		}
		byName[k.Instrument][k.Venue] = true
		switch k.Kind {
		case market.KindQuote:
			quotes[id]++
			if !(k.BidPx > 0 && k.AskPx > k.BidPx && k.BidSz > 0 && k.AskSz > 0) {
				t.Fatalf("bad quote %+v", k)
			}
			mid := (k.BidPx + k.AskPx) / 2
			if m, ok := lastMid[id]; ok {
				rets[id] = append(rets[id], math.Log(mid/m))
			}
			lastMid[id] = mid
		case market.KindTrade:
			trades[id]++
			if k.Price <= 0 || k.Size <= 0 || k.Side == market.SideUnknown {
				t.Fatalf("bad trade %+v", k)
			}
		default:
			t.Fatalf("unexpected kind %v", k.Kind)
		}
	}
	if len(quotes) != n {
		t.Fatalf("%d instruments quoted, want %d", len(quotes), n)
	}
	for _, id := range ids {
		// Poisson(1200) quotes and Poisson(600) trades: far from these bounds.
		if q, tr := quotes[id], trades[id]; q < 1000 || q > 1400 || tr < 450 || tr > 750 {
			t.Fatalf("%s: %d quotes, %d trades in %d s", id, q, tr, secs)
		}
	}
	shared := 0
	for name, venues := range byName {
		if len(venues) == 2 {
			shared++
		} else if len(venues) != 1 {
			t.Fatalf("%s on %d venues", name, len(venues))
		}
	}
	if shared != n/10 {
		t.Fatalf("%d names on two venues, want %d", shared, n/10)
	}
	// Regime changes show as volatility clustering: the largest rolling
	// 60-quote std is well above the smallest, somewhere.
	ratio := 0.0
	for _, r := range rets {
		lo, hi := math.Inf(1), 0.0
		for i := 60; i+60 <= len(r); i += 60 {
			var ss float64
			for _, x := range r[i : i+60] {
				ss += x * x
			}
			lo, hi = min(lo, ss), max(hi, ss)
		}
		ratio = max(ratio, hi/lo)
	}
	if ratio < 9 { // volatile is 4x calm in sigma: 16x in variance
		t.Fatalf("max variance ratio %.1f: no regime changes seen", ratio)
	}
	if !strings.HasPrefix(ids[0], "synth-a:SYN00-USD") {
		t.Fatalf("first id %q", ids[0])
	}
}

func TestSyntheticBadConfig(t *testing.T) {
	for _, c := range []SyntheticConfig{{Instruments: -1}, {QuoteRate: -1}, {Venues: []string{"a:b"}}, {Venues: []string{"a", "a"}}, {Frame: time.Microsecond}} {
		if _, err := NewSynthetic(c, nil, nil); err == nil {
			t.Fatalf("%+v: no error", c)
		}
	}
}
