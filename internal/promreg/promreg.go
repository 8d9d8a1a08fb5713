// Package promreg registers Prometheus collectors the way every signald
// component does: on a registry that may be nil (no metrics), and sharing
// series with another instance of the component on the same registry.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns the collector to use: c, or,
// when an identical collector is already registered (by another engine or
// detector sharing the registry), that one, so that several instances add
// up in the same series. With a nil reg it returns c unregistered. Any
// other registration error (same name, different help or labels) is
// returned as it is, with c; callers add their package's context.
func Register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
