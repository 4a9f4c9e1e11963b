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
	"slices"
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

// Launch starts the sandbox for argv now, before the gateway is ready:
// bubblewrap sets up its namespaces and tf's init inside opens the
// agent's proxy listener while the gateway starts, and the agent itself
// starts only when Wait gives the init its environment. The handoff
// socket is created here, at s.Handoff.
func (s *Sandbox) Launch(argv []string) (*Launched, error) {
	if err := SandboxAvailable(); err != nil {
		return nil, err
	}
	bwrap, _ := exec.LookPath("bwrap")
	path, err := s.Prepare(argv)
	if err != nil {
		return nil, err
	}
	ln, err := ListenUnix(s.Handoff)
	if err != nil {
		return nil, err
	}
	l := &Launched{handoff: ln}
	infoR, infoW, err := os.Pipe()
	if err != nil {
		ln.Close()
		return nil, err
	}
	l.info = infoR
	extra := []*os.File{infoW}
	seccompFD := -1
	if filter, ok := ttyFilter(); ok {
		r, w, err := os.Pipe()
		if err != nil {
			ln.Close()
			return nil, err
		}
		_, err = w.Write(filter) // a few hundred bytes: the pipe holds them
		w.Close()
		if err != nil {
			r.Close()
			ln.Close()
			return nil, err
		}
		defer r.Close()
		extra, seccompFD = append(extra, r), 4
	}
	cmd := exec.Command(bwrap, s.BwrapArgs(append([]string{path}, argv[1:]...), 3, seccompFD)...)
	// The init's own environment holds nothing of the user's: the agent's
	// comes over the handoff.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = extra
	l.sigs = make(chan os.Signal, 8)
	if seccompFD >= 0 {
		// The sandbox stays in the terminal's foreground process group,
		// so the terminal's signals reach the agent directly. bubblewrap
		// inherits them ignored, so that Ctrl-C does not end it (and with
		// it the sandbox) before the agent has handled it; tf's init
		// restores them for the agent.
		signal.Ignore(terminalSignals...)
		signal.Notify(l.sigs, forwardSignals...)
	} else {
		// bwrap in a process group of its own: the terminal's Ctrl-C is
		// tf's to pass on, not a signal that ends bwrap and the sandbox.
		SetOwnGroup(cmd)
		signal.Notify(l.sigs, append(terminalSignals[:len(terminalSignals):len(terminalSignals)], forwardSignals...)...)
	}
	if err := cmd.Start(); err != nil {
		signal.Stop(l.sigs)
		infoW.Close()
		infoR.Close()
		ln.Close()
		return nil, fmt.Errorf("%w: starting bwrap: %v", ErrSandbox, err)
	}
	infoW.Close()
	l.cmd = cmd
	l.done = make(chan error, 1)
	go func() { l.done <- cmd.Wait() }()
	return l, nil
}

// A Launched sandbox waits for its environment.
type Launched struct {
	cmd     *exec.Cmd
	handoff net.Listener
	info    *os.File
	sigs    chan os.Signal
	done    chan error
}

