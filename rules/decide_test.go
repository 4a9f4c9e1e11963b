package rules_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

const deciding = `version: 1
default: deny
rules:
  - name: reads
    actions: [github.*.get, github.*.list]
    decision: allow
  - name: pushes-allowed
    actions: [github.repo.push]
    decision: allow
  - name: pushes-held
    actions: [github.repo.push]
    when: params.branch startsWith "release/"
    decision: require_approval
    approval: {timeout: 2m}
  - name: protect-main
    actions: [github.repo.push]
    when: params.branch matches "^(main|production)$"
    decision: deny
    reason: Protected branches change through pull requests.
  - name: also-protect-main
    actions: ["github.repo.*"]
    when: params.branch == "main"
    decision: deny
  - name: big-numbers
    actions: [github.pr.merge]
    when: params.number > 100
    decision: deny
  - name: owner-check
    actions: [github.pr.merge]
    when: resource.owner == "acme" && request.method == "PUT" && action.gateway != "ci"
    decision: allow
  - name: shadow-publish
    actions: [npm.package.publish]
    decision: deny
    mode: monitor
    reason: Publishing is about to be refused.
  - name: everything-http
    actions: ["*"]
    when: action.connector == "http" && request.path startsWith "/public/"
    decision: allow
`

func push(branch string) *rules.Action {
	return &rules.Action{Type: "github.repo.push", Connector: "github",
		Resource: map[string]string{"owner": "acme", "repo": "app"}, Params: map[string]any{"branch": branch}}
}

func TestDecide(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": deciding})
	cases := []struct {
		name    string
		action  *rules.Action
		effect  rules.Effect
		rule    string
		matched string
		def     bool
	}{
		{"allow", push("feature/x"), rules.Allow, "pushes-allowed", "pushes-allowed", false},
		{"require_approval beats allow", push("release/1"), rules.RequireApproval, "pushes-held", "pushes-allowed,pushes-held", false},
		{"deny beats allow; the first deny decides", push("main"), rules.Deny, "protect-main", "pushes-allowed,protect-main,also-protect-main", false},
		{"default when nothing matches", &rules.Action{Type: "github.repo.delete"}, rules.Deny, "", "", true},
		{"glob over types", &rules.Action{Type: "github.issue.list"}, rules.Allow, "reads", "reads", false},
		{"glob does not match a prefix", &rules.Action{Type: "github.issue.listing"}, rules.Deny, "", "", true},
		{"conditions on resource, request and action", &rules.Action{Type: "github.pr.merge", Gateway: "dev",
			Resource: map[string]string{"owner": "acme"}, Params: map[string]any{"number": 7}, Request: rules.Request{Method: "PUT"}},
			rules.Allow, "owner-check", "owner-check", false},
		{"condition false", &rules.Action{Type: "github.pr.merge", Gateway: "ci",
			Resource: map[string]string{"owner": "acme"}, Params: map[string]any{"number": 7}, Request: rules.Request{Method: "PUT"}},
			rules.Deny, "", "", true},
		{"a wildcard rule", &rules.Action{Type: "http.get", Connector: "http", Request: rules.Request{Path: "/public/x"}},
			rules.Allow, "everything-http", "everything-http", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Decide(c.action)
			var matched []string
			for _, m := range d.Matched {
				matched = append(matched, m.Rule)
			}
			if d.Effect != c.effect || d.Rule != c.rule || strings.Join(matched, ",") != c.matched || d.Default != c.def {
				t.Errorf("got %s by %q (default %v), matched %v; want %s by %q, matched %s",
					d.Effect, d.Rule, d.Default, matched, c.effect, c.rule, c.matched)
			}
			if d.Reason == "" {
				t.Error("a decision must carry a reason")
			}
			if d.Revision != p.Revision {
				t.Errorf("revision %q", d.Revision)
			}
		})
	}
	if d := p.Decide(push("release/2")); d.ApprovalTimeout != 2*time.Minute {
		t.Errorf("approval timeout %v", d.ApprovalTimeout)
	}
	if d := p.Decide(push("main")); d.Reason != "Protected branches change through pull requests." {
		t.Errorf("reason %q", d.Reason)
	}
}

