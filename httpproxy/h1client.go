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
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// h1Client forwards HTTP/1.1 exchanges over keep-alive connections it
// owns, writing the request and reading the response in the caller's
// goroutine. http.Transport runs a read and a write goroutine per
// connection and hands every request and response between them and the
// caller (four goroutine wake-ups per request); on the proxy's hot path
// that was a large part of its cost (issue 14). The request body is
// written in full before the response is read, which every HTTP/1.1
// exchange tf forwards allows (a full-duplex exchange uses HTTP/2).
type h1Client struct {
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	tlsConfig      *tls.Config // cloned per connection, ServerName set
	maxIdlePerHost int
	idleTimeout    time.Duration
	maxHeaderBytes int64
	handshake      time.Duration

	mu      sync.Mutex
	idle    map[h1Key][]*h1Conn
	nidle   int
	janitor *time.Timer
}

type h1Key struct {
	tls  bool
	addr string // host:port as dialled
	name string // TLS server name
}

type h1Conn struct {
	cl     *h1Client
	key    h1Key
	conn   net.Conn
	lr     headLimitReader
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
	// unchecked: taken from the pool without the MSG_PEEK look (see
	// unpeekedIdle), for a request that may be sent again.
	unchecked bool
}

// headLimitReader bounds the bytes read for a response head.
type headLimitReader struct {
	r      io.Reader
	remain int64 // <0: no bound
	got    int64 // bytes read since the request was written
}

func (l *headLimitReader) Read(p []byte) (int, error) {
	if l.remain == 0 {
		return 0, errHeadTooLarge
	}
	if l.remain > 0 && int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.r.Read(p)
	l.got += int64(n)
	if l.remain > 0 {
		l.remain -= int64(n)
	}
	return n, err
}

var errHeadTooLarge = errors.New("upstream response head too large")

// max1xx bounds the informational responses before the final one, as
// http.Transport does.
const max1xx = 5

func (cl *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	key, err := h1KeyFor(req)
	if err != nil {
		closeReqBody(req)
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := cl.get(ctx, key, attempt == 0 && replayable(req))
		if err != nil {
			closeReqBody(req)
			return nil, err
		}
		res, err, retry := pc.roundTrip(ctx, req)
		if err == nil {
			return res, nil
		}
		if retry && attempt == 0 && ctx.Err() == nil {
			continue // a kept-alive connection the upstream had closed
		}
		closeReqBody(req)
		return nil, err
	}
}

func closeReqBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func h1KeyFor(req *http.Request) (h1Key, error) {
	u := req.URL
	host, port := u.Hostname(), u.Port()
	var k h1Key
	switch u.Scheme {
	case "https":
		k.tls = true
		if port == "" {
			port = "443"
		}
	case "http":
		if port == "" {
			port = "80"
		}
	default:
		return k, fmt.Errorf("unsupported protocol scheme %q", u.Scheme)
	}
	if host == "" {
		return k, errors.New("request has no host")
	}
	k.addr = net.JoinHostPort(host, port)
	k.name = host
	return k, nil
}

// unpeekedIdle: a connection idle for less than this carries a first
// attempt of a replayable request without the MSG_PEEK that checks it is
// still open (one syscall a request). If the upstream closed it, nothing
// of the response arrives and the request is retried on a checked
// connection. Upstreams close idle connections after seconds, and some
// write an unasked 408 first; within this bound that is not expected.
const unpeekedIdle = 100 * time.Millisecond

// get returns an idle connection that is still open, or dials one.
// replay says the request may be retried on another connection should
// this one turn out closed: a connection idle only briefly is then
// taken without looking.
func (cl *h1Client) get(ctx context.Context, key h1Key, replay bool) (*h1Conn, error) {
	for {
		cl.mu.Lock()
		list := cl.idle[key]
		if len(list) == 0 {
			cl.mu.Unlock()
			break
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		cl.idle[key] = list[:len(list)-1]
		cl.nidle--
		cl.mu.Unlock()
		// An upstream may close a kept-alive connection at any time;
		// one it closed (or wrote to unasked) is not used again.
		idle := time.Since(pc.idleAt)
		if idle < cl.idleTimeout && pc.br.Buffered() == 0 {
			pc.unchecked = replay && idle < unpeekedIdle
			if pc.unchecked || connAlive(pc.conn) {
				pc.reused = true
				return pc, nil
			}
		}
		pc.close()
	}
	return cl.dialConn(ctx, key)
}

func (cl *h1Client) dialConn(ctx context.Context, key h1Key) (*h1Conn, error) {
	conn, err := cl.dial(ctx, "tcp", key.addr)
	if err != nil {
		return nil, err
	}
	if key.tls {
		cfg := cl.tlsConfig.Clone()
		cfg.ServerName = key.name
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, cl.handshake)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	pc := &h1Conn{cl: cl, key: key, conn: conn}
	pc.lr.r = conn
	pc.lr.remain = -1
	pc.br = bufio.NewReaderSize(&pc.lr, 4<<10)
	pc.bw = bufio.NewWriterSize(conn, 4<<10)
	return pc, nil
}

func (pc *h1Conn) close() { pc.conn.Close() }

// put keeps a connection for reuse, or closes it.
func (cl *h1Client) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	cl.mu.Lock()
	if cl.idle == nil {
		cl.idle = make(map[h1Key][]*h1Conn)
	}
	if len(cl.idle[pc.key]) >= cl.maxIdlePerHost {
		cl.mu.Unlock()
		pc.close()
		return
	}
	cl.idle[pc.key] = append(cl.idle[pc.key], pc)
	cl.nidle++
	if cl.janitor == nil {
		cl.janitor = time.AfterFunc(cl.idleTimeout, cl.prune)
	}
	cl.mu.Unlock()
}

