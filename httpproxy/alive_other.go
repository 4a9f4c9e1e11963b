//go:build !unix

package httpproxy

import "net"

// connAlive cannot peek at a socket portably here; a reused connection the
// upstream had closed is retried when the request may be sent again.
func connAlive(net.Conn) bool { return true }
