package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

const apiHost = "api.example.test"

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Host", r.Host)
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
	})
}

func TestForwardOverConnect(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})

	resp, err := tp.client(t).Get("https://" + apiHost + "/repos/acme/app?x=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := readBody(t, resp.Body); got != "GET /repos/acme/app?x=1" {
		t.Errorf("body %q", got)
	}
	if got := resp.Header.Get("X-Upstream-Host"); got != apiHost {
		t.Errorf("upstream saw Host %q", got)
	}
	seen := tp.gov.seen()
	if len(seen) != 1 {
		t.Fatalf("governor saw %d requests", len(seen))
	}
	s := seen[0]
	if s.Scheme != "https" || s.Host != apiHost || s.URL != "https://"+apiHost+"/repos/acme/app?x=1" {
		t.Errorf("governor saw %+v", s)
	}
	o := tp.gov.outcome(t)
	if o.Status != http.StatusOK || o.Err != nil || o.ResponseBytes != int64(len("GET /repos/acme/app?x=1")) {
		t.Errorf("outcome %+v", o)
	}
}

func TestForwardPlainHTTP(t *testing.T) {
	up := newPlainUpstream(t, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{"plain.example.test": up.addr()}})

	resp, err := tp.client(t).Post("http://PLAIN.example.test/a/b", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := readBody(t, resp.Body); got != "POST /a/b" {
		t.Errorf("body %q", got)
	}
	if got := resp.Header.Get("X-Upstream-Host"); got != "plain.example.test" {
		t.Errorf("upstream saw Host %q", got)
	}
	seen := tp.gov.seen()
	if len(seen) != 1 || seen[0].Scheme != "http" || seen[0].Host != "plain.example.test" || string(seen[0].Body) != "hello" || seen[0].Truncated {
		t.Errorf("governor saw %+v", seen)
	}
	if o := tp.gov.outcome(t); o.RequestBytes != 5 || o.Status != 200 {
		t.Errorf("outcome %+v", o)
	}
}

