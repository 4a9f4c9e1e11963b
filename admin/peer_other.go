//go:build !linux

package admin

import (
	"context"
	"net"
	"net/http"
)

// PeerContext is a no-op where peer credentials are not read.
func PeerContext(ctx context.Context, _ net.Conn) context.Context { return ctx }

// RefuseDescendants relies on the socket's mode alone where the peer's
// process cannot be read.
func RefuseDescendants(*http.Request) error { return nil }
