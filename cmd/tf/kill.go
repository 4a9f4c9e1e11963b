package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/killswitch"
)

func init() {
	register(killCommand())
	register(resumeCommand())
}

// resumeCommand is tf kill --off under the name people look for after a
// kill.
func resumeCommand() *cli.Command {
	return &cli.Command{
		Name:      "resume",
		Usage:     "turn a kill switch off again (tf kill --off)",
		UsageText: "tf resume [--all | --connector NAME | --gateway NAME | --agent NAME] [--reason TEXT]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "every switch"},
			&cli.StringFlag{Name: "connector", Usage: "the switch of this connector"},
			&cli.StringFlag{Name: "gateway", Usage: "the switch of this gateway"},
			&cli.StringFlag{Name: "agent", Usage: "the switch of this agent of a shared gateway"},
			&cli.StringFlag{Name: "reason", Usage: "why, recorded"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit("tf resume takes no arguments (did you mean --agent NAME?)", 2)
			}
			return killOrResume(c, true)
		},
	}
}

func killCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "stop governed traffic at once: every gateway refuses what the kill switch covers",
		UsageText: "tf kill [--all | --connector NAME | --gateway NAME | --agent NAME] [--reason TEXT]\ntf kill --off [--all | --connector NAME | --gateway NAME | --agent NAME]\ntf kill --status",
		Description: "The kill switch is kept in $TF_HOME/killswitch and survives restarts; running gateways obey it\n" +
			"within 100 ms: new requests get 403 with X-TF-Kill-Switch: active, exchanges in flight are cut\n" +
			"and held approvals are denied. Without a scope, tf kill stops everything and tf kill --off\n" +
			"turns every switch off. Turning on and off is recorded in the audit log with your user name.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "every gateway and connector"},
			&cli.StringFlag{Name: "connector", Usage: "only this connector's traffic (github, npm, http, net, ...)"},
			&cli.StringFlag{Name: "gateway", Usage: "only this gateway (tf run --name)"},
			&cli.StringFlag{Name: "agent", Usage: "only this agent of a shared gateway (tf serve; tf agents add NAME)"},
			&cli.StringFlag{Name: "reason", Usage: "why, recorded and shown to the agent"},
			&cli.BoolFlag{Name: "off", Usage: "turn the switch of the scope off (without a scope: all switches)"},
			&cli.BoolFlag{Name: "status", Usage: "show the switches that are on"},
		},
		Action: runKill,
	}
}

func killScope(c *cli.Context) (killswitch.Scope, error) {
	s := killswitch.Scope{All: c.Bool("all"), Connector: c.String("connector"), Gateway: c.String("gateway"), Agent: c.String("agent")}
	if !s.All && s.Connector == "" && s.Gateway == "" && s.Agent == "" {
		s.All = true
	}
	return s, s.Validate()
}

func runKill(c *cli.Context) error {
	if c.NArg() > 0 {
		return cli.Exit("tf kill takes no arguments (did you mean --reason?)", 2)
	}
	if c.Bool("status") {
		if c.Bool("off") || c.IsSet("reason") {
			return cli.Exit("--status shows; it takes no --off or --reason", 2)
		}
		dir, err := home.Dir()
		if err != nil {
			return err
		}
		st, err := killswitch.Read(dir)
		if err != nil {
			return fmt.Errorf("the kill switch file is unreadable, so gateways refuse everything: %w", err)
		}
		printKillState(c, st)
		return nil
	}
	return killOrResume(c, c.Bool("off"))
}

// killOrResume turns the switch of the scope the flags name on or off.
func killOrResume(c *cli.Context, off bool) error {
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	w := c.App.Writer
	scope, err := killScope(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	who := admin.Operator()
	if off {
		off, _, err := killswitch.Deactivate(ctx, dir, scope, who, c.String("reason"))
		if err != nil {
			return err
		}
		n, bad := admin.ReloadAll(ctx, dir)
		if len(off) == 0 {
			fmt.Fprintf(w, "no kill switch was on for %s\n", scope)
		}
		for _, sw := range off {
			fmt.Fprintf(w, "kill switch off: %s\n", sw.Scope)
		}
		reportReload(c, n, bad)
		return nil
	}
	st, err := killswitch.Activate(ctx, dir, killswitch.Switch{Scope: scope, Reason: c.String("reason"), By: who, At: time.Now().UTC()})
	// Even when recording failed the switch is on: tell the gateways.
	n, bad := admin.ReloadAll(ctx, dir)
	if st.Version != 0 {
		fmt.Fprintf(w, "kill switch on: %s\n", scope)
		reportReload(c, n, bad)
	}
	return err
}

func reportReload(c *cli.Context, n int, bad []admin.Unreachable) {
	fmt.Fprintf(c.App.Writer, "%d running gateway(s) applied it\n", n)
	for _, u := range bad {
		fmt.Fprintf(c.App.ErrWriter, "tf: %s did not answer (%s); a running gateway still picks the file up by itself\n", u.Socket, u.Error)
	}
}

func printKillState(c *cli.Context, st killswitch.State) {
	w := c.App.Writer
	if !st.Active() {
		fmt.Fprintln(w, "kill switch: off")
		return
	}
	for _, sw := range st.Switches {
		fmt.Fprintf(w, "kill switch on: %s", sw.Scope)
		if sw.By != "" {
			fmt.Fprintf(w, " by %s", sw.By)
		}
		if !sw.At.IsZero() {
			fmt.Fprintf(w, " at %s", sw.At.Local().Format(time.RFC3339))
		}
		if sw.Reason != "" {
			fmt.Fprintf(w, ": %s", sw.Reason)
		}
		fmt.Fprintln(w)
	}
}
