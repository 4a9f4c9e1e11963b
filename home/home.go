// Package home locates tf's state directory ($TF_HOME) and the paths inside it.
package home

import (
	"errors"
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
