//go:build !linux && !darwin

package agent

import (
	"context"
	"fmt"
	"runtime"
)

// SandboxAvailable reports why the sandbox cannot run here: tf has none
// for this system yet.
func SandboxAvailable() error {
	return fmt.Errorf("%w: tf has no sandbox for %s yet", ErrSandbox, runtime.GOOS)
}

// RunSandboxed refuses: see SandboxAvailable.
func RunSandboxed(context.Context, *Sandbox, []string, []string) (int, error) {
	return 1, SandboxAvailable()
}

// SandboxInit runs only inside the Linux sandbox.
func SandboxInit(string, string, []string) int { return 1 }

// shows: nothing, since there is no sandbox to run in.
func (s *Sandbox) shows(string) bool { return false }

// AgentBundle is the bundle's own path.
func (s *Sandbox) AgentBundle() string { return s.CABundle }
