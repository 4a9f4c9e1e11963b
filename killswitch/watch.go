package killswitch

import (
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/rules"
)

// DefaultInterval is how often a Watcher looks at the file: well inside
// the 100 ms in which a running gateway must obey a new switch.
const DefaultInterval = 25 * time.Millisecond

var _ rules.KillSwitch = (*Watcher)(nil)

// A Watcher follows the kill switch file for one gateway and answers, for
// each action, whether a switch stops it.
type Watcher struct {
	home     string
	gateway  string
	onChange func(State)
	state    atomic.Pointer[State]

	mu   sync.Mutex // serializes reloads
	last fs.FileInfo
	seen bool

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Watch reads the kill switch of home now and then every interval (zero
// means DefaultInterval) until Close. onChange, if set, is called with the
// new state after each change, from the watching goroutine or Reload's
// caller; it must not block for long.
func Watch(home, gateway string, interval time.Duration, onChange func(State)) *Watcher {
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Watcher{home: home, gateway: gateway, onChange: onChange, stop: make(chan struct{}), done: make(chan struct{})}
	w.state.Store(&State{Version: Version})
	w.Reload()
	go w.run(interval)
	return w
}

func (w *Watcher) run(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.poll()
		}
	}
}

// poll reloads when the file changed: a rename gives a new inode, an edit
// in place a new size or modification time.
func (w *Watcher) poll() {
	fi, err := os.Stat(Path(w.home))
	w.mu.Lock()
	same := w.seen && sameFile(w.last, fi, err)
	w.mu.Unlock()
	if !same {
		w.Reload()
	}
}

func sameFile(last, fi fs.FileInfo, err error) bool {
	if err != nil {
		return last == nil && errors.Is(err, fs.ErrNotExist)
	}
	return last != nil && os.SameFile(last, fi) && last.Size() == fi.Size() && last.ModTime().Equal(fi.ModTime())
}

// Reload reads the file now (tf kill asks for this through the admin API
// so that this gateway need not wait for the next poll) and returns the
// state in force. A file that cannot be read stops everything.
func (w *Watcher) Reload() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, statErr := os.Stat(Path(w.home))
	st, err := Read(w.home)
	if err != nil {
		st = brokenState(err)
	}
	if statErr == nil {
		w.last = fi
	} else {
		w.last = nil
	}
	w.seen = true
	old := w.state.Load()
	w.state.Store(&st)
	if w.onChange != nil && !equal(*old, st) {
		w.onChange(st)
	}
	return st
}

func equal(a, b State) bool {
	if a.Broken != b.Broken || len(a.Switches) != len(b.Switches) {
		return false
	}
	for i := range a.Switches {
		x, y := a.Switches[i], b.Switches[i]
		if x.Scope != y.Scope || x.Reason != y.Reason || x.By != y.By || !x.At.Equal(y.At) {
			return false
		}
	}
	return true
}

// State is the state in force.
func (w *Watcher) State() State { return *w.state.Load() }

// Killed reports whether a switch stops a through this gateway, and why.
func (w *Watcher) Killed(a *rules.Action) (string, bool) {
	return w.KilledConnector(a.Agent, a.Connector)
}

// KilledConnector reports whether a switch stops connector's traffic sent
// by agent through this gateway, and why.
func (w *Watcher) KilledConnector(agent, connector string) (string, bool) {
	sw, ok := w.state.Load().Match(w.gateway, agent, connector)
	if !ok {
		return "", false
	}
	return sw.Describe(), true
}

// Close stops watching.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
