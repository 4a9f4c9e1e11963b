package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The requests inside an intercepted tunnel are served by a loop of its
// own rather than by a net/http server: read a request, govern and forward
// it, write the response, in the tunnel's goroutine. net/http's server
// starts a goroutine per request to watch for the client going away and
// hands every connection over through a listener; on the proxy's hot path
// those hand-offs cost more than the rest of the request (issue 14). The
// loop keeps what the server guaranteed: header bounds and timeouts, 400
// for malformed requests, 100-continue, keep-alive rules, response framing
// and trailers, upgrades through Hijack, and a request context that ends
// when the client goes away during a long exchange (a held request, a
// quiet stream), watched only once an exchange outlasts watchDelay.

// watchDelay is how long an exchange runs before the loop starts watching
// for the client closing its connection.
const watchDelay = 20 * time.Millisecond

// tunnelServerKey marks requests as served by a server, so that
// ReverseProxy aborts (panics with http.ErrAbortHandler) when a response
// copy fails instead of returning as if the response were complete; the
// loop recovers it and cuts the connection.
var tunnelServerKey = &http.Server{}

// tunnel state for graceful shutdown.
const (
	tunnelActive int32 = iota
	tunnelIdle
	tunnelClosed
)

// tunnelConn serves the HTTP/1.1 requests of one intercepted tunnel.
type tunnelConn struct {
	p      *Proxy
	fc     *framingConn // requests are read through it: it tracks framing
	tls    *tls.Conn
	raw    net.Conn
	remote string
	base   context.Context

	cr connReader
	br *bufio.Reader
	bw *bufio.Writer

	state    atomic.Int32
	hijacked bool
}

var (
	tunnelReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	tunnelWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
)

// serveTunnel serves requests on an intercepted tunnel until the client
// or the proxy closes it; it closes the connection and forgets raw.
func (p *Proxy) serveTunnelConn(fc *framingConn, tlsConn *tls.Conn, raw net.Conn) {
	c := &tunnelConn{p: p, fc: fc, tls: tlsConn, raw: raw, remote: raw.RemoteAddr().String()}
	c.base = context.WithValue(context.WithValue(p.ctx, connKey{}, fc), http.ServerContextKey, tunnelServerKey)
	c.cr.conn = fc
	c.cr.cond = sync.NewCond(&c.cr.mu)
	c.br = tunnelReaders.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = tunnelWriters.Get().(*bufio.Writer)
	c.bw.Reset(fc)
	if !p.addTunnel(c) {
		c.close()
		return
	}
	defer c.close()
	for first := true; ; first = false {
		if !first {
			if !c.waitIdle() {
				return
			}
		}
		if !c.serveOne() {
			return
		}
	}
}

// waitIdle waits for the next request; false ends the connection (idle
// timeout, client gone, proxy shutting down).
func (c *tunnelConn) waitIdle() bool {
	if c.br.Buffered() == 0 {
		c.state.Store(tunnelIdle)
		if c.p.tunnelsClosing.Load() {
			return false
		}
		_ = c.fc.SetReadDeadline(time.Now().Add(c.p.cfg.IdleTimeout))
		if _, err := c.br.Peek(1); err != nil {
			return false
		}
	}
	return c.state.CompareAndSwap(tunnelIdle, tunnelActive) || c.state.Load() == tunnelActive
}

func (c *tunnelConn) close() {
	if c.hijacked {
		// The handler owned the connection and closed it; its buffers
		// may still be referenced.
		c.fc.Close()
	} else {
		c.fc.Close()
		c.br.Reset(nil)
		tunnelReaders.Put(c.br)
		c.bw.Reset(nil)
		tunnelWriters.Put(c.bw)
	}
	c.p.removeRaw(c.raw)
	c.p.removeTunnel(c)
}

// closeWriteAndWait ends the response side and gives the client time to
// read the response before the connection closes, so that a client still
// sending an unread body does not get a reset that discards the answer.
func (c *tunnelConn) closeWriteAndWait() {
	_ = c.tls.CloseWrite()
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	t := time.NewTimer(500 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.p.ctx.Done():
	}
}