// Wait takes the proxy listener that tf's init hands over, gives it to
// serve, sends the init the agent's environment (env, given the
// listener), and then waits for the agent, passing on signals, with its
// exit code. When ctx ends, the agent gets SIGTERM.
func (l *Launched) Wait(ctx context.Context, serve func(net.Listener), env func(ln net.Listener) []string) (int, error) {
	defer signal.Stop(l.sigs)
	defer l.info.Close()
	handed := make(chan error, 1)
	go func() { handed <- takeListener(l.handoff, serve, env) }()
	var info struct {
		ChildPID int `json:"child-pid"`
	}
	started := json.NewDecoder(l.info).Decode(&info) == nil && info.ChildPID > 0
	for {
		select {
		case err := <-handed:
			if err != nil {
				_ = StopGroup(l.cmd.Process, true)
				return 1, fmt.Errorf("%w: %v", ErrSandbox, err)
			}
			handed = nil
		case err := <-l.done:
			l.handoff.Close()
			code, werr := ExitCode(err)
			if !started {
				return code, fmt.Errorf("%w (bubblewrap exited with %d before the agent ran; its message is above). Remedies: %s", ErrSandbox, code, Remedies)
			}
			return code, werr
		case sig := <-l.sigs:
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

// takeListener accepts the init's one connection on the handoff socket,
// receives the listener (SCM_RIGHTS), serves it and answers with the
// agent's environment; then the handoff socket closes, so that nothing
// else can be handed in.
func takeListener(handoff net.Listener, serve func(net.Listener), env func(net.Listener) []string) error {
	defer handoff.Close()
	c, err := handoff.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(30 * time.Second))
	buf, oob := make([]byte, 64), make([]byte, syscall.CmsgSpace(4*4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return errors.New("handoff: no descriptor")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil {
		return fmt.Errorf("handoff: %w", err)
	}
	var ln net.Listener
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "sandbox-listener")
		if l, err := net.FileListener(f); err == nil {
			if _, tcp := l.(*net.TCPListener); tcp && ln == nil {
				ln = l
			} else {
				l.Close()
			}
		}
		f.Close()
	}
	if ln == nil {
		return errors.New("handoff: not a TCP listener")
	}
	serve(ln)
	return json.NewEncoder(uc).Encode(env(ln))
}

// shows reports whether the bubblewrap sandbox shows a host path.
func (s *Sandbox) shows(path string) bool { return s.Visible(path) }

// AgentBundle is where the agent finds the CA bundle: bound in on its own.
func (s *Sandbox) AgentBundle() string { return BundlePath }

// SandboxInit is the first process inside the sandbox (PID 1 of its PID
// namespace). It listens on the sandbox's own loopback and hands the
// listener to tf over the unix socket handoff (tf's gateway then accepts
// the agent's connections on it directly), and receives in return the
// agent's environment, whose proxy variables name that listener. Then it
// starts argv in a process group of its own, passes on the signals tf
// sends, reaps every orphan, and exits with argv's exit code. When it
// exits, the kernel ends every process left in the namespace: a
// double-forked child does not outlive the session.
func SandboxInit(handoff string, argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "tf sandbox-init: no command")
		return 2
	}
	env, err := handOver(handoff)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tf: the sandbox cannot reach the gateway: %v\n", err)
		return 1
	}

	// Caught here, the terminal's signals are restored to their defaults
	// for the agent (bubblewrap may have inherited them ignored).
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, append(terminalSignals[:len(terminalSignals):len(terminalSignals)], forwardSignals...)...)
	// In a session of its own (no seccomp filter), the sandbox gets no
	// signal from the terminal: tf passes them all on, to the agent's
	// process group. Otherwise the terminal signals the agent directly,
	// and tf passes on only what was sent to tf alone.
	ownSession := syscall.Getpgrp() == os.Getpid()
	attr := &os.ProcAttr{Env: env, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{Setpgid: ownSession}}
	p, err := os.StartProcess(argv[0], argv, attr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tf: starting %s in the sandbox: %v\n", argv[0], err)
		return 126
	}
	go func() {
		for sig := range sigs {
			switch {
			case ownSession:
				_ = syscall.Kill(-p.Pid, sig.(syscall.Signal))
			case !slices.Contains(terminalSignals, sig):
				_ = syscall.Kill(p.Pid, sig.(syscall.Signal))
			}
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

// handOver listens on the sandbox's loopback, passes the listener to tf
// (SCM_RIGHTS) and reads back the agent's environment; this process keeps
// no copy of the listener, so only the gateway accepts on it.
func handOver(handoff string) ([]string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on the sandbox's loopback: %w", err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.DialTimeout("unix", handoff, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if _, _, err := uc.WriteMsgUnix([]byte("listener"), syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return nil, fmt.Errorf("handing the listener over: %w", err)
	}
	f.Close()
	ln.Close()
	var env []string
	if err := json.NewDecoder(io.LimitReader(uc, 4<<20)).Decode(&env); err != nil {
		return nil, fmt.Errorf("the gateway sent no environment: %w", err)
	}
	return env, nil
}
