package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/home"
)

// gitopsPolicyCommands are the subcommands of tf policy that work on the
// pinned policy repository: plan, apply, show, log and rollback. policy.go
// appends them to its own.
func gitopsPolicyCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "plan",
			Usage: "replay recorded traffic through the pinned policy and a candidate, and show what would change",
			Description: "The candidate is a revision of the pinned repository (default: the tip of the pinned branch)\n" +
				"or a directory (--worktree, for a pull request checkout in CI). Its tests must pass.\n" +
				"Exit status with --detailed-exitcode: 0 no change, 2 changes, 1 error.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "rev", Usage: "candidate `REVISION` (branch, tag or commit)"},
				&cli.StringFlag{Name: "worktree", Usage: "candidate policy `DIR` instead of a revision"},
				&cli.StringFlag{Name: "since", Value: "7d", Usage: "replay decisions of the last `DURATION` (7d, 12h; 0 or all: everything)"},
				&cli.StringSliceFlag{Name: "audit", Usage: "replay the records of `SRC` instead of this machine's log: a $TF_HOME or audit directory, or a collector's file export (OTLP JSON lines, gzip too); repeat for many; @local is this machine's log"},
				&cli.StringFlag{Name: "out", Usage: "save the plan to `FILE` for tf policy apply"},
				&cli.BoolFlag{Name: "json", Usage: "print the plan as JSON (format_version 1)"},
				&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 2 when the plan has changes"},
			},
			Action: runPlan,
		},
		{
			Name:      "apply",
			Usage:     "move the pin to a saved plan's candidate or a revision, after checking it",
			ArgsUsage: "[PLAN]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "rev", Usage: "apply `REVISION` without a saved plan (default: the tip of the pinned branch)"},
				&cli.BoolFlag{Name: "require-signed", Usage: "refuse a commit not signed by a key in $TF_HOME/trusted-keys"},
			},
			Action: runApply,
		},
		{
			Name:   "show",
			Usage:  "show the pinned policy: repository, commit, author, date, mode and rules",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print as JSON"}},
			Action: runShow,
		},
		{
			Name:   "log",
			Usage:  "list the policy applies recorded in the audit log",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print as JSON"}},
			Action: runPolicyLog,
		},
		{
			Name:   "rollback",
			Usage:  "pin the commit that was in force before the last apply",
			Action: runRollback,
		},
	}
}

// parseSince reads --since: a Go duration, a number of days ("7d"), or 0 /
// all for the whole log.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" || s == "all" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != d {
			return time.Time{}, fmt.Errorf("--since %q: want a duration such as 7d, 12h or 30m, or all", s)
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want a duration such as 7d, 12h or 30m, or all", s)
	}
	if d == 0 {
		return time.Time{}, nil
	}
	return now.Add(-d), nil
}

func runPlan(c *cli.Context) error {
	if c.String("rev") != "" && c.String("worktree") != "" {
		return cli.Exit("--rev and --worktree exclude each other", 2)
	}
	since, err := parseSince(c.String("since"), time.Now())
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	h, err := home.Dir()
	if err != nil {
		return err
	}
	var sources []string
	for _, src := range c.StringSlice("audit") {
		if src == "@local" {
			src = h
		}
		sources = append(sources, src)
	}
	pl, err := gitops.ComputePlan(c.Context, gitops.PlanOptions{
		Home: h, Rev: c.String("rev"), Worktree: c.String("worktree"), Since: since, Audit: sources,
	})
	if pl == nil {
		return cli.Exit(err.Error(), 1)
	}
	// A plan whose candidate fails its tests is still printed, so the
	// reader sees why, and is not saved: apply would refuse it anyway.
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(pl); werr != nil {
			return werr
		}
	} else if werr := pl.WriteTextColor(c.App.Writer, colorOn); werr != nil {
		return werr
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	// The latest plan is kept for the dashboard; failing to keep it does
	// not fail the plan.
	if latest := gitops.LatestPlanPath(h); os.MkdirAll(filepath.Dir(latest), 0o700) != nil || gitops.WritePlanFile(latest, pl) != nil {
		fmt.Fprintf(c.App.ErrWriter, "tf: could not keep the plan in %s\n", latest)
	}
	if out := c.String("out"); out != "" {
		if err := gitops.WritePlanFile(out, pl); err != nil {
			return cli.Exit(err.Error(), 1)
		}
		if !c.Bool("json") {
			fmt.Fprintf(c.App.Writer, "\nSaved the plan to %s; apply it with: tf policy apply %s\n", out, out)
		}
	}
	if c.Bool("detailed-exitcode") && pl.HasChanges() {
		return cli.Exit("", 2)
	}
	return nil
}