// rawError writes a response of the server's own before the request could
// be parsed, and asks for the connection to close.
func (c *tunnelConn) rawError(status int, msg string) {
	_ = c.fc.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(msg), msg)
	_ = c.bw.Flush()
}

// serveOne reads and serves one request; false ends the connection.
func (c *tunnelConn) serveOne() (keep bool) {
	p := c.p
	_ = c.fc.SetReadDeadline(time.Now().Add(p.cfg.ReadHeaderTimeout))
	c.cr.setLimit(int64(p.cfg.MaxHeaderBytes) + 4096)
	req, err := http.ReadRequest(c.br)
	if err != nil {
		switch {
		case c.cr.hitLimit():
			c.rawError(http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large")
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isClosedOrTimeout(err):
			// The client left or was too slow: nothing to answer.
		default:
			c.rawError(http.StatusBadRequest, "400 Bad Request")
		}
		return false
	}
	c.cr.setLimit(-1)
	_ = c.fc.SetReadDeadline(time.Time{})
	if reason := checkRequest(req); reason != "" {
		status := http.StatusBadRequest
		if req.ProtoMajor != 1 {
			status = http.StatusHTTPVersionNotSupported
		}
		c.rawError(status, strconv.Itoa(status)+" "+http.StatusText(status)+": "+reason)
		return false
	}
	req.RemoteAddr = c.remote

	ctx, cancel := context.WithCancel(c.base)
	defer cancel()
	req = req.WithContext(ctx)
	w := &tunnelResponse{c: c, req: req, header: make(http.Header), contentLength: -1}
	w.wantsClose = req.Close || hasToken(req.Header.Get("Connection"), "close")
	w.wants10KeepAlive = req.ProtoMajor == 1 && req.ProtoMinor == 0 && hasToken(req.Header.Get("Connection"), "keep-alive")

	body := &tunnelBody{rc: req.Body, w: w}
	if req.Body == nil || req.Body == http.NoBody {
		body.eof.Store(true)
	} else {
		req.Body = body
	}
	if hasToken(req.Header.Get("Expect"), "100-continue") {
		if req.ProtoAtLeast(1, 1) && req.ContentLength != 0 {
			body.expectContinue = true
		}
	} else if req.Header.Get("Expect") != "" {
		c.rawError(http.StatusExpectationFailed, "")
		return false
	}
	req.Header.Del("Expect")

	// Watch for the client going away once the exchange runs long; the
	// watch starts only after the request body is read, as in net/http.
	watch := &clientWatch{cr: &c.cr, cancel: cancel}
	body.watch = watch
	w.watch = watch
	if body.eof.Load() {
		watch.arm()
	}

	if !c.serveHandler(w, req) {
		watch.disarm()
		return false
	}
	watch.disarm()
	if c.hijacked {
		return false
	}
	if !w.finish() {
		return false
	}
	if !body.detach() {
		// The handler left part of the body unread: the connection is
		// out of step with the client (net/http drains up to 256 KiB;
		// closing is simpler and always safe).
		c.closeWriteAndWait()
		return false
	}
	return !w.closeAfter
}

// serveHandler runs the handler for one request; false means it panicked
// (the exchange was cut) and the connection must close.
func (c *tunnelConn) serveHandler(w *tunnelResponse, req *http.Request) (ok bool) {
	p := c.p
	if p.closedFlag.Load() {
		w.header.Set("Connection", "close")
		writeText(w, http.StatusServiceUnavailable, "proxy is shutting down")
		return true
	}
	defer func() {
		if rec := recover(); rec != nil {
			if rec != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				p.cfg.ErrorLog.Printf("httpproxy: panic serving %s: %v\n%s", c.remote, rec, buf)
			}
			if !c.hijacked {
				_ = c.bw.Flush() // what was sent stays sent; no terminator follows
			}
			ok = false
		}
	}()
	p.serveTunnel(w, req)
	return true
}

