package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The spool is a producer's local queue behind its memory buffer: entries
// that cannot be appended to the backend (an outage longer than MaxBuffered
// allows, or a stop with the backend down) are written to one append-only
// file and appended to the backend first when it is back, or at the next
// start on the same directory.
//
// File format (spool.sd in ProducerConfig.SpoolDir), little-endian:
//
//	header  8 bytes  "SDSPOOL1"
//	record           repeated to the end of the file:
//	  u32  n         length of the body
//	  u32  crc       CRC32C (Castagnoli) of the body
//	  body n bytes:  u16 stream length, stream name, payload
//
// A record whose checksum does not match is skipped; a record cut short (a
// crash during a write) ends the file. Both are counted
// (signald_transport_spool_corrupt_records_total) and logged at open, and
// the file is rewritten without them before anything is appended.
const (
	spoolFile   = "spool.sd"
	spoolMagic  = "SDSPOOL1"
	spoolHeader = int64(len(spoolMagic))
	recHeader   = 8
	// maxRecord bounds a record's length field: a larger one can only be
	// a corrupt length, and the rest of the file cannot be framed.
	maxRecord = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

type spoolRec struct {
	stream  string
	payload []byte
}

func recSize(stream string, payload []byte) int64 {
	return recHeader + 2 + int64(len(stream)) + int64(len(payload))
}

// appendRecord encodes one record onto dst.
func appendRecord(dst []byte, stream string, payload []byte) []byte {
	n := 2 + len(stream) + len(payload)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0) // crc, filled below
	body := len(dst)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(stream)))
	dst = append(dst, stream...)
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[body:], crcTable))
	return dst
}

// readRecord reads the record at r. bad is true for a record that is framed
// but fails its checksum (skipped); io.ErrUnexpectedEOF means cut short.
func readRecord(r *bufio.Reader) (rec spoolRec, size int64, bad bool, err error) {
	var h [recHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return rec, 0, false, io.EOF
		}
		return rec, 0, false, io.ErrUnexpectedEOF
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n < 2 || n > maxRecord {
		return rec, 0, false, io.ErrUnexpectedEOF // an impossible length: nothing after it can be framed
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return rec, 0, false, io.ErrUnexpectedEOF
	}
	size = recHeader + int64(n)
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		return rec, size, true, nil
	}
	sl := int(binary.LittleEndian.Uint16(body))
	if 2+sl > len(body) {
		return rec, size, true, nil
	}
	return spoolRec{stream: string(body[2 : 2+sl]), payload: body[2+sl:]}, size, false, nil
}

// spool is the open spool file. It is not safe for concurrent use: the
// producer calls it under its lock.
type spool struct {
	dir, path string
	max       int64
	f         *os.File
	w         *bufio.Writer // appends at the end of f
	size      int64         // file length, buffered appends included
	readOff   int64         // next record to read back
	live      int           // records at or after readOff
	dirty     bool          // appends not yet fsynced
	unlock    func()
}

// openSpool opens (or creates) the spool in dir and checks every record.
// corrupt counts the records dropped as damaged; the file then holds only
// the good ones.
func openSpool(dir string, max int64) (sp *spool, corrupt int, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("spool dir %s: %w", dir, err)
	}
	unlock, err := lockSpoolDir(dir)
	if err != nil {
		return nil, 0, err
	}
	sp = &spool{dir: dir, path: filepath.Join(dir, spoolFile), max: max, unlock: unlock}
	good, corrupt, err := sp.check()
	if err == nil && corrupt > 0 {
		err = sp.rewriteFrom(sp.path, spoolHeader, nil, true)
	}
	if err == nil {
		err = sp.openAppend()
	}
	if err != nil {
		unlock()
		return nil, 0, err
	}
	sp.readOff, sp.live = spoolHeader, good
	return sp, corrupt, nil
}

