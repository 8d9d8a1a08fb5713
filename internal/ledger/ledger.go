// Package ledger keeps ingest's own durable record of what it published:
// ticks per venue, instrument and minute of receive time, appended to a
// file per day under a directory. `signald reconcile` compares it with what
// the store holds, so a loss anywhere between ingest and storage shows as a
// difference per instrument and minute.
//
// Format (docs/operations.md): one JSON object per line,
//
//	{"v":"binance","i":"BTC-USDT","m":1723161240,"n":118}
//
// v venue, i instrument, m the minute (Unix seconds, a multiple of 60), n
// ticks published in it since the previous line of the same key: a key's
// count is the sum of its lines. Files are <dir>/<YYYY-MM-DD>.ndjson by the
// minute's UTC day. Each flush appends whole lines and fsyncs; a line cut by
// a crash is skipped (and reported) by Read.
package ledger

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Key is one venue, instrument and minute (Unix seconds).
type Key struct {
	Venue, Instrument string
	Minute            int64
}

// Ledger accumulates counts in memory and appends them on Flush. Safe for
// concurrent use.
type Ledger struct {
	dir string
	mu  sync.Mutex
	buf map[Key]int64
}

// Open creates dir if needed.
func Open(dir string) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{dir: dir, buf: make(map[Key]int64)}, nil
}

// Add counts n ticks of venue and instrument received at recvNS.
func (l *Ledger) Add(venue, instrument string, recvNS int64, n int) {
	const minute = 60 * int64(time.Second)
	m := recvNS / minute
	if recvNS%minute < 0 {
		m-- // floor, also before 1970
	}
	m *= 60
	l.mu.Lock()
	l.buf[Key{venue, instrument, m}] += int64(n)
	l.mu.Unlock()
}

type line struct {
	V string `json:"v"`
	I string `json:"i"`
	M int64  `json:"m"`
	N int64  `json:"n"`
}

// Flush appends the counts gathered since the last flush and syncs them.
// On an error the counts stay buffered for the next flush.
func (l *Ledger) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) == 0 {
		return nil
	}
	byDay := map[string][]Key{}
	for k := range l.buf {
		d := time.Unix(k.Minute, 0).UTC().Format("2006-01-02")
		byDay[d] = append(byDay[d], k)
	}
	for d, keys := range byDay {
		slices.SortFunc(keys, cmpKey)
		var b bytes.Buffer
		for _, k := range keys {
			j, _ := json.Marshal(line{k.Venue, k.Instrument, k.Minute, l.buf[k]})
			b.Write(j)
			b.WriteByte('\n')
		}
		if err := appendSync(filepath.Join(l.dir, d+".ndjson"), b.Bytes()); err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		for _, k := range keys {
			delete(l.buf, k)
		}
	}
	return nil
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	// A line a crash cut short gets its end first, so that it stays the
	// only bad line.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], st.Size()-1); err == nil && last[0] != '\n' {
			b = append([]byte{'\n'}, b...)
		}
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cmpKey(a, b Key) int {
	if c := strings.Compare(a.Venue, b.Venue); c != 0 {
		return c
	}
	if c := strings.Compare(a.Instrument, b.Instrument); c != 0 {
		return c
	}
	return int(a.Minute - b.Minute)
}

// Bad is a line Read could not use.
type Bad struct {
	File string
	Line int
	Err  string
}

// Read sums the counts of dir's files for minutes in [from, to) (Unix
// seconds; to 0: unbounded). Unusable lines (a torn last line after a crash)
// are skipped and returned in bad. A missing dir is an error naming it.
func Read(dir string, from, to int64) (counts map[Key]int64, bad []Bad, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("ledger %s: no such directory (ingest writes it under the data directory while it runs)", dir)
		}
		return nil, nil, fmt.Errorf("ledger: %w", err)
	}
	counts = map[Key]int64{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".ndjson") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("ledger: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		n := 0
		for sc.Scan() {
			n++
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.V == "" || l.I == "" || l.M%60 != 0 {
				msg := "not a ledger line"
				if err != nil {
					msg = err.Error()
				}
				bad = append(bad, Bad{File: path, Line: n, Err: msg})
				continue
			}
			if l.M < from || to != 0 && l.M >= to {
				continue
			}
			counts[Key{l.V, l.I, l.M}] += l.N
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("ledger %s: %w", path, err)
		}
	}
	return counts, bad, nil
}
