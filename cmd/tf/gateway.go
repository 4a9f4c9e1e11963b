package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/keyring"
)

// A gateway started in the background lets a person wire a shell by hand:
// `eval "$(tf run --print-env)"` cannot, since command substitution waits
// for an output that a serving gateway never ends.
func init() {
	register(gatewayCommand())
	register(envCommand())
}

// gatewayFlags are tf run's flags that shape the gateway itself.
func gatewayFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "policy", Usage: "policy directory (default: the pinned policy, else the built-in example)"},
		&cli.StringFlag{Name: "mode", Usage: "enforce or monitor, replacing the policy's mode"},
		&cli.StringSliceFlag{Name: "upstream", Usage: "HOST=ADDR: dial ADDR for HOST; repeatable"},
		&cli.StringSliceFlag{Name: "upstream-ca", Usage: "PEM file of a CA trusted for upstreams besides the system roots; repeatable"},
		&cli.StringSliceFlag{Name: "keep-env", Usage: "keep this secret-looking variable in the shell's environment; repeatable"},
		&cli.StringFlag{Name: "metrics", Usage: "ADDR: serve Prometheus /metrics on this loopback address, e.g. 127.0.0.1:9464 (default: metrics: listen in $TF_HOME/config.yaml)"},
	}
}

func gatewayCommand() *cli.Command {
	return &cli.Command{
		Name:  "gateway",
		Usage: "start and stop a gateway in the background, for a shell wired by hand",
		Description: `A gateway started in the background serves until stopped; tf env prints
the environment that routes a shell through it.

   tf gateway start dev --policy ./policy
   eval "$(tf env dev)"          # this shell's HTTP(S) now goes through the gateway
   tf gateway stop dev`,
		Subcommands: []*cli.Command{
			{
				Name:      "start",
				Usage:     "start a gateway in the background and return once it serves",
				ArgsUsage: "NAME",
				Flags:     gatewayFlags(),
				Action:    gatewayStart,
			},
			{
				Name:      "stop",
				Usage:     "stop a gateway started with tf gateway start",
				ArgsUsage: "NAME",
				Action:    gatewayStop,
			},
			{
				Name:      "serve",
				Usage:     "serve a gateway in the foreground (what tf gateway start runs)",
				ArgsUsage: "NAME",
				Hidden:    true,
				Flags:     gatewayFlags(),
				Action:    gatewayServe,
			},
		},
	}
}

