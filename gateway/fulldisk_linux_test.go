package gateway

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tameflare/tf/audit"
)

// TestAuditWriteFailureRefuses makes the disk refuse the audit log's next
// write (RLIMIT_FSIZE at the segment's size: the kernel answers EFBIG, as
// it answers ENOSPC on a full disk) and checks, in each durability mode,
// that requests are then refused with 503 and the reason, and never
// reach the upstream.
func TestAuditWriteFailureRefuses(t *testing.T) {
	for _, mode := range []audit.SyncMode{audit.SyncGroup, audit.SyncAlways} {
		t.Run(string(mode), func(t *testing.T) {
			f := start(t, policy(t, "version: 1\ndefault: allow\n"), func(c *Config) { c.AuditSync = mode })
			if res, _ := f.do(t, "GET", "https://example.test/before", ""); res.StatusCode != http.StatusOK {
				t.Fatalf("before: %d", res.StatusCode)
			}
			seg := filepath.Join(audit.Dir(f.home), "audit-000001.jsonl")
			fi, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			var old syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
			// The outcome of "before" may still be queued: leave no room
			// for anything.
			lim := syscall.Rlimit{Cur: uint64(fi.Size()), Max: old.Max}
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
				t.Fatal(err)
			}
			restored := false
			restore := func() {
				if !restored {
					restored = true
					if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer restore()
			hits := f.hits.Load()
			for i, path := range []string{"/a", "/b"} {
				res, body := f.do(t, "GET", "https://example.test"+path, "")
				if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "could not write the audit log") {
					t.Fatalf("request %d with the disk refusing writes: %d %s", i, res.StatusCode, body)
				}
				if i == 0 {
					t.Logf("refusal: %s", strings.TrimSpace(body))
				}
			}
			if n := f.hits.Load(); n != hits {
				t.Fatalf("%d requests reached the upstream unrecorded", n-hits)
			}
			restore()
			// Fail closed stays closed: the log refuses until restarted.
			if res, _ := f.do(t, "GET", "https://example.test/after", ""); res.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("after the disk recovered, same log: %d", res.StatusCode)
			}
			if n := f.hits.Load(); n != hits {
				t.Fatalf("%d requests reached the upstream unrecorded", n-hits)
			}
		})
	}
}
