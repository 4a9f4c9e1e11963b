package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
)

type peerKey struct{}

// PeerContext records the peer's process id (SO_PEERCRED) in the
// connection's context; use it as http.Server.ConnContext.
func PeerContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, int(cred.Pid))
}

// RefuseDescendants refuses a request from a process this one started,
// directly or not: the governed agent runs as the same user and could
// otherwise reach the socket and approve its own requests. A peer whose
// process cannot be identified is refused (fail closed).
func RefuseDescendants(r *http.Request) error {
	pid, ok := r.Context().Value(peerKey{}).(int)
	if !ok || pid <= 0 {
		return errors.New("the admin API cannot identify the calling process")
	}
	self := os.Getpid()
	for p, hops := pid, 0; p > 1 && hops < 4096; hops++ {
		pp, err := parentPID(p)
		if err != nil {
			// The caller exited while asking: nothing to protect.
			return fmt.Errorf("the admin API cannot identify the calling process: %w", err)
		}
		if pp == self && pid != self {
			return errors.New("a process governed by this gateway cannot use its admin API")
		}
		p = pp
	}
	return nil
}

// parentPID reads the parent of pid from /proc/pid/stat; the command name
// may hold spaces and parentheses, so parse after its last ')'.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatPPID(string(b))
}

// parseStatPPID returns the parent pid field of a /proc/pid/stat line.
func parseStatPPID(s string) (int, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, errors.New("malformed stat")
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid < 0 {
		return 0, errors.New("malformed stat")
	}
	return ppid, nil
}
