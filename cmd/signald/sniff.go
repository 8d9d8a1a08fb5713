package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
)

// checkCapture tells a capture file (cryptofeed or hftbacktest lines,
// plain or gzip) from anything else before a replay reads it: other bytes
// would be skipped line by line as malformed and give no ticks at all.
func checkCapture(flagName, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if flagName != "" {
		flagName += " "
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s%s: not a capture file (a damaged gzip stream: %v)", flagName, path, err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	seen := 0
	for seen < 16 {
		line, err := br.ReadSlice('\n')
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if isCaptureLine(t) {
				return nil
			}
			seen++
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return fmt.Errorf("%s%s: not a capture file (%v)", flagName, path, err)
			}
			break
		}
	}
	if seen == 0 {
		return fmt.Errorf("%s%s: the file is empty: give a capture file (signald capture records one)", flagName, path)
	}
	return fmt.Errorf("%s%s: not a capture file: its first lines are neither cryptofeed (<epoch s>: <frame>) nor hftbacktest (<ns> <frame>) lines", flagName, path)
}

// isCaptureLine: a connection or REST line (ws..., http...), or a
// timestamp of at least 9 digits (s or ns since the epoch) followed by
// ':' or a space.
func isCaptureLine(l []byte) bool {
	if bytes.HasPrefix(l, []byte("ws")) || bytes.HasPrefix(l, []byte("http")) {
		return true
	}
	i := 0
	for i < len(l) && l[i] >= '0' && l[i] <= '9' {
		i++
	}
	if i < 9 {
		return false
	}
	for i < len(l) && (l[i] == '.' || l[i] >= '0' && l[i] <= '9') {
		i++
	}
	return i < len(l) && (l[i] == ':' || l[i] == ' ')
}
