// Package httpproxy is the governing forward proxy: it intercepts HTTP and
// CONNECT traffic, asks a Governor about every request and forwards or
// refuses it.
//
// The listener side (absolute-form HTTP requests and CONNECT) is a
// net/http server. The requests inside an intercepted tunnel, the hot
// path, are served by a loop of the proxy's own (tunnel.go), and HTTP/1.1
// exchanges go upstream through h1Client (h1client.go): both run an
// exchange in one goroutine, where net/http's server and transport hand
// each request between several (issue 14). Responses pass through
// httputil.ReverseProxy either way; HTTP/2 to upstreams (gRPC) uses
// http.Transport.
package httpproxy

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/connectors"
)

// Defaults for the zero values of Config.
const (
	DefaultPeekLimit         = 1 << 20
	DefaultMaxHeaderBytes    = 256 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultBodyReadTimeout   = 60 * time.Second
	DefaultMaxConnsPerClient = 512
)

// ProxyUser is the user name clients put in Proxy-Authorization; the
// password is Config.Token.
const ProxyUser = "tf"

// Config configures a Proxy.
type Config struct {
	// CA signs the leaf certificates of intercepted hosts. Required.
	CA *CA
	// Token is the per-session credential: clients must send
	// Proxy-Authorization: Basic base64("tf:" + Token). Required.
	Token string
	// Authenticate, if set, checks proxy credentials instead of Token
	// (a shared gateway's per-agent tokens): it gets the user name and
	// password of Basic credentials, or an empty user and the token of
	// Bearer ones, and returns the agent they identify. It must compare
	// secrets in constant time and not block. Agent(ctx) gives the agent
	// to the Governor.
	Authenticate func(user, token string) (agent string, ok bool)
	// Governor decides every request. Required.
	Governor Governor
	// Upstreams maps "host" or "host:port" to an "addr:port" to dial
	// instead (GitHub Enterprise, mirrors, offline tests). TLS is still
	// verified against the original host name. Mapped hosts may be private.
	Upstreams map[string]string
	// RootCAs verifies upstream servers; nil means the system roots.
	RootCAs *x509.CertPool
	// Passthrough reports hosts whose CONNECT tunnels are relayed without
	// interception, decided by Governor.GovernTunnel. Nil means none.
	Passthrough func(host string) bool
	// AllowPrivate reports hosts that may resolve to loopback, private,
	// link-local, CGNAT, unspecified or multicast addresses. Nil means none.
	AllowPrivate func(host string) bool
	// PeekLimit is the number of body bytes shown to the Governor
	// (default DefaultPeekLimit).
	PeekLimit int
	// MaxHeaderBytes, ReadHeaderTimeout and IdleTimeout bound client
	// connections (defaults DefaultMaxHeaderBytes, DefaultReadHeaderTimeout,
	// DefaultIdleTimeout).
	MaxHeaderBytes    int
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// BodyReadTimeout bounds how slowly a client may send a request body:
	// the inspected prefix must arrive within it, and the rest may pause
	// no longer than it between reads (default DefaultBodyReadTimeout).
	BodyReadTimeout time.Duration
	// MaxConnsPerClient bounds the connections one client address holds
	// open at once (default DefaultMaxConnsPerClient); one beyond it is
	// answered 503 and closed.
	MaxConnsPerClient int
	// AuthFailed, if set, is called for every request refused for missing
	// or wrong proxy credentials, with the client's address and the user
	// name it sent (never the password). It must not block.
	AuthFailed func(client, user string)
	// ErrorLog receives connection-level errors of the underlying servers
	// (never request contents); nil discards them.
	ErrorLog *log.Logger
}

// Governor decides what the proxy does with each request.
type Governor interface {
	// Govern decides one request. It may block (a request held for a
	// human) and should return when ctx is done. It must not read
	// req.HTTP.Body; the start of the body is in req.Body.
	Govern(ctx context.Context, req *connectors.Request) Verdict
	// GovernTunnel decides a passthrough CONNECT (no interception) on
	// host and port alone.
	GovernTunnel(ctx context.Context, host string, port int) Verdict
}