func envCommand() *cli.Command {
	return &cli.Command{
		Name:      "env",
		Usage:     "print, in shell syntax, the environment that routes a shell through a background gateway",
		ArgsUsage: "NAME",
		Description: `   eval "$(tf env NAME)"

The proxy variables carry the gateway's per-session credential: print them
only into the shell that should be governed.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "keep-env", Usage: "keep this secret-looking variable of this shell; repeatable"},
		},
		Action: envAction,
	}
}

// oneName returns the single NAME argument of a gateway command.
func oneName(c *cli.Context) (string, error) {
	args, err := positional(c)
	if err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	if len(args) != 1 {
		return "", cli.Exit(fmt.Sprintf("tf %s: give one gateway NAME", c.Command.FullName()), 2)
	}
	if err := admin.ValidName(args[0]); err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	return args[0], nil
}

// envPath is where a background gateway keeps the shell script tf env
// prints; it lives beside the admin socket, in the 0700 gateways directory.
func envPath(dir, name string) string { return filepath.Join(admin.Dir(dir), name+".env") }

func logPath(dir, name string) string { return filepath.Join(admin.Dir(dir), name+".log") }

// running returns the status of the gateway named name, or an error when
// none answers.
func running(ctx context.Context, dir, name string) (admin.Status, error) {
	cl := admin.NewClient(admin.SocketPath(dir, name))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cl.Status(ctx)
}

const startWait = 30 * time.Second

func gatewayStart(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	if st, err := running(c.Context, dir, name); err == nil {
		return fmt.Errorf("gateway %s is already running (pid %d, proxy %s); tf gateway stop %s stops it", name, st.PID, st.Proxy, name)
	}
	if err := os.MkdirAll(admin.Dir(dir), 0o700); err != nil {
		return err
	}
	_ = os.Remove(envPath(dir, name)) // a stale one, left by a gateway that was killed
	logFile, err := os.OpenFile(logPath(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"gateway", "serve", name}
	for _, f := range []string{"policy", "mode", "metrics"} {
		if c.IsSet(f) {
			args = append(args, "--"+f, c.String(f))
		}
	}
	for _, f := range []string{"upstream", "upstream-ca", "keep-env"} {
		for _, v := range c.StringSlice(f) {
			args = append(args, "--"+f, v)
		}
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "TF_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile // never this command's pipes, which a caller may wait on
	// Its own process group: a Ctrl-C in this terminal is not the gateway's.
	agent.SetOwnGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the gateway: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(startWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("the gateway stopped while starting (%v):\n%s", err, tail(logPath(dir, name)))
		case <-deadline:
			_ = agent.StopGroup(cmd.Process, true)
			return fmt.Errorf("the gateway did not start within %v:\n%s", startWait, tail(logPath(dir, name)))
		case <-tick.C:
		}
		if _, err := os.Stat(envPath(dir, name)); err != nil {
			continue
		}
		st, err := running(c.Context, dir, name)
		if err != nil || st.PID != cmd.Process.Pid {
			continue
		}
		_ = cmd.Process.Release()
		fmt.Fprintf(c.App.ErrWriter, "tf: gateway %s running in the background (pid %d, proxy %s, log %s)\n", name, st.PID, st.Proxy, logPath(dir, name))
		fmt.Fprintf(c.App.ErrWriter, "tf: wire a shell with: eval \"$(tf env %s)\"; stop it with: tf gateway stop %s\n", name, name)
		// A shell is never in tf's sandbox: say what that means.
		fmt.Fprintf(c.App.ErrWriter, "tf: a shell wired by hand is %s\n", gateway.NotIsolated)
		return nil
	}
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func gatewayServe(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	policy, source, pinned, err := resolvePolicy(dir, c.String("policy"))
	if err != nil {
		return err
	}
	cfg, err := gatewayConfig(c, dir)
	if err != nil {
		return err
	}
	cfg.Name, cfg.Policy = name, policy
	g, err := startNamed(cfg, true)
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGHUP) // the terminal that started it may close
	if pinned {
		followPin(ctx, c, dir, g)
	}
	bundle := filepath.Join(dir, "ca", "bundle.pem")
	if err := agent.WriteBundle(bundle, g.CA().CertPEM()); err != nil {
		return fmt.Errorf("writing the CA bundle: %w", err)
	}
	// The script is computed against the environment this gateway
	// inherited, the starting shell's: tf env adds the removal of token
	// variables it finds in its own.
	scrubbed, removed := g.ScrubEnv(os.Environ(), c.StringSlice("keep-env"))
	env := agent.Env(scrubbed, agent.EnvSpec{ProxyURL: g.ProxyURL(), CABundle: bundle})
	var script bytes.Buffer
	printEnv(&script, env, os.Environ())
	if err := home.WriteFile(envPath(dir, name), script.Bytes(), 0o600, false); err != nil {
		return err
	}
	defer os.Remove(envPath(dir, name))
	fmt.Fprintf(c.App.ErrWriter, "tf: governing with %s (%d rules, %s, revision %s); proxy %s\n",
		source, len(policy.Rules), g.Mode(), shortRev(policy.Revision), g.Addr())
	if a := g.MetricsAddr(); a != "" {
		fmt.Fprintf(c.App.ErrWriter, "tf: metrics on http://%s/metrics\n", a)
	}
	if len(removed) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "tf: kept out of the shell's environment: %s\n", strings.Join(removed, ", "))
	}
	<-ctx.Done()
	fmt.Fprintln(c.App.ErrWriter, "tf: gateway stopping")
	return nil
}

func gatewayStop(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	st, err := running(c.Context, dir, name)
	if err != nil {
		return fmt.Errorf("no gateway %s is running: %w", name, err)
	}
	p, err := os.FindProcess(st.PID)
	if err != nil {
		return err
	}
	if err := agent.StopGroup(p, false); err != nil {
		return fmt.Errorf("stopping gateway %s (pid %d): %w", name, st.PID, err)
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := running(c.Context, dir, name); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "tf: gateway %s stopped\n", name)
			return nil
		}
	}
	_ = agent.StopGroup(p, true)
	return fmt.Errorf("gateway %s (pid %d) did not stop within 10s; it was killed", name, st.PID)
}

func envAction(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	if _, err := running(c.Context, dir, name); err != nil {
		return fmt.Errorf("no gateway %s is running (tf gateway start %s starts one)", name, name)
	}
	script, err := os.ReadFile(envPath(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("gateway %s was not started with tf gateway start; it has no environment to print", name)
	} else if err != nil {
		return err
	}
	out := c.App.Writer
	if _, err := out.Write(script); err != nil {
		return err
	}
	// Token variables of this shell that the starting shell did not hold.
	_, removed := keyring.ScrubEnv(os.Environ(), nil, c.StringSlice("keep-env"))
	for _, k := range removed {
		if !bytes.Contains(script, []byte("unset "+k+"\n")) && !bytes.Contains(script, []byte("export "+k+"=")) {
			fmt.Fprintf(out, "unset %s\n", k)
		}
	}
	return nil
}
