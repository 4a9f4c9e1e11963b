package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// EventAgentsUnreadable records that the agents file of a shared gateway
// could not be read: until it is fixed no agent authenticates.
const EventAgentsUnreadable = "agents.unreadable"

// DefaultDrain is how long tf serve lets exchanges in flight finish after
// SIGTERM before it cuts them.
const DefaultDrain = 10 * time.Second

// ProxyTLS is the TLS of the proxy leg of a shared gateway: a certificate
// and key of the operator's, or else a certificate for Names issued by
// tf's local CA (clients then trust the CA: curl --proxy-cacert, git
// http.proxySSLCAInfo).
type ProxyTLS struct {
	Names             []string
	CertFile, KeyFile string
}

// ServeConfig is the serve: section of the config file.
//
//	serve:
//	  listen: 0.0.0.0:3128
//	  tls_names: [tf.example.internal]   # on the certificate tf's CA issues
//	  tls_cert: /etc/tf/proxy.pem        # or a certificate and key of your own
//	  tls_key: /etc/tf/proxy-key.pem
//	  drain: 10s
type ServeConfig struct {
	Listen   string        `yaml:"listen,omitempty"`
	TLSNames []string      `yaml:"tls_names,omitempty"`
	TLSCert  string        `yaml:"tls_cert,omitempty"`
	TLSKey   string        `yaml:"tls_key,omitempty"`
	Drain    time.Duration `yaml:"drain,omitempty"`
}

// IsLoopback reports whether a listen address only accepts connections
// from this machine. A host name counts only if it is localhost.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// CheckServeListen refuses to serve agents' credentials in plain HTTP on
// an address other hosts reach: their tokens would cross the network in
// the clear.
func CheckServeListen(addr string, tls bool) error {
	if addr == "" {
		return errors.New("tf serve needs an address to listen on (--listen or serve: listen in config.yaml)")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("listen address %q: want HOST:PORT (0.0.0.0:3128, 127.0.0.1:3128)", addr)
	}
	if !tls && !IsLoopback(addr) {
		return fmt.Errorf("refusing to listen on %s in plain HTTP: agents' proxy tokens would cross the network in the clear; serve TLS (--tls, or --tls-cert and --tls-key) or listen on loopback", addr)
	}
	return nil
}

// proxyTLSConfig is the server TLS of the proxy leg. Without a
// certificate file it issues leaves from tf's CA: for the configured
// names, else for this host's name and the listening address.
func (g *Gateway) proxyTLSConfig(pt *ProxyTLS, addr net.Addr) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if pt.CertFile != "" || pt.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(pt.CertFile, pt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the proxy's TLS certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		return tc, nil
	}
	names := append([]string(nil), pt.Names...)
	if len(names) == 0 {
		if h, err := os.Hostname(); err == nil && h != "" {
			names = append(names, strings.ToLower(h))
		}
		if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			names = append(names, ta.IP.String())
		}
		names = append(names, "localhost", "127.0.0.1")
	}
	for _, n := range names {
		if _, err := g.ca.Leaf(n); err != nil {
			return nil, fmt.Errorf("issuing the proxy's certificate for %q: %w", n, err)
		}
	}
	tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
		if name == "" && hello.Conn != nil {
			// No SNI: the client dialled an address; answer for it if
			// it is one of the names.
			if h, _, err := net.SplitHostPort(hello.Conn.LocalAddr().String()); err == nil {
				name = h
			}
		}
		for _, n := range names {
			if strings.EqualFold(n, name) {
				return g.ca.Leaf(n)
			}
		}
		return g.ca.Leaf(names[0])
	}
	return tc, nil
}

func (g *Gateway) closeAgents() {
	if g.agents != nil {
		g.agents.Close()
	}
}
