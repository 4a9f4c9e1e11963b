package agent

import (
	"os"
	"os/exec"
	"syscall"
)

// SetOwnGroup starts cmd in a new process group, so that a console Ctrl-C
// meant for tf's client is not delivered to it.
func SetOwnGroup(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= syscall.CREATE_NEW_PROCESS_GROUP
}

// StopGroup ends p: Windows has no signal that asks a console process
// group to stop, so both forms terminate it.
func StopGroup(p *os.Process, _ bool) error { return p.Kill() }
