package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	neturl "net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/signald-dev/signald/market"
)

// ReplayConfig configures a Replayer.
type ReplayConfig struct {
	// Paths are capture files, replayed together, merged by receive time.
	// Plain text or gzip (detected from the content). Two line formats are
	// read, and may be mixed:
	//
	//	<receipt epoch seconds, decimal>: <frame>   (cryptofeed; also its
	//	    "wss://... <-> <ts>" connection lines, " <- " client sends and
	//	    "https://...?symbol=X... -> <ts>: <body>" REST snapshot lines)
	//	<receipt epoch ns> <frame>                  (hftbacktest; REST
	//	    snapshot bodies {"lastUpdateId":...} are frames too)
	Paths []string
	// Venue names the venue of every file (a registered Feed: "kraken",
	// "binance-usdm", ...); "" detects it per file: cryptofeed file names
	// (BINANCE.ws.1.0, KRAKEN.ws.50.0, BINANCE_FUTURES.http.0.0, also with
	// a prefix such as cryptofeed_KRAKEN.ws.50.0), else Binance with the
	// market inferred as described under Market.
	Venue string
	// BookSync decodes Binance files through their Feed, books kept in
	// sync (deltas withheld until a snapshot, gap ticks on sequence
	// breaks), as live ingest does. Off, Binance frames give exactly the
	// ticks the parser reads in each frame. Other venues always go through
	// their Feed.
	BookSync bool
	// Market is MarketSpot or MarketUSDM; "" infers it per file from the
	// file name ("usdm" or "futures" → usdm, "spot" → spot) or from the
	// file's connection lines (stream.binance.com → spot, fstream → usdm).
	Market string
	// Speed: 1 replays at the recorded pace, 10 ten times faster, 0 (the
	// default) as fast as possible.
	Speed float64
	// Loop replays the files again and again. Pass n shifts ExchTS (when
	// set) and RecvTS by n*(span+1s), span being the RecvTS range of the
	// first pass, and recomputes the IDs, so every pass yields new ticks.
	Loop bool
	// Limit stops the replay after this many ticks (0: no limit).
	Limit int
	// ForceFallback parses with the portable JSON scanner even where
	// simdjson-go is supported.
	ForceFallback bool
}

// Replayer replays recorded venue frames as ticks, through each venue's
// Feed (Handle for frames, HandleSnapshot for recorded REST snapshots). Run may be called again
// after it returned (each run starts from the first file), but not
// concurrently.
type Replayer struct {
	cfg     ReplayConfig
	files   []replayFile
	log     *slog.Logger
	m       *Metrics
	parsers map[string]*BinanceParser
	feeds   map[string]Feed
	reqs    []SnapshotRequest
	obox    [][]byte
	raw     []byte

	lineBuf []byte
	timer   *time.Timer
}

type replayFile struct {
	path   string
	venue  string // configured or detected; "" = Binance, market below
	market string // configured or inferred from the name/content; "" = from connection lines
	symbol string // symbol hint from the file name, for snapshot lines
}

const maxLineLen = 64 << 20

