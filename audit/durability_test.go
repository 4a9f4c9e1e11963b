package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// disk stands in for what a power loss leaves: each file as it was at its
// last fdatasync. It hooks syncFile for the length of a test.
type disk struct {
	mu     sync.Mutex
	frozen bool
	files  map[string][]byte // base name -> content at the last sync
	synced map[string]time.Time
	// fail, when set, is returned by every segment sync.
	fail error
}

func hookDisk(t *testing.T) *disk {
	d := &disk{files: map[string][]byte{}, synced: map[string]time.Time{}}
	old := syncFile
	syncFile = func(f *os.File) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		name := filepath.Base(f.Name())
		if d.fail != nil && name != headName {
			return d.fail
		}
		if err := old(f); err != nil {
			return err
		}
		if !d.frozen {
			b, err := os.ReadFile(f.Name())
			if err != nil {
				return err
			}
			d.files[name] = b
			d.synced[name] = time.Now()
		}
		return nil
	}
	t.Cleanup(func() { syncFile = old })
	return d
}

// powerLoss freezes the image and writes it to a new directory: the files
// of dir with only their synced bytes (a file created and named in a
// synced directory but never synced is empty). The head, created with a
// sync of its own, keeps its creation content if it was never synced here.
func (d *disk) powerLoss(t *testing.T, dir string, headAtOpen []byte) string {
	d.mu.Lock()
	d.frozen = true
	files := make(map[string][]byte, len(d.files))
	for k, v := range d.files {
		files[k] = v
	}
	d.mu.Unlock()
	out := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, ok := files[e.Name()]
		if !ok && e.Name() == headName {
			b = headAtOpen
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestPowerLossSyncAlways appends from 8 goroutines with SyncAlways across
// segment rotations, cuts the power (every file falls back to its last
// fdatasync) at some moment under load, and checks that every record
// whose Append had returned is in what is left, that Open accepts it and
// that it verifies.
func TestPowerLossSyncAlways(t *testing.T) {
	for round := range 3 {
		d := hookDisk(t)
		dir := t.TempDir()
		l := openLog(t, dir, Options{Sync: SyncAlways, SegmentBytes: 64 << 10})
		headAtOpen, err := os.ReadFile(filepath.Join(dir, headName))
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		var mu sync.Mutex
		var acked []uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r := decision(i)
					r.RequestID = fmt.Sprintf("g%d-%d", g, i)
					if err := l.Append(ctx, r); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = append(acked, r.Seq)
					mu.Unlock()
				}
			}()
		}
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= 400+200*round {
				break
			}
			time.Sleep(time.Millisecond)
		}
		// What was acknowledged before the cut, then the cut.
		mu.Lock()
		before := append([]uint64(nil), acked...)
		mu.Unlock()
		image := d.powerLoss(t, dir, headAtOpen)
		close(stop)
		wg.Wait()
		l.Close()

		present := map[uint64]bool{}
		l2, err := Open(image, Options{SegmentBytes: 64 << 10})
		if err != nil {
			t.Fatalf("round %d: Open after power loss: %v", round, err)
		}
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		for _, r := range scanAll(t, image) {
			present[r.Seq] = true
		}
		for _, s := range before {
			if !present[s] {
				t.Fatalf("round %d: seq %d was acknowledged before the power loss and is gone", round, s)
			}
		}
		if rep := mustVerify(t, image); !rep.OK() {
			t.Fatalf("round %d: verify after power loss: %+v", round, rep)
		}
		t.Logf("round %d: %d acknowledged before the cut, %d records survived", round, len(before), len(present))
	}
}

// TestGroupCommitWindow: with the default SyncGroup, Append returns once
// the record is written, and the syncer makes it durable on its own,
// without a later Append or Close, starting within the sync window. The
// lag is logged; the bound asserted is a generous one, so that a loaded
// machine does not fail the test (the window is measured by benchmarks).
func TestGroupCommitWindow(t *testing.T) {
	d := hookDisk(t)
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	defer l.Close()
	ctx := testCtx(t)
	r := decision(1)
	if err := l.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	acked := time.Now()
	seg := segmentName(1)
	deadline := acked.Add(10 * time.Second)
	for {
		d.mu.Lock()
		b, at := d.files[seg], d.synced[seg]
		d.mu.Unlock()
		if len(b) > 0 {
			recs := 0
			for _, c := range b {
				if c == '\n' {
					recs++
				}
			}
			if recs < 1 {
				t.Fatalf("synced segment holds %d records", recs)
			}
			t.Logf("durable %v after Append returned (window %v)", at.Sub(acked), DefaultSyncWindow)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a written record was not made durable without a further Append or Close")
		}
		time.Sleep(time.Millisecond)
	}
}

// An fdatasync that fails in the background makes the log refuse every
// later record (fail closed) and Close report it.
func TestGroupSyncFailureRefuses(t *testing.T) {
	d := hookDisk(t)
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	ctx := testCtx(t)
	d.mu.Lock()
	d.fail = syscall.EIO
	d.mu.Unlock()
	if err := l.Append(ctx, decision(1)); err != nil {
		t.Fatalf("the write itself succeeds: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := l.Append(ctx, decision(2))
		if errors.Is(err, syscall.EIO) {
			break
		}
		if err != nil {
			t.Fatalf("Append: %v, want EIO", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the log kept taking records after its fdatasync failed")
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close: %v, want EIO", err)
	}
}

// A write that fails (a full disk) fails the Append and every later one.
func TestWriteFailureRefuses(t *testing.T) {
	for _, mode := range []SyncMode{SyncGroup, SyncAlways} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{Sync: mode})
			ctx := testCtx(t)
			appendDecisions(t, l, 0, 2)
			old := writeAt
			writeAt = func(*os.File, []byte, int64) (int, error) { return 0, syscall.ENOSPC }
			defer func() { writeAt = old }()
			for i := range 2 {
				if err := l.Append(ctx, decision(2+i)); !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Append %d on a full disk: %v", i, err)
				}
			}
			writeAt = old
			if err := l.Append(ctx, decision(9)); err == nil {
				t.Fatal("the log took a record after a failed write")
			}
			l.Close()
			requireOK(t, dir, 2)
		})
	}
}

// Records without a waiter never start a batch: an outcome queued alone
// waits for the next Append's batch (or the window).
func TestAsyncRidesNextBatch(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SyncWindow: time.Minute})
	ctx := testCtx(t)
	o := &Record{Kind: KindOutcome, RequestID: "req-0001", Status: 200}
	if err := l.AppendAsync(o); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the writer has seen it by now
	if err := l.Append(ctx, decision(2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.batches != 1 {
		t.Fatalf("%d batches for an outcome and a decision, want 1", l.batches)
	}
	recs := scanAll(t, dir)
	if len(recs) != 2 || recs[0].Kind != KindOutcome || recs[1].Kind != KindDecision {
		t.Fatalf("records %+v", recs)
	}
}

// A writer that holds the lock lets it go to another that asks, while it
// keeps appending: the other's Append returns.
func TestLockHandOff(t *testing.T) {
	dir := t.TempDir()
	a := openLog(t, dir, Options{})
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.Append(ctx, decision(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	b := openLog(t, dir, Options{}) // takes the lock to open
	if err := b.Append(ctx, decision(1000)); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	if err := errors.Join(a.Close(), b.Close()); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if !rep.OK() || len(rep.Notes) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}
