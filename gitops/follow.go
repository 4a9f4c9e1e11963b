package gitops

import (
	"context"
	"time"
)

// DefaultFollowInterval is how often a Follower fetches the remote ref.
const DefaultFollowInterval = time.Minute

// A Follower keeps the local pin on a remote's applied ref: it runs
// SyncRemote now and then on an interval. The gateways of the home pick
// the moved pin up through their Watcher; a tip that cannot be fetched or
// fails its checks goes to OnError once (until the error changes), and the
// pin, the last good policy, stays.
type Follower struct {
	Home   string
	Remote RemotePin
	// Interval between fetches; zero means DefaultFollowInterval.
	Interval time.Duration
	// OnSync receives each sync that moved the pin.
	OnSync func(*SyncResult)
	// OnError receives a failed sync; OnRecover is called when a sync
	// succeeds after one failed.
	OnError   func(error)
	OnRecover func()
}

// Run syncs until ctx ends and returns ctx's error.
func (f *Follower) Run(ctx context.Context) error {
	iv := f.Interval
	if iv <= 0 {
		iv = DefaultFollowInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	lastErr := ""
	for {
		res, err := SyncRemote(ctx, f.Home, &f.Remote)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if err.Error() != lastErr && f.OnError != nil {
				f.OnError(err)
			}
			lastErr = err.Error()
		default:
			if lastErr != "" && f.OnRecover != nil {
				f.OnRecover()
			}
			lastErr = ""
			if res.Changed && f.OnSync != nil {
				f.OnSync(res)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
