package agent

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
)

// SandboxAvailable reports why the sandbox cannot run here, or nil.
func SandboxAvailable() error {
	if _, err := exec.LookPath("sandbox-exec"); err != nil {
		return fmt.Errorf("%w: sandbox-exec is not on PATH", ErrSandbox)
	}
	return nil
}

// Launch prepares argv to run under sandbox-exec with the profile of
// SeatbeltProfile; it starts in Wait, once the gateway is up (there is no
// listener to hand over: the agent reaches the gateway's own loopback
// port, the only connection the profile allows).
func (s *Sandbox) Launch(argv []string) (*Launched, error) {
	if err := SandboxAvailable(); err != nil {
		return nil, err
	}
	if _, err := s.Prepare(argv); err != nil {
		return nil, err
	}
	return &Launched{s: s, argv: argv}, nil
}

// A Launched sandbox waits for its environment.
type Launched struct {
	s    *Sandbox
	argv []string
}

// Wait runs the agent with env(nil) and returns its exit code.
func (l *Launched) Wait(ctx context.Context, _ func(net.Listener), env func(net.Listener) []string) (int, error) {
	_, port, err := net.SplitHostPort(l.s.ProxyAddr)
	if err != nil {
		return 1, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 1, fmt.Errorf("proxy port %q: %w", port, err)
	}
	return Run(ctx, append([]string{"sandbox-exec", "-p", SeatbeltProfile(l.s, n), "--"}, l.argv...), env(nil))
}

// SandboxInit runs only inside the Linux sandbox.
func SandboxInit(string, []string) int { return 1 }

// shows reports whether the Seatbelt profile shows a host path: all but
// $TF_HOME.
func (s *Sandbox) shows(path string) bool { return !within(path, s.Home) }

// AgentBundle is where the agent finds the CA bundle: in $TF_HOME, the one
// file there the profile lets it read.
func (s *Sandbox) AgentBundle() string { return s.CABundle }