// prune closes connections idle for longer than idleTimeout; it runs
// while any connection is idle.
func (cl *h1Client) prune() {
	var stale []*h1Conn
	cl.mu.Lock()
	now := time.Now()
	for k, list := range cl.idle {
		kept := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleAt) >= cl.idleTimeout {
				stale = append(stale, pc)
			} else {
				kept = append(kept, pc)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(cl.idle, k)
		} else {
			cl.idle[k] = kept
		}
	}
	cl.nidle -= len(stale)
	if cl.nidle > 0 {
		cl.janitor.Reset(cl.idleTimeout / 2)
	} else {
		cl.janitor = nil
	}
	cl.mu.Unlock()
	for _, pc := range stale {
		pc.close()
	}
}

func (cl *h1Client) CloseIdleConnections() {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle = nil
	cl.nidle = 0
	if cl.janitor != nil {
		cl.janitor.Stop()
		cl.janitor = nil
	}
	cl.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.close()
		}
	}
}

// roundTrip runs one exchange on pc. retry reports that the request was
// not taken by the upstream and may be sent again on a new connection:
// pc was reused, nothing of the response arrived, and the request is
// replayable (no body, an idempotent method).
func (pc *h1Conn) roundTrip(ctx context.Context, req *http.Request) (res *http.Response, err error, retry bool) {
	// Cancellation (the client left, the kill switch, Close) cuts the
	// connection, which ends a blocked write or read.
	stop := context.AfterFunc(ctx, pc.close)
	fail := func(err error, retryable bool) (*http.Response, error, bool) {
		stop()
		pc.close()
		if ctx.Err() != nil {
			return nil, ctx.Err(), false
		}
		return nil, err, retryable && pc.reused && replayable(req)
	}
	if err := req.Write(pc.bw); err != nil {
		return fail(err, true) // retried only without a body
	}
	if err := pc.bw.Flush(); err != nil {
		return fail(err, true)
	}
	pc.lr.got = 0
	trace := httptrace.ContextClientTrace(ctx)
	for n1xx := 0; ; n1xx++ {
		pc.lr.remain = pc.cl.maxHeaderBytes
		res, err = http.ReadResponse(pc.br, req)
		pc.lr.remain = -1
		if err != nil {
			if errors.Is(err, errHeadTooLarge) {
				err = fmt.Errorf("upstream response headers exceeded %d bytes", pc.cl.maxHeaderBytes)
			}
			// Nothing at all arrived: the upstream closed the idle
			// connection before it saw the request.
			nothing := pc.lr.got == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err))
			return fail(err, nothing)
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n1xx >= max1xx {
			return fail(errors.New("upstream sent too many 1xx responses"), false)
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err, false)
			}
		}
	}
	if res.StatusCode == http.StatusRequestTimeout && pc.unchecked {
		// Most likely not this request's answer but the one an upstream
		// writes unasked as it closes an idle connection, which the
		// unlooked-at connection held: sent again on a checked one.
		res.Body.Close()
		return fail(errors.New("upstream answered 408 on a reused connection"), true)
	}
	if ctx.Err() != nil {
		// Cut while the answer was on its way: closing the connection
		// may itself have drawn an answer (a server whose handler ends
		// when its client leaves sends an empty 200), which must not
		// pass for the upstream's.
		res.Body.Close()
		return fail(ctx.Err(), false)
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the caller (ReverseProxy's
		// upgrade relay), which watches the context itself.
		stop()
		res.Body = &upgradeBody{br: pc.br, conn: pc.conn}
		return res, nil, false
	}
	if res.Body == http.NoBody || res.Body == nil {
		pc.release(stop, res)
		return res, nil, false
	}
	res.Body = &h1Body{pc: pc, body: res.Body, stop: stop, res: res}
	return res, nil, false
}

// release returns the connection to the pool once its response is read to
// the end, unless the exchange or either side asked to close it.
func (pc *h1Conn) release(stop func() bool, res *http.Response) {
	if !stop() || res.Close || res.Request.Close {
		pc.close()
		return
	}
	pc.cl.put(pc)
}

func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

func isConnReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read"
}

// h1Body is a response body on a pooled connection: read to its end, the
// connection goes back to the pool; closed early, the connection closes.
type h1Body struct {
	pc   *h1Conn
	body io.ReadCloser
	stop func() bool
	res  *http.Response

	mu   sync.Mutex
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil {
		b.mu.Lock()
		if !b.done {
			b.done = true
			if err == io.EOF {
				b.pc.release(b.stop, b.res)
			} else {
				b.stop()
				b.pc.close()
			}
		}
		b.mu.Unlock()
		if cerr := b.res.Request.Context().Err(); err != io.EOF && cerr != nil {
			err = cerr // cut by cancellation, not by the upstream
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		b.stop()
		b.pc.close()
	}
	return nil
}

// upgradeBody is the connection after 101 Switching Protocols, as
// ReverseProxy expects it (an io.ReadWriteCloser).
type upgradeBody struct {
	br   *bufio.Reader
	conn net.Conn
}

func (u *upgradeBody) Read(p []byte) (int, error)  { return u.br.Read(p) }
func (u *upgradeBody) Write(p []byte) (int, error) { return u.conn.Write(p) }
func (u *upgradeBody) Close() error                { return u.conn.Close() }
