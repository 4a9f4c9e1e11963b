package httpproxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

func TestParseProxyAuthorization(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{"Basic " + b64("ci:tfa_x"), "ci", "tfa_x", true},
		{"basic " + b64("ci:tfa:x"), "ci", "tfa:x", true},
		{"Bearer tfa_x", "", "tfa_x", true},
		{"bearer  tfa_x ", "", "tfa_x", true},
		{"Basic " + b64("no-colon"), "", "", false},
		{"Basic !!!", "", "", false},
		{"Bearer", "", "", false},
		{"Bearer ", "", "", false},
		{"Bearer a b", "", "", false},
		{"Digest x", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		u, p, ok := ParseProxyAuthorization(c.in)
		if u != c.user || p != c.pass || ok != c.ok {
			t.Errorf("%q: got %q %q %v, want %q %q %v", c.in, u, p, ok, c.user, c.pass, c.ok)
		}
	}
}

func FuzzParseProxyAuthorization(f *testing.F) {
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("ci:tfa_x")))
	f.Add("Bearer tfa_x")
	f.Add("Basic Y2k6")
	f.Fuzz(func(t *testing.T, v string) {
		user, pass, ok := ParseProxyAuthorization(v)
		if !ok && (user != "" || pass != "") {
			t.Fatalf("refused %q but returned %q %q", v, user, pass)
		}
		if ok && user == "" && pass == "" && !strings.HasPrefix(strings.ToLower(v), "basic ") {
			t.Fatalf("accepted %q with nothing in it", v)
		}
		if ok && user == "" && strings.ContainsAny(pass, " \t") && strings.HasPrefix(strings.ToLower(v), "bearer ") {
			t.Fatalf("accepted a bearer token with spaces: %q", v)
		}
	})
}

// agentAuth accepts two agents' tokens, the way a shared gateway does.
func agentAuth(user, token string) (string, bool) {
	tokens := map[string]string{"ci": "tfa_ci", "dev": "tfa_dev"}
	if user == "" {
		for name, tok := range tokens {
			if tok == token {
				return name, true
			}
		}
		return "", false
	}
	if tokens[user] != "" && tokens[user] == token {
		return user, true
	}
	return "", false
}

