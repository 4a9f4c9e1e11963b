package httpproxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

// bodyEchoHandler answers with the method, the request body and, as
// headers, what the upstream saw.
func bodyEchoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Expect", r.Header.Get("Expect"))
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})
}

// TestTunnelHTTPSemantics: the tunnel's request loop keeps what net/http's
// server did for clients speaking raw HTTP/1.x inside the TLS tunnel.
func TestTunnelHTTPSemantics(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			w.(http.Flusher).Flush() // no length: chunked
			io.WriteString(w, "data")
			w.Header().Set("X-Sum", "42")
		case "/len":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		default:
			bodyEchoHandler().ServeHTTP(w, r)
		}
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots, MaxHeaderBytes: 8 << 10})
	req := func(method, path string, extra string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, path, apiHost, extra)
	}
	read := func(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	closed := func(t *testing.T, tc net.Conn, br *bufio.Reader) {
		t.Helper()
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); err == nil {
			t.Error("connection still open")
		}
	}

	t.Run("100-continue", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("POST", "/c", "Content-Length: 4\r\nExpect: 100-continue\r\n"))
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
			t.Fatalf("before the body: %q, %v", line, err)
		}
		br.ReadString('\n') // the blank line ending the 100 response
		io.WriteString(tc, "ping")
		resp, body := read(t, br, "POST")
		if resp.StatusCode != 200 || body != "POST ping" || resp.Header.Get("X-Expect") != "" {
			t.Errorf("%d %q, upstream saw Expect %q", resp.StatusCode, body, resp.Header.Get("X-Expect"))
		}
	})
	t.Run("unknown expectation", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("POST", "/c", "Content-Length: 4\r\nExpect: teapot\r\n")+"ping")
		resp, _ := read(t, br, "POST")
		if resp.StatusCode != http.StatusExpectationFailed {
			t.Errorf("status %d, want 417", resp.StatusCode)
		}
		closed(t, tc, br)
	})
	t.Run("pipelined", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("POST", "/a", "Content-Length: 3\r\n")+"one"+req("POST", "/b", "Content-Length: 3\r\n")+"two"+req("GET", "/len", ""))
		for _, want := range []string{"POST one", "POST two", "hello"} {
			if _, body := read(t, br, "POST"); body != want {
				t.Errorf("got %q, want %q", body, want)
			}
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, "GET /len HTTP/1.0\r\nHost: "+apiHost+"\r\nConnection: keep-alive\r\n\r\n")
		resp, body := read(t, br, "GET")
		if body != "hello" || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("keep-alive: %q, Connection %q", body, resp.Header.Get("Connection"))
		}
		io.WriteString(tc, "GET /x HTTP/1.0\r\nHost: "+apiHost+"\r\n\r\n")
		resp, body = read(t, br, "GET")
		if body != "GET " {
			t.Errorf("without keep-alive: %q", body)
		}
		closed(t, tc, br)
	})
	t.Run("HEAD", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("HEAD", "/len", "")+req("GET", "/len", ""))
		resp, body := read(t, br, "HEAD")
		if resp.ContentLength != 5 || body != "" {
			t.Errorf("HEAD: length %d, body %q", resp.ContentLength, body)
		}
		if _, body := read(t, br, "GET"); body != "hello" {
			t.Errorf("after HEAD: %q", body)
		}
	})
	t.Run("trailers", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("GET", "/trailer", ""))
		resp, body := read(t, br, "GET")
		if body != "data" || resp.Trailer.Get("X-Sum") != "42" || len(resp.TransferEncoding) == 0 {
			t.Errorf("%q, trailer %v, encoding %v", body, resp.Trailer, resp.TransferEncoding)
		}
	})
	t.Run("Connection: close", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, req("GET", "/len", "Connection: close\r\n"))
		if resp, _ := read(t, br, "GET"); !resp.Close {
			t.Error("response does not announce the close")
		}
		closed(t, tc, br)
	})
	for _, tc := range []struct{ name, raw, want string }{
		{"two Host headers", "GET / HTTP/1.1\r\nHost: " + apiHost + "\r\nHost: evil.test\r\n\r\n", ""}, // http.ReadRequest or the framing tracker refuses it
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "missing required Host header"},
		{"bad request line", "GET\r\n\r\n", "Bad Request"},
		{"bad header name", "GET / HTTP/1.1\r\nHost: " + apiHost + "\r\nBad Name: x\r\n\r\n", ""},
		{"HTTP/2 line", "GET / HTTP/2.0\r\nHost: " + apiHost + "\r\n\r\n", ""},
		{"head too large", "GET / HTTP/1.1\r\nHost: " + apiHost + "\r\nX-Big: " + strings.Repeat("a", 32<<10) + "\r\n\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tp.gov.seen())
			c, br := tp.dialTunnel(t, apiHost+":443")
			io.WriteString(c, tc.raw)
			resp, body := read(t, br, "GET")
			if resp.StatusCode < 400 || resp.StatusCode > 505 || !strings.Contains(body, tc.want) {
				t.Errorf("%d %q, want an error naming %q", resp.StatusCode, body, tc.want)
			}
			closed(t, c, br)
			if len(tp.gov.seen()) != before {
				t.Error("the governor saw the request")
			}
		})
	}
}

