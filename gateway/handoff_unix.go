//go:build unix

package gateway

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// ServeHandoff takes, once, a listening socket that tf hands over from
// inside the sandbox (SCM_RIGHTS on the unix socket created 0600 at path):
// the listener on the sandbox's own loopback address that the agent's
// proxy variables name. The proxy then serves it like its own listener,
// so the agent's connections reach the gateway with no relay in between.
// After one listener the socket closes: nothing else can be handed in.
func (g *Gateway) ServeHandoff(path string) error {
	ln, err := listenUnix(path)
	if err != nil {
		return err
	}
	g.handoff = ln
	go func() {
		defer ln.Close()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			err = g.takeListener(c.(*net.UnixConn))
			c.Close()
			if err == nil {
				return
			}
		}
	}()
	return nil
}

// takeListener receives one TCP listener on c, starts serving it and
// answers "ok".
func (g *Gateway) takeListener(c *net.UnixConn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(4*4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return errors.New("handoff: no descriptor")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil {
		return err
	}
	var ln net.Listener
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "sandbox-listener")
		if ln == nil {
			if l, err := net.FileListener(f); err == nil {
				if _, tcp := l.(*net.TCPListener); tcp {
					ln = l
				} else {
					l.Close()
				}
			}
		}
		f.Close()
	}
	if ln == nil {
		return errors.New("handoff: not a TCP listener")
	}
	go func() { _ = g.proxy.Serve(ln) }()
	_, err = c.Write([]byte("ok"))
	return err
}
