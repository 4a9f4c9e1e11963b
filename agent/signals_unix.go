//go:build unix

package agent

import (
	"os"
	"syscall"
)

// terminalSignals reach the whole foreground process group from the
// terminal, the child included, so tf does not pass them on again.
var terminalSignals = []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH}

// forwardSignals are sent to tf alone and passed on to the child.
var forwardSignals = []os.Signal{syscall.SIGTERM, syscall.SIGHUP}

// stopSignal asks the child to end when tf must stop it.
var stopSignal os.Signal = syscall.SIGTERM
