package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

const testToken = "s3cret-session-token"

// stubGovernor records what it sees and decides with optional functions
// (nil: allow).
type stubGovernor struct {
	decide func(*connectors.Request) Verdict
	tunnel func(host string, port int) Verdict

	mu       sync.Mutex
	requests []seenRequest
	tunnels  []string
	outcomes chan Outcome
}

type seenRequest struct {
	Method, Scheme, Host, URL string
	Header                    http.Header
	Body                      []byte
	Truncated                 bool
}

func newStubGovernor() *stubGovernor {
	return &stubGovernor{outcomes: make(chan Outcome, 100)}
}

func (g *stubGovernor) Govern(ctx context.Context, req *connectors.Request) Verdict {
	g.mu.Lock()
	g.requests = append(g.requests, seenRequest{
		Method:    req.HTTP.Method,
		Scheme:    req.Scheme,
		Host:      req.HTTP.Host,
		URL:       req.HTTP.URL.String(),
		Header:    req.HTTP.Header.Clone(),
		Body:      append([]byte(nil), req.Body...),
		Truncated: req.Truncated,
	})
	g.mu.Unlock()
	v := Verdict{Allow: true}
	if g.decide != nil {
		v = g.decide(req)
	}
	return g.withDone(v)
}

func (g *stubGovernor) GovernTunnel(ctx context.Context, host string, port int) Verdict {
	g.mu.Lock()
	g.tunnels = append(g.tunnels, fmt.Sprintf("%s:%d", host, port))
	g.mu.Unlock()
	v := Verdict{Allow: true}
	if g.tunnel != nil {
		v = g.tunnel(host, port)
	}
	return g.withDone(v)
}

func (g *stubGovernor) withDone(v Verdict) Verdict {
	prev := v.Done
	v.Done = func(o Outcome) {
		if prev != nil {
			prev(o)
		}
		select {
		case g.outcomes <- o:
		default:
		}
	}
	return v
}

func (g *stubGovernor) seen() []seenRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seenRequest(nil), g.requests...)
}

func (g *stubGovernor) outcome(t *testing.T) Outcome {
	t.Helper()
	select {
	case o := <-g.outcomes:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome reported")
		return Outcome{}
	}
}

// upstream is a TLS test server with a certificate for a fake name, signed
// by its own CA (not the proxy's).
type upstream struct {
	*httptest.Server
	roots *x509.CertPool
	hits  atomic.Int64
}

func newTLSUpstream(t testing.TB, names []string, h http.Handler) *upstream {
	t.Helper()
	certs, roots := upstreamCerts(t, names...)
	u := &upstream{roots: roots}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: certs}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in some tests
	srv.StartTLS()
	u.Server = srv
	t.Cleanup(srv.Close)
	return u
}

// upstreamCerts gives an upstream certificates for names, signed by a CA
// of its own (not the proxy's), and the pool that trusts them.
func upstreamCerts(t testing.TB, names ...string) ([]tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certs := make([]tls.Certificate, 0, len(names))
	for _, n := range names {
		c, err := ca.Leaf(n)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, *c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	return certs, roots
}

func newPlainUpstream(t testing.TB, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.Server.Close)
	return u
}

func (u *upstream) addr() string { return u.Listener.Addr().String() }

type testProxy struct {
	*Proxy
	addr string
	ca   *CA
	gov  *stubGovernor
}

// startProxy runs a proxy on a loopback port; cfg.CA, Token and Governor
// are filled in when empty. Cleanup closes it and waits for Serve.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	if cfg.CA == nil {
		ca, err := LoadOrCreateCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg.CA = ca
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	gov, _ := cfg.Governor.(*stubGovernor)
	if cfg.Governor == nil {
		gov = newStubGovernor()
		cfg.Governor = gov
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(l) }()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &testProxy{Proxy: p, addr: l.Addr().String(), ca: cfg.CA, gov: gov}
}

// client returns an HTTP client that uses the proxy and trusts its CA.
func (tp *testProxy) client(t testing.TB) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(tp.ca.Certificate())
	tr := &http.Transport{
		Proxy:               http.ProxyURL(&url.URL{Scheme: "http", User: url.UserPassword(ProxyUser, testToken), Host: tp.addr}),
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func proxyAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(ProxyUser+":"+testToken))
}

// dialTunnel opens a CONNECT tunnel by hand and completes TLS over it.
func (tp *testProxy) dialTunnel(t testing.TB, authority string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", authority, authority, proxyAuth())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	host, _, _ := net.SplitHostPort(authority)
	roots := x509.NewCertPool()
	roots.AddCert(tp.ca.Certificate())
	tc := tls.Client(&prefixConn{Conn: c, prefix: drain(br)}, &tls.Config{RootCAs: roots, ServerName: host})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

func drain(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// rawRequest writes raw bytes on a new plain connection to the proxy and
// reads one response.
func (tp *testProxy) rawRequest(t testing.TB, raw string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
