//go:build unix

package httpproxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// connAlive reports whether a kept-alive upstream connection can carry
// another request: the upstream has neither closed it nor sent anything
// unasked. One non-blocking MSG_PEEK, instead of a goroutine per
// connection reading in the background as http.Transport does.
func connAlive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true // cannot tell; a failed reuse is retried when it may be
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read is the only healthy answer: data, or EOF (no
		// error), means the connection is done.
		alive = errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
