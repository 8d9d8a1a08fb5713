//go:build !unix

package transport

// lockSpoolDir is a no-op where flock is not available: one producer per
// spool directory is then up to the caller.
func lockSpoolDir(dir string) (unlock func(), err error) { return func() {}, nil }
