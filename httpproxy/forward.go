package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/connectors"
)

// exchange is the state of one governed request, carried in the outbound
// request's context to the ReverseProxy hooks.
type exchange struct {
	verdict Verdict
	upgrade bool
	status  int   // set by upstreamResponse or upstreamError
	err     error // set by upstreamError
}

type exchangeKey struct{}

// forward peeks at the body, asks the Governor, and forwards or refuses.
// r.URL is absolute and r.Host canonical when it is called.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, scheme string, target authority) {
	start := time.Now()
	// A slow body is bounded: the inspected prefix must arrive within
	// BodyReadTimeout, and the rest may not pause longer than that.
	var rc *http.ResponseController
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody {
		rc = http.NewResponseController(w)
		_ = rc.SetReadDeadline(start.Add(p.cfg.BodyReadTimeout))
	}
	peek, shown, truncated, err := p.peek(r)
	if hasBody && !truncated {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	upgrade := r.Header.Get("Upgrade") != ""
	// Never shown to the Governor nor forwarded: on the proxy hop it is the
	// session token, inside a tunnel it is meant for no one upstream.
	r.Header.Del("Proxy-Authorization")

	// The Governor sees the request without its body stream.
	view := r.WithContext(r.Context())
	view.Body = http.NoBody
	v := p.cfg.Governor.Govern(r.Context(), &connectors.Request{
		HTTP:      view,
		Scheme:    scheme,
		Body:      shown,
		Truncated: truncated,
	})
	if !v.Allow {
		if upgrade || truncated {
			// The tracker stopped at the upgrade, or the body is left
			// unread: this connection carries no further request.
			w.Header().Set("Connection", "close")
		}
		status := p.writeRefusal(w, v.Refusal)
		finish(v, Outcome{Status: status, Duration: time.Since(start)})
		return
	}

	if upgrade && !v.Upgrade {
		// After an upgrade the connection carries a protocol tf no
		// longer reads; only a connector that governs it may allow one.
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusForbidden, "protocol upgrade to "+strconv.Quote(r.Header.Get("Upgrade"))+" refused: no connector governs the upgraded protocol")
		finish(v, Outcome{Status: http.StatusForbidden, Duration: time.Since(start), Err: errors.New("protocol upgrade refused")})
		return
	}
	if v.Ctx != nil && v.Ctx.Err() != nil {
		// Cut (kill switch) while the Governor held the request.
		writeText(w, http.StatusServiceUnavailable, "request cut off by the gateway")
		finish(v, Outcome{Status: http.StatusServiceUnavailable, Duration: time.Since(start),
			Err: fmt.Errorf("exchange cut off: %w", context.Cause(v.Ctx))})
		return
	}
	ctx := r.Context()
	if v.Ctx != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(v.Ctx, cancel)
		defer stop()
	}
	ex := &exchange{verdict: v, upgrade: upgrade}
	out := r.WithContext(context.WithValue(ctx, exchangeKey{}, ex))
	body := &forwardBody{peek: peek}
	if truncated {
		body.rest = r.Body
		body.rc, body.timeout = rc, p.cfg.BodyReadTimeout
	}
	if len(peek) == 0 && !truncated {
		out.Body = http.NoBody
		out.ContentLength = 0
	} else {
		out.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	cw.flusher, _ = w.(http.Flusher)
	defer func() {
		o := Outcome{
			Status:        cw.status,
			RequestBytes:  body.n.Load(),
			ResponseBytes: cw.n,
			Duration:      time.Since(start),
			Err:           ex.err,
		}
		if ex.status == http.StatusSwitchingProtocols {
			o.Status = ex.status
		}
		if rec := recover(); rec != nil {
			// ReverseProxy aborts the handler when the response copy
			// fails; report it, then let the server close the connection.
			if o.Err == nil {
				o.Err = errors.New("response cut off while streaming")
			}
			finish(v, o)
			panic(rec)
		}
		if v.Ctx != nil && v.Ctx.Err() != nil && ex.err == nil {
			// Cut while the upstream response streamed. The upstream side
			// may have wound down cleanly; abort so that the client cannot
			// take a cut response for a complete one.
			o.Err = fmt.Errorf("exchange cut off: %w", context.Cause(v.Ctx))
			finish(v, o)
			panic(http.ErrAbortHandler)
		}
		finish(v, o)
	}()
	p.rp.ServeHTTP(cw, out)
}

func finish(v Verdict, o Outcome) {
	if v.Done != nil {
		v.Done(o)
	}
}

// peek reads the start of the body: all holds the bytes read (to be
// forwarded), shown the first PeekLimit of them (for the Governor), and
// truncated reports that more follows in r.Body.
func (p *Proxy) peek(r *http.Request) (all, shown []byte, truncated bool, err error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil, false, nil
	}
	limit := int64(p.cfg.PeekLimit)
	if r.ContentLength > 0 {
		buf := make([]byte, min(r.ContentLength, limit))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, nil, false, err
		}
		return buf, buf, r.ContentLength > limit, nil
	}
	// Chunked: read one byte beyond the limit to learn whether more follows.
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, nil, false, err
	}
	if int64(len(buf)) > limit {
		return buf, buf[:limit], true, nil
	}
	return buf, buf, false, nil
}

