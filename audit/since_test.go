package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Scan with Since reads only the segments that may hold records of the
// window: the same records as a full scan, and a damaged segment long
// before the window is not even opened.
func TestScanSinceSkipsOldSegments(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 16 << 10})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := testCtx(t)
	for i := range 600 { // one a minute for ten hours
		r := decision(i)
		r.Time = base.Add(time.Duration(i) * time.Minute)
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 10 {
		t.Fatalf("%d segments (%v), want many", len(segs), err)
	}
	since := base.Add(9 * time.Hour)
	count := func(f Filter) (int, error) {
		n := 0
		err := Scan(dir, f, func(*Record) error { n++; return nil })
		return n, err
	}
	if n, err := count(Filter{Since: since}); err != nil || n != 60 {
		t.Fatalf("since 09:00: %d records (%v), want 60", n, err)
	}

	// Damage a record of the first segment.
	first := filepath.Join(dir, segmentName(segs[0].num))
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(first, bytes.Replace(b, []byte(`"branch-0003"`), []byte(`"branch-XXXX"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := count(Filter{}); err == nil {
		t.Fatal("a full scan read past a damaged record")
	}
	if n, err := count(Filter{Since: since}); err != nil || n != 60 {
		t.Fatalf("since 09:00 with an old segment damaged: %d records (%v), want 60", n, err)
	}
	// A window that reaches into the damaged segment (within the allowed
	// skew of its successor's start) still reads it.
	if _, err := count(Filter{Since: base.Add(time.Minute)}); err == nil {
		t.Fatal("a scan of a window reaching the damaged segment did not read it")
	}
}
