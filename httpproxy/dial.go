package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// AddressError reports a destination the proxy refuses to dial because it
// resolves to a loopback, private, link-local, CGNAT, unspecified or
// multicast address (see Config.AllowPrivate).
type AddressError struct {
	Host string
	Addr netip.Addr
	Kind string // "loopback", "private", "link-local", ...
}

func (e *AddressError) Error() string {
	if e.Host == e.Addr.String() {
		return fmt.Sprintf("%s is a %s address, which the proxy does not connect to", e.Host, e.Kind)
	}
	return fmt.Sprintf("%s resolves to %s, a %s address, which the proxy does not connect to", e.Host, e.Addr, e.Kind)
}

var (
	cgnat        = netip.MustParsePrefix("100.64.0.0/10")
	thisNetwork  = netip.MustParsePrefix("0.0.0.0/8")
	siteLocal6   = netip.MustParsePrefix("fec0::/10")
	broadcast4   = netip.MustParseAddr("255.255.255.255")
	errNoAddress = errors.New("no address")
)

var (
	nat64      = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
	teredo     = netip.MustParsePrefix("2001::/32")
	v4compat   = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries and that
// a network along the way may deliver to: IPv4-compatible (::a.b.c.d),
// NAT64 (64:ff9b::/96), 6to4 (2002:AABB:CCDD::/48) and Teredo (server and
// client).
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() || ip.Is4In6() {
		return nil
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case v4compat.Contains(ip):
		if ip.IsUnspecified() || ip.IsLoopback() {
			return nil // :: and ::1 are classified as themselves
		}
		return []netip.Addr{v4(12)}
	case nat64.Contains(ip):
		return []netip.Addr{v4(12)}
	case sixToFour.Contains(ip):
		return []netip.Addr{v4(2)}
	case teredo.Contains(ip):
		client := [4]byte{b[12] ^ 0xff, b[13] ^ 0xff, b[14] ^ 0xff, b[15] ^ 0xff}
		return []netip.Addr{v4(4), netip.AddrFrom4(client)}
	}
	return nil
}

// addressKind names the reason an address is not public, or "" when it may
// be dialled. An IPv6 address that embeds an IPv4 one is as private as
// what it embeds.
func addressKind(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, v4 := range embeddedIPv4(ip) {
		if k := addressKind(v4); k != "" {
			return k + " (embedded in IPv6)"
		}
	}
	switch {
	case nat64Local.Contains(ip):
		return "private"
	case !ip.IsValid():
		return "invalid"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsUnspecified(), thisNetwork.Contains(ip):
		return "unspecified"
	case ip.IsPrivate(), siteLocal6.Contains(ip):
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast(), ip == broadcast4:
		return "multicast"
	case cgnat.Contains(ip):
		return "shared (CGNAT)"
	}
	return ""
}

// dial connects to addr (host:port) for the upstream transport and for
// passthrough tunnels. An Upstreams entry for the host is dialled as
// configured. Otherwise the proxy resolves the name itself, drops addresses
// that are not public (unless AllowPrivate says so), and dials the checked
// addresses, so a DNS answer cannot change between check and dial.
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	a, err := parseAuthority(addr, 0)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	if mapped, ok := p.upstreamFor(a); ok {
		return p.dialer.DialContext(ctx, "tcp", mapped)
	}
	var ips []netip.Addr
	if a.ip.IsValid() {
		ips = []netip.Addr{a.ip}
	} else {
		ips, err = p.resolver.LookupNetIP(ctx, "ip", a.host)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", a.host, err)
		}
	}
	allowPrivate := p.cfg.AllowPrivate != nil && p.cfg.AllowPrivate(a.host)
	var refused *AddressError
	var lastErr error = errNoAddress
	for _, ip := range ips {
		ip = ip.Unmap()
		if kind := addressKind(ip); kind != "" && !allowPrivate {
			if refused == nil {
				refused = &AddressError{Host: a.host, Addr: ip, Kind: kind}
			}
			continue
		}
		c, err := p.dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(a.port)).String())
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == errNoAddress && refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("dialing %s: %w", a.host, lastErr)
}

// upstreamFor returns the configured address for a host, looking up
// "host:port" before "host".
func (p *Proxy) upstreamFor(a authority) (string, bool) {
	if len(p.upstreams) == 0 {
		return "", false
	}
	if addr, ok := p.upstreams[a.String()]; ok {
		return addr, true
	}
	addr, ok := p.upstreams[a.host]
	return addr, ok
}
