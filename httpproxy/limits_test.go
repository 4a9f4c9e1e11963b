package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConnectionCap: a client past MaxConnsPerClient is answered 503 and
// closed; a closed connection frees its place.
func TestConnectionCap(t *testing.T) {
	tp := startProxy(t, Config{MaxConnsPerClient: 3})
	var held []net.Conn
	for range 3 {
		c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	over := func() (int, string) {
		c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// The server may not have accepted the three yet: wait until it turns
	// one away.
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body := over()
		if status == http.StatusServiceUnavailable && strings.Contains(body, "too many connections") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fourth connection: %d %q, want 503", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held[0].Close()
	for {
		// Without credentials the proxy answers 407: the connection was
		// admitted.
		status, _ := over()
		if status == http.StatusProxyAuthRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a close: %d, want the connection admitted", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBodyReadTimeout: a client that stops sending its body is answered
// 400 once BodyReadTimeout passes, and nothing is governed.
func TestBodyReadTimeout(t *testing.T) {
	tp := startProxy(t, Config{BodyReadTimeout: 200 * time.Millisecond})
	c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	io.WriteString(c, "POST http://example.test/x HTTP/1.1\r\nHost: example.test\r\nProxy-Authorization: "+proxyAuth()+"\r\nContent-Length: 100\r\n\r\n0123456789")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "reading request body") {
		t.Errorf("%d %q, want 400 for the stalled body", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v", d)
	}
	if n := len(tp.gov.seen()); n != 0 {
		t.Errorf("governor consulted %d times for a body that never arrived", n)
	}
}

// TestAuthFailedReported: every request refused for proxy credentials is
// reported with the client's address.
func TestAuthFailedReported(t *testing.T) {
	got := make(chan string, 10)
	tp := startProxy(t, Config{AuthFailed: func(client, _ string) { got <- client }})
	for _, auth := range []string{"", "Proxy-Authorization: Basic dGY6d3Jvbmc=\r\n"} {
		resp := tp.rawRequest(t, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n"+auth+"\r\n")
		if resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("status %d", resp.StatusCode)
		}
		select {
		case c := <-got:
			if !strings.HasPrefix(c, "127.0.0.1:") {
				t.Errorf("client %q", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("failure not reported")
		}
	}
}
