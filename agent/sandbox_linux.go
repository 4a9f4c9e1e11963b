package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// SandboxAvailable reports why the sandbox cannot run here, or nil.
func SandboxAvailable() error {
	if _, err := exec.LookPath("bwrap"); err != nil {
		return fmt.Errorf("%w: bubblewrap (bwrap) is not installed", ErrSandbox)
	}
	return nil
}

// RunSandboxed runs argv inside the sandbox with env, the terminal of tf
// itself, and the exit code passed through. The terminal's signals reach
// tf (the agent is in a session of its own) and are passed on.
func RunSandboxed(ctx context.Context, s *Sandbox, argv []string, env []string) (int, error) {
	if err := SandboxAvailable(); err != nil {
		return 1, err
	}
	bwrap, _ := exec.LookPath("bwrap")
	path, err := s.Prepare(argv)
	if err != nil {
		return 127, err
	}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	defer infoR.Close()
	cmd := exec.Command(bwrap, s.BwrapArgs(append([]string{path}, argv[1:]...), 3)...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{infoW}
	// bwrap in a process group of its own: the terminal's Ctrl-C is tf's
	// to pass on, not a signal that ends bwrap and with it the sandbox.
	SetOwnGroup(cmd)

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append(terminalSignals[:len(terminalSignals):len(terminalSignals)], forwardSignals...)...)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		infoW.Close()
		return 126, fmt.Errorf("%w: starting bwrap: %v", ErrSandbox, err)
	}
	infoW.Close()
	var info struct {
		ChildPID int `json:"child-pid"`
	}
	started := json.NewDecoder(infoR).Decode(&info) == nil && info.ChildPID > 0

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			code, werr := ExitCode(err)
			if !started {
				return code, fmt.Errorf("%w (bubblewrap exited with %d before the agent ran; its message is above). Remedies: %s", ErrSandbox, code, Remedies)
			}
			return code, werr
		case sig := <-sigs:
			if started {
				_ = syscall.Kill(info.ChildPID, sig.(syscall.Signal))
			}
		case <-ctx.Done():
			if started {
				_ = syscall.Kill(info.ChildPID, syscall.SIGTERM)
			}
			ctx = context.Background()
		}
	}
}

// shows reports whether the bubblewrap sandbox shows a host path.
func (s *Sandbox) shows(path string) bool { return s.Visible(path) }

// AgentBundle is where the agent finds the CA bundle: bound in on its own.
func (s *Sandbox) AgentBundle() string { return BundlePath }

// SandboxInit is the first process inside the sandbox (PID 1 of its PID
// namespace). It listens on listen, the loopback address the agent's
// proxy variables name, and hands the listener to the gateway over the
// unix socket handoff; the gateway accepts the agent's connections on it
// directly. Then it starts argv in a process group of its own, passes on
// the signals tf sends, reaps every orphan, and exits with argv's exit
// code. When it exits, the kernel ends every process left in the
// namespace: a double-forked child does not outlive the session.
func SandboxInit(listen, handoff string, argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "tf sandbox-init: no command")
		return 2
	}
	if err := handOver(listen, handoff); err != nil {
		fmt.Fprintf(os.Stderr, "tf: the sandbox cannot reach the gateway: %v\n", err)
		return 1
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append(terminalSignals[:len(terminalSignals):len(terminalSignals)], forwardSignals...)...)

	attr := &os.ProcAttr{Env: os.Environ(), Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setpgid: true}}
	p, err := os.StartProcess(argv[0], argv, attr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tf: starting %s in the sandbox: %v\n", argv[0], err)
		return 126
	}
	go func() {
		for sig := range sigs {
			_ = syscall.Kill(-p.Pid, sig.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 1
		}
		if pid != p.Pid {
			continue // an orphan, reaped
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// handOver listens on listen and passes the listener to the gateway
// (SCM_RIGHTS), waiting for its "ok"; this process keeps no copy, so only
// the gateway accepts on it.
func handOver(listen, handoff string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := net.DialTimeout("unix", handoff, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := uc.WriteMsgUnix([]byte("listener"), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("handing the listener over: %w", err)
	}
	ack, err := io.ReadAll(io.LimitReader(uc, 64))
	if err != nil || string(ack) != "ok" {
		return fmt.Errorf("the gateway did not take the listener (%q): %v", ack, err)
	}
	return nil
}