// check counts the good and corrupt records of an existing file (a missing
// or empty file has none).
func (sp *spool) check() (good, corrupt int, err error) {
	f, err := os.Open(sp.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("spool %s: %w", sp.path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	var magic [len(spoolMagic)]byte
	if n, err := io.ReadFull(r, magic[:]); err != nil {
		if n == 0 {
			return 0, 0, nil
		}
		return 0, 1, nil // a torn header: nothing was ever appended after it
	}
	if string(magic[:]) != spoolMagic {
		return 0, 0, fmt.Errorf("spool %s: not a signald spool file (bad header %q); move it away or point ProducerConfig.SpoolDir elsewhere", sp.path, magic[:])
	}
	for {
		_, _, bad, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			return good, corrupt, nil
		}
		if err != nil {
			return good, corrupt + 1, nil
		}
		if bad {
			corrupt++
		} else {
			good++
		}
	}
}

func (sp *spool) openAppend() error {
	f, err := os.OpenFile(sp.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	if end == 0 {
		if _, err := f.Write([]byte(spoolMagic)); err != nil {
			f.Close()
			return fmt.Errorf("spool %s: %w", sp.path, err)
		}
		end = spoolHeader
	}
	sp.f, sp.w, sp.size = f, bufio.NewWriterSize(f, 1<<16), end
	return nil
}

// fits reports whether payloads for stream fit under the size bound.
func (sp *spool) fits(stream string, payloads [][]byte) bool {
	var n int64
	for _, p := range payloads {
		n += recSize(stream, p)
	}
	return sp.max <= 0 || sp.size+n <= sp.max
}

// append writes payloads for stream (buffered; sync makes them durable).
func (sp *spool) append(stream string, payloads [][]byte) error {
	if len(stream) > 0xffff {
		return fmt.Errorf("spool: stream name of %d bytes is too long", len(stream))
	}
	var buf []byte
	for _, p := range payloads {
		buf = appendRecord(buf[:0], stream, p)
		if _, err := sp.w.Write(buf); err != nil {
			return fmt.Errorf("spool %s: %w", sp.path, err)
		}
		sp.size += int64(len(buf))
	}
	sp.live += len(payloads)
	sp.dirty = true
	return nil
}

// sync writes buffered appends and fsyncs the file.
func (sp *spool) sync() error {
	if !sp.dirty {
		return nil
	}
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	if err := sp.f.Sync(); err != nil {
		return fmt.Errorf("spool %s: fsync: %w", sp.path, err)
	}
	sp.dirty = false
	return nil
}

// read takes up to maxN records from readOff on, in order. When it has read
// everything, the file is truncated back to its header.
func (sp *spool) read(maxN int) ([]spoolRec, error) {
	if sp.live == 0 {
		return nil, sp.reset()
	}
	if err := sp.w.Flush(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", sp.path, err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(sp.f, sp.readOff, sp.size-sp.readOff), 1<<16)
	var out []spoolRec
	for len(out) < maxN && sp.live > 0 {
		rec, size, bad, err := readRecord(r)
		if err != nil {
			// Fewer good records than counted: a disk fault; what is
			// left cannot be framed.
			sp.live = 0
			if len(out) == 0 {
				return nil, errors.Join(fmt.Errorf("spool %s: record at %d: %w", sp.path, sp.readOff, err), sp.reset())
			}
			break
		}
		sp.readOff += size
		if bad { // only the producer writes here after open: a disk fault
			continue
		}
		out = append(out, rec)
		sp.live--
	}
	if sp.live == 0 {
		return out, sp.reset()
	}
	return out, nil
}

// reset empties the file once every record was read back.
func (sp *spool) reset() error {
	if sp.size == spoolHeader {
		return nil
	}
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	if err := sp.f.Truncate(spoolHeader); err != nil {
		return fmt.Errorf("spool %s: truncate: %w", sp.path, err)
	}
	if _, err := sp.f.Seek(spoolHeader, io.SeekStart); err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	sp.w.Reset(sp.f)
	sp.size, sp.readOff, sp.live, sp.dirty = spoolHeader, spoolHeader, 0, true
	return nil
}

// prepend rewrites the spool as head followed by the records not yet read
// back, fsynced and renamed into place, so that entries taken out of the
// spool (or never spooled) keep their place ahead of the newer ones.
func (sp *spool) prepend(head []spoolRec) error {
	if err := sp.w.Flush(); err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	if err := sp.rewriteFrom(sp.path, sp.readOff, head, false); err != nil {
		return err
	}
	sp.f.Close()
	live := sp.live + len(head)
	if err := sp.openAppend(); err != nil {
		return err
	}
	sp.readOff, sp.live, sp.dirty = spoolHeader, live, false
	return nil
}

// rewriteFrom writes a new spool file: head, then the records of src from
// off on (only the good ones when check is set, else copied as they are),
// and renames it over sp.path.
func (sp *spool) rewriteFrom(src string, off int64, head []spoolRec, check bool) error {
	tmp, err := os.CreateTemp(sp.dir, spoolFile+".tmp*")
	if err != nil {
		return fmt.Errorf("spool %s: %w", sp.dir, err)
	}
	defer os.Remove(tmp.Name()) // after the rename: no such file
	w := bufio.NewWriterSize(tmp, 1<<16)
	w.WriteString(spoolMagic)
	var buf []byte
	for _, r := range head {
		buf = appendRecord(buf[:0], r.stream, r.payload)
		w.Write(buf)
	}
	in, err := os.Open(src)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tmp.Close()
		return fmt.Errorf("spool %s: %w", src, err)
	}
	if err == nil {
		defer in.Close()
		if _, err := in.Seek(off, io.SeekStart); err != nil {
			tmp.Close()
			return fmt.Errorf("spool %s: %w", src, err)
		}
		if check {
			r := bufio.NewReaderSize(in, 1<<16)
			for {
				rec, _, bad, err := readRecord(r)
				if err != nil {
					break // EOF, or the cut-short tail
				}
				if !bad {
					buf = appendRecord(buf[:0], rec.stream, rec.payload)
					w.Write(buf)
				}
			}
		} else if _, err := io.Copy(w, in); err != nil {
			tmp.Close()
			return fmt.Errorf("spool %s: %w", src, err)
		}
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("spool %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("spool %s: fsync: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("spool %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), sp.path); err != nil {
		return fmt.Errorf("spool %s: %w", sp.path, err)
	}
	return syncDir(sp.dir)
}

// close fsyncs and closes the file, and removes it when nothing is left.
func (sp *spool) close() error {
	err := sp.sync()
	if cerr := sp.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && sp.live == 0 {
		if rerr := os.Remove(sp.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("spool %s: %w", sp.path, rerr)
		}
	}
	sp.unlock()
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("spool %s: fsync dir: %w", dir, err)
	}
	return nil
}
