package mcp

import (
	"context"
	"errors"
	"fmt"
	"github.com/tameflare/tf/agent"
	"io"
	"os"
	"os/exec"
	"regexp"
	"time"
)

var serverName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidServerName checks a server name for use in action types: lower-case
// letters, digits, - and _, at most 64.
func ValidServerName(name string) error {
	if !serverName.MatchString(name) {
		return fmt.Errorf("MCP server name %q: use lower-case letters, digits, - and _ (at most 64), e.g. docs", name)
	}
	return nil
}

// WrapOptions describe a stdio server to run under governance.
type WrapOptions struct {
	Server   string
	Governor Governor
	// Argv is the server's command; Env its environment (nil: tf's).
	Argv []string
	Env  []string
	// Stdin and Stdout are the client's side; Stderr receives the
	// server's stderr as it is.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Grace is how long the server may take to exit once its input is
	// closed or its output ended, before SIGTERM and then SIGKILL (default
	// 5s).
	Grace time.Duration
}

// Wrap runs a stdio MCP server as a child and relays between it and the
// client until either side closes; then the other side is closed and the
// child reaped. It returns the child's exit code (128+N for signal N).
// When ctx ends, the child gets SIGTERM.
func Wrap(ctx context.Context, o WrapOptions) (int, error) {
	if len(o.Argv) == 0 {
		return 2, errors.New("no server command: write it after --")
	}
	if err := ValidServerName(o.Server); err != nil {
		return 2, err
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Second
	}
	path, err := exec.LookPath(o.Argv[0])
	if err != nil {
		return 127, fmt.Errorf("%s: command not found", o.Argv[0])
	}
	cmd := exec.Command(path, o.Argv[1:]...)
	cmd.Args[0] = o.Argv[0]
	cmd.Env = o.Env
	cmd.Stderr = o.Stderr
	// Its own process group: a Ctrl-C meant for the client's terminal is
	// not the server's, and tf ends it in order.
	agent.SetOwnGroup(cmd)
	// Plain pipes rather than StdinPipe/StdoutPipe: Wait closes those as
	// soon as the child exits, which can lose its last lines unread.
	inR, in, err := os.Pipe()
	if err != nil {
		return 1, fmt.Errorf("starting %s: %w", o.Argv[0], err)
	}
	out, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		in.Close()
		return 1, fmt.Errorf("starting %s: %w", o.Argv[0], err)
	}
	defer out.Close()
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		in.Close()
		return 126, fmt.Errorf("starting %s: %w", o.Argv[0], err)
	}
	exited := make(chan error, 1)
	relayed := make(chan struct{})
	go func() {
		err := cmd.Wait()
		exited <- err
		// A descendant that kept the child's stdout open must not keep the
		// relay alive once the child is gone.
		t := time.NewTimer(o.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			out.Close()
		case <-relayed:
		}
	}()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// ctx ending stops the server, which ends the relay.
		<-rctx.Done()
		if ctx.Err() != nil {
			_ = agent.StopGroup(cmd.Process, false)
		}
	}()
	relay := &Relay{Server: o.Server, Governor: o.Governor, ClientIn: o.Stdin, ClientOut: o.Stdout, ServerIn: in, ServerOut: out}
	rerr := relay.Run(rctx)
	close(relayed)
	// The server's output ended: close its input too, then reap it.
	in.Close()
	werr := reap(cmd, exited, o.Grace)
	code, cerr := agent.ExitCode(werr)
	if rerr != nil && !errors.Is(rerr, os.ErrClosed) {
		return code, rerr
	}
	return code, cerr
}

// reap waits for the child, then asks it to stop, then kills it.
func reap(cmd *exec.Cmd, exited chan error, grace time.Duration) error {
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
	}
	_ = agent.StopGroup(cmd.Process, false)
	select {
	case err := <-exited:
		return err
	case <-time.After(grace):
	}
	_ = agent.StopGroup(cmd.Process, true)
	return <-exited
}