// The agent that authenticated reaches the Governor, for plain requests
// and for every request inside its CONNECT tunnel; its token is never
// forwarded; wrong credentials get 407 and are reported.
func TestAgentCredentials(t *testing.T) {
	var upHeaders []http.Header
	var mu sync.Mutex
	up := newTLSUpstream(t, []string{"api.example.test"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upHeaders = append(upHeaders, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	plain := newPlainUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upHeaders = append(upHeaders, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	var agentsSeen []string
	gov := newStubGovernor()
	gov.decide = func(req *connectors.Request) Verdict {
		mu.Lock()
		agentsSeen = append(agentsSeen, Agent(req.HTTP.Context()))
		mu.Unlock()
		return Verdict{Allow: true}
	}
	var failed []string
	tp := startProxy(t, Config{
		Governor: gov, Authenticate: agentAuth, RootCAs: up.roots,
		Upstreams:    map[string]string{"api.example.test": up.addr(), "plain.example.test": plain.addr()},
		AllowPrivate: func(string) bool { return true },
		AuthFailed:   func(_, u string) { mu.Lock(); failed = append(failed, u); mu.Unlock() },
	})
	client := func(user *url.Userinfo) *http.Client {
		roots := x509.NewCertPool()
		roots.AddCert(tp.ca.Certificate())
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", User: user, Host: tp.addr}),
			TLSClientConfig: &tls.Config{RootCAs: roots}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, u string) (int, error) {
		res, err := c.Get(u)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	ci, dev := client(url.UserPassword("ci", "tfa_ci")), client(url.UserPassword("dev", "tfa_dev"))
	for _, c := range []struct {
		c     *http.Client
		u     string
		agent string
	}{
		{ci, "https://api.example.test/a", "ci"},
		{ci, "https://api.example.test/b", "ci"}, // the same tunnel
		{dev, "https://api.example.test/c", "dev"},
		{ci, "http://plain.example.test/d", "ci"},
		{dev, "http://plain.example.test/e", "dev"},
	} {
		mu.Lock()
		agentsSeen = nil
		mu.Unlock()
		if code, err := get(c.c, c.u); err != nil || code != 200 {
			t.Fatalf("%s: %d %v", c.u, code, err)
		}
		mu.Lock()
		if len(agentsSeen) != 1 || agentsSeen[0] != c.agent {
			t.Errorf("%s: the Governor saw agents %q, want %q", c.u, agentsSeen, c.agent)
		}
		mu.Unlock()
	}
	// The session token (tf run's) is no credential here, nor another
	// agent's token, nor a name that does not exist.
	for _, u := range []*url.Userinfo{url.UserPassword(ProxyUser, testToken), url.UserPassword("ci", "tfa_dev"), url.UserPassword("nobody", "tfa_ci"), nil} {
		code, err := get(client(u), "http://plain.example.test/x")
		if err != nil || code != http.StatusProxyAuthRequired {
			t.Errorf("credentials %v: %d %v, want 407", u, code, err)
		}
		// Go's transport reports a CONNECT refusal as an error.
		if _, err := get(client(u), "https://api.example.test/x"); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
			t.Errorf("credentials %v over CONNECT: %v, want 407", u, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(failed, ",") != "tf,tf,ci,ci,nobody,nobody,," {
		t.Errorf("AuthFailed got users %q", failed)
	}
	if len(upHeaders) != 5 {
		t.Fatalf("upstreams saw %d requests, want 5", len(upHeaders))
	}
	for _, h := range upHeaders {
		for k, v := range h {
			if strings.Contains(strings.Join(v, " "), "tfa_") || strings.EqualFold(k, "Proxy-Authorization") {
				t.Errorf("an upstream saw the token: %s: %v", k, v)
			}
		}
	}
}

// A Bearer token works as a proxy credential too.
func TestAgentBearer(t *testing.T) {
	plain := newPlainUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var seen string
	gov := newStubGovernor()
	gov.decide = func(req *connectors.Request) Verdict { seen = Agent(req.HTTP.Context()); return Verdict{Allow: true} }
	tp := startProxy(t, Config{Governor: gov, Authenticate: agentAuth, AllowPrivate: func(string) bool { return true },
		Upstreams: map[string]string{"plain.example.test": plain.addr()}})
	res := tp.rawRequest(t, "GET http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\nProxy-Authorization: Bearer tfa_dev\r\n\r\n")
	res.Body.Close()
	if res.StatusCode != 200 || seen != "dev" {
		t.Fatalf("bearer: %d, agent %q", res.StatusCode, seen)
	}
}

// Served on a TLS listener the proxy is an HTTPS proxy: the credentials
// travel encrypted, and tunnels run TLS inside TLS.
func TestHTTPSProxyLeg(t *testing.T) {
	up := newTLSUpstream(t, []string{"api.example.test"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inner") }))
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	gov := newStubGovernor()
	gov.decide = func(req *connectors.Request) Verdict { seen = Agent(req.HTTP.Context()); return Verdict{Allow: true} }
	p, err := New(Config{CA: ca, Token: testToken, Governor: gov, Authenticate: agentAuth, RootCAs: up.roots,
		Upstreams: map[string]string{"api.example.test": up.addr()}, AllowPrivate: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- p.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*leaf}, MinVersion: tls.VersionTLS12}))
	}()
	defer func() {
		p.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "https", User: url.UserPassword("ci", "tfa_ci"), Host: l.Addr().String()}),
		TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://api.example.test/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "inner" || seen != "ci" {
		t.Fatalf("through the HTTPS proxy: %d %q, agent %q", res.StatusCode, body, seen)
	}
}

// An agent cannot change who it is on a connection it holds: inside its
// tunnel another agent's Proxy-Authorization is ignored (and not
// forwarded), and on a kept-alive proxy connection a request without
// credentials does not inherit the previous request's agent.
func TestAgentCannotSwitchIdentity(t *testing.T) {
	var mu sync.Mutex
	var upAuth []string
	up := newTLSUpstream(t, []string{"api.example.test"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upAuth = append(upAuth, r.Header.Get("Proxy-Authorization"))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	plain := newPlainUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var seen []string
	gov := newStubGovernor()
	gov.decide = func(req *connectors.Request) Verdict {
		mu.Lock()
		seen = append(seen, Agent(req.HTTP.Context()))
		mu.Unlock()
		return Verdict{Allow: true}
	}
	tp := startProxy(t, Config{Governor: gov, Authenticate: agentAuth, RootCAs: up.roots, AllowPrivate: func(string) bool { return true },
		Upstreams: map[string]string{"api.example.test": up.addr(), "plain.example.test": plain.addr()}})
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }

	// Inside ci's tunnel, dev's credentials.
	c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\nProxy-Authorization: "+basic("ci", "tfa_ci")+"\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT as ci: %v %v", res, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(tp.ca.Certificate())
	tc := tls.Client(&prefixConn{Conn: c, prefix: drain(br)}, &tls.Config{RootCAs: roots, ServerName: "api.example.test"})
	tbr := bufio.NewReader(tc)
	for range 2 {
		io.WriteString(tc, "GET /x HTTP/1.1\r\nHost: api.example.test\r\nProxy-Authorization: "+basic("dev", "tfa_dev")+"\r\n\r\n")
		res, err := http.ReadResponse(tbr, nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("inside the tunnel: %v %v", res, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	// A kept-alive proxy connection: ci, then no credentials, then dev.
	pc, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(20 * time.Second))
	pbr := bufio.NewReader(pc)
	var codes []int
	for _, auth := range []string{"Proxy-Authorization: " + basic("ci", "tfa_ci") + "\r\n", "", "Proxy-Authorization: " + basic("dev", "tfa_dev") + "\r\n"} {
		io.WriteString(pc, "GET http://plain.example.test/ HTTP/1.1\r\nHost: plain.example.test\r\n"+auth+"\r\n")
		res, err := http.ReadResponse(pbr, nil)
		if err != nil {
			break // a refusal may close the connection
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes = append(codes, res.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "ci,ci,ci,dev" && strings.Join(seen, ",") != "ci,ci,ci" {
		t.Errorf("the Governor saw agents %q, want ci,ci (tunnel), ci (proxy), then dev or nothing", seen)
	}
	if len(codes) < 2 || codes[0] != 200 || codes[1] != http.StatusProxyAuthRequired {
		t.Errorf("kept-alive connection statuses %v: want 200 then 407", codes)
	}
	for _, a := range upAuth {
		if a != "" {
			t.Errorf("the upstream saw Proxy-Authorization %q", a)
		}
	}
}