// Verdict is a Governor's answer for one request or tunnel.
type Verdict struct {
	// Allow forwards the request; otherwise Refusal is written.
	Allow bool
	// Refusal is written to the client when Allow is false; nil means a
	// plain 403.
	Refusal *Response
	// Prepare, if set, edits the outbound request just before it is sent
	// upstream (after hop-by-hop headers are removed). It sees only the
	// outbound request.
	Prepare func(out *http.Request)
	// Done, if set, is called once when the exchange ends, also for
	// refusals.
	Done func(Outcome)
	// Ctx, if set, cuts the forwarded exchange when it is done (the kill
	// switch).
	Ctx context.Context
	// Upgrade lets an allowed request that asks for a protocol upgrade
	// (WebSocket, h2c) through: the Governor vouches that a connector
	// governs what follows on the connection. Without it such a request
	// is refused, since after the upgrade tf reads no more of it.
	Upgrade bool
	// ModifyResponse, if set, edits the upstream response before it is
	// copied to the client: it may replace res.Body with a reader that
	// transforms the stream as it goes (each write to the client is still
	// flushed, so an event stream stays one). An error answers the client
	// with a 502 instead.
	ModifyResponse func(res *http.Response) error
}

// Response is a response the proxy writes itself.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Outcome describes one finished exchange.
type Outcome struct {
	// Status is the status the client received: the upstream's, or the
	// proxy's own for refusals and errors. 101 for an upgrade.
	Status int
	// RequestBytes is the number of request body bytes sent upstream (for
	// a tunnel, client to upstream); ResponseBytes the number of response
	// body bytes sent to the client (upstream to client).
	RequestBytes, ResponseBytes int64
	Duration                    time.Duration
	// Err is why the exchange failed, if it did: an *AddressError for a
	// refused destination, a cancellation, an upstream error.
	Err error
}

// Proxy is a governing forward proxy. Create it with New, run it with
// Serve and stop it with Close or Shutdown.
type Proxy struct {
	cfg       Config
	upstreams map[string]string
	transport *upstreamTransport
	rp        *httputil.ReverseProxy
	dialer    net.Dialer
	resolver  *net.Resolver
	refusal   Response // the default refusal

	outer *http.Server // the listener side: proxy requests and CONNECT

	ctx    context.Context // cancelled by Close: cuts governing, forwarding and tunnels
	cancel context.CancelFunc

	mu        sync.Mutex
	stopping  bool // stop has begun
	closed    bool // no new handlers or raw connections
	active    int  // running handlers
	idle      *sync.Cond
	raw       map[net.Conn]struct{}    // hijacked connections the servers do not track
	perClient map[string]int           // open client connections by client address
	tunnels   map[*tunnelConn]struct{} // intercepted tunnels being served

	closedFlag     atomic.Bool // closed, read without the lock on every tunnel request
	tunnelsClosing atomic.Bool // graceful shutdown: tunnels close when idle
}

