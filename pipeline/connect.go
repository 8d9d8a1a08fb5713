package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/signald-dev/signald/internal/dsn"
	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

// retryConnect calls open until it succeeds or wait has passed, with jittered
// exponential backoff (100 ms doubling to 5 s). Servers started alongside
// signald (systemd, compose, a restarting test server) may refuse for a few
// seconds; wait 0 keeps the fail-fast start-up that reports a wrong address at
// once. An error that permanent reports (refused credentials, a certificate
// that does not verify) is returned at once: waiting does not change it. The
// last error is returned, so the message says what failed.
func retryConnect[T any](ctx context.Context, log *slog.Logger, what string, wait time.Duration, permanent func(error) bool, open func() (T, error)) (T, error) {
	deadline := time.Now().Add(wait)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := open()
		if err == nil || wait <= 0 || ctx.Err() != nil || permanent != nil && permanent(err) {
			return v, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return v, err
		}
		sleep := min(backoff/2+rand.N(backoff/2+1), left)
		log.Warn("waiting for "+what, "attempt", attempt, "retry_in", sleep.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// permanentConnectErr reports the failures to open Redis or ClickHouse that
// retrying cannot cure.
func permanentConnectErr(err error) bool {
	return errors.Is(err, transport.ErrAuth) || errors.Is(err, store.ErrAuth) || dsn.IsTLSVerify(err)
}
