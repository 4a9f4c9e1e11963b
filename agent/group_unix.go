//go:build unix

package agent

import (
	"os"
	"os/exec"
	"syscall"
)

// SetOwnGroup makes cmd the leader of a process group of its own, so that
// a Ctrl-C meant for the terminal is not its, and its descendants can be
// ended with it.
func SetOwnGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// StopGroup asks the process group that p leads to end (SIGTERM), or with
// force ends it (SIGKILL).
func StopGroup(p *os.Process, force bool) error {
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	return syscall.Kill(-p.Pid, sig)
}