// New returns a Proxy for cfg. It checks the configuration but opens
// nothing.
func New(cfg Config) (*Proxy, error) {
	if cfg.CA == nil {
		return nil, errors.New("httpproxy: config has no CA")
	}
	if cfg.Governor == nil {
		return nil, errors.New("httpproxy: config has no Governor")
	}
	if cfg.Token == "" {
		return nil, errors.New("httpproxy: config has no Token")
	}
	if cfg.PeekLimit <= 0 {
		cfg.PeekLimit = DefaultPeekLimit
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.MaxConnsPerClient <= 0 {
		cfg.MaxConnsPerClient = DefaultMaxConnsPerClient
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = log.New(io.Discard, "", 0)
	}
	upstreams := make(map[string]string, len(cfg.Upstreams))
	for from, to := range cfg.Upstreams {
		key, err := upstreamKey(from)
		if err != nil {
			return nil, fmt.Errorf("httpproxy: upstream %q: %w", from, err)
		}
		if _, _, err := net.SplitHostPort(to); err != nil {
			return nil, fmt.Errorf("httpproxy: upstream %q: address %q: %w", from, to, err)
		}
		upstreams[key] = to
	}

	p := &Proxy{
		cfg:       cfg,
		upstreams: upstreams,
		dialer:    net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		resolver:  net.DefaultResolver,
		raw:       make(map[net.Conn]struct{}),
		perClient: make(map[string]int),
		tunnels:   make(map[*tunnelConn]struct{}),
		refusal: Response{
			Status: http.StatusForbidden,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   []byte("tf: request refused\n"),
		},
	}
	p.idle = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.transport = newUpstreamTransport(p.dial, cfg.RootCAs)
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: p.transport,
		// Zero: a response of known length is written through the
		// server's buffer and flushed once, at the end; ReverseProxy
		// flushes every write of a stream (unknown length, event
		// streams) by itself.
		FlushInterval:  0,
		BufferPool:     bufferPool{},
		ErrorLog:       cfg.ErrorLog,
		ErrorHandler:   p.upstreamError,
		ModifyResponse: p.upstreamResponse,
	}
	p.outer = p.newServer(http.HandlerFunc(p.serveProxy))
	return p, nil
}

func upstreamKey(s string) (string, error) {
	if a, err := parseAuthority(s, 0); err == nil {
		return a.String(), nil
	}
	host, _, err := canonicalHost(s)
	if err != nil {
		return "", err
	}
	return host, nil
}

func (p *Proxy) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      p.track(h),
		MaxHeaderBytes:               p.cfg.MaxHeaderBytes,
		ReadHeaderTimeout:            p.cfg.ReadHeaderTimeout,
		IdleTimeout:                  p.cfg.IdleTimeout,
		ErrorLog:                     p.cfg.ErrorLog,
		DisableGeneralOptionsHandler: true, // OPTIONS * reaches the handler and is refused there
		BaseContext:                  func(net.Listener) context.Context { return p.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if fc, ok := c.(*framingConn); ok {
				return context.WithValue(ctx, connKey{}, fc)
			}
			return ctx
		},
		// HTTP/2 needs TLS the server does not see (the proxy terminates
		// it), so client connections are HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

type connKey struct{}

// track counts running handlers so that Close can wait for them, and
// refuses requests that arrive while closing.
func (p *Proxy) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			w.Header().Set("Connection", "close")
			writeText(w, http.StatusServiceUnavailable, "proxy is shutting down")
			return
		}
		p.active++
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.active--
			if p.active == 0 {
				p.idle.Broadcast()
			}
			p.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// Serve accepts proxy connections on l until Close or Shutdown, and then
// returns http.ErrServerClosed; it closes l. It may be called for several
// listeners.
func (p *Proxy) Serve(l net.Listener) error {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		l.Close() // as http.Server.Serve does
		return http.ErrServerClosed
	}
	p.mu.Unlock()
	return p.outer.Serve(&framingListener{Listener: l, maxHead: p.maxHead(), p: p})
}

// maxHead bounds request heads for the framing tracker; Go's server allows
// 4 KiB beyond MaxHeaderBytes.
func (p *Proxy) maxHead() int { return p.cfg.MaxHeaderBytes + 4096 + 1024 }

// Close stops the proxy at once: listeners, client connections, tunnels
// and in-flight exchanges. It waits for running handlers to return, so a
// Governor must return when its context is done.
func (p *Proxy) Close() error {
	return p.stop(nil)
}

// Shutdown stops accepting connections, lets in-flight requests finish
// until ctx is done, and then closes everything as Close does.
func (p *Proxy) Shutdown(ctx context.Context) error {
	return p.stop(ctx)
}

