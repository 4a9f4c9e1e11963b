package mcp

import (
	"fmt"
	"sync"
	"testing"
)

// Gateways in several processes pin the tools of one server at once
// (each store here is one process's): every pin and every change mark
// is kept, none lost to a write made from an older copy of the file.
func TestPinStoreConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		store := OpenPins(dir, nil)
		wg.Go(func() {
			var seen []ToolDigest
			for i := range each {
				// Each listing shows this writer's tools so far, and the
				// shared tool "t" with a digest of this writer's.
				seen = append(seen, ToolDigest{Name: fmt.Sprintf("w%d-%d", w, i), Digest: "d"})
				list := append([]ToolDigest{{Name: "t", Digest: fmt.Sprintf("t%d", w)}}, seen...)
				if _, _, err := store.Observe("docs", list); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	files, err := OpenPins(dir, nil).List("docs")
	if err != nil {
		t.Fatal(err)
	}
	tools := files[0].Tools
	if len(tools) != writers*each+1 {
		t.Fatalf("%d tools pinned, want %d", len(tools), writers*each+1)
	}
	// Writers disagree on t: whoever pinned it first, the others marked
	// it changed, and no later write unmarked it.
	if tools["t"].Changed == "" {
		t.Fatalf("t: %+v", tools["t"])
	}
}
