package gitops

import (
	"fmt"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

const limitBase = `version: 1
default: deny
rules:
  - name: pr-rate
    actions: [github.pr.create]
    decision: allow
  - name: model
    actions: [anthropic.messages.create]
    decision: allow
`

const limitCandidate = `version: 1
default: deny
rules:
  - name: pr-rate
    actions: [github.pr.create]
    decision: allow
    limit: {count: 2, per: 1h}
  - name: model
    actions: [anthropic.messages.create]
    decision: allow
    limit: {tokens: 10, per: session}
`

const limitTests = `cases:
  - name: two pull requests an hour
    action: {type: github.pr.create}
    sequence:
      - {repeat: 2, expect: allow}
      - {expect: deny, rule: pr-rate}
`

// A plan replays limits in record order: a new limit shows the actions it
// would have refused, its window sliding with the recorded times, token
// budgets spent by the recorded usage, sessions starting with each
// recorded gateway start.
func TestPlanReplaysLimits(t *testing.T) {
	home := testHome(t)
	f := newFixture(t)
	first := f.commit(t, "base", map[string]string{"tameflare.yaml": limitBase, "tests/t.yaml": "cases:\n  - {name: a, action: {type: github.pr.create}, expect: allow}\n"}, nil)
	f.commit(t, "limits", map[string]string{"tameflare.yaml": limitCandidate, "tests/t.yaml": limitTests}, nil)
	pinTo(t, home, f.dir, first)

	l, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	at := epoch
	n := 0
	started := func() {
		at = at.Add(time.Second)
		if err := l.Append(ctx, &audit.Record{Kind: audit.KindEvent, Time: at, Gateway: "gw1", Event: audit.EventGatewayStarted}); err != nil {
			t.Fatal(err)
		}
	}
	decide := func(typ, conn string, u *audit.Usage) {
		at = at.Add(time.Second)
		n++
		id := fmt.Sprintf("req-%03d", n)
		a := &rules.Action{ID: id, Type: typ, Connector: conn}
		if err := l.Append(ctx, &audit.Record{Kind: audit.KindDecision, Time: at, RequestID: id, Gateway: "gw1", Action: a,
			Decision: &rules.Decision{Effect: rules.Allow, Revision: "old"}}); err != nil {
			t.Fatal(err)
		}
		if u != nil {
			if err := l.Append(ctx, &audit.Record{Kind: audit.KindOutcome, Time: at.Add(time.Millisecond), RequestID: id, Gateway: "gw1", Status: 200, Usage: u}); err != nil {
				t.Fatal(err)
			}
		}
	}
	started()
	for range 5 {
		decide("github.pr.create", "github", nil) // 2 allowed, then 3 refused
	}
	for range 3 {
		decide("anthropic.messages.create", "anthropic", &audit.Usage{Input: 6, Output: 2}) // 0, 8 used: allowed; 16: refused
	}
	at = at.Add(2 * time.Hour)
	for range 2 {
		decide("github.pr.create", "github", nil) // the window slid: allowed
	}
	started()                                                                           // a new session
	decide("anthropic.messages.create", "anthropic", &audit.Usage{Input: 6, Output: 2}) // allowed
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	pl, err := ComputePlan(ctx, PlanOptions{Home: home, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Replayed: 11, NewlyDenied: 4, Unchanged: 7}
	if pl.Counts != want {
		t.Fatalf("counts %+v, want %+v", pl.Counts, want)
	}
	if len(pl.Changes) != 1 || pl.Changes[0].From != rules.Allow || pl.Changes[0].To != rules.Deny {
		t.Fatalf("changes %+v", pl.Changes)
	}
	got := map[string]int{}
	for _, g := range pl.Changes[0].Groups {
		got[g.Rule+" "+g.Action] = g.Count
	}
	if got["pr-rate github.pr.create"] != 3 || got["model anthropic.messages.create"] != 1 || len(got) != 2 {
		t.Fatalf("groups %v", got)
	}
	if len(pl.Policy) != 2 || pl.Policy[0].Fields[0] != "limit" || pl.Policy[0].Diffs[0].After != "{count: 2, per: 1h}" {
		t.Fatalf("policy changes %+v", pl.Policy)
	}
	if !pl.Tests.OK() || pl.Tests.Passed != 1 {
		t.Fatalf("tests %+v", pl.Tests)
	}
}