func (p *Proxy) stop(graceful context.Context) error {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return nil
	}
	p.stopping = true
	p.mu.Unlock()

	var errs []error
	if graceful != nil {
		errs = append(errs, p.outer.Shutdown(graceful), p.shutdownTunnels(graceful))
	}

	p.mu.Lock()
	p.closed = true
	p.closedFlag.Store(true)
	p.tunnelsClosing.Store(true)
	p.mu.Unlock()
	p.cancel()
	errs = append(errs, p.outer.Close())
	p.mu.Lock()
	for c := range p.raw {
		c.Close()
	}
	for p.active > 0 {
		p.idle.Wait()
	}
	p.mu.Unlock()
	p.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// addRaw registers a hijacked connection so that Close can cut it; it
// reports false (and closes c) when the proxy is already closed.
func (p *Proxy) addRaw(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.raw[c] = struct{}{}
	return true
}

func (p *Proxy) removeRaw(c net.Conn) {
	p.mu.Lock()
	delete(p.raw, c)
	p.mu.Unlock()
}

// serveProxy handles requests on the proxy listener: absolute-form HTTP
// requests and CONNECT.
func (p *Proxy) serveProxy(w http.ResponseWriter, r *http.Request) {
	fc, _ := r.Context().Value(connKey{}).(*framingConn)
	if !p.checkFraming(w, fc) {
		return
	}
	agent, ok := p.authorized(r)
	if !ok {
		user, _, sent := ParseProxyAuthorization(r.Header.Get("Proxy-Authorization"))
		if p.cfg.AuthFailed != nil {
			p.cfg.AuthFailed(r.RemoteAddr, user)
		}
		if r.Method == http.MethodConnect {
			// The framing tracker stops at a CONNECT head; the client
			// (curl, git) retries with credentials on a new connection.
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Proxy-Authenticate", `Basic realm="tf"`)
		msg := "proxy authentication required: no proxy credentials were sent"
		if sent {
			// The same words whether the name or the token is wrong: the
			// answer tells a guesser nothing.
			msg = "proxy authentication required: the proxy credentials are not valid for this gateway"
		}
		writeText(w, http.StatusProxyAuthRequired, msg)
		return
	}
	r.Header.Del("Proxy-Authorization")
	fc.agent = agent
	if r.Method == http.MethodConnect {
		p.handleConnect(w, r, fc)
		return
	}
	if r.URL.Host == "" {
		writeText(w, http.StatusBadRequest, "not a proxy request: use an absolute URL or CONNECT")
		return
	}
	if r.URL.Scheme != "http" {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("scheme %q is not proxied: use CONNECT for https", r.URL.Scheme))
		return
	}
	if r.URL.User != nil {
		writeText(w, http.StatusBadRequest, "credentials in the request URL are not supported")
		return
	}
	a, err := parseAuthority(r.URL.Host, 80)
	if err != nil {
		writeText(w, http.StatusBadRequest, "invalid host: "+err.Error())
		return
	}
	r.URL.Host = a.hostPort(80)
	r.Host = r.URL.Host
	p.forward(w, r, "http", a)
}

// serveTunnel handles requests inside an intercepted CONNECT tunnel.
func (p *Proxy) serveTunnel(w http.ResponseWriter, r *http.Request) {
	fc, _ := r.Context().Value(connKey{}).(*framingConn)
	if !p.checkFraming(w, fc) {
		return
	}
	if fc.target == nil {
		writeText(w, http.StatusBadRequest, "request outside a tunnel")
		return
	}
	target := *fc.target
	if r.Method == http.MethodConnect {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadRequest, "CONNECT inside a tunnel is not supported")
		return
	}
	if r.URL.Host != "" && r.URL.Scheme != "https" {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("scheme %q inside a TLS tunnel", r.URL.Scheme))
		return
	}
	if r.URL.User != nil {
		writeText(w, http.StatusBadRequest, "credentials in the request URL are not supported")
		return
	}
	if r.URL.Opaque != "" || !strings.HasPrefix(r.URL.Path, "/") {
		writeText(w, http.StatusBadRequest, "request target must be an absolute path")
		return
	}
	a, err := parseAuthority(r.Host, 443)
	if err != nil {
		writeText(w, http.StatusBadRequest, "invalid Host header: "+err.Error())
		return
	}
	if a.host != target.host || a.port != target.port {
		writeText(w, http.StatusMisdirectedRequest,
			fmt.Sprintf("Host %s does not match the CONNECT authority %s", a.String(), target.String()))
		return
	}
	r.URL.Scheme = "https"
	r.URL.Host = a.hostPort(443)
	r.Host = r.URL.Host
	p.forward(w, r, "https", target)
}