// A condition that fails at run time counts as a matching deny: a broken
// rule refuses rather than waves through.
func TestDecideFailsClosedOnConditionErrors(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": deciding})
	// params.number is a string here: "7" > 100 cannot be compared.
	d := p.Decide(&rules.Action{Type: "github.pr.merge", Params: map[string]any{"number": "7"}})
	if d.Effect != rules.Deny || d.Rule != "big-numbers" {
		t.Fatalf("got %s by %q, want deny by big-numbers", d.Effect, d.Rule)
	}
	if !strings.Contains(d.Reason, "could not be evaluated") || !strings.Contains(d.Reason, "fail closed") {
		t.Errorf("reason %q does not say the rule failed", d.Reason)
	}
	if d.Matched[0].Error == "" || d.Matched[0].Decision != rules.Deny {
		t.Errorf("match %+v", d.Matched[0])
	}
	// Nil map access.
	p2 := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\ndefault: allow\nrules:\n  - name: files\n    actions: [a.b]\n    when: params.files[0] == \"x\"\n    decision: allow\n"})
	if d := p2.Decide(&rules.Action{Type: "a.b"}); d.Effect != rules.Deny || d.Rule != "files" {
		t.Errorf("nil access: got %s by %q", d.Effect, d.Rule)
	}
	// A regex built from input that does not compile.
	p3 := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\ndefault: allow\nrules:\n  - name: re\n    actions: [a.b]\n    when: params.branch matches params.pattern\n    decision: allow\n"})
	if d := p3.Decide(&rules.Action{Type: "a.b", Params: map[string]any{"branch": "x", "pattern": "("}}); d.Effect != rules.Deny {
		t.Errorf("bad regex: got %s", d.Effect)
	}
}

type killAll struct{ reason string }

func (k killAll) Killed(*rules.Action) (string, bool) { return k.reason, k.reason != "" }

func TestKillSwitchComesFirst(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": deciding})
	d := (&rules.Decider{Policy: p, KillSwitch: killAll{"stopped by alice"}}).Decide(push("feature/x"))
	if d.Effect != rules.Deny || !d.KillSwitch || d.Reason != "stopped by alice" || len(d.Matched) != 0 {
		t.Errorf("got %+v", d)
	}
	// Monitor mode does not soften the kill switch.
	pm := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nmode: monitor\n"})
	if d := (&rules.Decider{Policy: pm, KillSwitch: killAll{"stop"}}).Decide(push("x")); d.Effect != rules.Deny {
		t.Errorf("monitor mode let a killed action through: %+v", d)
	}
	if d := (&rules.Decider{Policy: p, KillSwitch: killAll{}}).Decide(push("feature/x")); d.Effect != rules.Allow {
		t.Errorf("inactive kill switch refused: %+v", d)
	}
}

func TestMonitorMode(t *testing.T) {
	t.Run("policy in monitor mode lets refusals through and says so", func(t *testing.T) {
		p := mustLoad(t, map[string]string{"tameflare.yaml": strings.Replace(deciding, "default: deny", "mode: monitor\ndefault: deny", 1)})
		d := p.Decide(push("main"))
		if d.Effect != rules.Allow || !d.Monitor || d.Would != rules.Deny || d.WouldRule != "protect-main" || d.Rule != "" {
			t.Errorf("got %+v", d)
		}
		if !strings.Contains(d.Reason, "would deny") {
			t.Errorf("reason %q", d.Reason)
		}
		d = p.Decide(&rules.Action{Type: "x.y"})
		if d.Effect != rules.Allow || !d.Monitor || d.Would != rules.Deny || d.WouldRule != "" {
			t.Errorf("default in monitor mode: %+v", d)
		}
		if d := p.Decide(push("feature/x")); d.Monitor || d.Effect != rules.Allow {
			t.Errorf("an allowed action is not a monitor event: %+v", d)
		}
	})
	t.Run("a shadow rule records what it would do", func(t *testing.T) {
		p := mustLoad(t, map[string]string{"tameflare.yaml": strings.Replace(deciding, "default: deny", "default: allow", 1)})
		d := p.Decide(&rules.Action{Type: "npm.package.publish"})
		if d.Effect != rules.Allow || !d.Monitor || d.Would != rules.Deny || d.WouldRule != "shadow-publish" ||
			d.WouldReason != "Publishing is about to be refused." || !d.Default {
			t.Errorf("got %+v", d)
		}
		if !d.Matched[0].Monitor {
			t.Errorf("match not marked monitor: %+v", d.Matched)
		}
	})
	t.Run("a shadow rule never loosens", func(t *testing.T) {
		p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: shadow-allow\n    actions: [a.b]\n    decision: allow\n    mode: monitor\n"})
		d := p.Decide(&rules.Action{Type: "a.b"})
		if d.Effect != rules.Deny || d.Monitor || !d.Default {
			t.Errorf("got %+v", d)
		}
	})
	t.Run("tests see the policy as enforced", func(t *testing.T) {
		p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nmode: monitor\n"})
		d := (&rules.Decider{Policy: p, EnforceAll: true}).Decide(&rules.Action{Type: "a.b"})
		if d.Effect != rules.Deny || d.Monitor {
			t.Errorf("got %+v", d)
		}
	})
}

