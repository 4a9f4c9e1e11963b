package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/home"
)

func init() { register(initCommand()) }

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a policy repository with a starter policy for coding agents, and pin it",
		ArgsUsage: "[DIR]",
		Description: "Creates a git repository in DIR (default .) holding tameflare.yaml, tests/ and a README,\n" +
			"commits them and pins the commit in $TF_HOME/pin. Running it again changes nothing;\n" +
			"it never overwrites a tameflare.yaml it did not write.\n\n" +
			"--agent picks the agent the starter lets work: its model API and service endpoints\n" +
			"are allowed, its telemetry refused, other agents' model APIs left to the default (deny).\n" +
			"generic (the default) allows the model APIs of Claude Code, Codex and Gemini CLI.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "pin this repository even if the pin names another one"},
			&cli.StringFlag{Name: "agent", Value: gitops.GenericAgent, Usage: "the coding agent: " + strings.Join(gitops.Agents(), ", ")},
		},
		Action: runInit,
	}
}

func runInit(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if len(args) > 1 {
		return cli.Exit("tf init takes at most one directory", 2)
	}
	dir := "."
	if len(args) == 1 {
		dir = args[0]
	}
	h, err := home.Ensure()
	if err != nil {
		return err
	}
	if !slices.Contains(gitops.Agents(), c.String("agent")) {
		return cli.Exit(fmt.Sprintf("tf init: unknown agent %q: want one of %s", c.String("agent"), strings.Join(gitops.Agents(), ", ")), 2)
	}
	res, err := gitops.Init(c.Context, gitops.InitOptions{Dir: dir, Home: h, Force: c.Bool("force"), Agent: c.String("agent")})
	if err != nil {
		return err
	}
	w := c.App.Writer
	for _, f := range res.Created {
		fmt.Fprintf(w, "wrote %s\n", f)
	}
	switch {
	case res.Committed:
		fmt.Fprintf(w, "committed %s in %s\n", shortCommit(res.Commit), res.Dir)
	default:
		fmt.Fprintf(w, "%s already holds the starter policy at %s\n", res.Dir, shortCommit(res.Commit))
	}
	if res.Pinned {
		fmt.Fprintf(w, "pinned %s@%s (branch %s)\n", res.Pin.Repository, res.Pin.Short(), res.Pin.Ref)
	} else {
		fmt.Fprintf(w, "pin unchanged: %s@%s\n", res.Pin.Repository, res.Pin.Short())
	}
	return nil
}

func shortCommit(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
