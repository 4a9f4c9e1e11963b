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
	"github.com/tameflare/tf/termtext"
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
				&cli.StringFlag{Name: "remote", Usage: "move the applied ref in the policy repository's remote `URL` (default: pin.remote in config.yaml)"},
				&cli.StringFlag{Name: "ref", Usage: "the applied `REF` in the remote (default " + gitops.DefaultAppliedRef + ")"},
				&cli.BoolFlag{Name: "force", Usage: "move the remote ref even if it moved since this home last saw it"},
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
			Name:  "log",
			Usage: "list the policy applies: the history of the remote's applied ref, or those recorded in the audit log",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "json", Usage: "print as JSON"},
				&cli.StringFlag{Name: "remote", Usage: "read the applied ref of the remote `URL` (default: pin.remote in config.yaml)"},
				&cli.StringFlag{Name: "ref", Usage: "the applied `REF` in the remote (default " + gitops.DefaultAppliedRef + ")"},
				&cli.BoolFlag{Name: "local", Usage: "list the applies recorded in this home's audit log, even when it follows a remote"},
			},
			Action: runPolicyLog,
		},
		{
			Name:  "sync",
			Usage: "make this home's pin follow the remote's applied ref now (gateways do it on their interval)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "remote", Usage: "the policy repository's remote `URL` (default: pin.remote in config.yaml)"},
				&cli.StringFlag{Name: "ref", Usage: "the applied `REF` in the remote (default " + gitops.DefaultAppliedRef + ")"},
				&cli.BoolFlag{Name: "accept-rewrite", Usage: "follow the ref even though its history was rewritten (it does not descend from the apply this home follows)"},
			},
			Action: runSync,
		},
		{
			Name:  "suggest",
			Usage: "write a policy, with tests, from recorded traffic (monitor mode, then suggest, then enforce)",
			Description: "Reads are allowed, ordinary writes allowed, pushes to main/master, merges, deletions, publishing and\n" +
				"settings held for a person, HTTP writes refused, anything not seen denied (the README's table).\n" +
				"Without --out the policy is printed, then its tests after a --- line.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "since", Value: "7d", Usage: "read decisions of the last `DURATION` (7d, 12h; 0 or all: everything)"},
				&cli.StringFlag{Name: "gateway", Usage: "read only the decisions of gateway `NAME` (tf run --name)"},
				&cli.StringFlag{Name: "out", Usage: "write a policy directory `DIR` (tameflare.yaml and " + gitops.SuggestedTests + ")"},
				&cli.BoolFlag{Name: "force", Usage: "with --out, replace those two files in a directory that is not empty"},
				declaredFlag,
			},
			Action: runSuggest,
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
	rp, following, err := remoteFor(c, h)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if rp != nil {
		return runRemoteApply(c, h, rp, following, opts)
	}
	if c.Bool("force") {
		return cli.Exit("--force moves a remote's applied ref: give --remote, or pin: {remote} in config.yaml", 2)
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

// runRemoteApply moves the remote's applied ref; when this home follows
// it, the local pin follows at once, so that its gateways reload now
// rather than at their next fetch.
func runRemoteApply(c *cli.Context, h string, rp *gitops.RemotePin, following bool, opts gitops.ApplyOptions) error {
	res, err := gitops.RemoteApply(c.Context, gitops.RemoteApplyOptions{
		Home: h, Remote: *rp, Plan: opts.Plan, Rev: opts.Rev, RequireSigned: opts.RequireSigned, Force: c.Bool("force"),
	})
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
		fmt.Fprintf(w, "%s of %s already applies %s; nothing to do\n", rp.RefName(), rp.Remote, shortCommit(res.New))
	} else {
		from := shortCommit(res.Old)
		if from == "" {
			from = "(nothing)"
		}
		fmt.Fprintf(w, "applied %s → %s (%s, %d rules): %s of %s is now %s; gateways that follow it fetch it within their interval\n",
			from, shortCommit(res.New), res.Policy.Source, len(res.Policy.Rules), rp.RefName(), rp.Remote, shortCommit(res.Applied.Commit))
	}
	if !following {
		return nil
	}
	sync := gitops.SyncRemote
	if c.Bool("force") {
		// A forced apply over something that was not an apply chain
		// starts a new one; this home's person asked for it.
		sync = gitops.SyncRemoteAcceptingRewrite
	}
	s, err := sync(c.Context, h, rp)
	if err != nil {
		return cli.Exit("this home's pin did not follow: "+err.Error(), 1)
	}
	if s.Changed {
		fmt.Fprintf(w, "this home's pin follows: running gateways here reload it within a second\n")
	}
	return nil
}

