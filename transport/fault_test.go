package transport

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Fault tests against real Redis: each asserts that no entry is lost and
// that duplicates stay within at-least-once bounds and are counted.

// TestMain lets the test binary double as a consumer process that the
// SIGKILL test starts and kills.
func TestMain(m *testing.M) {
	if os.Getenv("SIGNALD_FAULT_CONSUMER") != "" {
		os.Exit(faultConsumerProcess())
	}
	os.Exit(m.Run())
}

// faultConsumerProcess consumes group "g" of the streams in
// SIGNALD_FAULT_STREAMS, and for every entry appends "<id> <payload>" to
// SIGNALD_FAULT_OUT and fsyncs before the batch is acknowledged: the effect
// is stored before the ack, as in the daemon. It handles slowly so that a
// kill lands mid-batch, and prints its redelivered count when it stops.
func faultConsumerProcess() int {
	addr := os.Getenv("SIGNALD_REDIS_ADDR")
	streams := strings.Split(os.Getenv("SIGNALD_FAULT_STREAMS"), ",")
	out, err := os.OpenFile(os.Getenv("SIGNALD_FAULT_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := NewRedis(context.Background(), RedisOptions{Addrs: []string{addr}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c, err := NewConsumer(b, ConsumerConfig{Group: "g", Streams: streams, Consumer: "worker", Count: 50},
		func(ctx context.Context, msgs []Message) error {
			w := bufio.NewWriter(out)
			for _, m := range msgs {
				fmt.Fprintf(w, "%s %s\n", m.ID, m.Payload)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if err := out.Sync(); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond) // the kill lands between effect and ack, often
			return nil
		}, nil, m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signalContext()
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("redelivered %v\n", testutil.ToFloat64(m.redelivered.WithLabelValues("g")))
	return 0
}

func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ch
		cancel()
	}()
	return ctx, cancel
}

// TestFaultConsumerKilled SIGKILLs a consumer process mid-stream, twice,
// and restarts it: every entry's effect is stored, the duplicates are only
// entries the killed process had handled but not acknowledged, and the
// restarted process counts them as redelivered.
func TestFaultConsumerKilled(t *testing.T) {
	b := newRedisBackend(t).(*Redis)
	prefix := uniquePrefix(t, b)
	const n = 6000
	want := publishN(t, b, prefix, 2, n)
	streams := ShardStreams(prefix, 2)
	out := filepath.Join(t.TempDir(), "effects")
	start := func() (*exec.Cmd, *strings.Builder) {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "SIGNALD_FAULT_CONSUMER=1", "SIGNALD_FAULT_STREAMS="+strings.Join(streams, ","),
			"SIGNALD_FAULT_OUT="+out)
		var stdout strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stdout
	}
	handled := func() int {
		b, _ := os.ReadFile(out)
		return strings.Count(string(b), "\n")
	}
	for kill := 1; kill <= 2; kill++ {
		cmd, _ := start()
		target := kill * n / 3
		waitFor(t, fmt.Sprintf("%d effects before kill %d", target, kill), func() bool { return handled() >= target })
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}
	cmd, stdout := start()
	waitFor(t, "every entry's effect", func() bool {
		seen := effects(t, out)
		return len(seen) >= n
	})
	waitFor(t, "nothing pending", func() bool { return totalPending(t, b, streams, "g") == 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consumer after restarts: %v\n%s", err, stdout)
	}
	seen := effects(t, out)
	for s, ps := range want {
		for _, p := range ps {
			if seen[p] == 0 {
				t.Fatalf("entry %s of %s lost", p, s)
			}
		}
	}
	dups := handled() - n
	// Each kill can leave at most the in-flight batches (two readers, one
	// batch of Count each, plus the handler's) handled but unacknowledged.
	if bound := 2 * 3 * 50; dups > bound {
		t.Fatalf("%d duplicate effects after 2 kills, more than the in-flight bound %d", dups, bound)
	}
	var redelivered float64
	fmt.Sscanf(strings.TrimSpace(stdout.String()[strings.LastIndex(stdout.String(), "redelivered"):]), "redelivered %g", &redelivered)
	t.Logf("%d effects for %d entries: %d duplicates; last process re-took %v own pending entries", handled(), n, dups, redelivered)
	if dups > 0 && redelivered == 0 {
		t.Fatalf("%d duplicates but the restarted consumer counted no redelivery", dups)
	}
}