// now is the action's time when it has one, so replays decide the same.
func TestNowIsTheActionsTime(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nrules:\n  - name: office-hours\n    actions: [a.b]\n    when: now.Hour() >= 9 && now.Hour() < 17\n    decision: allow\n"})
	at := func(h int) *rules.Action {
		return &rules.Action{Type: "a.b", Time: time.Date(2026, 3, 2, h, 0, 0, 0, time.UTC)}
	}
	if d := p.Decide(at(10)); d.Effect != rules.Allow {
		t.Errorf("10:00: %s", d.Effect)
	}
	if d := p.Decide(at(20)); d.Effect != rules.Deny {
		t.Errorf("20:00: %s", d.Effect)
	}
	d := (&rules.Decider{Policy: p, Now: func() time.Time { return time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC) }}).Decide(&rules.Action{Type: "a.b"})
	if d.Effect != rules.Allow {
		t.Errorf("injected clock: %s", d.Effect)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"github.*.get", "github.repo.get", true},
		{"github.*.get", "github.branch_protection.get", true},
		{"github.*.get", "github.repo.gets", false},
		{"github.*", "github.a.b.c", true},
		{"*", "", true},
		{"*", "x", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"mcp.*.@tools/list", "mcp.docs.@tools/list", true},
		{"a.b", "a.b", true},
		{"a.b", "a.bc", false},
		{"**a", "bba", true},
		{"", "", true},
		{"", "a", false},
	} {
		if got := rules.GlobMatch(c.p, c.s); got != c.want {
			t.Errorf("GlobMatch(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestExamplePolicyTestsPass(t *testing.T) {
	p, err := rules.LoadFS(testdata.ExamplePolicy(), "example")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rules.RunTests(p, testdata.ExamplePolicy(), "example", mcp.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if !r.Passed {
			t.Error(r.Pos.Error())
		}
	}
	if rep.Passed < 15 || rep.Failed != 0 {
		t.Errorf("%s", rep.Summary())
	}
}

func TestRunTestsReportsFailures(t *testing.T) {
	fsys := policyFS(map[string]string{
		"tameflare.yaml": deciding,
		"tests/a.yaml": `cases:
  - name: main is protected
    action: {type: github.repo.push, params: {branch: main}}
    expect: deny
    rule: protect-main
  - name: wrong expectation
    action: {type: github.repo.push, params: {branch: main}}
    expect: allow
  - name: wrong rule
    action: {type: github.repo.push, params: {branch: main}}
    expect: deny
    rule: also-protect-main
`,
	})
	p, err := rules.LoadFS(fsys, "p")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rules.RunTests(p, fsys, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary() != "1 passed, 2 failed" {
		t.Fatalf("summary %q", rep.Summary())
	}
	want := []string{
		`p/tests/a.yaml:6:5: "wrong expectation": want allow, got deny (decided by rule protect-main`,
		`p/tests/a.yaml:9:5: "wrong rule": want rule also-protect-main, got protect-main`,
	}
	var got []string
	for _, r := range rep.Results {
		if !r.Passed {
			got = append(got, r.Pos.Error())
		}
	}
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("failure %d: got %q, want prefix %q", i, got, w)
		}
	}
}

func TestRunTestsRejectsBadFiles(t *testing.T) {
	fsys := policyFS(map[string]string{
		"tameflare.yaml": deciding,
		"tests/a.yaml":   "cases:\n  - name: x\n    action: {type: a.b, prams: {}}\n    expect: deny\n",
		"tests/b.yaml":   "cases:\n  - name: y\n    action: {type: a.b}\n    expect: perhaps\n",
	})
	p, _ := rules.LoadFS(fsys, "p")
	_, err := rules.RunTests(p, fsys, "p", nil)
	if err == nil || !strings.Contains(err.Error(), `p/tests/a.yaml:3:25: unknown field "prams"`) ||
		!strings.Contains(err.Error(), `p/tests/b.yaml:2:5: case 1: expect "perhaps"`) {
		t.Fatalf("got %v", err)
	}
}

func TestModeOverride(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\n"})
	if d := (&rules.Decider{Policy: p, Mode: rules.Monitor}).Decide(&rules.Action{Type: "a.b"}); d.Effect != rules.Allow || d.Would != rules.Deny {
		t.Errorf("monitor override: %+v", d)
	}
	pm := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\nmode: monitor\n"})
	if d := (&rules.Decider{Policy: pm, Mode: rules.Enforce}).Decide(&rules.Action{Type: "a.b"}); d.Effect != rules.Deny || d.Monitor {
		t.Errorf("enforce override: %+v", d)
	}
}