// forwardBody replays the peeked bytes and then streams the rest.
type forwardBody struct {
	peek []byte
	off  int
	rest io.ReadCloser // nil when the peek holds the whole body
	// rc and timeout bound each read of rest; the deadline is lifted at
	// the end of the body, so that it cannot cut the response.
	rc      *http.ResponseController
	timeout time.Duration
	// n counts bytes handed upstream; the transport may still be reading
	// when the handler reports the outcome.
	n atomic.Int64
}

func (b *forwardBody) Read(p []byte) (int, error) {
	if b.off < len(b.peek) {
		n := copy(p, b.peek[b.off:])
		b.off += n
		b.n.Add(int64(n))
		return n, nil
	}
	if b.rest == nil {
		return 0, io.EOF
	}
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.rest.Read(p)
	b.n.Add(int64(n))
	if err != nil && b.rc != nil {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *forwardBody) Close() error {
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	if b.rest != nil {
		return b.rest.Close()
	}
	return nil
}

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers (Proxy-Authorization among them) and forwarding
// headers from the clone; the Governor's Prepare runs last.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.Host = pr.In.Host
	pr.Out.RequestURI = ""
	if ex, ok := pr.Out.Context().Value(exchangeKey{}).(*exchange); ok && ex.verdict.Prepare != nil {
		ex.verdict.Prepare(pr.Out)
	}
}

// upstreamResponse records the upstream status and applies the Governor's
// response hook. After a refused upgrade the connection is closed, since
// its framing is no longer tracked.
func (p *Proxy) upstreamResponse(res *http.Response) error {
	ex, ok := res.Request.Context().Value(exchangeKey{}).(*exchange)
	if !ok {
		return nil
	}
	ex.status = res.StatusCode
	if ex.upgrade && res.StatusCode != http.StatusSwitchingProtocols {
		res.Header.Set("Connection", "close")
	}
	if ex.verdict.ModifyResponse != nil && res.StatusCode != http.StatusSwitchingProtocols {
		if err := ex.verdict.ModifyResponse(res); err != nil {
			return fmt.Errorf("modifying the upstream response: %w", err)
		}
	}
	return nil
}

// upstreamError answers a failed exchange with a short reason that names no
// internals, and records the error for Done.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
	status, msg := http.StatusBadGateway, "upstream request failed"
	var addrErr *AddressError
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var netErr net.Error
	host := r.URL.Hostname()
	switch {
	case errors.As(err, &addrErr):
		status, msg = http.StatusForbidden, addrErr.Error()
	case ex != nil && ex.verdict.Ctx != nil && ex.verdict.Ctx.Err() != nil:
		status, msg = http.StatusServiceUnavailable, "request cut off by the gateway"
	case errors.Is(err, context.Canceled):
		msg = "request cancelled"
	case errors.As(err, &dnsErr):
		msg = "cannot resolve " + host
	case errors.As(err, &certErr):
		msg = "upstream certificate for " + host + " is not trusted"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		status, msg = http.StatusGatewayTimeout, "upstream timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		msg = "upstream closed the connection"
	default:
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			msg = "cannot connect to " + host
		}
	}
	if ex != nil {
		ex.status = status
		ex.err = err
		if ex.upgrade {
			w.Header().Set("Connection", "close")
		}
	}
	writeText(w, status, msg)
}

// writeRefusal writes the Governor's refusal (or the default one) and
// returns the status written.
func (p *Proxy) writeRefusal(w http.ResponseWriter, resp *Response) int {
	if resp == nil {
		resp = &p.refusal
	}
	status := resp.Status
	if status < 200 || status > 599 {
		status = http.StatusForbidden
	}
	h := w.Header()
	for k, vv := range resp.Header {
		if isHopByHop(k) {
			continue
		}
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vv...)
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	if len(resp.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.WriteHeader(status)
	w.Write(resp.Body)
	return status
}

// isHopByHop reports headers that describe one connection, not the message.
func isHopByHop(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length":
		return true
	}
	return false
}

// countingWriter records the final status and the body bytes written. It
// does not flush: ReverseProxy flushes each write of a stream (unknown
// length, event streams) through Flush, and a body of known length goes
// out through the server's buffer in as few writes as it can (a flush per
// copied chunk cost a write(2) each). It unwraps for
// http.ResponseController (hijack).
type countingWriter struct {
	http.ResponseWriter
	flusher http.Flusher
	status  int
	n       int64
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if c.flusher != nil {
		c.flusher.Flush()
	}
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// bufferPool lends ReverseProxy its copy buffers, which it would otherwise
// allocate (32 KiB) per request.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
