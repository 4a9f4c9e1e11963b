//go:build unix

package admin

import (
	"net"
	"syscall"
)

// listenPrivate listens on a unix socket that is 0600 from its creation,
// not after: the umask closes the window in which another user could
// connect.
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
