package audit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Options.Durable hears of every fdatasync that makes written records
// durable, in both sync modes, with a lag that covers the wait.
func TestDurableHook(t *testing.T) {
	for _, mode := range []SyncMode{SyncGroup, SyncAlways} {
		t.Run(string(mode), func(t *testing.T) {
			var mu sync.Mutex
			var lags []time.Duration
			l, err := Open(t.TempDir(), Options{Gateway: "g", Sync: mode, SyncWindow: 20 * time.Millisecond, Durable: func(d time.Duration) {
				mu.Lock()
				lags = append(lags, d)
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := l.Event(context.Background(), "g", "test.event", nil); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(60 * time.Millisecond) // the syncer's turn, not Close's
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lags) == 0 {
				t.Fatal("Durable never called")
			}
			for _, d := range lags {
				if d < 0 || d > 10*time.Second {
					t.Errorf("lag %v", d)
				}
			}
			if mode == SyncGroup {
				// The syncer waits the window before syncing a write.
				var longest time.Duration
				for _, d := range lags {
					longest = max(longest, d)
				}
				if longest < 10*time.Millisecond {
					t.Errorf("group-commit lags %v: none covers the sync window", lags)
				}
			}
		})
	}
}