func runPolicyLog(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	if !c.Bool("local") {
		rp, _, err := remoteFor(c, h)
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if rp != nil {
			return remoteLog(c, h, rp)
		}
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
	if rp, _, err := configuredRemote(h); err != nil || rp != nil {
		if err != nil {
			return cli.Exit(err.Error(), 1)
		}
		// A local move would last until the follower's next fetch.
		return cli.Exit(fmt.Sprintf("this home follows %s of %s: roll back by applying the earlier policy commit there (tf policy log lists them; tf policy apply --rev COMMIT)", rp.RefName(), rp.Remote), 1)
	}
	res, err := gitops.Rollback(c.Context, gitops.RollbackOptions{Home: h})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.Writer, "rolled back %s → %s (%s); running gateways reload it within a second\n",
		shortCommit(res.Old), shortCommit(res.New), res.Policy.Source)
	return nil
}

// remoteLog prints the applies on a remote's applied ref, newest first.
func remoteLog(c *cli.Context, h string, rp *gitops.RemotePin) error {
	log, err := gitops.RemoteLog(c.Context, h, rp)
	if err != nil && len(log) == 0 {
		return cli.Exit(err.Error(), 1)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if log == nil {
			log = []gitops.AppliedCommit{}
		}
		if werr := enc.Encode(log); werr != nil {
			return werr
		}
	} else {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tAPPLY\tPOLICY\tWHO\tBRANCH\tSUBJECT")
		for _, a := range log {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.When.Local().Format(time.RFC3339), shortCommit(a.Commit), shortCommit(a.Policy),
				termtext.Safe(a.Who), termtext.Safe(a.Branch), termtext.Safe(a.Subject))
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
	}
	if err != nil {
		// Applies above a commit that is not one are still shown.
		return cli.Exit(err.Error(), 1)
	}
	return nil
}

func runSuggest(c *cli.Context) error {
	since, err := parseSince(c.String("since"), time.Now())
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if c.Bool("force") && c.String("out") == "" {
		return cli.Exit("--force goes with --out DIR", 2)
	}
	h, err := home.Dir()
	if err != nil {
		return err
	}
	cat, err := catalog(c)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	s, err := gitops.Suggest(c.Context, gitops.SuggestOptions{Home: h, Since: since, Gateway: c.String("gateway"), Catalog: cat})
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(c.App.ErrWriter, "tf: %d decisions of %d action types read (%d refused when recorded, left out); %d types given no rule (see the comments)\n",
		s.Decisions, s.Types, s.Refused, s.Skipped)
	if out := c.String("out"); out != "" {
		if err := s.WriteDir(out, c.Bool("force")); err != nil {
			return cli.Exit(err.Error(), 1)
		}
		fmt.Fprintf(c.App.ErrWriter, "tf: wrote %s and %s in %s; check it with tf policy test --policy %s\n", "tameflare.yaml", gitops.SuggestedTests, out, out)
		return nil
	}
	w := c.App.Writer
	if _, err := w.Write(s.Policy); err != nil {
		return err
	}
	fmt.Fprintf(w, "---\n# %s\n", gitops.SuggestedTests)
	_, err = w.Write(s.Tests)
	return err
}

func runSync(c *cli.Context) error {
	h, err := home.Dir()
	if err != nil {
		return err
	}
	rp, _, err := remoteFor(c, h)
	if err != nil {
		return cli.Exit(err.Error(), 2)
	}
	if rp == nil {
		return cli.Exit("this home follows no remote: give --remote, or pin: {remote} in config.yaml", 2)
	}
	sync := gitops.SyncRemote
	if c.Bool("accept-rewrite") {
		sync = gitops.SyncRemoteAcceptingRewrite
	}
	s, err := sync(c.Context, h, rp)
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if !s.Changed {
		fmt.Fprintf(c.App.Writer, "the pin already follows %s of %s (%s)\n", rp.RefName(), rp.Remote, s.Pin.Short())
		return nil
	}
	fmt.Fprintf(c.App.Writer, "pinned %s (applied by %s at %s); running gateways here reload it within a second\n",
		s.Pin.Short(), termtext.Safe(s.Pin.AppliedBy), s.Pin.AppliedAt.Format(time.RFC3339))
	return nil
}
