package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/tameflare/tf/gitops"
	"github.com/tameflare/tf/home"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/schema"
	"github.com/tameflare/tf/testdata"
)

func init() { register(policyCommand()) }

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check, test and explain policies",
		Subcommands: append([]*cli.Command{
			{
				Name:      "validate",
				Usage:     "load and type-check a policy; errors carry file:line:col",
				ArgsUsage: "[DIR]",
				Description: "Besides syntax and types, every actions glob must match an action type some\n" +
					"connector produces (tf actions); --declared adds a declared connector's types.",
				Flags:  []cli.Flag{declaredFlag},
				Action: policyValidate,
			},
			{
				Name:      "test",
				Usage:     "run the policy's tests/*.yaml",
				ArgsUsage: "[DIR]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "run", Usage: "run only the cases whose name (or file) matches this regular expression"},
					&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print every case with the rule that decided it"},
					&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
				},
				Action: policyTest,
			},
			{
				Name:      "explain",
				Usage:     "decide one action and show every rule that matched and why",
				ArgsUsage: "[DIR] --action FILE.json|-",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "action", Usage: "the action in its JSON form (a file, or - for stdin)", Required: false},
					&cli.BoolFlag{Name: "json", Usage: "print the decision as JSON"},
				},
				Action: policyExplain,
			},
			{
				Name:  "schema",
				Usage: "print the JSON Schema of policy files (draft-07, for editors)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "tests", Usage: "the schema of tests/*.yaml instead"}},
				Action: func(c *cli.Context) error {
					out := schema.Policy()
					if c.Bool("tests") {
						out = schema.Tests()
					}
					_, err := c.App.Writer.Write(out)
					return err
				},
			},
		}, gitopsPolicyCommands()...),
	}
}

// policyDir resolves the policy a command works on: the directory given,
// else the built-in example.
func policyDir(c *cli.Context) (fsys fs.FS, label string, err error) {
	args, err := positional(c)
	if err != nil {
		return nil, "", err
	}
	switch len(args) {
	case 0:
		return pinnedOrExample(c.Context)
	case 1:
		st, err := os.Stat(args[0])
		if err != nil {
			return nil, "", err
		}
		if !st.IsDir() {
			return nil, "", fmt.Errorf("%s is not a directory: give the policy directory (the one holding %s)", args[0], rules.PolicyFile)
		}
		return os.DirFS(args[0]), args[0], nil
	}
	return nil, "", fmt.Errorf("want at most one policy directory, got %d arguments", len(args))
}

func loadPolicy(c *cli.Context) (*rules.Policy, fs.FS, string, error) {
	fsys, label, err := policyDir(c)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := rules.LoadFS(fsys, label)
	if err != nil {
		return nil, nil, "", policyErr(err)
	}
	return p, fsys, label, nil
}

// policyErr prints each positioned problem on its own line and exits 1.
func policyErr(err error) error {
	if errs, ok := err.(rules.Errors); ok {
		return cli.Exit(fmt.Sprintf("%s\n%d problem(s) in the policy", errs.Error(), len(errs)), 1)
	}
	return err
}

func policyValidate(c *cli.Context) error {
	p, _, label, err := loadPolicy(c)
	if err != nil {
		return err
	}
	cat, err := catalog(c)
	if err != nil {
		return err
	}
	if errs := cat.UnknownActions(p); len(errs) > 0 {
		return policyErr(errs)
	}
	fmt.Fprintf(c.App.Writer, "%s: ok: %d rules, mode %s, default %s, revision %s\n",
		label, len(p.Rules), p.Mode, p.Default, shortRev(p.Revision))
	return nil
}

func shortRev(r string) string {
	if _, h, ok := strings.Cut(r, ":"); ok && len(h) > 12 {
		return r[:len(r)-len(h)] + h[:12]
	}
	return r
}

func policyTest(c *cli.Context) error {
	var run *regexp.Regexp
	if pat := c.String("run"); pat != "" {
		var err error
		if run, err = regexp.Compile(pat); err != nil {
			return usageError(c, "--run %q: %v", pat, err)
		}
	}
	p, fsys, label, err := loadPolicy(c)
	if err != nil {
		return err
	}
	rep, err := rules.RunTests(p, fsys, label, mcp.Baseline)
	if err != nil {
		return policyErr(err)
	}
	res := selectCases(rep, run)
	if len(res.Cases) == 0 && run != nil {
		return cli.Exit(fmt.Sprintf("tf policy test: no case matches --run %q (%d cases in all)", c.String("run"), len(rep.Results)), exitFailure)
	}
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		for _, r := range res.Cases {
			switch {
			case !r.Passed:
				fmt.Fprintf(w, "%s %s:%d:%d: %s\n", paint(styleRed, "FAIL"), r.File, r.Line, r.Col, r.Failure)
			case c.Bool("verbose"):
				fmt.Fprintf(w, "%s %s:%d:%d: %q: %s by %s\n", paint(styleGreen, "PASS"), r.File, r.Line, r.Col, r.Name, paintEffect(string(r.Got.Effect)), decidedBy(r.Got.Rule))
			}
		}
		fmt.Fprintf(w, "%d passed, %d failed\n", res.Passed, res.Failed)
	}
	if res.Failed > 0 {
		return cli.Exit("", exitFailure)
	}
	return nil
}

// testResults is what tf policy test prints, and its JSON form.
type testResults struct {
	Passed int          `json:"passed"`
	Failed int          `json:"failed"`
	Cases  []caseResult `json:"cases"`
}

type caseResult struct {
	Name    string `json:"name"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Passed  bool   `json:"passed"`
	Failure string `json:"failure,omitempty"`
	// Got is the decision, with the deciding rule and every rule that
	// matched.
	Got rules.Decision `json:"got"`
}

// selectCases keeps the cases whose name or file matches run (all when
// run is nil).
func selectCases(rep *rules.TestReport, run *regexp.Regexp) testResults {
	out := testResults{Cases: []caseResult{}}
	for _, r := range rep.Results {
		if run != nil && !run.MatchString(r.Name) && !run.MatchString(r.Pos.File) {
			continue
		}
		cr := caseResult{Name: r.Name, File: r.Pos.File, Line: r.Pos.Line, Col: r.Pos.Col, Passed: r.Passed, Got: r.Got}
		if !r.Passed {
			cr.Failure = r.Pos.Msg
			out.Failed++
		} else {
			out.Passed++
		}
		out.Cases = append(out.Cases, cr)
	}
	return out
}

func decidedBy(rule string) string {
	if rule == "" {
		return "the default"
	}
	return "rule " + rule
}

func policyExplain(c *cli.Context) error {
	p, _, _, err := loadPolicy(c)
	if err != nil {
		return err
	}
	src := c.String("action")
	if src == "" {
		return cli.Exit("give the action with --action FILE.json (or - for stdin)", 2)
	}
	a, err := readAction(src, c.App.Reader)
	if err != nil {
		return err
	}
	d := p.Decide(a)
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	printDecision(w, p, a, d)
	return nil
}

func readAction(src string, stdin io.Reader) (*rules.Action, error) {
	var data []byte
	var err error
	if src == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, rules.MaxFileBytes))
	} else {
		data, err = os.ReadFile(src)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the action: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a rules.Action
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("reading the action from %s: %w", src, err)
	}
	if a.Type == "" {
		return nil, fmt.Errorf("the action in %s has no type", src)
	}
	return &a, nil
}

func printDecision(w io.Writer, p *rules.Policy, a *rules.Action, d rules.Decision) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "action:\t%s\n", a.Type)
	verdict := string(d.Effect)
	if d.Monitor {
		verdict += fmt.Sprintf(" (monitor: would %s)", d.Would)
	}
	fmt.Fprintf(tw, "decision:\t%s\n", verdict)
	switch {
	case d.KillSwitch:
		fmt.Fprintf(tw, "by:\tthe kill switch\n")
	case d.Rule != "":
		fmt.Fprintf(tw, "by:\trule %s (%s)\n", d.Rule, ruleAt(p, d.Rule))
	default:
		fmt.Fprintf(tw, "by:\tthe policy default\n")
	}
	fmt.Fprintf(tw, "reason:\t%s\n", d.Reason)
	if d.Monitor && d.WouldRule != "" {
		fmt.Fprintf(tw, "would be:\t%s by rule %s: %s\n", d.Would, d.WouldRule, d.WouldReason)
	}
	fmt.Fprintf(tw, "revision:\t%s\n", d.Revision)
	tw.Flush()
	if len(d.Matched) == 0 {
		fmt.Fprintln(w, "matched: no rule")
		return
	}
	fmt.Fprintln(w, "matched:")
	for _, m := range d.Matched {
		line := fmt.Sprintf("  %s → %s", m.Rule, m.Decision)
		if m.Monitor {
			line += " (monitor)"
		}
		if m.Error != "" {
			line += " [" + m.Error + "]"
		} else if m.Reason != "" {
			line += ": " + m.Reason
		}
		fmt.Fprintf(w, "%s\n    at %s\n", line, ruleAt(p, m.Rule))
		for _, r := range p.Limited() {
			if r.Name == m.Rule {
				// explain keeps no counters: it shows the decision within the limit.
				fmt.Fprintf(w, "    limit %s (not counted here: a gateway refuses past it)\n", r.Quota)
			}
		}
	}
}

func ruleAt(p *rules.Policy, name string) string {
	for _, r := range p.Rules {
		if r.Name == name {
			return fmt.Sprintf("%s:%d:%d", r.File, r.Line, r.Col)
		}
	}
	return "?"
}

// pinnedOrExample is the policy commands work on when given no directory:
// the pinned commit's tree, else the built-in example.
func pinnedOrExample(ctx context.Context) (fs.FS, string, error) {
	dir, err := home.Dir()
	if err != nil {
		return nil, "", err
	}
	pin, err := gitops.ReadPin(dir)
	if errors.Is(err, gitops.ErrNoPin) {
		return testdata.ExamplePolicy(), "(built-in example)", nil
	}
	if err != nil {
		return nil, "", err
	}
	repo, err := gitops.OpenRepository(ctx, dir, pin.Repository, false)
	if err != nil {
		return nil, "", err
	}
	commit, err := gitops.Resolve(repo, pin.Commit)
	if err != nil {
		return nil, "", err
	}
	fsys, err := gitops.CommitFS(commit)
	if err != nil {
		return nil, "", err
	}
	return fsys, pin.Repository + "@" + pin.Short(), nil
}