// NewReplayer validates cfg and returns a Replayer. logger and m may be nil.
func NewReplayer(cfg ReplayConfig, logger *slog.Logger, m *Metrics) (*Replayer, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("replay: no capture files given: give at least one")
	}
	if cfg.Speed < 0 || math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) {
		return nil, fmt.Errorf("replay: speed %v: use 0 (as fast as possible), 1 (recorded pace) or another positive factor", cfg.Speed)
	}
	if cfg.Limit < 0 {
		return nil, fmt.Errorf("replay: limit %d: use 0 (no limit) or a positive tick count", cfg.Limit)
	}
	switch cfg.Market {
	case "", MarketSpot, MarketUSDM:
	default:
		return nil, fmt.Errorf("replay: market %q is not supported: use %q, %q or \"\" (infer per file)", cfg.Market, MarketSpot, MarketUSDM)
	}
	switch cfg.Venue {
	case "":
	case VenueBinance, VenueBinanceUSDM:
		mk := binanceMarket(cfg.Venue)
		if cfg.Market != "" && cfg.Market != mk {
			return nil, fmt.Errorf("replay: venue %q and market %q disagree", cfg.Venue, cfg.Market)
		}
		cfg.Market = mk
		cfg.Venue = ""
	default:
		if _, err := NewFeed(cfg.Venue, FeedConfig{}); err != nil {
			return nil, fmt.Errorf("replay: venue: %w", err)
		}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	r := &Replayer{cfg: cfg, log: logger, m: m, parsers: make(map[string]*BinanceParser), feeds: map[string]Feed{}}
	for _, p := range cfg.Paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("replay: capture file: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("replay: capture file %s is not a regular file", p)
		}
		f := replayFile{path: p, venue: cfg.Venue, market: cfg.Market, symbol: symbolFromName(p)}
		if f.venue == "" && f.market == "" {
			switch v := VenueFromFileName(p); v {
			case "":
			case VenueBinance, VenueBinanceUSDM:
				f.market = binanceMarket(v)
			default:
				if _, err := NewFeed(v, FeedConfig{}); err != nil {
					return nil, fmt.Errorf("replay: %s: %w (name the files' venue to override)", p, err)
				}
				f.venue = v
			}
		}
		if f.venue != "" {
			r.files = append(r.files, f)
			continue
		}
		if f.market == "" {
			f.market = marketFromName(p)
		}
		if f.market == "" && isCoinMName(p) {
			return nil, fmt.Errorf("replay: %s looks like a Binance COIN-M capture, which is not supported (only spot and USD-M)", p)
		}
		if f.market == "" {
			mk, err := marketFromContent(p)
			if err != nil {
				return nil, fmt.Errorf("replay: %s: %w", p, err)
			}
			f.market = mk
			if mk == "" {
				return nil, fmt.Errorf("replay: %s: %w (no spot/usdm/futures in its name, no connection line)", p, ErrMarketUnknown)
			}
		}
		r.files = append(r.files, f)
	}
	return r, nil
}

// ErrMarketUnknown is NewReplayer's error for a Binance capture whose
// market neither the configuration, its name nor its content tells.
var ErrMarketUnknown = errors.New("cannot tell the Binance market (spot or USD-M) of the capture")

// VenueFromFileName detects the venue of a cryptofeed capture from its
// name, <EXCHANGE>.ws.<n>.<m> or <EXCHANGE>.http.<n>.<m> (BINANCE →
// binance, BINANCE_FUTURES → binance-usdm, KRAKEN → kraken, ...), also
// after a prefix ending in '_' or '-' (cryptofeed_KRAKEN.ws.50.0_head300).
// It returns "" for other names.
func VenueFromFileName(path string) string {
	base := filepath.Base(path)
	dot := strings.Index(base, ".ws.")
	if dot < 0 {
		dot = strings.Index(base, ".http.")
	}
	if dot <= 0 {
		return ""
	}
	name := base[:dot]
	best, venue := "", ""
	for _, v := range Venues() {
		for _, ex := range v.Cryptofeed {
			if (name == ex || strings.HasSuffix(name, ex) && strings.ContainsRune("_-", rune(name[len(name)-len(ex)-1]))) && len(ex) > len(best) {
				best, venue = ex, v.Name
			}
		}
	}
	return venue
}

func binanceMarket(venue string) string {
	if venue == VenueBinanceUSDM {
		return MarketUSDM
	}
	return MarketSpot
}

func binanceVenue(market string) string {
	if market == MarketUSDM {
		return VenueBinanceUSDM
	}
	return VenueBinance
}

// feed returns the replay's Feed of venue (one per venue, shared by its
// files: a cryptofeed .http file's snapshots belong to the .ws file's
// books).
func (r *Replayer) feed(venue string) (Feed, error) {
	if f, ok := r.feeds[venue]; ok {
		return f, nil
	}
	f, err := NewFeed(venue, FeedConfig{Metrics: r.m, Logger: r.log, ForceFallback: r.cfg.ForceFallback})
	if err != nil {
		return nil, err
	}
	r.feeds[venue] = f
	return f, nil
}

// marketFromName infers the market from a capture file's base name.
func marketFromName(path string) string {
	n := strings.ToLower(filepath.Base(path))
	switch {
	case strings.Contains(n, "usdm"), strings.Contains(n, "futures"):
		return MarketUSDM
	case strings.Contains(n, "spot"):
		return MarketSpot
	}
	return ""
}

