//go:build !linux && !darwin

package audit

import "os"

// datasync falls back to a full sync (FlushFileBuffers on Windows, fsync
// on the BSDs) where there is no fdatasync.
func datasync(f *os.File) error { return f.Sync() }
