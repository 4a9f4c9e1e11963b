package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/approval"
	"github.com/tameflare/tf/home"
)

func init() { register(approvalsCommand()) }

func approvalsCommand() *cli.Command {
	reason := &cli.StringFlag{Name: "reason", Usage: "why, recorded with your user name"}
	return &cli.Command{
		Name:  "approvals",
		Usage: "list, approve and deny the requests that running gateways hold for a person",
		Subcommands: []*cli.Command{
			{
				Name:   "list",
				Usage:  "list pending approvals",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON array"}},
				Action: runApprovalsList,
			},
			{
				Name:      "approve",
				Usage:     "let one held request through",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{reason, &cli.BoolFlag{Name: "session", Usage: "also approve identical requests of this gateway until it stops"}},
				Action:    func(c *cli.Context) error { return runAnswer(c, true) },
			},
			{
				Name:      "deny",
				Usage:     "refuse one held request",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{reason},
				Action:    func(c *cli.Context) error { return runAnswer(c, false) },
			},
			{
				Name:   "watch",
				Usage:  "show each new held request and answer it: y (approve), n (deny), s (approve for the session)",
				Action: runApprovalsWatch,
			},
		},
	}
}

func runApprovalsList(c *cli.Context) error {
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	pending, bad, err := admin.Pending(ctx, dir)
	if err != nil {
		return err
	}
	for _, u := range bad {
		fmt.Fprintf(c.App.ErrWriter, "tf: %s did not answer: %s\n", oneLine(u.Socket), oneLine(u.Error))
	}
	if c.Bool("json") {
		out := make([]approval.Request, 0, len(pending))
		for _, p := range pending {
			out = append(out, p.Request)
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if len(pending) == 0 {
		fmt.Fprintln(c.App.Writer, "no pending approvals")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	// The AGENT column appears when a shared gateway (tf serve) holds
	// something: it names who asked.
	agents := false
	for _, p := range pending {
		agents = agents || p.Agent != ""
	}
	agentCol := func(s string) string {
		if !agents {
			return ""
		}
		if s == "" {
			s = "-"
		}
		return oneLine(s) + "\t"
	}
	fmt.Fprintln(tw, "ID\tGATEWAY\t"+agentCol("AGENT")+"ACTION\tTARGET\tRULE\tEXPIRES IN\tPARAMS")
	now := time.Now()
	for _, p := range pending {
		fmt.Fprintf(tw, "%s\t%s\t%s%s\t%s\t%s\t%s\t%s\n", oneLine(p.ID), oneLine(p.Gateway), agentCol(p.Agent), oneLine(p.Action), oneLine(target(p.Resource, p.Host)), oneLine(p.Rule),
			p.Expires.Sub(now).Round(time.Second), oneLine(paramsLine(p.Params, 80)))
	}
	return tw.Flush()
}

func runAnswer(c *cli.Context, approve bool) error {
	args, err := positional(c) // tf approvals approve ID --reason "..." reads naturally
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return cli.Exit("want one approval ID (tf approvals list shows them)", 2)
	}
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	a := approval.Answer{Approve: approve, Session: c.Bool("session"), Approver: admin.Operator(), Reason: c.String("reason")}
	r, err := admin.AnswerAny(ctx, dir, args[0], a)
	if err != nil {
		return err
	}
	verb := "denied"
	if a.Session {
		verb = "approved for this session"
	} else if approve {
		verb = "approved"
	}
	if r.Agent != "" {
		fmt.Fprintf(c.App.Writer, "%s %s: %s of agent %s at gateway %s\n", verb, oneLine(r.ID), oneLine(r.Action), oneLine(r.Agent), oneLine(r.Gateway))
		return nil
	}
	fmt.Fprintf(c.App.Writer, "%s %s: %s at gateway %s\n", verb, oneLine(r.ID), oneLine(r.Action), oneLine(r.Gateway))
	return nil
}

func runApprovalsWatch(c *cli.Context) error {
	dir, err := home.Dir()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return admin.Watch(ctx, dir, os.Stdin, c.App.Writer, admin.Operator(), 0)
}
