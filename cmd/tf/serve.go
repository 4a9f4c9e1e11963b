package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/agents"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/home"
)

func init() {
	register(serveCommand())
	register(agentsCommand())
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve one gateway for many agents (CI runners, containers, a team's VMs), each with its own token",
		Description: `tf serve is a long-running gateway. Each agent authenticates to it with
the token tf agents add printed, as proxy credentials:

   tf agents add ci-runner                 # prints the token once
   tf serve --listen 0.0.0.0:3128 --tls    # an HTTPS proxy; its certificate is from tf's CA
   # on the agent's machine:
   export https_proxy=https://ci-runner:TOKEN@tf.example:3128
   curl --proxy-cacert ca.pem ...          # git: http.proxySSLCAInfo=ca.pem

Every action names its agent (action.agent in rules, agent in records),
tf kill --agent NAME stops one agent, and SIGTERM drains connections and
refuses held approvals before exiting. On an address other than loopback
tf serve refuses plain HTTP. Defaults come from the serve: section of
$TF_HOME/config.yaml.`,
		Flags: append(gatewayFlags()[:4:4],
			&cli.StringFlag{Name: "name", Value: "serve", Usage: "the gateway's name in records and for tf gateway, tf status"},
			&cli.StringFlag{Name: "listen", Usage: "`HOST:PORT` to listen on (default: serve: listen, else 127.0.0.1:3128)"},
			&cli.BoolFlag{Name: "tls", Usage: "serve the proxy over TLS with a certificate from tf's CA"},
			&cli.StringSliceFlag{Name: "tls-name", Usage: "a `NAME` on that certificate (default: this host's name and the address); repeatable"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve TLS with this certificate `FILE` (PEM) instead"},
			&cli.StringFlag{Name: "tls-key", Usage: "the key `FILE` of --tls-cert"},
			&cli.DurationFlag{Name: "drain", Usage: "on SIGTERM, how long exchanges in flight may finish (default 10s)"},
		),
		Action: runServe,
	}
}

// serveSettings merges the flags over the serve: section of config.yaml.
func serveSettings(c *cli.Context, file *gateway.ConfigFile) (listen string, pt *gateway.ProxyTLS, drain time.Duration) {
	s := file.Serve
	listen = s.Listen
	if c.IsSet("listen") || listen == "" {
		listen = c.String("listen")
	}
	if listen == "" {
		listen = "127.0.0.1:3128"
	}
	names, cert, key := s.TLSNames, s.TLSCert, s.TLSKey
	if c.IsSet("tls-name") {
		names = c.StringSlice("tls-name")
	}
	if c.IsSet("tls-cert") || c.IsSet("tls-key") {
		cert, key = c.String("tls-cert"), c.String("tls-key")
	}
	if c.Bool("tls") || len(names) > 0 || cert != "" || key != "" {
		pt = &gateway.ProxyTLS{Names: names, CertFile: cert, KeyFile: key}
	}
	drain = s.Drain
	if c.IsSet("drain") || drain == 0 {
		drain = c.Duration("drain")
	}
	if drain <= 0 {
		drain = gateway.DefaultDrain
	}
	return listen, pt, drain
}

func runServe(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit("tf serve takes no arguments", 2)
	}
	name := c.String("name")
	if err := admin.ValidName(name); err != nil {
		return cli.Exit(err.Error(), 2)
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	cfg, err := gatewayConfig(c, dir)
	if err != nil {
		return err
	}
	file, err := gateway.LoadConfigFile(gateway.ConfigPath(dir))
	if err != nil {
		return err
	}
	listen, pt, drain := serveSettings(c, file)
	if err := gateway.CheckServeListen(listen, pt != nil); err != nil {
		return cli.Exit("tf serve: "+err.Error(), 2)
	}
	if pt != nil && (pt.CertFile == "") != (pt.KeyFile == "") {
		return cli.Exit("tf serve: --tls-cert and --tls-key go together", 2)
	}
	policy, source, pinned, err := resolvePolicy(dir, c.String("policy"))
	if err != nil {
		return err
	}
	cfg.Name, cfg.Policy, cfg.Listen, cfg.Agents, cfg.ProxyTLS = name, policy, listen, true, pt
	g, err := gateway.Start(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if pinned {
		followPin(ctx, c, dir, g)
	}
	list, _ := agents.List(dir)
	scheme := "http"
	if pt != nil {
		scheme = "https"
	}
	w := c.App.ErrWriter
	fmt.Fprintf(w, "tf: governing with %s (%d rules, %s, revision %s)\n", source, len(policy.Rules), g.Mode(), shortRev(policy.Revision))
	fmt.Fprintf(w, "tf: serving %d agent(s) at %s://%s as gateway %s\n", len(list), scheme, g.Addr(), name)
	if pt != nil && pt.CertFile == "" {
		fmt.Fprintf(w, "tf: clients trust tf's CA for the proxy and the hosts it intercepts: %s\n", filepath.Join(dir, "ca", "ca.pem"))
	}
	if len(list) == 0 {
		fmt.Fprintln(w, "tf: no agent can authenticate yet: tf agents add NAME prints a token")
	}
	<-ctx.Done()
	stop()
	fmt.Fprintf(w, "tf: shutting down: refusing held approvals, draining connections for up to %v\n", drain)
	if err := g.Shutdown(drain); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	fmt.Fprintln(w, "tf: stopped")
	return nil
}

func agentsCommand() *cli.Command {
	return &cli.Command{
		Name:  "agents",
		Usage: "the agents a shared gateway (tf serve) lets in, each with its own token",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add an agent and print its token, once (tf keeps only its hash)",
				ArgsUsage: "NAME",
				Action:    agentsAdd,
			},
			{
				Name:   "list",
				Usage:  "list the agents: when each was added and last let in (as of the gateway's last note, every 30s)",
				Action: agentsList,
			},
			{
				Name:      "rm",
				Usage:     "remove an agent: its token stops working within a second",
				ArgsUsage: "NAME",
				Action:    agentsRemove,
			},
		},
	}
}

