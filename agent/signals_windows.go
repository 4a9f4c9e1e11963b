package agent

import "os"

// The console delivers Ctrl-C to every process attached to it, the child
// included; there is no window-size signal.
var terminalSignals = []os.Signal{os.Interrupt}

var forwardSignals []os.Signal

// stopSignal: Windows has no SIGTERM to deliver; the child is ended.
var stopSignal os.Signal = os.Kill
