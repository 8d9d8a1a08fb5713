package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/signald-dev/signald/market"
)

// sampleReport evaluates a synthetic day of 6 instruments with momentum
// trend calls, novelty signals before jumps, regime changes and two features.
func sampleReport(t testing.TB) *Report {
	const n, steps = 6, 4000
	rng := rand.New(rand.NewPCG(21, 21))
	jumps := map[int][]int{}
	var sigs []market.Signal
	const t0 = 1_700_000_000 * sec
	for i := 0; i < n; i++ {
		for s := 300 + rng.IntN(200); s < steps-400; s += 500 + rng.IntN(300) {
			jumps[i] = append(jumps[i], s)
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: instName(i), Type: market.TypeNovelty, State: "novel", Time: t0 + int64(s-6)*sec, Score: 4, ModelVersion: "t"})
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: instName(i), Type: market.TypeRegimeChange, State: "volatile", Time: t0 + int64(s+1)*sec, ModelVersion: "t",
				Values: map[string]float64{"switch": 1, "changepoint": float64(rng.IntN(2))}})
			sigs = append(sigs, market.Signal{Venue: "v", Instrument: instName(i), Type: market.TypeRegimeChange, State: "calm", Time: t0 + int64(s+120)*sec, ModelVersion: "t",
				Values: map[string]float64{"switch": 1}})
		}
	}
	ticks := walk(n, steps, 4e-4, jumps, 0.01, 9)
	// momentum calls on 60-step returns of the step marks
	last := make([]float64, n)
	hist := make([][]float64, n)
	state := make([]string, n)
	for _, tk := range ticks {
		i := int(tk.Instrument[0] - 'A')
		k := int((tk.RecvTS - t0) / sec)
		for len(hist[i]) <= k {
			hist[i] = append(hist[i], last[i])
		}
		last[i] = (tk.BidPx + tk.AskPx) / 2
		hist[i][k] = last[i]
	}
	for i := 0; i < n; i++ {
		for k := 61; k < len(hist[i]); k += 10 {
			r := math.Log(hist[i][k] / hist[i][k-60])
			s := "flat"
			switch {
			case r > 0.004:
				s = "long"
			case r < -0.004:
				s = "short"
			}
			if s != state[i] {
				state[i] = s
				stop := hist[i][k] * (1 - 0.01)
				if s == "short" {
					stop = hist[i][k] * 1.01
				}
				sigs = append(sigs, call(instName(i), t0+int64(k+1)*sec, s, stop))
				sigs[len(sigs)-1].Venue = "v"
			}
		}
	}
	sortSignals(sigs)
	ev, err := New(Options{FeeBps: 2, SpreadFraction: 0.5, Delay: 2 * time.Second, Features: []string{"mom_60", "noise"}})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{"v", instName(i)}
	}
	j, si := 0, 0
	for k := 1; k <= steps; k++ {
		ts := t0 + int64(k)*sec
		for ; si < len(sigs) && sigs[si].Time <= ts; si++ {
			ev.AddSignal(sigs[si])
		}
		mom, noise := make([]float64, n), make([]float64, n)
		for i := range mom {
			mom[i], noise[i] = math.NaN(), rng.NormFloat64()
			if k > 61 && k < len(hist[i]) {
				mom[i] = math.Log(hist[i][k-1] / hist[i][k-61])
			}
		}
		if err := ev.AddFeatures(ts, keys, map[string][]float64{"mom_60": mom, "noise": noise}); err != nil {
			t.Fatal(err)
		}
		start := j
		for j < len(ticks) && ticks[j].RecvTS < ts {
			j++
		}
		ev.AddTicks(ticks[start:j])
	}
	ev.AddTicks(ticks[j:])
	rep, err := ev.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestReportOutputs(t *testing.T) {
	rep := sampleReport(t)
	dir := t.TempDir()
	if out := os.Getenv("SIGNALD_EVALUATE_OUT"); out != "" {
		dir = out // to look at the report
	}
	if err := rep.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	var sum bytes.Buffer
	if err := rep.Summary(&sum); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + sum.String())
	for _, want := range []string{"trend calls: total", "buy and hold", "random timing", "novelty (35 signals), mean |return| after 1, 5, 30, 300 steps", "after volatile", "IC mom_60"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if back.Strategy.Trades != rep.Strategy.Trades || len(back.Instruments) != 6 || len(back.IC) != 8 {
		t.Errorf("report.json: %d trades, %d instruments, %d IC rows", back.Strategy.Trades, len(back.Instruments), len(back.IC))
	}
	rows := map[string]int64{}
	for _, name := range []string{"trades", "equity", "events", "ic"} {
		f, err := file.OpenParquetFile(filepath.Join(dir, name+".parquet"), false)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := r.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rows[name] = tbl.NumRows()
		tbl.Release()
		f.Close()
	}
	if rows["trades"] != int64(len(rep.Trades)) || rows["ic"] != 8 || rows["equity"] < 7*1000 ||
		rows["events"] != int64(len(rep.events)+len(rep.controls))*4 {
		t.Errorf("parquet rows %v (trades %d, events %d+%d)", rows, len(rep.Trades), len(rep.events), len(rep.controls))
	}
}

var externalRef = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9]|<script|@import|url\(`)

// The HTML report opened in headless Chromium: not blank (the charts'
// colours are on the screenshot) and no network request besides the page.
func TestHTMLInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SIGNALD_INTEGRATION") == "1" {
			t.Fatal("chromium is not installed (apt-get install -y chromium)")
		}
		t.Skip("chromium is not installed (apt-get install -y chromium)")
	}
	rep := sampleReport(t)
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if m := externalRef.FindString(page.String()); m != "" {
		t.Fatalf("the HTML refers to something outside itself: %q", m)
	}
	var mu sync.Mutex
	var other []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/report.html" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page.Bytes())
			return
		}
		mu.Lock()
		other = append(other, r.URL.Path)
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	shot := filepath.Join(dir, "report.png")
	if out := os.Getenv("SIGNALD_EVALUATE_SCREENSHOT"); out != "" {
		shot = out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+shot, "--window-size=1280,2000", srv.URL+"/report.html")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	mu.Lock()
	if len(other) > 0 {
		t.Errorf("the page made requests besides itself: %v", other)
	}
	mu.Unlock()
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	colours := map[string][3]uint32{"strategy": {0x1f, 0x6f, 0xeb}, "baseline": {0xf0, 0x88, 0x3e}, "signal": {0x1a, 0x7f, 0x37}, "drawdown": {0xd1, 0x24, 0x2f}}
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(r>>8, c[0]) && near(g>>8, c[1]) && near(b>>8, c[2]) {
					count[name]++
				}
			}
		}
	}
	t.Logf("chart colour pixels: %v (%dx%d)", count, bnd.Dx(), bnd.Dy())
	for name := range colours {
		if count[name] < 100 {
			t.Errorf("screenshot has %d pixels of the %s colour: the charts did not render", count[name], name)
		}
	}
}

func near(a, b uint32) bool { return a+12 >= b && b+12 >= a }
