// Command httpload measures the HTTP API of `signald run` from a second
// process: it starts the daemon on a synthetic market (or targets -url),
// waits for the first feature step, times the first /v1/macro response, and
// then runs C concurrent keep-alive clients against /v1/macro and, in the
// same run and alternating with it, against /healthz, the baseline: the
// cheapest answer the same server, mux and metrics middleware give. A last
// phase revalidates /v1/macro with If-None-Match.
//
//	go run ./bench/httpload -instruments 1000 -clients 200 -duration 4s -rounds 5
//
// -rate 0 (the default) runs closed loop: each client sends its next
// request when the previous answer is read, so latency includes queueing
// behind the other clients (Little's law: clients / throughput). -rate R
// runs open loop at R requests/s in all, spread over the clients, with
// latency measured from each request's scheduled time (no coordinated
// omission).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "", "signald binary (default: go build ./cmd/signald into a temporary directory)")
	target := flag.String("url", "", "measure a running signald at this base URL (e.g. http://127.0.0.1:8080) instead of starting one")
	instruments := flag.Int("instruments", 1000, "synthetic instruments of the daemon started")
	clients := flag.Int("clients", 200, "concurrent keep-alive clients")
	dur := flag.Duration("duration", 4*time.Second, "length of each measured phase")
	rounds := flag.Int("rounds", 5, "macro/healthz phase pairs, alternating (short phases, many rounds: both endpoints see the same machine load)")
	warm := flag.Duration("warmup", 3*time.Second, "unmeasured load on /v1/macro before the phases")
	rate := flag.Float64("rate", 0, "open loop: total requests/s over all clients; 0 = closed loop")
	arrowPhase := flag.Bool("arrow", false, "also measure /v1/macro?format=arrow")
	extra := flag.String("args", "", "extra flags for signald run, space-separated (e.g. \"--macro-returns ret --macro-rv rv_60\")")
	flag.Parse()
	if *clients < 1 || *rounds < 1 || *dur <= 0 {
		fatal("-clients, -rounds and -duration must be positive")
	}

	base := strings.TrimSuffix(*target, "/")
	if base == "" {
		var stop func()
		var err error
		base, stop, err = startDaemon(*bin, *instruments, strings.Fields(*extra))
		if err != nil {
			fatal("%v", err)
		}
		defer stop()
	}
	first, err := firstResponse(base)
	if err != nil {
		fatal("first response: %v", err)
	}
	fmt.Printf("signald httpload: %s, %d clients, %s, %d x %v per endpoint\n", describe(*target, *instruments), *clients, mode(*rate), *rounds, *dur)
	fmt.Printf("first /v1/macro after the first step: %.2f ms for the request (fresh connection, first request to the endpoint); %.2f ms from the step's publication to the full response\n",
		ms(first.request), ms(first.sincePublished))
	fmt.Printf("macro body: %d bytes JSON (%d instruments in it)\n", first.bodyLen, first.instruments)

	tr := &http.Transport{MaxIdleConnsPerHost: *clients, MaxConnsPerHost: *clients, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	load := &loader{client: &http.Client{Transport: tr}, clients: *clients, rate: *rate}
	load.run(base+"/v1/macro", *warm, false) // connections up, caches warm

	res := map[string]*stats{}
	add := func(name string, s *stats) {
		if res[name] == nil {
			res[name] = &stats{}
		}
		res[name].merge(s)
	}
	// phase runs one load phase and reads the server's own handler time for
	// it from /metrics (signald_http_request_duration_seconds).
	phase := func(name, path, handler string, revalidate bool) {
		h0 := scrapeHandler(base, handler)
		st := load.run(base+path, *dur, revalidate)
		st.srv = scrapeHandler(base, handler).sub(h0)
		add(name, st)
	}
	for range *rounds {
		phase("/v1/macro", "/v1/macro", "macro", false)
		phase("/healthz", "/healthz", "healthz", false)
	}
	phase("/v1/macro If-None-Match", "/v1/macro", "macro", true)
	if *arrowPhase {
		phase("/v1/macro?format=arrow", "/v1/macro?format=arrow", "macro", false)
	}

	fmt.Printf("%-26s %9s %9s %8s %8s %8s %8s %7s %8s %12s %13s\n", "endpoint", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "304 %", "srv mean us", "srv p99 <= us")
	order := []string{"/v1/macro", "/healthz", "/v1/macro If-None-Match", "/v1/macro?format=arrow"}
	for _, name := range order {
		s := res[name]
		if s == nil {
			continue
		}
		s.sort()
		fmt.Printf("%-26s %9d %9.0f %8.3f %8.3f %8.3f %8.3f %7d %8.1f %12.1f %13.0f\n", name, len(s.lat), s.rps(),
			ms(s.q(0.5)), ms(s.q(0.9)), ms(s.q(0.99)), ms(s.q(1)), s.errors, 100*float64(s.notModified)/float64(max(1, len(s.lat))),
			s.srv.sum/max(1, s.srv.count)*1e6, s.srv.quantile(0.99)*1e6)
	}
	m, h := res["/v1/macro"], res["/healthz"]
	fmt.Printf("ratio /v1/macro : /healthz   p50 %.2f   p99 %.2f   req/s %.2f\n",
		float64(m.q(0.5))/float64(h.q(0.5)), float64(m.q(0.99))/float64(h.q(0.99)), m.rps()/h.rps())
	if m.errors+h.errors+res["/v1/macro If-None-Match"].errors > 0 {
		os.Exit(1)
	}
}

