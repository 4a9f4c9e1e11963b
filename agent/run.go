package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"syscall"
)

// errNoCommand is the error for an empty command line.
var errNoCommand = errors.New("no command to run: write it after --, e.g. tf run -- claude")

// Run starts argv with env and the terminal (stdin, stdout, stderr) of tf
// itself, and waits for it. It returns the exit code a shell would report:
// the child's own, or 128+N when signal N ended it.
//
// Signals: an interactive agent owns the terminal, so Ctrl-C (SIGINT from
// the terminal, delivered to the whole foreground process group) is the
// child's to handle; tf ignores it and waits. SIGTERM and SIGHUP sent to tf
// alone are passed on to the child. When ctx ends, the child gets SIGTERM.
func Run(ctx context.Context, argv []string, env []string) (int, error) {
	if len(argv) == 0 {
		return 0, errNoCommand
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 127, fmt.Errorf("%s: command not found", argv[0])
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, append(terminalSignals[:len(terminalSignals):len(terminalSignals)], forwardSignals...)...)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		return 126, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			return ExitCode(err)
		case s := <-sigs:
			// Signals from the terminal go to the whole process group:
			// the child has them already.
			if !slices.Contains(terminalSignals, s) {
				_ = cmd.Process.Signal(s)
			}
		case <-ctx.Done():
			_ = cmd.Process.Signal(stopSignal)
			ctx = context.Background() // signal once, then wait
		}
	}
}

// ExitCode turns what exec.Cmd.Wait returned into the exit code a shell
// would report: the child's own, or 128+N when signal N ended it. An error
// that is not an exit status is returned with code 1.
func ExitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 1, err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ee.ExitCode(), nil
}
