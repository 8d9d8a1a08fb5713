package pipeline

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/signald-dev/signald/store"
	"github.com/signald-dev/signald/transport"
)

func TestRetryConnect(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	refused := errors.New("refused")
	failing := func(n int, calls *int) func() (int, error) {
		return func() (int, error) {
			*calls++
			if *calls <= n {
				return 0, refused
			}
			return 42, nil
		}
	}

	// wait 0: one attempt, its error.
	calls := 0
	if _, err := retryConnect(context.Background(), log, "x", 0, nil, failing(1, &calls)); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("wait 0: err %v after %d calls, want refused after 1", err, calls)
	}
	// Within the wait: retried until it opens.
	calls = 0
	v, err := retryConnect(context.Background(), log, "x", time.Minute, nil, failing(3, &calls))
	if err != nil || v != 42 || calls != 4 {
		t.Fatalf("got %d, %v after %d calls, want 42 after 4", v, err, calls)
	}
	// Past the wait: the last error.
	calls = 0
	if _, err := retryConnect(context.Background(), log, "x", 250*time.Millisecond, nil, failing(1<<30, &calls)); !errors.Is(err, refused) || calls < 2 {
		t.Fatalf("bounded wait: err %v after %d calls, want refused after several", err, calls)
	}
	// A cancelled context ends the wait.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	done := make(chan error, 1)
	go func() {
		_, err := retryConnect(ctx, log, "x", time.Hour, nil, failing(1<<30, &calls))
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, refused) {
			t.Fatalf("cancelled: err %v, want the last error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancelling did not end the wait")
	}
}

// TestRetryConnectPermanent: an error the predicate calls permanent ends
// the wait at once.
func TestRetryConnectPermanent(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	calls := 0
	_, err := retryConnect(context.Background(), log, "x", time.Hour, permanentConnectErr, func() (int, error) {
		calls++
		return 0, fmt.Errorf("redis 127.0.0.1:1: %w: WRONGPASS", transport.ErrAuth)
	})
	if !errors.Is(err, transport.ErrAuth) || calls != 1 {
		t.Fatalf("refused credentials: err %v after %d calls, want ErrAuth after 1", err, calls)
	}
	calls = 0
	_, err = retryConnect(context.Background(), log, "x", time.Hour, permanentConnectErr, func() (int, error) {
		calls++
		return 0, fmt.Errorf("clickhouse h:1: %w", store.ErrAuth)
	})
	if !errors.Is(err, store.ErrAuth) || calls != 1 {
		t.Fatalf("refused ClickHouse credentials: err %v after %d calls, want 1", err, calls)
	}
	calls = 0
	_, err = retryConnect(context.Background(), log, "x", time.Hour, permanentConnectErr, func() (int, error) {
		calls++
		return 0, fmt.Errorf("redis h:1: %w", x509.UnknownAuthorityError{})
	})
	if calls != 1 || err == nil {
		t.Fatalf("unverified certificate: err %v after %d calls, want 1", err, calls)
	}
	if permanentConnectErr(errors.New("dial tcp: connection refused")) {
		t.Fatal("a refused dial is called permanent")
	}
}
