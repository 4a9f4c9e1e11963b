package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// handleConnect intercepts a CONNECT tunnel (TLS terminated with a leaf for
// the requested host, requests served by serveTunnelConn) or, for
// passthrough hosts, relays it raw once GovernTunnel allows.
func (p *Proxy) handleConnect(w http.ResponseWriter, r *http.Request, fc *framingConn) {
	a, err := parseAuthority(r.Host, 0)
	if err != nil {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadRequest, "invalid CONNECT authority: "+err.Error())
		return
	}
	if p.cfg.Passthrough != nil && p.cfg.Passthrough(a.host) {
		p.passthrough(w, r, fc, a)
		return
	}
	cert, err := p.cfg.CA.Leaf(a.host)
	if err != nil {
		w.Header().Set("Connection", "close")
		writeText(w, http.StatusBadGateway, "cannot issue a certificate for "+a.host)
		return
	}
	raw, ok := p.hijack(w, fc)
	if !ok {
		return
	}
	if !p.addRaw(raw) {
		return
	}
	if _, err := io.WriteString(raw, connectEstablished); err != nil {
		p.dropRaw(raw)
		return
	}
	tlsConn := tls.Server(raw, &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
		NextProtos:     []string{"http/1.1"},
		MinVersion:     tls.VersionTLS12,
	})
	hctx, cancel := context.WithTimeout(p.ctx, p.cfg.ReadHeaderTimeout)
	err = tlsConn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		p.dropRaw(raw)
		return
	}
	inner := newFramingConn(tlsConn, p.maxHead(), &a)
	inner.raw = raw
	inner.agent = fc.agent
	// raw stays registered until the tunnel's loop ends, so Close can
	// always cut it.
	p.serveTunnelConn(inner, tlsConn, raw)
}

func (p *Proxy) dropRaw(c net.Conn) {
	c.Close()
	p.removeRaw(c)
}

// hijack takes over the client connection of a CONNECT request. The
// returned connection bypasses the framing tracker and replays bytes the
// server had already buffered (a client may send its TLS hello early).
func (p *Proxy) hijack(w http.ResponseWriter, fc *framingConn) (net.Conn, bool) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeText(w, http.StatusInternalServerError, "cannot take over the connection")
		return nil, false
	}
	// The server may have left deadlines on the connection.
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, false
	}
	var conn net.Conn = c
	if fc != nil && c == net.Conn(fc) {
		conn = fc.Conn
	}
	if n := brw.Reader.Buffered(); n > 0 {
		buf, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), buf...)}
	}
	return conn, true
}

// prefixConn replays bytes read ahead before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// passthrough relays a CONNECT tunnel without interception.
func (p *Proxy) passthrough(w http.ResponseWriter, r *http.Request, fc *framingConn, a authority) {
	start := time.Now()
	v := p.cfg.Governor.GovernTunnel(r.Context(), a.host, a.port)
	if !v.Allow {
		w.Header().Set("Connection", "close")
		status := p.writeRefusal(w, v.Refusal)
		finish(v, Outcome{Status: status, Duration: time.Since(start)})
		return
	}
	ctx := r.Context()
	if v.Ctx != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(v.Ctx, cancel)()
	}
	up, err := p.dial(ctx, "tcp", a.String())
	if err != nil {
		status, msg := http.StatusBadGateway, "cannot connect to "+a.host
		var addrErr *AddressError
		if errors.As(err, &addrErr) {
			status, msg = http.StatusForbidden, addrErr.Error()
		}
		w.Header().Set("Connection", "close")
		writeText(w, status, msg)
		finish(v, Outcome{Status: status, Duration: time.Since(start), Err: err})
		return
	}
	client, ok := p.hijack(w, fc)
	if !ok {
		up.Close()
		finish(v, Outcome{Status: http.StatusInternalServerError, Duration: time.Since(start), Err: errors.New("hijacking the client connection failed")})
		return
	}
	if !p.addRaw(client) {
		up.Close()
		finish(v, Outcome{Status: http.StatusServiceUnavailable, Duration: time.Since(start), Err: http.ErrServerClosed})
		return
	}
	defer p.dropRaw(client)
	if !p.addRaw(up) {
		finish(v, Outcome{Status: http.StatusServiceUnavailable, Duration: time.Since(start), Err: http.ErrServerClosed})
		return
	}
	defer p.dropRaw(up)
	// The kill switch and the request context (cancelled by Close) cut
	// the tunnel.
	defer context.AfterFunc(ctx, func() { client.Close(); up.Close() })()

	o := Outcome{Status: http.StatusOK}
	if _, err := io.WriteString(client, connectEstablished); err != nil {
		o.Err = err
		o.Duration = time.Since(start)
		finish(v, o)
		return
	}
	// Either direction ending ends the tunnel, as in httputil's upgrade
	// relay; io.Copy between TCP connections splices in the kernel.
	type result struct {
		n   int64
		err error
	}
	up2client := make(chan result, 1)
	go func() {
		n, err := io.Copy(client, up)
		client.Close()
		up.Close()
		up2client <- result{n, err}
	}()
	o.RequestBytes, o.Err = io.Copy(up, client)
	client.Close()
	up.Close()
	res := <-up2client
	o.ResponseBytes = res.n
	if o.Err == nil {
		o.Err = res.err
	}
	if errors.Is(o.Err, net.ErrClosed) {
		o.Err = nil // the other direction ended first
	}
	if v.Ctx != nil && v.Ctx.Err() != nil {
		o.Err = errors.New("tunnel cut off by the gateway")
	}
	o.Duration = time.Since(start)
	finish(v, o)
}
