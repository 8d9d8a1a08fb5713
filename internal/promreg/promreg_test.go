package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func counter(help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "signald_test_things_total", Help: help})
}

func TestRegisterNil(t *testing.T) {
	c := counter("Things.")
	got, err := Register(nil, c)
	if err != nil || got != c {
		t.Fatalf("nil registry: %v, %v", got, err)
	}
	got.Inc() // usable, just not exported
}

// A second identical collector is the first one: both instances count in
// one series.
func TestRegisterShares(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a, err := Register(reg, counter("Things."))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(reg, counter("Things."))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("the second registration did not return the registered collector")
	}
	a.Inc()
	b.Inc()
	if n := testutil.ToFloat64(a); n != 2 {
		t.Fatalf("shared series at %v, want 2", n)
	}
	if n, err := testutil.GatherAndCount(reg, "signald_test_things_total"); err != nil || n != 1 {
		t.Fatalf("%d series (%v), want 1", n, err)
	}
	// Vectors share the same way.
	vec := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "signald_test_by_kind_total", Help: "By kind."}, []string{"kind"})
	}
	v1, err := Register(reg, vec())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := Register(reg, vec())
	if err != nil || v1 != v2 {
		t.Fatalf("vector: same %v, %v", v1 == v2, err)
	}
}

// A conflicting collector (same name, other help) is an error, with the
// registry's message, and the collector given back unregistered.
func TestRegisterConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := Register(reg, counter("Things.")); err != nil {
		t.Fatal(err)
	}
	c := counter("Other things.")
	got, err := Register(reg, c)
	if err == nil || got != c {
		t.Fatalf("conflict: %v, %v", got, err)
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		t.Fatalf("conflict reported as already registered: %v", err)
	}
	// An identical description already registered by a collector of
	// another kind is not shared: the registry's error, and c.
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "signald_test_seconds", Help: "Seconds."})
	if _, err := Register(reg, h); err != nil {
		t.Fatal(err)
	}
	c2 := prometheus.NewCounter(prometheus.CounterOpts{Name: "signald_test_seconds", Help: "Seconds."})
	got2, err := Register(reg, c2)
	if !errors.As(err, &are) || got2 != c2 {
		t.Fatalf("counter over a histogram: %v, %v", got2 == c2, err)
	}
}
