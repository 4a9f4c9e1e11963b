package rules_test

import (
	"strings"
	"testing"

	"github.com/tameflare/tf/rules"
)

func TestPolicyTestSequences(t *testing.T) {
	files := map[string]string{
		"tameflare.yaml": limitPolicy,
		"tests/limits.yaml": `cases:
  - name: at most 5 pull requests an hour
    action: {type: github.pr.create, resource: {owner: acme, repo: app}}
    sequence:
      - {repeat: 5, expect: allow, rule: pr-rate}
      - {expect: deny, rule: pr-rate}
      - {after: 30m, expect: deny}
      - {after: 30m, expect: allow}
  - name: a denied draft does not use the limit
    action: {type: github.pr.create}
    sequence:
      - {repeat: 9, action: {type: github.pr.create, params: {draft: true}}, expect: deny, rule: no-drafts}
      - {repeat: 5, expect: allow}
  - name: the token budget stops model calls
    action: {type: anthropic.messages.create}
    sequence:
      - {tokens: 600, expect: allow}
      - {tokens: 600, expect: allow}
      - {expect: deny, rule: budget}
  - name: cases do not share counters
    action: {type: github.pr.create}
    expect: allow
  - name: wrong on purpose
    action: {type: github.pr.create}
    sequence:
      - {repeat: 6, expect: allow}
`,
	}
	p := mustLoad(t, files)
	rep, err := rules.RunTests(p, policyFS(files), "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed != 4 || rep.Failed != 1 {
		t.Fatalf("%s: %+v", rep.Summary(), rep.Results)
	}
	msg := rep.Results[4].Pos.Error()
	want := `p/tests/limits.yaml:23:5: "wrong on purpose": step 1, occurrence 6 of 6: want allow, got deny (decided by rule pr-rate: limit reached: 5 per 1h (rule pr-rate); the next is allowed at 2026-01-01T13:00:00Z)`
	if msg != want {
		t.Fatalf("failure:\n got %s\nwant %s", msg, want)
	}
}

func TestPolicyTestSequenceErrors(t *testing.T) {
	for _, c := range []struct{ cases, want string }{
		{"  - name: a\n    action: {type: x.y}\n    expect: allow\n    sequence: [{expect: allow}]\n", "case 1: a case has expect or a sequence"},
		{"  - name: a\n    sequence: [{expect: allow}]\n", "case 1: step 1 has no action.type"},
		{"  - name: a\n    action: {type: x.y}\n    sequence: [{expect: allow}, {expect: maybe}]\n", `case 1: step 2: expect "maybe"`},
		{"  - name: a\n    action: {type: x.y}\n    sequence: [{after: soon, expect: allow}]\n", `case 1: step 1: after "soon"`},
		{"  - name: a\n    action: {type: x.y}\n    sequence: [{repeat: 100001, expect: allow}]\n", "case 1: the sequence decides more than 100000"},
		{"  - name: a\n    action: {type: x.y}\n    sequence: [{repeat: -1, expect: allow}]\n", "case 1: step 1: repeat -1"},
	} {
		files := map[string]string{"tameflare.yaml": "version: 1\n", "tests/t.yaml": "cases:\n" + c.cases}
		_, err := rules.RunTests(mustLoad(t, files), policyFS(files), "p", nil)
		if err == nil || !strings.Contains(err.Error(), "p/tests/t.yaml:2:5: "+c.want) {
			t.Errorf("%q: got %v, want %q", c.cases, err, c.want)
		}
	}
}
