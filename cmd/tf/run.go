package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/termtext"
	"github.com/tameflare/tf/testdata"
)

func init() { register(runCommand()) }

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run an agent with every HTTP(S) request governed by the policy",
		ArgsUsage: "-- CMD [ARGS...]",
		Description: `Starts a gateway on 127.0.0.1 for the life of CMD, and runs CMD with the
terminal, signals and exit code passed through. CMD's environment routes
HTTP(S) through the gateway, trusts tf's local CA (for CMD only) and holds
no real token.

On Linux CMD runs in a sandbox (bubblewrap): its own network with only the
gateway reachable, its own processes, $TF_HOME not visible, the working
directory and HOME writable, --ro and --rw paths as named. --isolate=off
runs it beside tf instead, where it could bypass tf.

   tf run -- claude
   tf run --policy ./policy -- curl -X DELETE https://api.github.com/repos/acme/app
   tf run --print-env -- CMD      # also show CMD's environment, in shell syntax, on stderr

To wire a shell by hand, start a gateway in the background instead:
tf gateway start NAME; eval "$(tf env NAME)"; tf gateway stop NAME.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "name of this governed session in the audit log (default: the current directory's name, made unique)"},
			&cli.StringFlag{Name: "policy", Usage: "policy directory (default: the pinned policy, else the built-in example)"},
			&cli.StringFlag{Name: "mode", Usage: "enforce or monitor, replacing the policy's mode"},
			&cli.StringSliceFlag{Name: "upstream", Usage: "HOST=ADDR: dial ADDR for HOST (GitHub Enterprise, mirrors, tests); repeatable"},
			&cli.StringSliceFlag{Name: "upstream-ca", Usage: "PEM file of a CA trusted for upstreams besides the system roots; repeatable"},
			&cli.StringSliceFlag{Name: "keep-env", Usage: "keep this secret-looking variable in the agent's environment; repeatable"},
			&cli.StringFlag{Name: "isolate", Value: "on", Usage: "on: run CMD in tf's sandbox; off: run it beside tf, where it could bypass tf (governance is then advisory)"},
			&cli.StringSliceFlag{Name: "ro", Usage: "PATH: a directory the sandboxed agent may read but not write; repeatable"},
			&cli.StringSliceFlag{Name: "rw", Usage: "PATH: a directory the sandboxed agent may write; repeatable"},
			&cli.BoolFlag{Name: "dashboard", Usage: "also serve the dashboard on loopback and open its one-time link"},
			&cli.StringFlag{Name: "metrics", Usage: "ADDR: serve Prometheus /metrics on this loopback address, e.g. 127.0.0.1:9464 (default: metrics: listen in $TF_HOME/config.yaml)"},
			&cli.BoolFlag{Name: "print-env", Usage: "print the environment a governed process needs (shell syntax): with CMD on stderr, then run CMD; without CMD on stdout, then serve until interrupted (to wire a shell, use tf gateway start and tf env)"},
		},
		Action: runAction,
	}
}

func runAction(c *cli.Context) error {
	argv := c.Args().Slice()
	if len(argv) == 0 && !c.Bool("print-env") {
		return cli.Exit("tf run: give the command to govern after --, e.g. tf run -- claude", 2)
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	isolate, err := isolation(c, argv)
	if err != nil {
		return err
	}
	policy, source, pinned, err := resolvePolicy(dir, c.String("policy"))
	if err != nil {
		return err
	}
	var sb *agent.Sandbox
	var launch *agent.Launched
	var guard *agent.GitGuard
	var agentAPI net.Listener
	if isolate {
		// Everything the sandbox needs is checked before anything starts.
		if sb, err = newSandbox(c, dir, argv); err != nil {
			return cli.Exit("tf run: "+err.Error(), 1)
		}
		sockDir, err := agent.SocketDir("tf-sandbox-", "handoff.sock")
		if err != nil {
			return err
		}
		defer os.RemoveAll(sockDir)
		sb.Handoff = filepath.Join(sockDir, "handoff.sock")
		sb.AgentAPI = filepath.Join(sockDir, "agent.sock")
		if agentAPI, err = agent.ListenUnix(sb.AgentAPI); err != nil {
			return err
		}
		if sb.CABundle, err = writeBundle(dir); err != nil {
			return err
		}
		// The sandbox starts now, while the gateway starts; the agent
		// itself waits for its environment (launch.Wait below).
		guard = agent.NewGitGuard(sb.Writable())
		if launch, err = sb.Launch(argv); err != nil {
			return cli.Exit("tf run: "+err.Error(), 1)
		}
	}
	cfg, err := gatewayConfig(c, dir)
	if err != nil {
		return err
	}
	cfg.Policy = policy
	cfg.Isolated = isolate
	g, err := startNamed(cfg, c.IsSet("name"))
	if err != nil {
		return err
	}
	defer g.Close()
	stopDashboard, err := runDashboard(c, dir, g.Policy)
	if err != nil {
		return err
	}
	defer stopDashboard()
	if pinned {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		followPin(ctx, c, dir, g)
	}

	bundle := filepath.Join(dir, "ca", "bundle.pem")
	if sb == nil {
		if err := agent.WriteBundle(bundle, g.CA().CertPEM()); err != nil {
			return fmt.Errorf("writing the CA bundle for the agent: %w", err)
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "tf: governing with %s (%d rules, %s, revision %s); proxy %s; audit in %s\n",
		source, len(policy.Rules), g.Mode(), shortRev(policy.Revision), g.Addr(), filepath.Join(dir, "audit"))

	if a := g.MetricsAddr(); a != "" {
		fmt.Fprintf(c.App.ErrWriter, "tf: metrics on http://%s/metrics\n", a)
	}
	if !isolate {
		fmt.Fprintf(c.App.ErrWriter, "tf: warning: %s\n", gateway.NotIsolated)
	}
	agentBundle := bundle
	if sb != nil {
		agentBundle = sb.AgentBundle()
		sb.ProxyAddr = g.Addr()
		g.ServeAgentAPI(agentAPI)
	}
	scrubbed, removed := g.ScrubEnv(os.Environ(), c.StringSlice("keep-env"))
	// envFor is the agent's environment for the proxy listener it reaches:
	// the gateway's own, or the one on the sandbox's loopback.
	envFor := func(ln net.Listener) []string {
		proxy := g.ProxyURL()
		if ln != nil {
			proxy = g.ProxyURLAt(ln.Addr().String())
		}
		env := agent.Env(scrubbed, agent.EnvSpec{ProxyURL: proxy, CABundle: agentBundle})
		if sb != nil {
			env = sb.Env(env)
		}
		if c.Bool("print-env") && len(argv) > 0 {
			printEnv(c.App.ErrWriter, env, os.Environ())
		}
		return env
	}
	if len(removed) > 0 {
		fmt.Fprintf(c.App.ErrWriter, "tf: kept out of the agent's environment: %s\n", strings.Join(removed, ", "))
	}

	if c.Bool("print-env") && len(argv) == 0 {
		printEnv(c.App.Writer, envFor(nil), os.Environ())
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		fmt.Fprintln(c.App.ErrWriter, "tf: gateway running; Ctrl-C stops it")
		<-ctx.Done()
		return nil
	}

	var code int
	if launch != nil {
		code, err = launch.Wait(context.Background(), g.ServeListener, envFor)
		for _, ch := range guard.Revert() {
			fmt.Fprintf(c.App.ErrWriter, "tf: the agent set %s in %s, which git would run outside the sandbox; tf removed it\n", termtext.Safe(ch.Entry), termtext.Safe(ch.File))
			_ = g.RecordEvent(context.Background(), audit.EventSandboxGitReverted, map[string]any{"file": ch.File, "entry": ch.Entry})
		}
	} else {
		code, err = agent.Run(context.Background(), argv, envFor(nil))
	}
	if cerr := g.Close(); cerr != nil && err == nil {
		fmt.Fprintf(c.App.ErrWriter, "tf: stopping the gateway: %v\n", cerr)
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "tf: %v\n", err)
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

// followPin makes g follow the pin until ctx ends: tf policy apply moves
// it and new requests use the new policy; a decision never mixes two
// revisions.
func followPin(ctx context.Context, c *cli.Context, dir string, g *gateway.Gateway) {
	w := &gitops.Watcher{Home: dir, Commit: g.Policy().Revision,
		OnChange: func(p *rules.Policy, pin *gitops.Pin) {
			g.SetPolicy(p)
			fmt.Fprintf(c.App.ErrWriter, "tf: policy now %s@%s (%d rules)\n", pin.Repository, pin.Short(), len(p.Rules))
		},
		OnError: func(err error) {
			fmt.Fprintf(c.App.ErrWriter, "tf: the pinned policy did not load; keeping %s: %v\n", shortRev(g.Policy().Revision), err)
		},
	}
	go w.Run(ctx)
	followRemote(ctx, c.App.ErrWriter, dir)
}

// writeBundle writes the CA bundle the agent trusts (the system roots and
// tf's local CA, created if need be) and returns its path.
func writeBundle(home string) (string, error) {
	ca, err := httpproxy.LoadOrCreateCA(filepath.Join(home, "ca"))
	if err != nil {
		return "", fmt.Errorf("loading the local CA: %w", err)
	}
	bundle := filepath.Join(home, "ca", "bundle.pem")
	if err := agent.WriteBundle(bundle, ca.CertPEM()); err != nil {
		return "", fmt.Errorf("writing the CA bundle for the agent: %w", err)
	}
	return bundle, nil
}

// isolation reads --isolate: on (the default) runs the agent in the
// sandbox, off beside tf. Without CMD (--print-env alone) there is no
// agent to isolate.
func isolation(c *cli.Context, argv []string) (bool, error) {
	switch c.String("isolate") {
	case "on", "true", "":
		if len(argv) == 0 {
			if c.IsSet("isolate") {
				return false, cli.Exit("tf run: --isolate=on needs a command to run in the sandbox; --print-env alone wires a shell by hand, which tf cannot isolate", 2)
			}
			return false, nil
		}
		return true, nil
	case "off", "false":
		return false, nil
	default:
		return false, cli.Exit(fmt.Sprintf("tf run: --isolate %q: want on or off", c.String("isolate")), 2)
	}
}

// newSandbox describes the sandbox for argv and checks, before anything
// starts, that it can run: bubblewrap present, the paths to bind real,
// the working directory outside $TF_HOME, the command visible inside.
func newSandbox(c *cli.Context, home string, argv []string) (*agent.Sandbox, error) {
	if err := agent.SandboxAvailable(); err != nil {
		return nil, fmt.Errorf("%v. Remedies: %s", err, agent.Remedies)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding tf's own binary: %w", err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	sb := &agent.Sandbox{Home: home, Exe: exe, Dir: wd, UserHome: os.Getenv("HOME"),
		RO: c.StringSlice("ro"), RW: c.StringSlice("rw")}
	if p := c.String("policy"); p != "" {
		sb.PolicyRepo = p
	} else if pin, err := gitops.ReadPin(home); err == nil && filepath.IsAbs(pin.Repository) {
		sb.PolicyRepo = pin.Repository
	}
	if _, err := sb.Prepare(argv); err != nil {
		return nil, err
	}
	return sb, nil
}

// resolvePolicy loads the policy a gateway runs with: the directory given,
// else the pinned commit, else the built-in example.
func resolvePolicy(home, dir string) (p *rules.Policy, source string, pinned bool, err error) {
	if dir != "" {
		p, err := rules.LoadDir(dir)
		if err != nil {
			return nil, "", false, policyErr(err)
		}
		return p, "policy " + dir, false, nil
	}
	if err := syncAtStart(os.Stderr, home); err != nil {
		return nil, "", false, err
	}
	p, pin, err := gitops.LoadPinned(home)
	switch {
	case err == nil:
		return p, "the pinned policy " + pin.Repository + "@" + pin.Short(), true, nil
	case !errors.Is(err, gitops.ErrNoPin):
		return nil, "", false, fmt.Errorf("loading the pinned policy: %w", policyErr(err))
	}
	p, err = rules.LoadFS(testdata.ExamplePolicy(), "(built-in example)")
	if err != nil {
		return nil, "", false, err
	}
	return p, "the built-in example policy (no --policy given, none pinned)", false, nil
}

func gatewayConfig(c *cli.Context, dir string) (gateway.Config, error) {
	cfg := gateway.Config{Name: c.String("name"), Home: dir, Mode: rules.Mode(c.String("mode")), Upstreams: map[string]string{},
		MetricsListen: c.String("metrics")}
	file, err := gateway.LoadConfigFile(gateway.ConfigPath(dir))
	if err != nil {
		return cfg, err
	}
	for h, a := range file.Upstreams {
		cfg.Upstreams[strings.ToLower(h)] = a
	}
	for _, u := range c.StringSlice("upstream") {
		h, a, err := gateway.ParseUpstream(u)
		if err != nil {
			return cfg, err
		}
		cfg.Upstreams[h] = a
	}
	for _, f := range append(file.UpstreamCAs, c.StringSlice("upstream-ca")...) {
		pem, err := os.ReadFile(f)
		if err != nil {
			return cfg, fmt.Errorf("reading upstream CA: %w", err)
		}
		cfg.UpstreamCAs = append(cfg.UpstreamCAs, pem)
	}
	// The agents' model API keys stay with tf: the gateway injects them
	// on their API's hosts and the agent holds a placeholder.
	cfg.AgentKeys = keyring.AdoptAgentKeys(c.StringSlice("keep-env"))
	for _, k := range cfg.AgentKeys {
		fmt.Fprintf(c.App.ErrWriter, "tf: %s is held by tf and sent only to the %s API; the agent sees a placeholder\n", k.Env, k.Connector)
	}
	return cfg, nil
}

// printEnv prints, in shell syntax, what env sets or removes relative to
// base.
func printEnv(w io.Writer, env, base []string) {
	was := map[string]string{}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		was[k] = v
	}
	now := map[string]bool{}
	var lines []string
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		now[k] = true
		if old, ok := was[k]; !ok || old != v {
			lines = append(lines, fmt.Sprintf("export %s=%s", k, shellQuote(v)))
		}
	}
	for k := range was {
		if !now[k] {
			lines = append(lines, "unset "+k)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// startNamed starts the gateway. Without an explicit name it is named after
// the current directory, with -2, -3, ... added while another running
// gateway has the name, so that several agents can run side by side.
func startNamed(cfg gateway.Config, explicit bool) (*gateway.Gateway, error) {
	if explicit {
		return gateway.Start(cfg)
	}
	base := defaultName()
	for i := 1; ; i++ {
		cfg.Name = base
		if i > 1 {
			cfg.Name = fmt.Sprintf("%s-%d", base, i)
		}
		g, err := gateway.Start(cfg)
		if !errors.Is(err, admin.ErrNameTaken) || i == 50 {
			return g, err
		}
	}
}

// defaultName is the current directory's name, reduced to the characters a
// gateway name may hold.
func defaultName() string {
	wd, err := os.Getwd()
	if err != nil {
		return "default"
	}
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, filepath.Base(wd))
	name = strings.Trim(name, "-.")
	if len(name) > 40 {
		name = name[:40]
	}
	if name == "" || admin.ValidName(name) != nil {
		return "default"
	}
	return name
}

func init() { register(sandboxInitCommand()) }

// sandboxInitCommand is the first process inside the sandbox (see
// agent.SandboxInit); tf run starts it, a user never does.
func sandboxInitCommand() *cli.Command {
	return &cli.Command{
		Name:            agent.InitCommand,
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			var handoff string
			if len(args) >= 2 && args[0] == "--handoff" {
				handoff, args = args[1], args[2:]
			}
			if len(args) > 0 && args[0] == "--" {
				args = args[1:]
			}
			if handoff == "" {
				return cli.Exit("tf sandbox-init: --handoff is required", 2)
			}
			os.Exit(agent.SandboxInit(handoff, args))
			return nil
		},
	}
}
