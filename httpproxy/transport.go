package httpproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
)

// upstreamTransport forwards over HTTP/1.1 with keep-alive, and over
// HTTP/2 only when the exchange needs it: the client leg is HTTP/2, or
// the request is gRPC (which needs HTTP/2 framing and trailers). On a
// loopback or LAN upstream HTTP/1.1 is the cheaper protocol: Go's HTTP/2
// client adds a goroutine hand-off per request and flow-control frames,
// measured at 60–220 µs per request at one client (issue 14). HTTP/1.1
// goes through h1Client, which runs each exchange in the caller's
// goroutine (see there).
type upstreamTransport struct {
	h1 *h1Client
	h2 *http.Transport
}

func newUpstreamTransport(dial func(context.Context, string, string) (net.Conn, error), roots *x509.CertPool) *upstreamTransport {
	h2 := func() *http.Transport {
		return &http.Transport{
			Proxy:       nil, // never chain to a proxy from the environment
			DialContext: dial,
			TLSClientConfig: &tls.Config{
				RootCAs:    roots,
				MinVersion: tls.VersionTLS12,
			},
			ForceAttemptHTTP2:      true,
			DisableCompression:     true, // pass encodings through untouched
			MaxIdleConns:           256,
			MaxIdleConnsPerHost:    64,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 1 << 20,
		}
	}
	return &upstreamTransport{
		h1: &h1Client{
			dial:           dial,
			tlsConfig:      &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			maxIdlePerHost: 64,
			idleTimeout:    90 * time.Second,
			maxHeaderBytes: 1 << 20,
			handshake:      10 * time.Second,
		},
		h2: h2(),
	}
}

func (t *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if needsHTTP2(r) {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

func (t *upstreamTransport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

// needsHTTP2 reports exchanges that HTTP/1.1 cannot carry as the client
// meant them.
func needsHTTP2(r *http.Request) bool {
	if r.ProtoMajor == 2 {
		return true
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	// application/grpc and application/grpc+proto; not grpc-web, which is
	// made for HTTP/1.1.
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+")
}
