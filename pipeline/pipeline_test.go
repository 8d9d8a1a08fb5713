package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signald-dev/signald/regime"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// refusing is a registry that refuses the collectors whose metric names
// start with prefix.
type refusing struct {
	*prometheus.Registry
	prefix string
}

func (r refusing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	var refused error
	for d := range ch {
		if strings.Contains(d.String(), `"`+r.prefix) {
			refused = errors.New("refused: " + d.String())
		}
	}
	if refused != nil {
		return refused
	}
	return r.Registry.Register(c)
}

func (r refusing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// closeCounting counts the Close calls of a backend and a store.
type closeCounting struct{ backend, store int }

type countedBackend struct {
	transport.Backend
	n *int
}

func (b countedBackend) Close() error { *b.n++; return b.Backend.Close() }

type countedStore struct {
	store.Store
	n *int
}

func (s countedStore) Close() error { *s.n++; return s.Store.Close() }

func countedConfig(t *testing.T, c *closeCounting) Config {
	st, err := store.OpenParquet(store.ParquetOptions{Dir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Backend: countedBackend{transport.NewMemory(), &c.backend}, Store: countedStore{st, &c.store}, DataDir: t.TempDir()}
}

// TestNewClosesOnFailure: when the engine or the detectors cannot be built,
// New closes the backend and the store it was given.
func TestNewClosesOnFailure(t *testing.T) {
	narrow := *regime.DefaultModel()
	narrow.Inputs.Window = 7 // the engine has no mid_ret_mean_7
	for _, c := range []struct {
		name, want string
		setup      func(cfg *Config) prometheus.Registerer
	}{
		{"detectors", "mid_ret_mean_7", func(cfg *Config) prometheus.Registerer {
			cfg.Model = &narrow
			return prometheus.NewRegistry()
		}},
		{"engine", "signald_features_", func(cfg *Config) prometheus.Registerer {
			return refusing{prometheus.NewRegistry(), "signald_features_"}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n closeCounting
			cfg := countedConfig(t, &n)
			reg := c.setup(&cfg)
			p, err := New(context.Background(), cfg, nil, reg)
			if err == nil || p != nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, %v", p, err)
			}
			if n.backend != 1 || n.store != 1 {
				t.Fatalf("closed the backend %d times, the store %d times; want once each", n.backend, n.store)
			}
		})
	}
}

// TestCloseIdempotent: Close closes the backend and the store once, however
// often it is called.
func TestCloseIdempotent(t *testing.T) {
	var n closeCounting
	p, err := New(context.Background(), countedConfig(t, &n), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n.backend != 1 || n.store != 1 {
		t.Fatalf("closed the backend %d times, the store %d times; want once each", n.backend, n.store)
	}
}
