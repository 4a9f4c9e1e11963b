package gitops

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	tfhome "github.com/tameflare/tf/home"

	"github.com/tameflare/tf/rules"
)

// DefaultWatchInterval is how often a Watcher looks at the pin.
const DefaultWatchInterval = 250 * time.Millisecond

// A Watcher reloads the policy when the pin moves. It polls the pin file
// (by modification time, size and content), loads the newly pinned commit
// and hands it to OnChange; a pin or policy that fails to load goes to
// OnError once, and the caller keeps the policy it has (fail closed: never
// a half-loaded policy, never none).
type Watcher struct {
	// Home is $TF_HOME.
	Home string
	// Commit is the commit of the policy the caller has now; a pin naming
	// another commit is loaded on the first poll.
	Commit string
	// Interval between polls; zero means DefaultWatchInterval.
	Interval time.Duration
	// OnChange receives each newly pinned policy. It runs in Run's
	// goroutine; a slow callback delays the next poll.
	OnChange func(*rules.Policy, *Pin)
	// OnError receives a pin or policy that could not be loaded, once per
	// distinct pin content.
	OnError func(error)
}

// Run polls until ctx ends and returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	iv := w.Interval
	if iv <= 0 {
		iv = DefaultWatchInterval
	}
	path := filepath.Join(w.Home, PinFile)
	var (
		lastData []byte
		missing  bool
		lastErr  string
		loaded   = w.Commit
	)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		// The pin is a few hundred bytes: reading it on every poll is
		// cheaper than trusting modification times, which two writes in
		// one clock tick can share.
		data, err := tfhome.ReadFile(path, maxPinBytes)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if !missing && lastData != nil {
				w.report(errors.New("the pin was removed; keeping the policy in force"))
			}
			missing, lastData = true, nil
		case err != nil:
			if err.Error() != lastErr {
				lastErr = err.Error()
				w.report(err)
			}
		case !bytes.Equal(data, lastData):
			missing, lastData, lastErr = false, data, ""
			if c := w.poll(ctx, data, loaded); c != "" {
				loaded = c
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// poll loads the pin in data if it names another commit than loaded and
// returns the commit now in force, or "" when nothing changed.
func (w *Watcher) poll(ctx context.Context, data []byte, loaded string) string {
	pin, err := ParsePin(data)
	if err != nil {
		w.report(err)
		return ""
	}
	if pin.Commit == loaded {
		return ""
	}
	_, c, err := pinnedCommit(ctx, w.Home, pin)
	if err != nil {
		w.report(err)
		return ""
	}
	p, fsys, err := LoadCommit(c, repoLabel(pin.Repository))
	if err != nil {
		w.report(err)
		return ""
	}
	if err := checkPinned(w.Home, pin, c, p, fsys); err != nil {
		w.report(err)
		return ""
	}
	if w.OnChange != nil {
		w.OnChange(p, pin)
	}
	return pin.Commit
}

func (w *Watcher) report(err error) {
	if w.OnError != nil {
		w.OnError(err)
	}
}
