package ledger

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRoundTripAndTornLine(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 8, 8, 23, 59, 30, 0, time.UTC)
	l.Add("binance", "BTC-USDT", t0.UnixNano(), 3)
	l.Add("binance", "BTC-USDT", t0.Add(10*time.Second).UnixNano(), 2) // same minute
	l.Add("binance", "BTC-USDT", t0.Add(40*time.Second).UnixNano(), 7) // next day
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	l.Add("binance", "BTC-USDT", t0.UnixNano(), 1)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	// A crash cut the next write.
	f, _ := os.OpenFile(filepath.Join(dir, "2024-08-08.ndjson"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":"binance","i":"BTC-US`)
	f.Close()
	l.Add("binance", "BTC-USDT", t0.UnixNano(), 4) // the next start appends after it
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	got, bad, err := Read(dir, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	m0 := t0.Unix() - 30
	want := map[Key]int64{{"binance", "BTC-USDT", m0}: 10, {"binance", "BTC-USDT", m0 + 60}: 7}
	if len(got) != len(want) || got[Key{"binance", "BTC-USDT", m0}] != 10 || got[Key{"binance", "BTC-USDT", m0 + 60}] != 7 {
		t.Fatalf("counts %v, want %v", got, want)
	}
	if len(bad) != 1 || bad[0].Line != 3 {
		t.Fatalf("bad lines %+v, want the torn third line", bad)
	}
	if got, _, _ := Read(dir, m0+60, 0); len(got) != 1 {
		t.Fatalf("from filter: %v", got)
	}
	if _, _, err := Read(filepath.Join(dir, "nope"), 0, 0); err == nil {
		t.Fatal("a missing directory read as empty")
	}
}