func describe(target string, n int) string {
	if target != "" {
		return target
	}
	return fmt.Sprintf("daemon on %d synthetic instruments", n)
}

func mode(rate float64) string {
	if rate == 0 {
		return "closed loop"
	}
	return fmt.Sprintf("open loop at %.0f req/s", rate)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "httpload: "+f+"\n", a...)
	os.Exit(1)
}

// startDaemon builds (unless bin is given) and starts signald on a synthetic
// market with the embedded transport and a Parquet store in a temporary
// directory, and returns its base URL and a stop function.
func startDaemon(bin string, instruments int, extra []string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "signald-httpload")
	if err != nil {
		return "", nil, err
	}
	if bin == "" {
		bin = filepath.Join(dir, "signald")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/signald").CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("go build ./cmd/signald: %v\n%s", err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"run", "--synthetic", strconv.Itoa(instruments), "--data", filepath.Join(dir, "data"),
		"--http", addr, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if s := stderr.String(); strings.Contains(s, "level=ERROR") {
			fmt.Fprintf(os.Stderr, "daemon errors:\n%s", s)
		}
		os.RemoveAll(dir)
	}
	go func() {
		<-done
		if cmd.ProcessState != nil && !cmd.ProcessState.Success() && cmd.ProcessState.ExitCode() != -1 {
			fmt.Fprintf(os.Stderr, "daemon exited: %v\n%s", cmd.ProcessState, stderr.String())
		}
	}()
	return "http://" + addr, stop, nil
}

type firstResult struct {
	request, sincePublished time.Duration
	bodyLen, instruments    int
}

