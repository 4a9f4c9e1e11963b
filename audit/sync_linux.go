package audit

import (
	"errors"
	"os"
	"syscall"
)

// datasync is fdatasync: the data and the size, without other metadata.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