func TestRefusalReachesClient(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict {
		return Verdict{Refusal: &Response{
			Status: http.StatusForbidden,
			Header: http.Header{"Content-Type": {"application/json"}, "X-Tf-Rule": {"protect-main"}, "Connection": {"x-smuggle"}},
			Body:   []byte(`{"error":"denied by protect-main"}`),
		}}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr(), "plain.example.test": up.addr()}, RootCAs: up.roots})

	for _, u := range []string{"https://" + apiHost + "/x", "http://plain.example.test/x"} {
		resp, err := tp.client(t).Post(u, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || body != `{"error":"denied by protect-main"}` ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("X-Tf-Rule") != "protect-main" {
			t.Errorf("%s: refusal %d %v %q", u, resp.StatusCode, resp.Header, body)
		}
		if o := gov.outcome(t); o.Status != http.StatusForbidden {
			t.Errorf("outcome %+v", o)
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream hit %d times", n)
	}
}

func TestDefaultRefusal(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict { return Verdict{} }
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	resp, err := tp.client(t).Get("https://" + apiHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readBody(t, resp.Body); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "refused") {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if up.hits.Load() != 0 {
		t.Error("upstream was reached")
	}
}

func TestProxyAuthentication(t *testing.T) {
	up := newPlainUpstream(t, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{"plain.example.test": up.addr()}})
	wrong := "Basic " + "dGY6d3Jvbmc=" // tf:wrong
	for name, header := range map[string]string{
		"none":   "",
		"wrong":  "Proxy-Authorization: " + wrong + "\r\n",
		"bearer": "Proxy-Authorization: Bearer " + testToken + "\r\n",
	} {
		for _, line := range []string{"GET http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\n", "CONNECT " + apiHost + ":443 HTTP/1.1\r\nHost: " + apiHost + ":443\r\n"} {
			resp := tp.rawRequest(t, line+header+"\r\n")
			if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="tf"` {
				t.Errorf("%s %q: status %d, Proxy-Authenticate %q", name, line[:7], resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
			}
			// curl and git retry a refused CONNECT with credentials; they
			// must do so on a new connection, as the tracker stops at it.
			if strings.HasPrefix(line, "CONNECT") && !resp.Close {
				t.Errorf("%s: a 407 to CONNECT keeps the connection open", name)
			}
		}
	}
	if up.hits.Load() != 0 || len(tp.gov.seen()) != 0 {
		t.Error("unauthenticated request went through")
	}
}

func TestHostMustMatchConnect(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost, "other.example.test"}, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr(), "other.example.test": up.addr()}, RootCAs: up.roots})
	tc, br := tp.dialTunnel(t, apiHost+":443")

	cases := []struct {
		req    string
		status int
	}{
		{"GET / HTTP/1.1\r\nHost: other.example.test\r\n\r\n", http.StatusMisdirectedRequest},
		{"GET / HTTP/1.1\r\nHost: api.example.test:8443\r\n\r\n", http.StatusMisdirectedRequest},
		{"GET https://other.example.test/ HTTP/1.1\r\nHost: api.example.test\r\n\r\n", http.StatusMisdirectedRequest},
		{"GET / HTTP/1.1\r\nHost: API.Example.Test:443\r\n\r\n", http.StatusOK},
		{"GET / HTTP/1.1\r\nHost: bad_host!\r\n\r\n", http.StatusBadRequest},
		{"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", http.StatusBadRequest}, // Go's server refuses and closes
	}
	for _, c := range cases {
		if _, err := io.WriteString(tc, c.req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: %v", c.req, err)
		}
		body := readBody(t, resp.Body)
		if resp.StatusCode != c.status {
			t.Errorf("%q: status %d (%q), want %d", c.req, resp.StatusCode, body, c.status)
		}
	}
	if n := up.hits.Load(); n != 1 {
		t.Errorf("upstream hit %d times, want 1", n)
	}
}

func TestPeekAndStreamBody(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	const peekLimit = 64 << 10
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots, PeekLimit: peekLimit})

	body := make([]byte, 3<<20)
	rand.Read(body)
	for _, tc := range []struct {
		name      string
		size      int
		chunked   bool
		truncated bool
	}{
		{"3MiB content-length", len(body), false, true},
		{"3MiB chunked", len(body), true, true},
		{"small", 1000, false, false},
		{"small chunked", 1000, true, false},
		{"exactly the limit chunked", peekLimit, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := body[:tc.size]
			var r io.Reader = bytes.NewReader(b)
			if tc.chunked {
				r = io.MultiReader(r) // hides the length: the client sends chunks
			}
			req, _ := http.NewRequest(http.MethodPut, "https://"+apiHost+"/upload", r)
			resp, err := tp.client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			want := fmt.Sprintf("%d %x", len(b), sha256.Sum256(b))
			if got := readBody(t, resp.Body); got != want {
				t.Errorf("upstream got %q, want %q", got, want)
			}
			seen := tp.gov.seen()
			last := seen[len(seen)-1]
			wantPeek := b[:min(len(b), peekLimit)]
			if !bytes.Equal(last.Body, wantPeek) || last.Truncated != tc.truncated {
				t.Errorf("governor saw %d bytes truncated=%v, want %d truncated=%v", len(last.Body), last.Truncated, len(wantPeek), tc.truncated)
			}
			if o := tp.gov.outcome(t); o.RequestBytes != int64(len(b)) {
				t.Errorf("outcome request bytes %d, want %d", o.RequestBytes, len(b))
			}
		})
	}
}

func TestServerSentEventsStream(t *testing.T) {
	next := make(chan struct{})
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			rc.Flush()
			if i == 3 {
				return
			}
			// The next event is sent only after the client has seen this
			// one: a proxy that buffers would deadlock here and time out.
			select {
			case <-next:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				return
			}
		}
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	resp, err := tp.client(t).Get("https://" + apiHost + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := 1; i <= 3; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		br.ReadString('\n')
		if i < 3 {
			next <- struct{}{}
		}
	}
}

// wsUpstream answers an upgrade request with 101 and then echoes bytes.
func wsUpstream(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade") {
			http.Error(w, "upgrade expected", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 1024)
		for {
			n, err := brw.Read(buf)
			if err != nil {
				return
			}
			c.Write(bytes.ToUpper(buf[:n]))
		}
	})
}

// TestUpgradeRefusedUnlessGoverned: an allowed request that asks for an
// upgrade is refused unless the Governor vouches for the protocol; the
// upstream never sees it.
func TestUpgradeRefusedUnlessGoverned(t *testing.T) {
	var reached atomic.Int32
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	for _, proto := range []string{"websocket", "h2c"} {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		fmt.Fprintf(tc, "GET /socket HTTP/1.1\r\nHost: %s\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", apiHost, proto)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		tc.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "no connector governs the upgraded protocol") {
			t.Errorf("%s: %d %q, want 403 and the reason", proto, resp.StatusCode, body)
		}
		if o := tp.gov.outcome(t); o.Status != http.StatusForbidden || o.Err == nil {
			t.Errorf("%s: outcome %+v", proto, o)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the upstream saw %d upgrade requests", n)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	tlsUp := newTLSUpstream(t, []string{apiHost}, wsUpstream(t))
	plainUp := newPlainUpstream(t, wsUpstream(t))
	gov := newStubGovernor()
	// A connector that governs WebSocket vouches for the upgrade.
	gov.decide = func(*connectors.Request) Verdict { return Verdict{Allow: true, Upgrade: true} }
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: tlsUp.addr(), "ws.example.test": plainUp.addr()}, RootCAs: tlsUp.roots})

	check := func(t *testing.T, c io.ReadWriter, br *bufio.Reader, target, host string) {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n%s\r\n", target, host, "Proxy-Authorization: "+proxyAuth()+"\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		for _, msg := range []string{"hello", "again"} {
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != strings.ToUpper(msg) {
				t.Errorf("echo %q", got)
			}
		}
	}
	t.Run("tunnel", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		check(t, tc, br, "/socket", apiHost)
		tc.Close()
		if o := tp.gov.outcome(t); o.Status != http.StatusSwitchingProtocols {
			t.Errorf("outcome %+v", o)
		}
	})
	t.Run("plain", func(t *testing.T) {
		c, err := net.Dial("tcp", tp.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		check(t, c, bufio.NewReader(c), "http://ws.example.test/socket", "ws.example.test")
	})
}

func TestHopByHopHeadersStripped(t *testing.T) {
	var mu sync.Mutex
	var got []http.Header
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-End-To-End", "kept")
		io.WriteString(w, "ok")
	}))
	plain := newPlainUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("X-End-To-End", "kept")
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr(), "plain.example.test": plain.addr()}, RootCAs: up.roots})

	for _, u := range []string{"https://" + apiHost + "/", "http://plain.example.test/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Connection", "X-Hop, keep-alive")
		req.Header.Set("X-Hop", "secret-ish")
		req.Header.Set("Keep-Alive", "timeout=10")
		if strings.HasPrefix(u, "https") {
			// Inside the tunnel; on the plain path the client's own is sent.
			req.Header.Set("Proxy-Authorization", "Basic c29tZTpvdGhlcg==")
		}
		req.Header.Set("Proxy-Connection", "keep-alive")
		req.Header.Set("X-End-To-End", "kept")
		resp, err := tp.client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("%s: client received %s: %q", u, h, v)
			}
		}
		if resp.Header.Get("X-End-To-End") != "kept" {
			t.Errorf("%s: end-to-end response header lost", u)
		}
	}
	for _, s := range tp.gov.seen() {
		if s.Header.Get("Proxy-Authorization") != "" {
			t.Error("governor saw Proxy-Authorization")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("upstreams saw %d requests", len(got))
	}
	for _, h := range got {
		for _, name := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection"} {
			if v := h.Get(name); v != "" {
				t.Errorf("upstream received %s: %q", name, v)
			}
		}
		if h.Get("X-End-To-End") != "kept" {
			t.Error("end-to-end request header lost")
		}
	}
}

func TestAmbiguousFramingRefused(t *testing.T) {
	up := newPlainUpstream(t, echoHandler())
	tls := newTLSUpstream(t, []string{apiHost}, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{"plain.example.test": up.addr(), apiHost: tls.addr()}, RootCAs: tls.roots})
	auth := "Proxy-Authorization: " + proxyAuth() + "\r\n"
	head := "POST http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\n" + auth

	cases := []struct{ name, raw, reason string }{
		// Go's server merges these; the proxy refuses them.
		{"content-length and transfer-encoding", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "both Content-Length and Transfer-Encoding"},
		{"transfer-encoding and content-length", head + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "both Content-Length and Transfer-Encoding"},
		{"identical content-lengths", head + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "more than one Content-Length"},
		{"content-length list", head + "Content-Length: 5, 5\r\n\r\nhello", ""},
		{"http/1.0 transfer-encoding", "POST http://plain.example.test/ HTTP/1.0\r\nHost: plain.example.test\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "HTTP/1.0"},
		// Go's server refuses these itself.
		{"different content-lengths", head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", ""},
		{"two transfer-encodings", head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ""},
		{"gzip transfer-encoding", head + "Transfer-Encoding: gzip\r\n\r\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := tp.rawRequest(t, c.raw)
			body := readBody(t, resp.Body)
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusNotImplemented {
				t.Errorf("status %d %q", resp.StatusCode, body)
			}
			if !strings.Contains(body, c.reason) {
				t.Errorf("body %q lacks %q", body, c.reason)
			}
		})
	}
	t.Run("inside a tunnel", func(t *testing.T) {
		tc, br := tp.dialTunnel(t, apiHost+":443")
		io.WriteString(tc, "POST / HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, resp.Body); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "both Content-Length and Transfer-Encoding") {
			t.Errorf("status %d %q", resp.StatusCode, body)
		}
	})
	if up.hits.Load() != 0 || tls.hits.Load() != 0 || len(tp.gov.seen()) != 0 {
		t.Errorf("ambiguous request reached governor (%d) or upstream (%d, %d)", len(tp.gov.seen()), up.hits.Load(), tls.hits.Load())
	}
}

// TestPipelinedRequestsStayInFrame sends several requests with different
// framings in one write; the framing tracker must follow every boundary.
func TestPipelinedRequestsStayInFrame(t *testing.T) {
	up := newPlainUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, b)
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{"plain.example.test": up.addr()}})
	auth := "Proxy-Authorization: " + proxyAuth() + "\r\n"
	h := " HTTP/1.1\r\nHost: plain.example.test\r\n" + auth
	raw := "POST http://plain.example.test/1" + h + "Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"POST http://plain.example.test/2" + h + "Content-Length: 26\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n" +
		"\r\nGET http://plain.example.test/3" + h + "\r\n"
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	for _, want := range []string{`POST /1 "abcde"`, `POST /2 "GET /smuggled HTTP/1.1\r\n\r\n"`, `GET /3 ""`} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBody(t, resp.Body); got != want {
			t.Errorf("got %d %q, want %q", resp.StatusCode, got, want)
		}
	}
}

func TestPrivateAddressRefused(t *testing.T) {
	up := newPlainUpstream(t, echoHandler())
	_, port, _ := net.SplitHostPort(up.addr())
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			tp := startProxy(t, Config{})
			resp, err := tp.client(t).Get("http://" + host + ":" + port + "/")
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "loopback") {
				t.Errorf("status %d %q", resp.StatusCode, body)
			}
			o := tp.gov.outcome(t)
			var ae *AddressError
			if !errors.As(o.Err, &ae) || ae.Kind != "loopback" || o.Status != http.StatusForbidden {
				t.Errorf("outcome %+v", o)
			}

			allowed := startProxy(t, Config{AllowPrivate: func(h string) bool { return h == host }})
			resp, err = allowed.client(t).Get("http://" + host + ":" + port + "/ok")
			if err != nil {
				t.Fatal(err)
			}
			body = readBody(t, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || body != "GET /ok" {
				t.Errorf("allowed: status %d %q", resp.StatusCode, body)
			}
		})
	}
	if up.hits.Load() != 2 {
		t.Errorf("upstream hits %d, want 2", up.hits.Load())
	}
	t.Run("intercepted", func(t *testing.T) {
		tp := startProxy(t, Config{})
		resp, err := tp.client(t).Get("https://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
}

func TestAddressKind(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "10.1.2.3": "private", "172.16.0.1": "private",
		"192.168.1.1": "private", "fd00::1": "private", "169.254.169.254": "link-local", "fe80::1": "link-local",
		"100.64.0.1": "shared (CGNAT)", "0.0.0.0": "unspecified", "::": "unspecified", "0.1.2.3": "unspecified",
		"224.0.0.1": "multicast", "ff02::1": "multicast", "255.255.255.255": "multicast", "::ffff:127.0.0.1": "loopback",
		"::ffff:10.0.0.1": "private", "8.8.8.8": "", "2606:4700::1111": "", "100.128.0.1": "",
		// IPv6 forms that embed a private IPv4 address.
		"::127.0.0.1": "loopback (embedded in IPv6)", "::10.0.0.1": "private (embedded in IPv6)",
		"64:ff9b::127.0.0.1": "loopback (embedded in IPv6)", "64:ff9b::a9fe:a9fe": "link-local (embedded in IPv6)",
		"64:ff9b::8.8.8.8": "", "64:ff9b:1::1": "private",
		"2002:7f00:1::": "loopback (embedded in IPv6)", "2002:c0a8:101::1": "private (embedded in IPv6)", "2002:808:808::1": "",
		"2001:0:7f00:1::": "loopback (embedded in IPv6)", "2001:0:4136:e378:8000:63bf:f5ff:fffe": "private (embedded in IPv6)",
	} {
		ip, err := parseAuthority("["+addr+"]:1", 0)
		if err != nil {
			ip, err = parseAuthority(addr+":1", 0)
		}
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got := addressKind(ip.ip); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}

func TestUpstreamErrors(t *testing.T) {
	// A listener closed at once gives an address that refuses connections.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	untrusted := newTLSUpstream(t, []string{apiHost}, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{"dead.example.test": dead, apiHost: untrusted.addr()}})

	for u, want := range map[string]string{
		"http://dead.example.test/":  "cannot connect to dead.example.test",
		"https://" + apiHost + "/":   "upstream certificate for " + apiHost + " is not trusted",
		"http://nxdomain.invalid./x": "cannot resolve nxdomain.invalid",
	} {
		resp, err := tp.client(t).Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body := readBody(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q, want 502 %q", u, resp.StatusCode, body, want)
		}
		if strings.Contains(body, dead) || strings.Contains(body, "x509") {
			t.Errorf("%s: reason leaks internals: %q", u, body)
		}
		if o := tp.gov.outcome(t); o.Err == nil || o.Status != http.StatusBadGateway {
			t.Errorf("%s: outcome %+v", u, o)
		}
	}
}

func TestKillSwitchCutsStream(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	kill, cut := context.WithCancel(context.Background())
	defer cut()
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict { return Verdict{Allow: true, Ctx: kill} }
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	resp, err := tp.client(t).Get("https://" + apiHost + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "data: first\n" {
		t.Fatalf("got %q", line)
	}
	cut()
	if _, err := io.ReadAll(br); err == nil {
		t.Error("stream ended cleanly after the kill switch; want an abort")
	}
	if o := gov.outcome(t); o.Err == nil {
		t.Errorf("outcome %+v", o)
	}
}

func TestPassthroughTunnel(t *testing.T) {
	up := newTLSUpstream(t, []string{"pass.example.test", "deny.example.test"}, echoHandler())
	gov := newStubGovernor()
	gov.tunnel = func(host string, port int) Verdict {
		if host == "deny.example.test" {
			return Verdict{Refusal: &Response{Status: http.StatusForbidden, Body: []byte("tunnel refused")}}
		}
		return Verdict{Allow: true}
	}
	tp := startProxy(t, Config{
		Governor:    gov,
		Upstreams:   map[string]string{"pass.example.test": up.addr(), "deny.example.test": up.addr()},
		Passthrough: func(h string) bool { return strings.HasSuffix(h, ".example.test") },
	})
	client := tp.client(t)
	// Not intercepted: the client verifies the upstream's own certificate.
	client.Transport.(*http.Transport).TLSClientConfig.RootCAs = up.roots
	resp, err := client.Get("https://pass.example.test/through")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp.Body); body != "GET /through" || bytes.Equal(resp.TLS.PeerCertificates[0].AuthorityKeyId, tp.ca.Certificate().SubjectKeyId) {
		t.Errorf("passthrough body %q, intercepted: %v", body, bytes.Equal(resp.TLS.PeerCertificates[0].AuthorityKeyId, tp.ca.Certificate().SubjectKeyId))
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if o := gov.outcome(t); o.Status != http.StatusOK || o.RequestBytes == 0 || o.ResponseBytes == 0 {
		t.Errorf("outcome %+v", o)
	}
	if len(gov.seen()) != 0 {
		t.Error("Govern was called for a passthrough tunnel")
	}

	resp = tp.rawRequest(t, "CONNECT deny.example.test:443 HTTP/1.1\r\nHost: deny.example.test:443\r\nProxy-Authorization: "+proxyAuth()+"\r\n\r\n")
	if body := readBody(t, resp.Body); resp.StatusCode != http.StatusForbidden || body != "tunnel refused" {
		t.Errorf("refused tunnel: %d %q", resp.StatusCode, body)
	}
	if up.hits.Load() != 1 {
		t.Errorf("upstream hits %d, want 1", up.hits.Load())
	}
}

func TestConcurrentFirstRequestsShareLeaf(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := tp.client(t) // own transport: a connection (and handshake) each
			resp, err := c.Get("https://" + apiHost + "/")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := tp.ca.issued.Load(); n != 1 {
		t.Errorf("issued %d leaves, want 1", n)
	}
}

func TestRequestsOutsideProxyForm(t *testing.T) {
	tp := startProxy(t, Config{})
	auth := "Proxy-Authorization: " + proxyAuth() + "\r\n"
	for raw, want := range map[string]string{
		"GET / HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n":                                       "not a proxy request",
		"GET https://x.example.test/ HTTP/1.1\r\nHost: x.example.test\r\n" + auth + "\r\n":    "use CONNECT",
		"GET http://u:p@x.example.test/ HTTP/1.1\r\nHost: x.example.test\r\n" + auth + "\r\n": "credentials",
		"CONNECT x.example.test HTTP/1.1\r\nHost: x.example.test\r\n" + auth + "\r\n":         "missing port",
		"CONNECT [::1 HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n":                                "",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n":                                   "not a proxy request",
	} {
		resp := tp.rawRequest(t, raw)
		body := readBody(t, resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("%q: %d %q, want 400 %q", raw, resp.StatusCode, body, want)
		}
	}
	if len(tp.gov.seen()) != 0 {
		t.Error("governor consulted for an unparsable request")
	}
}

// TestCloseEndsEverything holds idle and upgraded tunnels, a passthrough
// tunnel and a request held by the Governor, closes the proxy and checks
// that all of them end and no goroutine is left behind.
func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	up := newTLSUpstream(t, []string{apiHost, "pass.example.test"}, wsUpstream(t))
	held := make(chan struct{})
	gov := newStubGovernor()
	gov.decide = func(r *connectors.Request) Verdict {
		if r.HTTP.URL.Path == "/held" {
			close(held)
			<-r.HTTP.Context().Done()
			return Verdict{}
		}
		return Verdict{Allow: true, Upgrade: true}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr(), "pass.example.test": up.addr()},
		RootCAs: up.roots, Passthrough: func(h string) bool { return h == "pass.example.test" }})

	idle, _ := tp.dialTunnel(t, apiHost+":443")
	ws, wsr := tp.dialTunnel(t, apiHost+":443")
	io.WriteString(ws, "GET /ws HTTP/1.1\r\nHost: api.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if resp, err := http.ReadResponse(wsr, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v", err)
	}
	pass := tp.rawRequest(t, "CONNECT pass.example.test:443 HTTP/1.1\r\nHost: pass.example.test:443\r\nProxy-Authorization: "+proxyAuth()+"\r\n\r\n")
	if pass.StatusCode != 200 {
		t.Fatalf("passthrough status %d", pass.StatusCode)
	}
	heldConn, heldR := tp.dialTunnel(t, apiHost+":443")
	io.WriteString(heldConn, "GET /held HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
	<-held

	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]io.Reader{"idle": idle, "websocket": wsr, "held": heldR} {
		if _, err := io.ReadAll(r); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	up.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "tls:"))
}

func TestNewValidatesConfig(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gov := newStubGovernor()
	for name, cfg := range map[string]Config{
		"no CA":          {Token: "t", Governor: gov},
		"no token":       {CA: ca, Governor: gov},
		"no governor":    {CA: ca, Token: "t"},
		"bad upstream":   {CA: ca, Token: "t", Governor: gov, Upstreams: map[string]string{"a b": "127.0.0.1:1"}},
		"upstream port":  {CA: ca, Token: "t", Governor: gov, Upstreams: map[string]string{"a.test": "127.0.0.1"}},
		"upstream empty": {CA: ca, Token: "t", Governor: gov, Upstreams: map[string]string{"": "127.0.0.1:1"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHeaderLimits(t *testing.T) {
	tp := startProxy(t, Config{MaxHeaderBytes: 8 << 10})
	resp := tp.rawRequest(t, "GET http://a.example.test/ HTTP/1.1\r\nHost: a.example.test\r\nX-Big: "+strings.Repeat("a", 32<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d", resp.StatusCode)
	}
	if tp.outer.ReadHeaderTimeout != DefaultReadHeaderTimeout || tp.outer.MaxHeaderBytes != 8<<10 || tp.cfg.ReadHeaderTimeout != DefaultReadHeaderTimeout {
		t.Error("server limits not applied")
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	release := make(chan struct{})
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "finished")
	}))
	tp := startProxy(t, Config{Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	done := make(chan string, 1)
	go func() {
		resp, err := tp.client(t).Get("https://" + apiHost + "/slow")
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- string(b)
	}()
	for len(tp.gov.seen()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { shut <- tp.Shutdown(ctx) }()
	time.Sleep(50 * time.Millisecond) // Shutdown is waiting for the request
	close(release)
	if got := <-done; got != "finished" {
		t.Errorf("in-flight request got %q", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestKillSwitchBeforeForwarding(t *testing.T) {
	up := newTLSUpstream(t, []string{apiHost}, echoHandler())
	kill, cut := context.WithCancel(context.Background())
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict {
		cut() // pressed while the request was held
		return Verdict{Allow: true, Ctx: kill}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	resp, err := tp.client(t).Get("https://" + apiHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cut off") {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
	if o := gov.outcome(t); !errors.Is(o.Err, context.Canceled) {
		t.Errorf("outcome %+v", o)
	}
	if up.hits.Load() != 0 {
		t.Error("upstream reached after the kill switch")
	}
}

func TestPrepareEditsOnlyTheOutboundRequest(t *testing.T) {
	var gotAuth, gotHop string
	up := newTLSUpstream(t, []string{apiHost}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotHop = r.Header.Get("Authorization"), r.Header.Get("X-Injected")
	}))
	gov := newStubGovernor()
	gov.decide = func(r *connectors.Request) Verdict {
		return Verdict{Allow: true, Prepare: func(out *http.Request) {
			if out == r.HTTP {
				t.Error("Prepare got the inbound request")
			}
			out.Header.Set("Authorization", "Bearer real-secret")
			out.Header.Set("X-Injected", "yes")
		}}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{apiHost: up.addr()}, RootCAs: up.roots})
	req, _ := http.NewRequest(http.MethodGet, "https://"+apiHost+"/", nil)
	req.Header.Set("Authorization", "Bearer placeholder")
	resp, err := tp.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotAuth != "Bearer real-secret" || gotHop != "yes" {
		t.Errorf("upstream saw Authorization %q, X-Injected %q", gotAuth, gotHop)
	}
	if s := gov.seen(); s[0].Header.Get("Authorization") != "Bearer placeholder" {
		t.Errorf("governor saw %q", s[0].Header.Get("Authorization"))
	}
}
