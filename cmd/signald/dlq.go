package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/signald-dev/signald/transport"
)

// cmdDLQ inspects and empties the dead-letter stream: list shows what is
// there and why; replay puts each entry back on its original stream (once its
// cause is fixed) and removes it from the dead letters; purge removes them.
func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("signald dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: signald dlq list|replay|purge [flags]")
		fs.PrintDefaults()
	}
	redisAddr, cluster, sec := new(string), new(bool), new(secretFlags)
	addRedisFlags(fs, redisAddr, cluster, sec, "of the transport (env SIGNALD_REDIS_ADDR)")
	prefix := fs.String("stream-prefix", "sd", "prefix of the stream keys (as given to signald run)")
	limit := fs.Int("limit", 0, "at most this many entries (0 = all)")
	yes := fs.Bool("yes", false, "purge: really delete")
	force := fs.Bool("force", false, "replay: also the final dead letters (failed again after a replay); fix their cause first")
	if len(args) == 0 {
		fs.Usage()
		return errors.New("say list, replay or purge")
	}
	verb := args[0]
	switch verb {
	case "list", "replay", "purge":
	case "-h", "-help", "--help":
		fs.Usage()
		return flag.ErrHelp
	default:
		fs.Usage()
		return fmt.Errorf("unknown action %q: want list, replay or purge", verb)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *redisAddr == "" {
		return errors.New("--redis is required (the in-process transport's dead letters live only inside its daemon)")
	}
	if *limit < 0 {
		return fmt.Errorf("--limit %d: must be >= 0", *limit)
	}
	ro, err := redisOptions(*redisAddr, *cluster, *sec)
	if err != nil {
		return err
	}
	if sec.TLS.Insecure {
		fmt.Fprintln(stderr, "signald dlq: --redis-tls-insecure: the server's certificate is not verified (for tests only)")
	}
	b, err := transport.NewRedis(ctx, ro)
	if err != nil {
		return explainConnectError("Redis", err)
	}
	defer b.Close()
	dlq := *prefix + ":dlq"
	entries, err := b.Range(ctx, dlq, "-", "+", *limit)
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			d, err := transport.ParseDeadLetter(e.Payload)
			if err != nil {
				enc.Encode(map[string]string{"dlq_id": e.ID, "error": err.Error()})
				continue
			}
			enc.Encode(struct {
				DLQID string `json:"dlq_id"`
				transport.DeadLetter
				PayloadBytes int `json:"payload_bytes"`
			}{e.ID, d, len(d.Payload)})
		}
		fmt.Fprintf(stderr, "%d dead letters in %s\n", len(entries), dlq)
	case "replay":
		n, final := 0, 0
		for _, e := range entries {
			d, err := transport.ParseDeadLetter(e.Payload)
			if err != nil {
				fmt.Fprintf(stderr, "skipping %s: %v\n", e.ID, err)
				continue
			}
			// Back to the groups that failed it only, marked so that a
			// second failure makes it final instead of a loop.
			groups, err := transport.ReplayDeadLetter(ctx, b, dlq, e.ID, d, transport.ReplayOptions{Force: *force})
			if errors.Is(err, transport.ErrFinal) {
				final++
				continue
			}
			if err != nil {
				return fmt.Errorf("replay %s: %w (replayed %d so far)", e.ID, err, n)
			}
			fmt.Fprintf(stderr, "replayed %s (%s %s) for %s\n", e.ID, d.Stream, d.ID, strings.Join(groups, ", "))
			n++
		}
		fmt.Fprintf(stderr, "replayed %d of %d dead letters from %s\n", n, len(entries), dlq)
		if final > 0 {
			fmt.Fprintf(stderr, "%d final dead letters (they failed again after a replay) left in place: fix their cause, then replay with --force\n", final)
		}
	case "purge":
		if !*yes {
			return fmt.Errorf("dlq purge: would delete %d dead letters from %s; add --yes", len(entries), dlq)
		}
		ids := make([]string, len(entries))
		for i, e := range entries {
			ids[i] = e.ID
		}
		n, err := b.Delete(ctx, dlq, ids...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "purged %d dead letters from %s\n", n, dlq)
	}
	return nil
}
