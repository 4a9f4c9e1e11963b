package agents

import (
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// A Watcher keeps the agents of a state directory in force in a running
// gateway: it rereads the file when it changes, so that tf agents add and
// rm take effect without a restart.
type Watcher struct {
	home    string
	onError func(error)
	table   atomic.Pointer[Table]
	last    fs.FileInfo
	lastErr string
	mu      sync.Mutex // serializes reloads
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	// used holds when each agent last authenticated (unix seconds, an
	// *atomic.Int64 by name); dirty says it changed since the last
	// write of the used file.
	used  sync.Map
	dirty atomic.Bool
}

// Watch reads the agents of home and rereads them every interval (zero
// means one second) until Close. A file that cannot be read leaves no
// agent in force (fail closed) and is reported to onError, once per
// distinct error.
func Watch(home string, interval time.Duration, onError func(error)) *Watcher {
	if interval <= 0 {
		interval = time.Second
	}
	if onError == nil {
		onError = func(error) {}
	}
	w := &Watcher{home: home, onError: onError, stop: make(chan struct{}), done: make(chan struct{})}
	w.table.Store(NewTable(File{}))
	w.Reload()
	go w.run(interval)
	return w
}

func (w *Watcher) run(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSave := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.poll()
			if time.Since(lastSave) >= usedEvery {
				w.saveUsed()
				lastSave = time.Now()
			}
		}
	}
}

// poll rereads the file when its size, time or identity changed.
func (w *Watcher) poll() {
	fi, err := os.Stat(Path(w.home))
	w.mu.Lock()
	same := w.last != nil && err == nil && os.SameFile(w.last, fi) && w.last.ModTime().Equal(fi.ModTime()) && w.last.Size() == fi.Size()
	gone := w.last == nil && err != nil && w.lastErr == ""
	w.mu.Unlock()
	if same || gone {
		return
	}
	w.Reload()
}

// Reload rereads the file now.
func (w *Watcher) Reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, _ := os.Stat(Path(w.home))
	f, err := Read(w.home)
	if err != nil {
		w.table.Store(NewTable(File{}))
		w.last = nil
		if err.Error() != w.lastErr {
			w.lastErr = err.Error()
			w.onError(err)
		}
		return
	}
	w.last, w.lastErr = fi, ""
	w.table.Store(NewTable(f))
}

// Table is the agents in force.
func (w *Watcher) Table() *Table { return w.table.Load() }

// usedEvery spaces the writes of the used file.
const usedEvery = 30 * time.Second

// Authenticate is Table().Authenticate; it notes when the agent was last
// seen, for tf agents list.
func (w *Watcher) Authenticate(user, token string) (string, bool) {
	name, ok := w.table.Load().Authenticate(user, token)
	if ok {
		now := time.Now().Unix()
		v, _ := w.used.Load(name)
		if v == nil {
			v, _ = w.used.LoadOrStore(name, new(atomic.Int64))
		}
		// A store only when the second changes: agents authenticate once
		// per connection, and most of them share no cache line anyway.
		if at := v.(*atomic.Int64); at.Load() != now {
			at.Store(now)
			w.dirty.Store(true)
		}
	}
	return name, ok
}

// saveUsed merges the times agents were last seen into the used file.
func (w *Watcher) saveUsed() {
	if !w.dirty.Swap(false) {
		return
	}
	seen := map[string]time.Time{}
	w.used.Range(func(k, v any) bool {
		seen[k.(string)] = time.Unix(v.(*atomic.Int64).Load(), 0).UTC()
		return true
	})
	if err := MarkUsed(w.home, seen); err != nil {
		w.dirty.Store(true) // try again next time
	}
}

// Close stops watching and writes when agents were last seen.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	w.saveUsed()
}
