package rules

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// TestFile is the document form of tests/*.yaml in a policy directory.
type TestFile struct {
	Cases []TestCase `yaml:"cases" json:"cases" jsonschema:"required" jsonschema_description:"Test cases: an action and the decision the policy must give it."`
}

// TestCase is one policy test: an action and its expected decision, or a
// sequence of steps decided one after another (for limits).
type TestCase struct {
	Name   string `yaml:"name" json:"name" jsonschema:"required,minLength=1" jsonschema_description:"What the case checks, in words."`
	Action Action `yaml:"action,omitempty" json:"action,omitzero" jsonschema_description:"The action, in its JSON form: type, connector, gateway, agent, resource, params, request. In a sequence, the action of the steps that give none."`
	Expect Effect `yaml:"expect,omitempty" json:"expect,omitempty" jsonschema_description:"The decision the policy must give, as if enforced (monitor mode does not change what a test expects). Give expect or sequence."`
	Rule   string `yaml:"rule,omitempty" json:"rule,omitempty" jsonschema_description:"Optional: the rule that must decide. Empty string is not checked; use expect alone for the default."`
	// Sequence decides its steps in order against the same counters, so
	// that a case can say what a limit does to the sixth pull request.
	Sequence []TestStep `yaml:"sequence,omitempty" json:"sequence,omitempty" jsonschema_description:"Steps decided in order, sharing the counters of rules' limits (one session, a clock that starts at the action's time or 2026-01-01T12:00:00Z). Give expect or sequence."`
}

// TestStep is one step of a sequence: an action decided repeat times.
type TestStep struct {
	Action *Action `yaml:"action,omitempty" json:"action,omitempty" jsonschema_description:"The action of this step; default the case's action."`
	Repeat int     `yaml:"repeat,omitempty" json:"repeat,omitempty" jsonschema:"minimum=1,maximum=100000" jsonschema_description:"How many times the action is decided, each expecting the same. Default 1."`
	After  string  `yaml:"after,omitempty" json:"after,omitempty" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" jsonschema_description:"Move the clock this far before the step (a duration such as 1h), e.g. to see a window slide."`
	Tokens int64   `yaml:"tokens,omitempty" json:"tokens,omitempty" jsonschema:"minimum=0" jsonschema_description:"The tokens each allowed occurrence reports using (model calls): counted by token limits after the decision."`
	Expect Effect  `yaml:"expect" json:"expect" jsonschema:"required" jsonschema_description:"The decision every occurrence of the step must get."`
	Rule   string  `yaml:"rule,omitempty" json:"rule,omitempty" jsonschema_description:"Optional: the rule that must decide each occurrence."`
}

// maxSteps bounds the decisions of one sequence.
const maxSteps = 100000

// testEpoch is the time of a test's decisions unless its action has one.
var testEpoch = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// TestResult is the outcome of one case.
type TestResult struct {
	Pos    PosError // where the case is; Msg says why it failed
	Name   string
	Passed bool
	Got    Decision
}

// TestReport is the outcome of a policy's tests.
type TestReport struct {
	Results        []TestResult
	Passed, Failed int
}

// Summary is the one-line count, e.g. "12 passed, 1 failed".
func (r *TestReport) Summary() string {
	return fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed)
}