func runApply(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if len(args) > 1 {
		return cli.Exit("tf policy apply takes at most one plan file", 2)
	}
	h, err := home.Dir()
	if err != nil {
		return err
	}
	opts := gitops.ApplyOptions{Home: h, Rev: c.String("rev"), RequireSigned: c.Bool("require-signed")}
	if len(args) == 1 {
		if opts.Rev != "" {
			return cli.Exit("give a plan file or --rev, not both", 2)
		}
		if opts.Plan, err = gitops.ReadPlanFile(args[0]); err != nil {
			return cli.Exit(err.Error(), 1)
		}
	}
	res, err := gitops.Apply(c.Context, opts)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	w := c.App.Writer
	if res.Signer != "" {
		fmt.Fprintf(w, "signed by %s\n", res.Signer)
	}
	if res.Tests != nil {
		fmt.Fprintf(w, "tests: %s\n", res.Tests.Summary())
	}
	if !res.Changed {
		fmt.Fprintf(w, "%s is already pinned; nothing to do\n", shortCommit(res.New))
		return nil
	}
	fmt.Fprintf(w, "applied %s → %s (%s, %d rules); running gateways reload it within a second\n",
		shortCommit(res.Old), shortCommit(res.New), res.Policy.Source, len(res.Policy.Rules))
	return nil
}

func runShow(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	s, err := gitops.Show(c.Context, h)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "repository\t%s\n", s.Pin.Repository)
	branch := s.Pin.Ref
	if !s.OnRef {
		// A commit applied from another branch: the pin's branch is only
		// what plans compare against.
		branch = fmt.Sprintf("%s (the pinned commit is not on it", s.Pin.Ref)
		if len(s.Branches) > 0 {
			branch += "; it is on " + strings.Join(s.Branches, ", ")
		}
		branch += ")"
	}
	fmt.Fprintf(tw, "branch\t%s\n", branch)
	fmt.Fprintf(tw, "commit\t%s\n", s.Pin.Commit)
	fmt.Fprintf(tw, "subject\t%s\n", s.Subject)
	fmt.Fprintf(tw, "author\t%s\n", s.Author)
	fmt.Fprintf(tw, "date\t%s\n", s.Date.Format(time.RFC3339))
	fmt.Fprintf(tw, "mode\t%s\n", s.Mode)
	fmt.Fprintf(tw, "default\t%s\n", s.Default)
	fmt.Fprintf(tw, "rules\t%d\n", s.Rules)
	fmt.Fprintf(tw, "require signed\t%v\n", s.Pin.RequireSigned)
	if s.Pin.AppliedBy != "" {
		fmt.Fprintf(tw, "applied\tby %s at %s\n", s.Pin.AppliedBy, s.Pin.AppliedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runPolicyLog(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	hist, err := gitops.History(h)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if hist == nil {
			hist = []gitops.Applied{}
		}
		return enc.Encode(hist)
	}
	if len(hist) == 0 {
		fmt.Fprintln(c.App.Writer, "no policy applies recorded")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tFROM\tTO\tWHO\tNOTE")
	for _, a := range hist {
		note := ""
		switch {
		case a.Rollback:
			note = "rollback"
		case a.Init:
			note = "tf init"
		}
		from := shortCommit(a.Old)
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Time.Local().Format(time.RFC3339), from, shortCommit(a.New), a.Who, note)
	}
	return tw.Flush()
}

func runRollback(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	res, err := gitops.Rollback(c.Context, gitops.RollbackOptions{Home: h})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.Writer, "rolled back %s → %s (%s); running gateways reload it within a second\n",
		shortCommit(res.Old), shortCommit(res.New), res.Policy.Source)
	return nil
}