// TestClientGoneCancelsHeldRequest: a request the Governor holds (as for a
// human's approval) is cancelled when the client closes its connection.
func TestClientGoneCancelsHeldRequest(t *testing.T) {
	gov := newStubGovernor()
	held := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	gov.decide = func(r *connectors.Request) Verdict {
		held <- struct{}{}
		select {
		case <-r.HTTP.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(10 * time.Second):
		}
		return Verdict{}
	}
	tp := startProxy(t, Config{Governor: gov})
	tc, _ := tp.dialTunnel(t, apiHost+":443")
	io.WriteString(tc, "GET /held HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
	<-held
	time.Sleep(2 * watchDelay)
	tc.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the held request's context was not cancelled when the client left")
	}
}

// TestPipelinedPastWatchDelay: the client watch does not disturb a client
// that sends its next request while the first is still being served.
func TestPipelinedPastWatchDelay(t *testing.T) {
	gov := newStubGovernor()
	var n atomic.Int32
	gov.decide = func(*connectors.Request) Verdict {
		if n.Add(1) == 1 {
			time.Sleep(3 * watchDelay) // the watch starts and reads a byte
		}
		return Verdict{Allow: true}
	}
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	tc, br := tp.dialTunnel(t, apiHost+":443")
	r := "GET /%d HTTP/1.1\r\nHost: " + apiHost + "\r\n\r\n"
	io.WriteString(tc, fmt.Sprintf(r, 1))
	time.Sleep(2 * watchDelay)
	io.WriteString(tc, fmt.Sprintf(r, 2))
	for i := 1; i <= 2; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp.Body); got != fmt.Sprintf("GET /%d", i) {
			t.Errorf("response %d: %q", i, got)
		}
	}
}

// TestUpstreamClosesKeptAliveConnections: an upstream that closes every
// connection after its response, without saying so, costs no idempotent
// request (a closed connection is retried or not reused), and one that
// closes idle connections after a timeout costs no POST: a connection the
// upstream closed is noticed before it is used.
func TestUpstreamClosesKeptAliveConnections(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	count := func(r *http.Request) string {
		b, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path + " " + string(b)
		mu.Lock()
		seen[key]++
		mu.Unlock()
		return key
	}
	certs, roots := upstreamCerts(t, apiHost, "idle.example.test")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := count(r)
		if r.Host == "idle.example.test" {
			io.WriteString(w, key)
			return
		}
		// Close after the response without saying so.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(key), key)
		brw.Flush()
	}))
	up.Config.IdleTimeout = 50 * time.Millisecond
	up.TLS = &tls.Config{Certificates: certs}
	up.StartTLS()
	defer up.Close()
	addr := up.Listener.Addr().String()
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: addr, "idle.example.test": addr}, RootCAs: roots})
	c := tp.client(t)
	do := func(method, url, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		want := method + " " + req.URL.Path + " " + body
		if got := readBody(t, resp.Body); resp.StatusCode != 200 || got != want {
			t.Fatalf("%s %s: %d %q", method, url, resp.StatusCode, got)
		}
	}
	for i := range 20 {
		do("GET", fmt.Sprintf("https://%s/get%d", apiHost, i), "")
	}
	for i := range 3 {
		do("POST", "https://idle.example.test/post", fmt.Sprint(i))
		time.Sleep(200 * time.Millisecond) // the upstream closes the idle connection
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%q reached the upstream %d times", k, n)
		}
	}
	if len(seen) != 23 {
		t.Errorf("the upstreams saw %d distinct requests, want 23", len(seen))
	}
}

// TestUnaskedTimeoutOnReusedConnection: an upstream that writes an
// unasked 408 as it closes a kept-alive connection, just after an
// answer, does not answer the next request with it: a GET taken onto that
// connection without a look is sent again on a fresh one.
func TestUnaskedTimeoutOnReusedConnection(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		brw.Flush()
		time.Sleep(10 * time.Millisecond) // the proxy has read the answer
		io.WriteString(conn, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		time.Sleep(10 * time.Millisecond)
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.Listener.Addr().String()}, RootCAs: up.roots})
	c := tp.client(t)
	for i := range 10 {
		resp, err := c.Get(fmt.Sprintf("https://%s/get%d", apiHost, i))
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(30 * time.Millisecond) // the 408 has arrived; still within unpeekedIdle
	}
}

// TestUpstreamHeadLimit: an upstream response head past 1 MiB is refused
// with a 502, as http.Transport did.
func TestUpstreamHeadLimit(t *testing.T) {
	certs, roots := upstreamCerts(t, apiHost)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: l.Addr().String()}, RootCAs: roots})
	resp, err := tp.client(t).Get("https://" + apiHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if o := tp.gov.outcome(t); o.Err == nil || !strings.Contains(o.Err.Error(), "exceeded") {
		t.Errorf("outcome error %v", o.Err)
	}
}