// checkRequest applies the checks net/http's server makes after parsing.
func checkRequest(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	// http.ReadRequest has moved the Host header to req.Host; the framing
	// tracker refuses a head with more than one.
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		return "missing required Host header"
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	return ""
}

func isClosedOrTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout())
}

// hasToken reports whether the comma-separated header value v holds token,
// case-insensitively.
func hasToken(v, token string) bool {
	for v != "" {
		var part string
		part, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// connReader reads the client connection for the loop, bounds request
// heads, and runs the background read that notices a client going away.
type connReader struct {
	conn   net.Conn
	remain int64 // bytes left for the head being read; <0 means no bound

	mu      sync.Mutex
	cond    *sync.Cond
	inRead  bool
	aborted bool
	hasByte bool
	byteBuf [1]byte
}

func (cr *connReader) setLimit(n int64) { cr.remain = n }
func (cr *connReader) hitLimit() bool   { return cr.remain == 0 }

func (cr *connReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	cr.mu.Lock()
	if cr.inRead {
		cr.mu.Unlock()
		return 0, errors.New("httpproxy: concurrent read of a tunnel connection")
	}
	if cr.hasByte {
		b[0] = cr.byteBuf[0]
		cr.hasByte = false
		cr.mu.Unlock()
		cr.count(1)
		return 1, nil
	}
	cr.mu.Unlock()
	if cr.remain == 0 {
		return 0, io.EOF
	}
	if cr.remain > 0 && int64(len(b)) > cr.remain {
		b = b[:cr.remain]
	}
	n, err := cr.conn.Read(b)
	cr.count(n)
	return n, err
}

func (cr *connReader) count(n int) {
	if cr.remain > 0 {
		cr.remain -= int64(n)
		if cr.remain < 0 {
			cr.remain = 0
		}
	}
}

// backgroundRead reads one byte while the handler runs: a pipelined
// request's first byte is kept, an error means the client is gone.
func (cr *connReader) backgroundRead(gone func()) {
	n, err := cr.conn.Read(cr.byteBuf[:])
	cr.mu.Lock()
	if n == 1 {
		cr.hasByte = true
	}
	if ne, ok := err.(net.Error); ok && cr.aborted && ne.Timeout() {
		// Expected: abortPendingRead stopped it.
	} else if err != nil {
		gone()
	}
	cr.aborted = false
	cr.inRead = false
	cr.mu.Unlock()
	cr.cond.Broadcast()
}

// startBackgroundRead starts the read unless one is running.
func (cr *connReader) startBackgroundRead(gone func()) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.inRead || cr.hasByte {
		return
	}
	cr.inRead = true
	_ = cr.conn.SetReadDeadline(time.Time{})
	go cr.backgroundRead(gone)
}

// abortPendingRead stops a running background read and waits for it.
func (cr *connReader) abortPendingRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.inRead {
		return
	}
	cr.aborted = true
	_ = cr.conn.SetReadDeadline(time.Unix(1, 0))
	for cr.inRead {
		cr.cond.Wait()
	}
	_ = cr.conn.SetReadDeadline(time.Time{})
}

// clientWatch starts the background read once an exchange has run for
// watchDelay: short exchanges, nearly all of them, cost only a timer.
type clientWatch struct {
	cr     *connReader
	cancel context.CancelFunc

	mu       sync.Mutex
	timer    *time.Timer
	started  bool
	disarmed bool
}

func (w *clientWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil || w.disarmed {
		return
	}
	w.timer = time.AfterFunc(watchDelay, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.disarmed {
			return
		}
		w.started = true
		w.cr.startBackgroundRead(w.cancel)
	})
}

// disarm stops the watch; after it returns no background read runs.
func (w *clientWatch) disarm() {
	w.mu.Lock()
	w.disarmed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	started := w.started
	w.mu.Unlock()
	if started {
		w.cr.abortPendingRead()
	}
}

