package audit

import (
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// lockFile takes the exclusive lock that writers of one log share: a
// LockFileEx on the first byte, which blocks like flock(LOCK_EX).
func lockFile(f *os.File) error {
	var ol windows.Overlapped
	if err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK, 0, 1, 0, &ol); err != nil {
		return fmt.Errorf("locking audit log: %w", err)
	}
	return nil
}

func unlockFile(f *os.File) error {
	var ol windows.Overlapped
	if err := windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol); err != nil {
		return fmt.Errorf("unlocking audit log: %w", err)
	}
	return nil
}
