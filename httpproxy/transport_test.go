package httpproxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// An upstream that offers HTTP/2 is reached over HTTP/1.1 with keep-alive
// (one connection for sequential requests), except for gRPC, which needs
// HTTP/2.
func TestUpstreamProtocol(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		fmt.Fprint(w, r.Proto)
	}))
	// Offer h2 in the handshake (the listener shares this config; the
	// server speaks h2 by default).
	up.TLS.NextProtos = []string{"h2", "http/1.1"}
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	c := tp.client(t)
	do := func(ct string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "https://"+apiHost+"/x", strings.NewReader("body"))
		req.Header.Set("Content-Type", ct)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return readBody(t, resp.Body)
	}
	for range 3 {
		if got := do("application/json"); got != "HTTP/1.1" {
			t.Fatalf("JSON request reached the upstream over %s, want HTTP/1.1", got)
		}
	}
	mu.Lock()
	n := len(conns)
	mu.Unlock()
	if n != 1 {
		t.Errorf("3 sequential requests used %d upstream connections, want 1 (keep-alive)", n)
	}
	if got := do("application/grpc+proto"); got != "HTTP/2.0" {
		t.Errorf("gRPC request reached the upstream over %s, want HTTP/2.0", got)
	}
}
