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

// RunSandboxed runs argv under sandbox-exec with the profile of
// SeatbeltProfile. On macOS the agent reaches the proxy's own loopback
// port; the profile allows no other connection.
func RunSandboxed(ctx context.Context, s *Sandbox, argv []string, env []string) (int, error) {
	if err := SandboxAvailable(); err != nil {
		return 1, err
	}
	if _, err := s.Prepare(argv); err != nil {
		return 127, err
	}
	_, port, err := net.SplitHostPort(s.ProxyAddr)
	if err != nil {
		return 1, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return 1, fmt.Errorf("proxy port %q: %w", port, err)
	}
	return Run(ctx, append([]string{"sandbox-exec", "-p", SeatbeltProfile(s, n), "--"}, argv...), env)
}

// SandboxInit runs only inside the Linux sandbox.
func SandboxInit(string, string, []string) int { return 1 }

// shows reports whether the Seatbelt profile shows a host path: all but
// $TF_HOME.
func (s *Sandbox) shows(path string) bool { return !within(path, s.Home) }

// AgentBundle is where the agent finds the CA bundle: in $TF_HOME, the one
// file there the profile lets it read.
func (s *Sandbox) AgentBundle() string { return s.CABundle }
