package agent

import (
	"fmt"
	"strconv"
	"strings"
)

// SeatbeltProfile is the macOS sandbox (sandbox-exec) profile for the
// agent: everything it may do today, except the network, which reaches
// only tf's proxy on loopback, and $TF_HOME, which it can neither read nor
// write (the CA bundle it trusts excepted, read-only).
//
// Later rules win in Seatbelt, so the exceptions follow the denials.
func SeatbeltProfile(s *Sandbox, proxyPort int) string {
	var b strings.Builder
	b.WriteString("(version 1)\n(allow default)\n")
	b.WriteString(";; The network: nothing but tf's proxy on loopback.\n")
	b.WriteString("(deny network*)\n")
	fmt.Fprintf(&b, "(allow network-outbound (remote ip \"localhost:%d\"))\n", proxyPort)
	b.WriteString(";; $TF_HOME: the CA key, secrets, audit log, pin, kill switch and admin sockets.\n")
	fmt.Fprintf(&b, "(deny file-read* file-write* (subpath %s))\n", sbString(s.Home))
	if s.PolicyRepo != "" {
		b.WriteString(";; The policy repository: read-only.\n")
		fmt.Fprintf(&b, "(deny file-write* (subpath %s))\n", sbString(s.PolicyRepo))
	}
	for _, p := range s.RO {
		fmt.Fprintf(&b, "(deny file-write* (subpath %s))\n", sbString(p))
	}
	if s.CABundle != "" {
		fmt.Fprintf(&b, "(allow file-read* (literal %s))\n", sbString(s.CABundle))
	}
	return b.String()
}

// sbString quotes a path as a Seatbelt (Scheme) string literal.
func sbString(s string) string { return strconv.Quote(s) }
