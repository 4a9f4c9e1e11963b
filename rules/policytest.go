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

// TestCase is one policy test.
type TestCase struct {
	Name   string `yaml:"name" json:"name" jsonschema:"required,minLength=1" jsonschema_description:"What the case checks, in words."`
	Action Action `yaml:"action" json:"action" jsonschema:"required" jsonschema_description:"The action, in its JSON form: type, connector, gateway, agent, resource, params, request."`
	Expect Effect `yaml:"expect" json:"expect" jsonschema:"required" jsonschema_description:"The decision the policy must give, as if enforced (monitor mode does not change what a test expects)."`
	Rule   string `yaml:"rule,omitempty" json:"rule,omitempty" jsonschema_description:"Optional: the rule that must decide. Empty string is not checked; use expect alone for the default."`
}

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
// what it will do once enforced. Files that do not parse are errors with
// positions; failing cases are results, not errors.
func RunTests(p *Policy, fsys fs.FS, label string) (*TestReport, error) {
	names, err := fs.Glob(fsys, "tests/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	l := loader{fsys: fsys, label: label, hash: nopHash{}}
	d := &Decider{Policy: p, EnforceAll: true, Now: func() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) }}
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
			a := c.Action
			res.Got = d.Decide(&a)
			res.Pos.Msg = caseFailure(&c, res.Got)
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
	case c.Action.Type == "":
		return "action.type is missing"
	case c.Expect == "":
		return "expect is missing: allow, deny or require_approval"
	case !c.Expect.Valid():
		return fmt.Sprintf("expect %q: want allow, deny or require_approval", c.Expect)
	}
	return ""
}

func caseFailure(c *TestCase, got Decision) string {
	var why []string
	if got.Effect != c.Expect {
		why = append(why, fmt.Sprintf("want %s, got %s", c.Expect, got.Effect))
	}
	if c.Rule != "" && got.Rule != c.Rule {
		r := got.Rule
		if r == "" {
			r = "the default"
		}
		why = append(why, fmt.Sprintf("want rule %s, got %s", c.Rule, r))
	}
	if len(why) == 0 {
		return ""
	}
	by := "the default"
	if got.Rule != "" {
		by = "rule " + got.Rule
	}
	return fmt.Sprintf("%q: %s (decided by %s: %s)", c.Name, strings.Join(why, "; "), by, got.Reason)
}

type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
