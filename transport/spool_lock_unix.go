//go:build unix

package transport

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockSpoolDir takes an exclusive lock on dir, so that two producers never
// share a spool (their records would interleave and each would replay the
// other's). The lock goes with the process, so a crash leaves none behind.
func lockSpoolDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "spool.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spool dir %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool dir %s is in use by another producer: give each producer its own ProducerConfig.SpoolDir", dir)
		}
		return nil, fmt.Errorf("spool dir %s: lock: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