// effects reads the effect file: payload -> times stored.
func effects(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, p, ok := strings.Cut(sc.Text(), " ")
		if ok {
			seen[p]++
		}
	}
	return seen
}

// TestFaultFarBehindWithRetention runs retention aggressively (keep 1ms,
// every 20ms) while one group keeps up and another lags far behind: the
// stream is trimmed as the slow group acknowledges, and the slow group still
// gets every entry, none trimmed before it read it.
func TestFaultFarBehindWithRetention(t *testing.T) {
	for name, f := range map[string]backendFactory{"memory": newMemory, "redis": newRedisBackend} {
		t.Run(name, func(t *testing.T) {
			b := f(t)
			prefix := uniquePrefix(t, b)
			streams := ShardStreams(prefix, 2)
			ctx := context.Background()
			for _, s := range streams {
				for _, g := range []string{"fast", "slow"} {
					if err := b.CreateGroup(ctx, s, g, "0"); err != nil {
						t.Fatal(err)
					}
				}
			}
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			ret, err := NewRetention(b, RetentionConfig{Streams: streams, Groups: []string{"fast", "slow"},
				Keep: time.Millisecond, Interval: 20 * time.Millisecond}, nil, m)
			if err != nil {
				t.Fatal(err)
			}
			fast, slow := newCollector(), newCollector()
			slowH := func(ctx context.Context, msgs []Message) error {
				time.Sleep(10 * time.Millisecond)
				return slow.handle(ctx, msgs)
			}
			mk := func(g string, h Handler, count int) *Consumer {
				c, err := NewConsumer(b, ConsumerConfig{Group: g, Streams: streams, Count: count, MinIdle: time.Second}, h, nil, m)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			runCtx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for _, run := range []func(context.Context) error{ret.Run, mk("fast", fast.handle, 1000).Run, mk("slow", slowH, 40).Run} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := run(runCtx); err != nil {
						t.Error(err)
					}
				}()
			}
			const n = 8000
			want := publishN(t, b, prefix, 2, n)
			waitFor(t, "the fast group", func() bool { return fast.count() >= n })
			behind := n - slow.count()
			waitFor(t, "the slow group", func() bool { return slow.count() >= n })
			waitFor(t, "retention to catch up", func() bool {
				var l int64
				for _, s := range streams {
					x, _ := b.Len(ctx, s)
					l += x
				}
				return l == 0
			})
			cancel()
			wg.Wait()
			for s, ps := range want {
				for _, c := range []*collector{fast, slow} {
					if got := c.seen[s]; len(got) != len(ps) {
						t.Fatalf("%s: %d of %d entries handled", s, len(got), len(ps))
					}
				}
			}
			var trimmed float64
			for _, s := range streams {
				trimmed += testutil.ToFloat64(m.trimmed.WithLabelValues(s))
			}
			lost := testutil.ToFloat64(m.claimDeleted.WithLabelValues("slow"))
			t.Logf("slow group was %d entries behind when the fast one finished; %v entries trimmed meanwhile", behind, trimmed)
			if behind < n/4 {
				t.Fatalf("the slow group was only %d behind: the test did not exercise a far-behind group", behind)
			}
			if trimmed != n || lost != 0 {
				t.Fatalf("trimmed %v (want all %d, once acknowledged), trimmed-before-handled %v (want 0)", trimmed, n, lost)
			}
			for _, s := range streams {
				gi, err := b.Group(ctx, s, "slow")
				if err != nil {
					t.Fatal(err)
				}
				if gi.SkippedUnread() {
					t.Fatalf("%s: group slow reports entries trimmed before it read them: %+v", s, gi)
				}
			}
		})
	}
}