func isCoinMName(path string) bool {
	n := strings.ToLower(filepath.Base(path))
	return strings.Contains(n, "_cm_") || strings.Contains(n, "coinm") || strings.Contains(n, "coin-m")
}

// marketFromURL infers the market from a websocket or REST URL.
func marketFromURL(url []byte) string {
	switch {
	case bytes.Contains(url, []byte("fstream.")), bytes.Contains(url, []byte("fapi.")):
		return MarketUSDM
	case bytes.Contains(url, []byte("dstream.")), bytes.Contains(url, []byte("dapi.")):
		return "" // COIN-M: not supported
	case bytes.Contains(url, []byte("stream.binance.")), bytes.Contains(url, []byte("api.binance.")):
		return MarketSpot
	}
	return ""
}

// marketFromContent reads the first connection line of a capture, if any.
func marketFromContent(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rd, err := openCapture(f)
	if err != nil {
		return "", err
	}
	br := bufio.NewReaderSize(rd, 64<<10)
	for i := 0; i < 16; i++ {
		line, err := br.ReadSlice('\n')
		sep := bytes.Index(line, []byte(" <-> ")) // websocket connection
		if sep < 0 && bytes.HasPrefix(line, []byte("http")) {
			sep = bytes.Index(line, []byte(" -> ")) // REST response
		}
		if sep > 0 {
			if mk := marketFromURL(line[:sep]); mk != "" {
				return mk, nil
			}
			return "", fmt.Errorf("%q is not a Binance spot or USD-M endpoint (COIN-M is not supported)", truncate(line[:sep], 120))
		}
		if err != nil {
			break
		}
	}
	return "", nil
}

// symbolFromName finds a Binance symbol in a file name
// ("binance_spot_btcusdt_20240808.gz" → "BTCUSDT").
func symbolFromName(path string) string {
	n := strings.ToUpper(filepath.Base(path))
	for _, tok := range strings.FieldsFunc(n, func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < '0' || r > '9')
	}) {
		if _, ok := NormalizeBinanceSymbol(MarketSpot, tok); ok {
			return tok
		}
	}
	return ""
}

