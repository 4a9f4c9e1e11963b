package httpproxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// authority is a canonical host and port: the host is lower case, without
// brackets or a trailing dot, and an IP literal is in its canonical form.
type authority struct {
	host string
	ip   netip.Addr // valid when host is an IP literal
	port int
}

// String returns host:port, with brackets around an IPv6 literal.
func (a authority) String() string {
	return net.JoinHostPort(a.host, strconv.Itoa(a.port))
}

// hostPort returns the form used in a Host header and a URL: the port is
// left out when it is the scheme's default.
func (a authority) hostPort(defaultPort int) string {
	if a.port == defaultPort {
		if a.ip.Is6() {
			return "[" + a.host + "]"
		}
		return a.host
	}
	return a.String()
}

// parseAuthority parses host[:port] as found in a CONNECT request line, a
// Host header or an absolute URL. A missing port is defaultPort; with
// defaultPort 0 the port is required.
func parseAuthority(s string, defaultPort int) (authority, error) {
	if s == "" {
		return authority{}, errors.New("empty host")
	}
	hostPart, portPart, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return authority{}, fmt.Errorf("host %q: missing ']'", s)
		}
		hostPart = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return authority{}, fmt.Errorf("host %q: unexpected text after ']'", s)
			}
			portPart, hasPort = p, true
		}
		ip, err := netip.ParseAddr(hostPart)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return authority{}, fmt.Errorf("host %q: not an IPv6 address", s)
		}
	} else {
		switch strings.Count(s, ":") {
		case 0:
		case 1:
			hostPart, portPart, _ = strings.Cut(s, ":")
			hasPort = true
		default:
			return authority{}, fmt.Errorf("host %q: IPv6 addresses need brackets", s)
		}
	}
	port := defaultPort
	if hasPort {
		p, err := parsePort(portPart)
		if err != nil {
			return authority{}, fmt.Errorf("host %q: %w", s, err)
		}
		port = p
	}
	if port == 0 {
		return authority{}, fmt.Errorf("host %q: missing port", s)
	}
	host, ip, err := canonicalHost(hostPart)
	if err != nil {
		return authority{}, err
	}
	return authority{host: host, ip: ip, port: port}, nil
}

// parsePort accepts a decimal port 1-65535 without sign or spaces.
func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("invalid port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range", n)
	}
	return n, nil
}

// canonicalHost validates a host name or IP literal (without brackets or
// port) and returns its canonical form. Names are restricted to letters,
// digits, '-' and '_' in dot-separated labels, so that nothing odd reaches
// a certificate, a resolver or the Governor.
func canonicalHost(h string) (string, netip.Addr, error) {
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return "", netip.Addr{}, fmt.Errorf("host %q: zoned addresses are not supported", h)
		}
		ip = ip.Unmap()
		return ip.String(), ip, nil
	}
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	if name == "" || len(name) > 253 {
		return "", netip.Addr{}, fmt.Errorf("invalid host name %q", h)
	}
	labelLen, digitsOnly := 0, true
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if labelLen == 0 || labelLen > 63 {
				return "", netip.Addr{}, fmt.Errorf("invalid host name %q", h)
			}
			if i == len(name) && digitsOnly {
				// A numeric last label is no DNS name; some resolvers read
				// "127.1" or "0x7f.1" as an address. Refuse the ambiguity.
				return "", netip.Addr{}, fmt.Errorf("invalid host name %q: numeric top-level label", h)
			}
			labelLen, digitsOnly = 0, true
			continue
		}
		c := name[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c == '-', c == '_':
			digitsOnly = false
		default:
			return "", netip.Addr{}, fmt.Errorf("invalid host name %q", h)
		}
		labelLen++
	}
	return name, netip.Addr{}, nil
}
