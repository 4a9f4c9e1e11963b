package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/agent"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

func init() { register(mcpCommand()) }

func mcpCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcp",
		Usage: "govern MCP servers that an agent runs over stdio",
		Subcommands: []*cli.Command{
			{
				Name:      "wrap",
				Usage:     "run a stdio MCP server with every message governed by the policy",
				ArgsUsage: "--server NAME -- CMD [ARGS...]",
				Description: `Runs CMD as the MCP server and relays its stdio to and from the client
(Claude Code). Every message the client sends is an action (tools/call is
mcp.NAME.<tool>, other methods mcp.NAME.@<method>), decided, recorded and
forwarded or answered with the refusal. In .mcp.json:

   "docs": {"command": "tf", "args": ["mcp", "wrap", "--server", "docs", "--", "npx", "-y", "docs-mcp"]}`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "server", Usage: "the server's name in actions (mcp.NAME.<tool>)", Required: true},
					&cli.StringFlag{Name: "policy", Usage: "policy directory (default: the pinned policy, else the built-in example)"},
					&cli.StringFlag{Name: "mode", Usage: "enforce or monitor, replacing the policy's mode"},
					&cli.StringFlag{Name: "name", Usage: "name of this governed session in the audit log (default mcp-NAME-PID)"},
				},
				Action: mcpWrapAction,
			},
			{
				Name:      "wrap-config",
				Usage:     "rewrite a .mcp.json or ~/.claude.json so that every stdio server runs under tf mcp wrap, and register its HTTP servers",
				ArgsUsage: "FILE",
				Description: `Rewrites FILE in place, keeping the old one as FILE.bak. HTTP servers and
servers wrapped already are left alone, so running it again changes nothing.
Every scope Claude Code keeps servers in is wrapped: a project's .mcp.json,
and in ~/.claude.json the user scope (mcpServers) and the local scope that
claude mcp add writes by default (projects["/path"].mcpServers).

Its HTTP servers (type http or sse) go through the proxy as they are, and
are registered in $TF_HOME/config.yaml under mcp_servers, named after their
keys: tf then treats them as the policy's listed servers, so the client
connects and their tools are mcp.<name>.<tool>, which the policy decides.
The policy's own mcp_servers win a clash of name or URL.

   tf mcp wrap-config .mcp.json --policy ./policy
   tf mcp wrap-config ~/.claude.json`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "policy", Usage: "policy directory passed to every wrap, made absolute (default: each wrap's default, the pinned policy, else the built-in example)"},
					&cli.StringFlag{Name: "tf", Usage: "the command that runs tf", Value: "tf"},
				},
				Action: mcpWrapConfigAction,
			},
			{
				Name:  "tools",
				Usage: "list the pinned tools of MCP servers (mcp: {pin_tools}), and accept changes",
				Description: `Lists every tool pinned for each server: its digest (of name, description
and input schema) and, for a tool listed since with another digest, the
change, which pin_tools refuses, holds or records until it is accepted.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "server", Usage: "only this server"},
				},
				Action: mcpToolsAction,
				Subcommands: []*cli.Command{{
					Name:      "accept",
					Usage:     "accept the changed tools of a server as their new pins",
					ArgsUsage: "--server NAME [TOOL...]",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "server", Usage: "the server", Required: true},
					},
					Action: mcpToolsAcceptAction,
				}},
			},
		},
	}
}

func pinStore() (*mcp.PinStore, error) {
	dir, err := home.Dir()
	if err != nil {
		return nil, err
	}
	return mcp.OpenPins(mcp.PinDir(dir), nil), nil
}

func mcpToolsAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit("tf mcp tools: unexpected argument "+c.Args().First()+" (tf mcp tools accept --server NAME TOOL to accept)", 2)
	}
	store, err := pinStore()
	if err != nil {
		return err
	}
	files, err := store.List(c.String("server"))
	if err != nil {
		return err
	}
	w := c.App.Writer
	n := 0
	for _, f := range files {
		names := make([]string, 0, len(f.Tools))
		for name := range f.Tools {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			p := f.Tools[name]
			state := "pinned"
			if p.Changed != "" {
				state = "CHANGED " + p.ChangedAt.Format("2006-01-02T15:04:05Z") + " to " + shortDigest(p.Changed)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\tpinned %s\t%s\n", f.Server, name, shortDigest(p.Digest), p.PinnedAt.Format("2006-01-02T15:04:05Z"), state)
			n++
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no tools are pinned (the policy pins them with mcp: {pin_tools: deny|require_approval|monitor})")
	}
	return nil
}

func shortDigest(digest string) string {
	if len(digest) > len("sha256:")+16 {
		return digest[:len("sha256:")+16]
	}
	return digest
}

func mcpToolsAcceptAction(c *cli.Context) error {
	server := c.String("server")
	if err := mcp.ValidServerName(server); err != nil {
		return cli.Exit("tf mcp tools accept: "+err.Error(), 2)
	}
	store, err := pinStore()
	if err != nil {
		return err
	}
	accepted, err := store.Accept(server, c.Args().Slice())
	if err != nil {
		return cli.Exit("tf mcp tools accept: "+err.Error(), 1)
	}
	if len(accepted) == 0 {
		fmt.Fprintf(c.App.Writer, "%s: no changed tool to accept\n", server)
		return nil
	}
	for _, t := range accepted {
		fmt.Fprintf(c.App.Writer, "%s: accepted the change of %s\n", server, t)
	}
	return nil
}

func mcpWrapAction(c *cli.Context) error {
	server := c.String("server")
	if err := mcp.ValidServerName(server); err != nil {
		return cli.Exit("tf mcp wrap: "+err.Error(), 2)
	}
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return cli.Exit("tf mcp wrap: give the server's command after --, e.g. tf mcp wrap --server docs -- npx -y docs-mcp", 2)
	}
	if sock := os.Getenv(agent.EnvAgentAPI); sock != "" {
		// Inside tf run's sandbox: $TF_HOME is not here; the gateway
		// outside decides, records and holds.
		return mcpWrapRemote(c, server, sock, argv)
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	policy, _, _, err := resolvePolicy(dir, c.String("policy"))
	if err != nil {
		return err
	}
	name := c.String("name")
	if name == "" {
		name = "mcp-" + server + "-" + strconv.Itoa(os.Getpid())
	}
	// stdout is the protocol's: the gateway says nothing on it.
	g, err := gateway.Start(gateway.Config{Name: name, Home: dir, Policy: policy, Mode: rules.Mode(c.String("mode"))})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// The client owns the terminal's Ctrl-C; tf ends when the client
	// closes the server's stdin.
	signal.Ignore(syscall.SIGINT)
	code, err := mcp.Wrap(ctx, mcp.WrapOptions{
		Server: server, Governor: g.MCPGovernor(server), Argv: argv,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if cerr := g.Close(); cerr != nil {
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

func mcpWrapConfigAction(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return usageError(c, "%v", err)
	}
	if len(args) != 1 {
		return usageError(c, "give the .mcp.json or ~/.claude.json to rewrite")
	}
	path := args[0]
	policy := c.String("policy")
	if policy != "" {
		// The servers start in their project's directory, not this one.
		if policy, err = filepath.Abs(policy); err != nil {
			return err
		}
	}
	wrapped, backup, err := mcp.WrapConfigFile(path, mcp.WrapConfigOptions{TF: c.String("tf"), Policy: policy})
	if err != nil {
		return err
	}
	if len(wrapped) == 0 {
		fmt.Fprintf(c.App.Writer, "%s: every stdio server runs under tf mcp wrap already\n", path)
	} else {
		fmt.Fprintf(c.App.Writer, "%s: wrapped %s (the old file is %s)\n", path, strings.Join(wrapped, ", "), backup)
	}
	return registerHTTPServers(c, path)
}

// registerHTTPServers registers the HTTP servers of the configuration at
// path in $TF_HOME/config.yaml, so that gateways name them as listed
// servers: their protocol plumbing goes through and their tools are
// mcp.<name>.<tool>, decided by the policy.
func registerHTTPServers(c *cli.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	found, err := mcp.HTTPServers(data)
	if err != nil || len(found) == 0 {
		return err
	}
	dir, err := home.Ensure()
	if err != nil {
		return err
	}
	servers := make([]rules.MCPServer, len(found))
	for i, s := range found {
		servers[i] = rules.MCPServer{Name: s.Name, URL: s.URL}
	}
	results, err := gateway.RegisterMCPServers(dir, servers)
	if err != nil {
		return cli.Exit("tf mcp wrap-config: "+err.Error(), 1)
	}
	for i, r := range results {
		verb := "registered"
		if !r.Added {
			verb = "already registered"
		}
		fmt.Fprintf(c.App.Writer, "%s: %s %s (%s) in %s: its tools are mcp.%s.<tool>\n",
			path, verb, found[i].Key, r.Server.URL, gateway.ConfigPath(dir), r.Server.Name)
	}
	return nil
}

// mcpWrapRemote relays a stdio server inside tf run's sandbox, governed by
// the gateway outside through its agent API, with the session's proxy
// credential from the environment.
func mcpWrapRemote(c *cli.Context, server, sock string, argv []string) error {
	token, err := proxyToken(os.Getenv("HTTPS_PROXY"))
	if err != nil {
		return cli.Exit("tf mcp wrap: "+err.Error(), 1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	signal.Ignore(syscall.SIGINT)
	code, err := mcp.Wrap(ctx, mcp.WrapOptions{
		Server: server, Governor: gateway.RemoteMCPGovernor(sock, token, server), Argv: argv,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "tf: %v\n", err)
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

// proxyToken is the session credential in the proxy URL tf run gave.
func proxyToken(proxy string) (string, error) {
	u, err := url.Parse(proxy)
	if err != nil || u.User == nil {
		return "", errors.New("no tf proxy credential in HTTPS_PROXY: run it under tf run")
	}
	tok, _ := u.User.Password()
	return tok, nil
}