// tunnelBody is the request body as the handler sees it: it sends 100
// Continue before the first read when the client asked for it, notes the
// end of the body, and arms the client watch there. The transport may
// still read it from its own goroutine after the handler returned; the
// loop detaches it then (see detach).
type tunnelBody struct {
	rc             io.ReadCloser
	w              *tunnelResponse
	watch          *clientWatch
	expectContinue bool // read and cleared by the first Read only

	mu     sync.Mutex // held during a read
	eof    atomic.Bool
	closed bool
}

func (b *tunnelBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	if b.expectContinue {
		// The first read is the proxy's peek, in the handler's
		// goroutine, before any response is written.
		b.expectContinue = false
		if _, err := io.WriteString(b.w.c.bw, "HTTP/1.1 100 Continue\r\n\r\n"); err == nil {
			_ = b.w.c.bw.Flush()
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
		b.watch.arm()
	}
	return n, err
}

func (b *tunnelBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil // the loop decides what happens to an unread rest
}

// detach takes the body from the handler once it returned; it reports
// whether the body was read to its end. A read still running (the
// transport sending it upstream) means the connection is out of step.
func (b *tunnelBody) detach() (complete bool) {
	if !b.mu.TryLock() {
		return false
	}
	b.closed = true
	b.mu.Unlock()
	return b.eof.Load()
}

// tunnelResponse is the http.ResponseWriter of the loop. It frames the
// response (Content-Length, chunked with trailers, or until close for
// HTTP/1.0), and offers Flush, Hijack and read deadlines to
// http.ResponseController.
type tunnelResponse struct {
	c      *tunnelConn
	req    *http.Request
	header http.Header
	watch  *clientWatch

	wantsClose, wants10KeepAlive bool

	wroteHeader   bool
	status        int
	noBody        bool // HEAD, 1xx, 204, 304
	chunked       bool
	contentLength int64 // -1: unknown
	written       int64
	closeAfter    bool
	trailers      []string
	err           error // the first write error: the connection is broken
}

func (w *tunnelResponse) Header() http.Header { return w.header }

func (w *tunnelResponse) WriteHeader(code int) {
	if w.c.hijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	bw := w.c.bw
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: written at once; the final header follows.
		writeStatusLine(bw, code)
		_ = w.header.Write(bw)
		bw.WriteString("\r\n")
		w.setErr(bw.Flush())
		return
	}
	w.wroteHeader = true
	w.status = code
	h := w.header
	bodyAllowed := code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
	w.noBody = !bodyAllowed || w.req.Method == http.MethodHead
	h.Del("Transfer-Encoding")
	if cl := h.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.contentLength = v
		} else {
			h.Del("Content-Length")
		}
	}
	if hasToken(h.Get("Connection"), "close") || w.wantsClose {
		w.closeAfter = true
	}
	if w.req.ContentLength != 0 {
		if b, ok := w.req.Body.(*tunnelBody); ok && !b.eof.Load() {
			// The body is not read to its end yet; unless the handler
			// finishes it, the connection closes after this response.
			w.closeAfter = true
		}
	}
	switch {
	case w.noBody:
	case w.contentLength >= 0:
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h.Set("Transfer-Encoding", "chunked")
		if vv := h["Trailer"]; len(vv) > 0 {
			for _, v := range vv {
				for k := range strings.SplitSeq(v, ",") {
					if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
						w.trailers = append(w.trailers, k)
					}
				}
			}
		}
	default:
		w.closeAfter = true // HTTP/1.0: the body ends with the connection
	}
	if !w.req.ProtoAtLeast(1, 1) {
		if w.wants10KeepAlive && !w.closeAfter && (w.noBody || w.contentLength >= 0) {
			h.Set("Connection", "keep-alive")
		} else {
			w.closeAfter = true
			h.Del("Connection")
		}
	} else if w.closeAfter && !hasToken(h.Get("Connection"), "close") {
		h.Set("Connection", "close")
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	writeStatusLine(bw, code)
	var exclude map[string]bool
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			if exclude == nil {
				exclude = map[string]bool{}
			}
			exclude[k] = true
		}
	}
	_ = h.WriteSubset(bw, exclude)
	bw.WriteString("\r\n")
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	var b [3]byte
	bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

