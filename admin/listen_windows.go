package admin

import "net"

// listenPrivate listens on a unix socket; Windows has no umask, and the
// socket inherits the ACL of $TF_HOME, which only its owner can open.
func listenPrivate(path string) (net.Listener, error) { return net.Listen("unix", path) }