// openCapture returns a reader of the decompressed capture.
func openCapture(f io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

func truncate(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\r\n")
	if len(b) > n {
		return b[:n]
	}
	return b
}

func (r *Replayer) parser(market string) (*BinanceParser, error) {
	if p, ok := r.parsers[market]; ok {
		return p, nil
	}
	p, err := NewBinanceParser(BinanceConfig{Market: market, ForceFallback: r.cfg.ForceFallback}, r.m)
	if err != nil {
		return nil, err
	}
	r.parsers[market] = p
	return p, nil
}

// runState is one Run's progress.
type runState struct {
	failed          map[string]error // files that failed, by path (first error)
	pass            int
	shift           int64
	emitted         int
	minRecv         int64
	maxRecv         int64
	malformedLogged int
}

// errLimit stops a run when Limit ticks were emitted.
var errLimit = errors.New("replay limit reached")

// Run replays the files, calling emit with the ticks of each frame, in
// receive-time order across files, IngestTS set to the wall-clock time of the call. The slice passed
// to emit is reused: emit must copy what it keeps.
// Run returns nil when the files are done (Loop false) or Limit ticks were
// emitted, ctx.Err() when ctx is cancelled, and emit's error wrapped when
// emit fails. Malformed lines and frames are counted and skipped.
func (r *Replayer) Run(ctx context.Context, emit func([]market.Tick) error) error {
	st := &runState{minRecv: math.MaxInt64, maxRecv: math.MinInt64, failed: map[string]error{}}
	for ; ; st.pass++ {
		if st.pass > 0 {
			if st.maxRecv < st.minRecv {
				r.log.Warn("replay: nothing to loop over: the first pass produced no ticks")
				return nil
			}
			st.shift = int64(st.pass) * (st.maxRecv - st.minRecv + int64(time.Second))
		}
		if err := r.runPass(ctx, st, emit); err != nil {
			if errors.Is(err, errLimit) {
				return st.failures(len(r.files))
			}
			return err
		}
		r.m.replayPasses.Inc()
		r.log.Debug("replay: pass done", "pass", st.pass, "ticks", st.emitted)
		if !r.cfg.Loop || len(st.failed) == len(r.files) {
			return st.failures(len(r.files))
		}
	}
}

// fail records that a file could not be replayed (once per file): counted,
// logged, and the other files go on.
func (r *Replayer) fail(st *runState, path string, err error) {
	if _, seen := st.failed[path]; seen {
		return
	}
	st.failed[path] = err
	r.m.replayFailed.Inc()
	r.log.Error("replay: file skipped; the other files go on", "path", path, "err", err)
}

// failures is the error a replay ends with when files failed.
func (st *runState) failures(n int) error {
	if len(st.failed) == 0 {
		return nil
	}
	paths := make([]string, 0, len(st.failed))
	for p := range st.failed {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	msgs := make([]string, len(paths))
	for i, p := range paths {
		msgs[i] = st.failed[p].Error()
	}
	return fmt.Errorf("replay: %d of %d files failed (the others were replayed): %s", len(paths), n, strings.Join(msgs, "; "))
}

// runPass replays every file once, merged by receive time: captures of
// different streams recorded over the same period (spot and futures, say)
// come out interleaved as they were received, not one file after the other.
// Equal receive times keep the order of Paths.
func (r *Replayer) runPass(ctx context.Context, st *runState, emit func([]market.Tick) error) error {
	cursors := make([]*fileCursor, 0, len(r.files))
	defer func() {
		for _, c := range cursors {
			c.close()
		}
	}()
	// Every pass starts from empty books.
	for _, f := range r.feeds {
		f.Reset()
	}
	for _, rf := range r.files {
		if _, bad := st.failed[rf.path]; bad {
			continue
		}
		c, err := r.openCursor(rf, st)
		if err != nil {
			r.fail(st, rf.path, err)
			continue
		}
		cursors = append(cursors, c)
		if err := c.advance(ctx); err != nil {
			return err
		}
	}
	var (
		startWall time.Time
		firstRecv int64
		paced     bool
	)
	for {
		var next *fileCursor
		for _, c := range cursors {
			if !c.eof && (next == nil || c.recv < next.recv) {
				next = c
			}
		}
		if next == nil {
			return nil
		}
		if r.cfg.Speed > 0 {
			if !paced {
				paced, startWall, firstRecv = true, time.Now(), next.recv
			} else if err := r.sleepUntil(ctx, startWall.Add(time.Duration(float64(next.recv-firstRecv)/r.cfg.Speed))); err != nil {
				return err
			}
		}
		if err := r.deliver(st, next.ticks, emit); err != nil {
			return err
		}
		if err := next.advance(ctx); err != nil {
			return err
		}
	}
}

// fileCursor reads one capture file frame by frame; after advance, ticks
// holds the next frame's ticks and recv its receive time, or eof is set.
type fileCursor struct {
	r          *Replayer
	rf         replayFile
	st         *runState
	f          *os.File
	br         *bufio.Reader
	market     string
	lastSymbol string
	lineNo     int
	ticks      []market.Tick
	recv       int64
	eof        bool // no frame left: ticks is stale
	drained    bool // the reader hit the end of the file
}

func (r *Replayer) openCursor(rf replayFile, st *runState) (*fileCursor, error) {
	f, err := os.Open(rf.path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	rd, err := openCapture(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("replay: %s: %w", rf.path, err)
	}
	return &fileCursor{r: r, rf: rf, st: st, f: f, br: bufio.NewReaderSize(rd, 1<<20), market: rf.market}, nil
}

func (c *fileCursor) close() { c.f.Close() }

// advance moves to the next frame that yields ticks. Malformed lines and
// frames are counted and skipped.
func (c *fileCursor) advance(ctx context.Context) error {
	r, rf, st := c.r, c.rf, c.st
	for {
		if c.drained {
			c.eof = true
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		line, rerr := r.readLine(c.br)
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, errLineTooLong) {
			// A truncated or damaged file: what was read of it stands, the
			// other files go on.
			r.fail(st, rf.path, fmt.Errorf("replay: %s: line %d: %w", rf.path, c.lineNo+1, rerr))
			c.eof = true
			return nil
		}
		c.lineNo++
		if errors.Is(rerr, errLineTooLong) {
			r.malformed(st, rf.path, c.lineNo, "line_too_long", nil)
			continue
		}
		c.drained = rerr != nil // io.EOF: this is the last line, if any
		if len(line) == 0 {
			continue
		}
		rec, ok := r.classify(line)
		switch {
		case !ok:
			r.malformed(st, rf.path, c.lineNo, rec.reason, line)
		case rec.kind == lineConnection:
			r.m.replayLines.WithLabelValues("connection").Inc()
			if r.cfg.Market == "" && rf.venue == "" {
				if mk := marketFromURL(rec.body); mk != "" {
					c.market = mk
				} else {
					r.malformed(st, rf.path, c.lineNo, "unsupported_connection", line)
				}
			}
		case rec.kind == lineClientSend:
			r.m.replayLines.WithLabelValues("client_send").Inc()
		default:
			venue := rf.venue
			if venue == "" {
				lineMarket := c.market
				if rec.market != "" && r.cfg.Market == "" {
					lineMarket = rec.market
				}
				if lineMarket == "" {
					r.malformed(st, rf.path, c.lineNo, "unknown_market", line)
					break
				}
				if !r.cfg.BookSync {
					if err := c.binanceLine(rec, lineMarket); err != nil {
						return err
					}
					if len(c.ticks) > 0 {
						c.recv = rec.recv
						return nil
					}
					break
				}
				venue = binanceVenue(lineMarket)
			}
			if err := c.feedLine(rec, venue, line); err != nil {
				return err
			}
			if len(c.ticks) > 0 {
				c.recv = rec.recv
				return nil
			}
		}
	}
}

// binanceLine decodes a Binance line with the parser alone (no book sync).
func (c *fileCursor) binanceLine(rec lineRecord, market string) error {
	r, rf, st := c.r, c.rf, c.st
	p, err := r.parser(market)
	if err != nil {
		return err
	}
	c.ticks = c.ticks[:0]
	if rec.kind == lineSnapshot {
		r.m.replayLines.WithLabelValues("snapshot").Inc()
		sym := rec.symbol
		if sym == "" {
			sym = c.lastSymbol
		}
		if sym == "" {
			sym = rf.symbol
		}
		if sym == "" {
			r.malformed(st, rf.path, c.lineNo, "snapshot_without_symbol", rec.body)
			return nil
		}
		c.ticks, err = p.ParseSnapshot(rec.recv, sym, rec.body, c.ticks)
	} else {
		r.m.replayLines.WithLabelValues("frame").Inc()
		c.ticks, err = p.Parse(rec.recv, rec.body, c.ticks)
		if err == nil && len(c.ticks) > 0 {
			c.lastSymbol = c.ticks[len(c.ticks)-1].Symbol
		}
	}
	if err != nil {
		c.frameErr(err)
	}
	return nil
}

func (c *fileCursor) frameErr(err error) {
	if c.st.malformedLogged < 10 {
		c.st.malformedLogged++
		c.r.log.Warn("replay: malformed frame skipped", "file", c.rf.path, "line", c.lineNo, "err", err)
	}
}

// feedLine decodes a line through the venue's Feed: frames to Handle,
// snapshots to HandleSnapshot. What the feed would send or fetch live is
// discarded: the capture holds what the venue answered.
func (c *fileCursor) feedLine(rec lineRecord, venue string, line []byte) error {
	r, rf, st := c.r, c.rf, c.st
	f, err := r.feed(venue)
	if err != nil {
		return err
	}
	c.ticks = c.ticks[:0]
	if rec.kind == lineSnapshot {
		r.m.replayLines.WithLabelValues("snapshot").Inc()
		req := SnapshotRequest{URL: string(rec.url), Symbol: rec.symbol}
		if sp, ok := f.(SnapshotSymbolParser); ok && req.URL != "" {
			req.Symbol, _ = sp.SnapshotSymbol(req.URL)
		} else if req.URL != "" {
			req.Symbol = symbolFromURL(req.URL)
		}
		if req.Symbol == "" {
			req.Symbol = c.lastSymbol
		}
		if req.Symbol == "" {
			req.Symbol = rf.symbol
		}
		if req.Symbol == "" {
			r.malformed(st, rf.path, c.lineNo, "snapshot_without_symbol", line)
			return nil
		}
		c.ticks, err = f.HandleSnapshot(rec.recv, req, rec.body, c.ticks)
	} else {
		r.m.replayLines.WithLabelValues("frame").Inc()
		body := rec.body
		if b, ok := pyBytesLiteral(body, r.raw[:0]); ok {
			r.raw, body = b, b
		}
		c.ticks, err = f.Handle(rec.recv, body, c.ticks)
		if err == nil && len(c.ticks) > 0 {
			c.lastSymbol = c.ticks[len(c.ticks)-1].Symbol
		}
	}
	r.obox = f.Outbox(r.obox[:0])
	r.reqs = f.SnapshotRequests(r.reqs[:0])
	if err != nil {
		c.frameErr(err)
	}
	return nil
}

// symbolFromURL finds the instrument of a REST snapshot URL: its symbol=,
// currency_pair= or instrument_name= parameter, else its last path segment.
func symbolFromURL(u string) string {
	pu, err := neturl.Parse(u)
	if err != nil {
		return ""
	}
	q := pu.Query()
	for _, k := range []string{"symbol", "currency_pair", "instrument_name", "pair"} {
		if v := q.Get(k); v != "" {
			return v
		}
	}
	return path.Base(strings.TrimRight(pu.Path, "/"))
}

// pyBytesLiteral decodes a Python bytes literal b'...' (how cryptofeed
// records binary frames, such as Huobi's gzip) into dst.
func pyBytesLiteral(b, dst []byte) ([]byte, bool) {
	if len(b) < 3 || b[0] != 'b' || (b[1] != '\'' && b[1] != '"') || b[len(b)-1] != b[1] {
		return nil, false
	}
	b = b[2 : len(b)-1]
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i+1 >= len(b) {
			return nil, false
		}
		i++
		switch b[i] {
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case '\\', '\'', '"':
			dst = append(dst, b[i])
		case 'x':
			if i+3 > len(b) {
				return nil, false
			}
			v, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8)
			if err != nil {
				return nil, false
			}
			dst = append(dst, byte(v))
			i += 2
		default:
			return nil, false
		}
	}
	return dst, true
}

// deliver shifts (after the first pass), limits and emits ticks.
func (r *Replayer) deliver(st *runState, ticks []market.Tick, emit func([]market.Tick) error) error {
	if st.pass == 0 {
		for i := range ticks {
			st.minRecv = min(st.minRecv, ticks[i].RecvTS)
			st.maxRecv = max(st.maxRecv, ticks[i].RecvTS)
		}
	} else {
		for i := range ticks {
			t := &ticks[i]
			t.RecvTS += st.shift
			if t.ExchTS != 0 {
				t.ExchTS += st.shift
			}
			t.ComputeID()
		}
	}
	now := time.Now().UnixNano()
	for i := range ticks {
		ticks[i].IngestTS = now
	}
	limited := false
	if r.cfg.Limit > 0 && st.emitted+len(ticks) >= r.cfg.Limit {
		ticks = ticks[:r.cfg.Limit-st.emitted]
		limited = true
	}
	st.emitted += len(ticks)
	if err := emit(ticks); err != nil {
		return fmt.Errorf("replay: emit: %w", err)
	}
	if limited {
		return errLimit
	}
	return nil
}

func (r *Replayer) sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		r.timer.Stop()
		return ctx.Err()
	case <-r.timer.C:
		return nil
	}
}

