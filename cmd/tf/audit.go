package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/home"
)

func init() { register(auditCommand()) }

func auditCommand() *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "inspect the audit log",
		Subcommands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check every record, the hash chain and the head of the audit log",
				Description: "Prints \"ok: N records in M segments, chain intact\", or each problem as\n" +
					"file:line: seq N: kind: detail, and exits 1.",
				Action: runAuditVerify,
			},
		},
	}
}

func runAuditVerify(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	dir := audit.Dir(h)
	rep, err := audit.Verify(dir)
	if err != nil {
		return err
	}
	out := c.App.Writer
	for _, p := range rep.Problems {
		if p.Segment != "" {
			p.Segment = filepath.Join(dir, p.Segment)
		}
		fmt.Fprintln(out, p)
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	if !rep.OK() {
		return cli.Exit(fmt.Sprintf("audit log in %s failed verification: %s", dir, rep.Summary()), 1)
	}
	fmt.Fprintln(out, rep.Summary())
	return nil
}