// firstResponse polls /readyz until the daemon reports its first step, then
// sends the first /v1/macro request on a fresh connection.
func firstResponse(base string) (firstResult, error) {
	poll := &http.Client{Transport: &http.Transport{}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	var published int64
	for {
		resp, err := poll.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			steps, _ := strconv.ParseInt(resp.Header.Get("X-Signald-Step"), 10, 64)
			if resp.StatusCode == 200 && steps >= 1 {
				published, _ = strconv.ParseInt(resp.Header.Get("X-Signald-First-Step-Unix-Nano"), 10, 64)
				break
			}
		}
		if time.Now().After(deadline) {
			return firstResult{}, errors.New("no feature step within 2 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	fresh := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	start := time.Now()
	resp, err := fresh.Get(base + "/v1/macro")
	if err != nil {
		return firstResult{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	end := time.Now()
	if err != nil || resp.StatusCode != 200 {
		return firstResult{}, fmt.Errorf("status %d, %v", resp.StatusCode, err)
	}
	r := firstResult{request: end.Sub(start), sincePublished: time.Duration(end.UnixNano() - published), bodyLen: len(body)}
	if i := bytes.Index(body, []byte(`"instruments":`)); i >= 0 {
		rest := body[i+len(`"instruments":`):]
		j := bytes.IndexAny(rest, ",}")
		r.instruments, _ = strconv.Atoi(string(rest[:max(j, 0)]))
	}
	return r, nil
}

type loader struct {
	client  *http.Client
	clients int
	rate    float64
}

type stats struct {
	lat         []time.Duration
	errors      int
	notModified int
	elapsed     time.Duration
	srv         serverHist // server-side handler time, from /metrics
}

func (s *stats) merge(o *stats) {
	s.lat = append(s.lat, o.lat...)
	s.errors += o.errors
	s.notModified += o.notModified
	s.elapsed += o.elapsed
	s.srv.add(o.srv)
}

func (s *stats) sort() { slices.Sort(s.lat) }

func (s *stats) q(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	return s.lat[min(len(s.lat)-1, int(p*float64(len(s.lat))))]
}

func (s *stats) rps() float64 { return float64(len(s.lat)) / s.elapsed.Seconds() }

// run sends requests to url from every client for d. With revalidate, each
// client sends If-None-Match with the ETag of its last full response.
func (l *loader) run(url string, d time.Duration, revalidate bool) *stats {
	var wg sync.WaitGroup
	per := make([]stats, l.clients)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var interval time.Duration
	if l.rate > 0 {
		interval = time.Duration(float64(l.clients) / l.rate * 1e9)
	}
	for c := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &per[c]
			st.lat = make([]time.Duration, 0, 1024)
			req, _ := http.NewRequest("GET", url, nil)
			etag := ""
			next := start.Add(interval * time.Duration(c) / time.Duration(l.clients)) // spread the clients
			for ctx.Err() == nil {
				t0 := time.Now()
				if interval > 0 {
					if w := time.Until(next); w > 0 {
						select {
						case <-time.After(w):
						case <-ctx.Done():
							return
						}
					}
					t0 = next // latency from the scheduled time
					next = next.Add(interval)
				}
				if revalidate && etag != "" {
					req.Header.Set("If-None-Match", etag)
				}
				resp, err := l.client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						st.errors++
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				st.lat = append(st.lat, time.Since(t0))
				switch {
				case resp.StatusCode == 304 && revalidate:
					st.notModified++
				case resp.StatusCode == 200:
					etag = resp.Header.Get("ETag")
				default:
					st.errors++
				}
			}
		}()
	}
	wg.Wait()
	out := &stats{elapsed: time.Since(start)}
	for i := range per {
		out.merge(&per[i])
	}
	out.elapsed = time.Since(start)
	return out
}

// serverHist is signald_http_request_duration_seconds of one handler, as
// scraped from /metrics: sum, count and cumulative bucket counts.
type serverHist struct {
	sum, count float64
	les        []float64
	cum        []float64
}

func (h serverHist) sub(o serverHist) serverHist {
	d := serverHist{sum: h.sum - o.sum, count: h.count - o.count, les: h.les}
	for i := range h.cum {
		c := h.cum[i]
		if i < len(o.cum) {
			c -= o.cum[i]
		}
		d.cum = append(d.cum, c)
	}
	return d
}

func (h *serverHist) add(o serverHist) {
	h.sum += o.sum
	h.count += o.count
	if h.les == nil {
		h.les, h.cum = o.les, make([]float64, len(o.cum))
	}
	for i := range min(len(h.cum), len(o.cum)) {
		h.cum[i] += o.cum[i]
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h serverHist) quantile(q float64) float64 {
	for i, c := range h.cum {
		if c >= q*h.count && h.count > 0 {
			return h.les[i]
		}
	}
	return math.Inf(1)
}

// scrapeHandler reads the handler's request duration histogram from
// /metrics (empty when unavailable).
func scrapeHandler(base, handler string) serverHist {
	var h serverHist
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return h
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	label := `{handler="` + handler + `"} `
	bucket := `signald_http_request_duration_seconds_bucket{handler="` + handler + `",le="`
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "signald_http_request_duration_seconds_sum"+label); ok {
			h.sum, _ = strconv.ParseFloat(v, 64)
		} else if v, ok := strings.CutPrefix(line, "signald_http_request_duration_seconds_count"+label); ok {
			h.count, _ = strconv.ParseFloat(v, 64)
		} else if rest, ok := strings.CutPrefix(line, bucket); ok {
			le, n, _ := strings.Cut(rest, `"} `)
			lv, err1 := strconv.ParseFloat(le, 64)
			nv, err2 := strconv.ParseFloat(n, 64)
			if err1 == nil && err2 == nil {
				h.les, h.cum = append(h.les, lv), append(h.cum, nv)
			}
		}
	}
	return h
}
