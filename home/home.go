// Package home locates tf's state directory ($TF_HOME) and the paths inside it.
package home

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Dir returns tf's state directory: $TF_HOME, else $XDG_STATE_HOME/tameflare,
// else ~/.local/state/tameflare. It does not create it.
func Dir() (string, error) {
	if d := os.Getenv("TF_HOME"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "tameflare"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("cannot locate the state directory: set TF_HOME")
	}
	return filepath.Join(h, ".local", "state", "tameflare"), nil
}

// Ensure returns Dir after creating it (mode 0700) if needed.
func Ensure() (string, error) {
	d, err := Dir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	return d, nil
}

// WriteFile replaces path with data, with permissions perm, through a
// temporary file beside it renamed over path: a reader, or a crash, sees
// the old file or the new one, never part of one. With durable the data
// is synced before the rename and the directory after it, so that the
// new file survives a power cut once WriteFile returns. The errors are
// the os package's, which name the file.
func WriteFile(path string, data []byte, perm os.FileMode, durable bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if durable {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if durable {
		if d, derr := os.Open(dir); derr == nil {
			// The rename is durable only once the directory is.
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}

// ReadFile reads path, refusing one larger than limit bytes: the state
// files in $TF_HOME are small, and a huge one is damage or an attack, not
// something to load into memory. The errors are the os package's (test a
// missing file with errors.Is(err, fs.ErrNotExist)), or say the size.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