// agentName returns the single NAME argument of tf agents add and rm.
func agentName(c *cli.Context) (string, error) {
	args, err := positional(c)
	if err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	if len(args) != 1 {
		return "", cli.Exit(fmt.Sprintf("tf %s: give one agent NAME", c.Command.FullName()), 2)
	}
	if err := agents.ValidName(args[0]); err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	return args[0], nil
}

func agentsAdd(c *cli.Context) error {
	name, err := agentName(c)
	if err != nil {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	token, err := agents.Add(dir, name, time.Now())
	if err != nil {
		return err
	}
	// The token alone on stdout, so that a script can capture it; the
	// advice on stderr.
	fmt.Fprintln(c.App.Writer, token)
	fmt.Fprintf(c.App.ErrWriter, "tf: agent %s added; this is its token, shown only now. Use it as proxy credentials:\n", name)
	fmt.Fprintf(c.App.ErrWriter, "tf:   https_proxy=https://%s:<token>@<tf serve address>\n", name)
	return nil
}

func agentsList(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit("tf agents list takes no arguments", 2)
	}
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	list, err := agents.List(dir)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		fmt.Fprintln(c.App.Writer, "no agents (tf agents add NAME adds one)")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tLAST USED")
	for _, a := range list {
		used := "never"
		if !a.LastUsed.IsZero() {
			used = a.LastUsed.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, a.Created.Local().Format(time.RFC3339), used)
	}
	return tw.Flush()
}

func agentsRemove(c *cli.Context) error {
	name, err := agentName(c)
	if err != nil {
		return err
	}
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	if err := agents.Remove(dir, name); err != nil {
		if errors.Is(err, agents.ErrNotFound) {
			return cli.Exit(err.Error()+" (tf agents list shows them)", 1)
		}
		return err
	}
	fmt.Fprintf(c.App.Writer, "agent %s removed\n", name)
	return nil
}