func (r *Replayer) malformed(st *runState, path string, lineNo int, reason string, line []byte) {
	r.m.replayLines.WithLabelValues("malformed").Inc()
	r.m.replayMalformed.WithLabelValues(reason).Inc()
	if st.malformedLogged < 10 {
		st.malformedLogged++
		r.log.Warn("replay: malformed line skipped", "file", path, "line", lineNo, "reason", reason, "text", string(truncate(line, 120)))
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its line ending; the slice is valid
// until the next call. At the end of the input it returns io.EOF (with the
// last, unterminated line, if any).
func (r *Replayer) readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		r.lineBuf = append(r.lineBuf[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			if len(r.lineBuf)+len(line) > maxLineLen {
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if err != nil && !errors.Is(err, io.EOF) {
					return nil, err
				}
				return nil, errLineTooLong
			}
			r.lineBuf = append(r.lineBuf, line...)
		}
		line = r.lineBuf
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	line = bytes.TrimRight(line, "\r\n")
	return line, err
}

type lineKind uint8

const (
	lineFrame lineKind = iota
	lineSnapshot
	lineConnection
	lineClientSend
)

type lineRecord struct {
	kind   lineKind
	recv   int64
	body   []byte // frame, snapshot body, or connection URL
	symbol string // REST snapshot URL's symbol
	url    []byte // REST snapshot URL
	market string // REST snapshot URL's market, if known
	reason string // why the line is malformed
}

// classify splits a capture line.
func (r *Replayer) classify(line []byte) (lineRecord, bool) {
	if bytes.HasPrefix(line, []byte("ws")) {
		// cryptofeed: "<url> <-> <ts>" connection, "<url> <- <ts>: <sent>"
		if i := bytes.IndexByte(line, ' '); i > 0 {
			switch rest := line[i+1:]; {
			case bytes.HasPrefix(rest, []byte("<-> ")):
				return lineRecord{kind: lineConnection, body: line[:i]}, true
			case bytes.HasPrefix(rest, []byte("<- ")):
				return lineRecord{kind: lineClientSend}, true
			}
		}
		return lineRecord{reason: "bad_ws_line"}, false
	}
	if bytes.HasPrefix(line, []byte("http")) {
		// cryptofeed REST: <url> -> <ts>: <body>
		i := bytes.Index(line, []byte(" -> "))
		if i < 0 {
			return lineRecord{reason: "bad_rest_line"}, false
		}
		url := line[:i]
		recv, body, ok := splitTimestamp(line[i+4:])
		if !ok {
			return lineRecord{reason: "bad_timestamp"}, false
		}
		sym := ""
		if j := bytes.Index(url, []byte("symbol=")); j >= 0 {
			s := url[j+len("symbol="):]
			if k := bytes.IndexByte(s, '&'); k >= 0 {
				s = s[:k]
			}
			sym = strings.ToUpper(string(s))
		}
		return lineRecord{kind: lineSnapshot, recv: recv, body: body, symbol: sym, market: marketFromURL(url), url: url}, true
	}
	recv, body, ok := splitTimestamp(line)
	if !ok {
		return lineRecord{reason: "bad_timestamp"}, false
	}
	if isSnapshotBody(body) {
		return lineRecord{kind: lineSnapshot, recv: recv, body: body}, true
	}
	return lineRecord{kind: lineFrame, recv: recv, body: body}, true
}

func isSnapshotBody(b []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(b, " \t"), []byte(`{"lastUpdateId"`))
}

// splitTimestamp parses a leading receive time: "<sec>.<frac>: " (epoch
// seconds) or "<ns> " (epoch nanoseconds), and returns it in ns and the rest.
func splitTimestamp(line []byte) (int64, []byte, bool) {
	i := 0
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	intEnd := i
	if intEnd == 0 || intEnd > 19 {
		return 0, nil, false
	}
	fracStart, fracEnd := i, i
	if i < len(line) && line[i] == '.' {
		i++
		fracStart = i
		for i < len(line) && line[i] >= '0' && line[i] <= '9' {
			i++
		}
		fracEnd = i
	}
	if i >= len(line) {
		return 0, nil, false
	}
	var ns int64
	switch line[i] {
	case ':': // seconds
		if intEnd > 10 {
			return 0, nil, false
		}
		var sec int64
		for _, c := range line[:intEnd] {
			sec = sec*10 + int64(c-'0')
		}
		var frac int64
		n := 0
		for _, c := range line[fracStart:fracEnd] {
			if n == 9 {
				break
			}
			frac = frac*10 + int64(c-'0')
			n++
		}
		for ; n < 9; n++ {
			frac *= 10
		}
		if sec > (math.MaxInt64-frac)/1e9 {
			return 0, nil, false
		}
		ns = sec*1e9 + frac
		i++
	case ' ': // nanoseconds
		if fracEnd != intEnd {
			return 0, nil, false
		}
		var v uint64
		for _, c := range line[:intEnd] {
			v = v*10 + uint64(c-'0')
		}
		if v > math.MaxInt64 {
			return 0, nil, false
		}
		ns = int64(v)
	default:
		return 0, nil, false
	}
	return ns, bytes.TrimLeft(line[i:], " "), true
}
