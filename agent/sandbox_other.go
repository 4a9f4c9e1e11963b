//go:build !linux && !darwin

package agent

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// SandboxAvailable reports why the sandbox cannot run here: tf has none
// for this system yet.
func SandboxAvailable() error {
	return fmt.Errorf("%w: tf has no sandbox for %s yet", ErrSandbox, runtime.GOOS)
}

// Launch refuses: see SandboxAvailable.
func (s *Sandbox) Launch([]string) (*Launched, error) { return nil, SandboxAvailable() }

// A Launched sandbox: there is none here.
type Launched struct{}

// Wait refuses: see SandboxAvailable.
func (l *Launched) Wait(context.Context, func(net.Listener), func(net.Listener) []string) (int, error) {
	return 1, SandboxAvailable()
}

// SandboxInit runs only inside the Linux sandbox.
func SandboxInit(string, []string) int { return 1 }

// shows: nothing, since there is no sandbox to run in.
func (s *Sandbox) shows(string) bool { return false }

// AgentBundle is the bundle's own path.
func (s *Sandbox) AgentBundle() string { return s.CABundle }