func (w *tunnelResponse) setErr(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
	}
}

func (w *tunnelResponse) Write(b []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(b) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(b), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(b)) > w.contentLength {
		n, _ := w.write(b[:w.contentLength-w.written])
		return n, http.ErrContentLength
	}
	return w.write(b)
}

func (w *tunnelResponse) write(b []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		var hdr [18]byte
		bw.Write(append(strconv.AppendInt(hdr[:0], int64(len(b)), 16), '\r', '\n'))
	}
	n, err := bw.Write(b)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	w.setErr(err)
	return n, err
}

// WriteString lets io.WriteString write without a copy.
func (w *tunnelResponse) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

func (w *tunnelResponse) Flush() {
	_ = w.FlushError()
}

func (w *tunnelResponse) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	w.setErr(w.c.bw.Flush())
	return w.err
}

func (w *tunnelResponse) SetReadDeadline(t time.Time) error  { return w.c.fc.SetReadDeadline(t) }
func (w *tunnelResponse) SetWriteDeadline(t time.Time) error { return w.c.fc.SetWriteDeadline(t) }

// Hijack hands the connection to the handler (an allowed upgrade). The
// tunnel stays registered, so Close still cuts it.
func (w *tunnelResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		return nil, nil, errors.New("httpproxy: hijack after the response header")
	}
	w.watch.disarm()
	c.hijacked = true
	// Reads go through the loop's buffer: bytes the client sent right
	// after its request are not lost.
	return &bufferedConn{Conn: c.fc, br: c.br}, bufio.NewReadWriter(c.br, c.bw), nil
}

// bufferedConn reads what was buffered before reading the connection.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.br.Read(p) }

// finish ends the response; false means the connection must close.
func (w *tunnelResponse) finish() bool {
	if !w.wroteHeader {
		if _, ok := w.header["Content-Length"]; !ok {
			w.header.Set("Content-Length", "0")
		}
		w.WriteHeader(http.StatusOK)
	}
	bw := w.c.bw
	switch {
	case w.err != nil:
		return false
	case w.chunked:
		bw.WriteString("0\r\n")
		tr := http.Header{}
		for _, k := range w.trailers {
			if vv := w.header[k]; len(vv) > 0 {
				tr[k] = vv
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				tr[http.CanonicalHeaderKey(name)] = vv
			}
		}
		_ = tr.Write(bw)
		bw.WriteString("\r\n")
	case !w.noBody && w.contentLength >= 0 && w.written != w.contentLength:
		// Fewer bytes than announced: only closing tells the client.
		w.closeAfter = true
	}
	w.setErr(bw.Flush())
	return w.err == nil
}

// addTunnel registers a tunnel for graceful shutdown; false when the
// proxy is closing.
func (p *Proxy) addTunnel(c *tunnelConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.tunnelsClosing.Load() {
		return false
	}
	p.tunnels[c] = struct{}{}
	return true
}

func (p *Proxy) removeTunnel(c *tunnelConn) {
	p.mu.Lock()
	delete(p.tunnels, c)
	p.mu.Unlock()
}

// shutdownTunnels closes idle tunnels, and tunnels as they become idle,
// until none is left or ctx is done.
func (p *Proxy) shutdownTunnels(ctx context.Context) error {
	p.tunnelsClosing.Store(true)
	wait := time.Millisecond
	for {
		p.mu.Lock()
		for c := range p.tunnels {
			if c.state.CompareAndSwap(tunnelIdle, tunnelClosed) {
				c.fc.Close()
			}
		}
		n := len(p.tunnels)
		p.mu.Unlock()
		if n == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
