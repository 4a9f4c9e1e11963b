package metrics_test

import (
	"net"
	"testing"

	"github.com/tameflare/tf/metrics"
)

// FuzzListen: whatever address a user writes, Listen either refuses it
// or listens on loopback, unless non-loopback addresses are allowed.
func FuzzListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0", "0.0.0.0:0", ":0", "example.com:9464",
		"127.0.0.1", "127.1:0", "[::ffff:127.0.0.1]:0", "[fe80::1%lo]:0", "127.0.0.1:99999", "\x00:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		ln, err := metrics.Listen(addr, false)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		defer ln.Close()
		if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
			t.Fatalf("Listen(%q) listens on %v, not loopback", addr, ln.Addr())
		}
	})
}
