package audit

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync is F_FULLFSYNC: on macOS fsync(2) only reaches the drive's
// cache, and a record is durable only once the drive has written it.
func datasync(f *os.File) error {
	_, err := unix.FcntlInt(f.Fd(), unix.F_FULLFSYNC, 0)
	return err
}