// checkFraming takes the framing record of the request being served and
// refuses ambiguous framing. A missing record fails closed.
func (p *Proxy) checkFraming(w http.ResponseWriter, fc *framingConn) bool {
	if fc == nil {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadRequest, "request framing could not be checked")
		return false
	}
	reason, ok := fc.nextHead()
	if !ok {
		reason = "request framing could not be checked"
	}
	if reason != "" {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadRequest, reason)
		return false
	}
	return true
}

// authorized checks Proxy-Authorization against the session token in
// constant time, or with Config.Authenticate, and returns the agent it
// names.
func (p *Proxy) authorized(r *http.Request) (string, bool) {
	user, pass, ok := ParseProxyAuthorization(r.Header.Get("Proxy-Authorization"))
	if !ok {
		return "", false
	}
	if p.cfg.Authenticate != nil {
		return p.cfg.Authenticate(user, pass)
	}
	userOK := subtle.ConstantTimeCompare([]byte(user), []byte(ProxyUser))
	passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(p.cfg.Token))
	return "", userOK&passOK == 1
}

// ParseProxyAuthorization reads a Proxy-Authorization value: Basic
// credentials give their user and password, a Bearer token an empty user
// and the token. Anything else is not ok.
func ParseProxyAuthorization(v string) (user, pass string, ok bool) {
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok {
		return "", "", false
	}
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", "", false
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", false
		}
		return user, pass, true
	case strings.EqualFold(scheme, "Bearer"):
		if cred == "" || strings.ContainsAny(cred, " \t") {
			return "", "", false
		}
		return "", cred, true
	}
	return "", "", false
}

// Agent is the agent whose proxy credentials carried the request (or the
// CONNECT of the tunnel) that ctx belongs to: what Config.Authenticate
// returned, empty with the session token.
func Agent(ctx context.Context) string {
	if fc, ok := ctx.Value(connKey{}).(*framingConn); ok {
		return fc.agent
	}
	return ""
}

// writeText writes a short plain-text response of the proxy's own, prefixed
// "tf: " so that it cannot be mistaken for the upstream's.
func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len("tf: ")+len(msg)+1))
	w.WriteHeader(status)
	io.WriteString(w, "tf: "+msg+"\n")
}

// framingListener wraps accepted connections in framing trackers, and
// turns away a client past its connection cap.
type framingListener struct {
	net.Listener
	maxHead int
	p       *Proxy
}

// tooManyConns answers a connection past the cap without reading it.
var tooManyConns = func() string {
	msg := "tf: too many connections from this client\n"
	return "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(msg)) + "\r\n\r\n" + msg
}()

func (l *framingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		release, ok := l.p.admit(c.RemoteAddr())
		if !ok {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, tooManyConns)
			c.Close()
			continue
		}
		fc := newFramingConn(c, l.maxHead, nil)
		fc.release = release
		return fc, nil
	}
}

// admit counts a new connection of the client at addr; ok is false when
// the client holds MaxConnsPerClient already. release uncounts it.
func (p *Proxy) admit(addr net.Addr) (release func(), ok bool) {
	client := addr.String()
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.perClient[client] >= p.cfg.MaxConnsPerClient {
		return nil, false
	}
	p.perClient[client]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.perClient[client]--; p.perClient[client] <= 0 {
				delete(p.perClient, client)
			}
			p.mu.Unlock()
		})
	}, true
}