// RunTests runs every case of tests/*.yaml in fsys against p. The cases see
// the policy as enforced: a rule or policy in monitor mode is tested for
// what it will do once enforced. baseline is what the gateway decides
// beyond the rules (mcp.Baseline; nil for none), so that cases expect
// what the gateway does. Files that do not parse are errors with
// positions; failing cases are results, not errors.
func RunTests(p *Policy, fsys fs.FS, label string, baseline Baseline) (*TestReport, error) {
	names, err := fs.Glob(fsys, "tests/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	l := loader{fsys: fsys, label: label, hash: nopHash{}}
	rep := &TestReport{}
	for _, name := range names {
		var tf TestFile
		body, ok := l.parse(name, &tf)
		if !ok {
			continue
		}
		seq := valueOf(body, "cases")
		for i, c := range tf.Cases {
			node := itemOf(seq, i)
			res := TestResult{Name: c.Name, Pos: PosError{File: l.display(name)}}
			res.Pos.Line, res.Pos.Col = position(node)
			if msg := checkCase(&c); msg != "" {
				l.errorf(name, node, "case %d: %s", i+1, msg)
				continue
			}
			res.Got, res.Pos.Msg = runCase(p, &c, baseline)
			res.Passed = res.Pos.Msg == ""
			if res.Passed {
				rep.Passed++
			} else {
				rep.Failed++
			}
			rep.Results = append(rep.Results, res)
		}
	}
	if len(names) == 0 {
		l.errs = append(l.errs, &PosError{File: l.display("tests"), Msg: "no test files (tests/*.yaml)"})
	}
	return rep, l.errs.err()
}

func checkCase(c *TestCase) string {
	switch {
	case c.Name == "":
		return "name is missing"
	case len(c.Sequence) > 0:
		return checkSequence(c)
	case c.Action.Type == "":
		return "action.type is missing"
	case c.Expect == "":
		return "expect is missing: allow, deny or require_approval (or a sequence of steps)"
	case !c.Expect.Valid():
		return fmt.Sprintf("expect %q: want allow, deny or require_approval", c.Expect)
	}
	return ""
}

func checkSequence(c *TestCase) string {
	if c.Expect != "" || c.Rule != "" {
		return "a case has expect or a sequence of steps with their own expect, not both"
	}
	total := 0
	for j, s := range c.Sequence {
		switch {
		case (s.Action == nil || s.Action.Type == "") && c.Action.Type == "":
			return fmt.Sprintf("step %d has no action.type, and the case has no action", j+1)
		case s.Expect == "":
			return fmt.Sprintf("step %d: expect is missing: allow, deny or require_approval", j+1)
		case !s.Expect.Valid():
			return fmt.Sprintf("step %d: expect %q: want allow, deny or require_approval", j+1, s.Expect)
		case s.Repeat < 0:
			return fmt.Sprintf("step %d: repeat %d: want at least 1", j+1, s.Repeat)
		case s.Tokens < 0:
			return fmt.Sprintf("step %d: tokens %d: want 0 or more", j+1, s.Tokens)
		}
		if s.After != "" {
			if d, err := time.ParseDuration(s.After); err != nil || d < 0 {
				return fmt.Sprintf("step %d: after %q: want a duration such as 1h", j+1, s.After)
			}
		}
		total += max(s.Repeat, 1)
		if total > maxSteps {
			return fmt.Sprintf("the sequence decides more than %d actions", maxSteps)
		}
	}
	return ""
}

// runCase decides a case, as a one-step sequence when it is a single
// action, with counters and a clock of its own: cases do not share limits.
func runCase(p *Policy, c *TestCase, baseline Baseline) (Decision, string) {
	steps := c.Sequence
	if len(steps) == 0 {
		steps = []TestStep{{Expect: c.Expect, Rule: c.Rule}}
	}
	now := testEpoch
	if !c.Action.Time.IsZero() {
		now = c.Action.Time
	}
	d := &Decider{Policy: p, EnforceAll: true, Counters: NewMemCounters(), Session: "test", Now: func() time.Time { return now }, Baseline: baseline}
	var got Decision
	for j, s := range steps {
		if s.After != "" {
			after, _ := time.ParseDuration(s.After) // checked by checkSequence
			now = now.Add(after)
		}
		for k := range max(s.Repeat, 1) {
			a := c.Action
			if s.Action != nil {
				a = *s.Action
			}
			a.Time = now // the clock of the sequence, for conditions as for limits
			got = d.Decide(&a)
			at := ""
			if len(c.Sequence) > 0 {
				at = fmt.Sprintf("step %d, occurrence %d of %d: ", j+1, k+1, max(s.Repeat, 1))
			}
			if msg := caseFailure(c.Name, at, s.Expect, s.Rule, got); msg != "" {
				return got, msg
			}
			if got.Effect != Deny && s.Tokens > 0 {
				d.AddTokens(&a, &got, now, s.Tokens)
			}
		}
	}
	return got, ""
}

func caseFailure(name, at string, expect Effect, rule string, got Decision) string {
	var why []string
	if got.Effect != expect {
		why = append(why, fmt.Sprintf("want %s, got %s", expect, got.Effect))
	}
	if rule != "" && got.Rule != rule {
		r := got.Rule
		if r == "" {
			r = "the default"
		}
		why = append(why, fmt.Sprintf("want rule %s, got %s", rule, r))
	}
	if len(why) == 0 {
		return ""
	}
	by := "the default"
	if got.Rule != "" {
		by = "rule " + got.Rule
	}
	return fmt.Sprintf("%q: %s%s (decided by %s: %s)", name, at, strings.Join(why, "; "), by, got.Reason)
}

type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
