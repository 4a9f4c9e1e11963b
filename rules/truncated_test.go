package rules_test

import (
	"strings"
	"testing"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

const truncPolicy = `version: 1
default: deny
rules:
  - name: agent-model-calls
    actions: [anthropic.messages.create]
    decision: allow
    limit: {count: 5, per: 1h}
  - name: no-opus
    actions: [anthropic.*]
    when: params.model matches "opus"
    decision: deny
    reason: Opus is too dear.
`

// A model call whose body tf could not read to its end is refused when a
// rule that applies reads its params, by every decider: the reason gives
// the inspected size when the decider knows it, and what a limit counted
// for the call is given back.
func TestTruncatedBodyRefused(t *testing.T) {
	p := mustLoad(t, map[string]string{"tameflare.yaml": truncPolicy})
	cut := rules.Action{Type: "anthropic.messages.create", Connector: "anthropic", Params: map[string]any{"body_truncated": true}}
	counters := rules.NewMemCounters()
	d := &rules.Decider{Policy: p, Counters: counters, InspectLimit: 4096}
	for range 10 {
		dec := d.Decide(&cut)
		if dec.Effect != rules.Deny || dec.Rule != rules.TruncatedBodyRule || !strings.Contains(dec.Reason, "4096 bytes") || !strings.Contains(dec.Reason, "no-opus") {
			t.Fatalf("truncated call: %+v", dec)
		}
		if len(dec.Counted) != 0 {
			t.Fatalf("a refused call keeps its count: %v", dec.Counted)
		}
	}
	// Nothing was kept of the ten: five calls read in full go through.
	full := rules.Action{Type: "anthropic.messages.create", Connector: "anthropic", Params: map[string]any{"model": "claude-sonnet-4-5"}}
	for i := range 5 {
		if dec := d.Decide(&full); dec.Effect != rules.Allow {
			t.Fatalf("call %d read in full: %+v", i+1, dec)
		}
	}
	// Without a rule reading params, a truncated call is decided as usual.
	open := mustLoad(t, map[string]string{"tameflare.yaml": "version: 1\ndefault: deny\nrules:\n  - {name: m, actions: [anthropic.*], decision: allow}\n"})
	if dec := open.Decide(&cut); dec.Effect != rules.Allow {
		t.Errorf("no rule reads params: %+v", dec)
	}
	// An enforced deny stays the policy's.
	if dec := (&rules.Decider{Policy: p}).Decide(&rules.Action{Type: "anthropic.messages.create", Connector: "anthropic", Params: map[string]any{"body_truncated": true, "model": "opus"}}); dec.Rule != "no-opus" {
		t.Errorf("an enforced deny: %+v", dec)
	}
}

// tf policy test decides as the gateway does: a case can expect the
// truncated-body refusal, and MCP protocol plumbing to a listed server is
// allowed by the baseline the gateway applies.
func TestPolicyTestsDecideAsTheGateway(t *testing.T) {
	files := map[string]string{
		"tameflare.yaml": truncPolicy,
		"tests/a.yaml": `cases:
  - name: a padded call is refused, not guessed
    action: {type: anthropic.messages.create, connector: anthropic, params: {body_truncated: true}}
    expect: deny
    rule: tf:truncated-body
  - name: the MCP handshake of a listed server
    action: {type: mcp.docs.@initialize, connector: mcp, resource: {server: docs, method: initialize}}
    expect: allow
    rule: tf:mcp-baseline
`,
	}
	p := mustLoad(t, files)
	rep, err := rules.RunTests(p, policyFS(files), "p", mcp.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary() != "2 passed, 0 failed" {
		for _, r := range rep.Results {
			t.Log(r.Pos.Msg)
		}
		t.Errorf("summary %q", rep.Summary())
	}
}

// BenchmarkTruncatedCheck is what the truncated-body check adds to a
// decision under the built-in policy: for a body read in full, the look
// at params.body_truncated; for a truncated one, the walk over the rules.
func BenchmarkTruncatedCheck(b *testing.B) {
	p, err := rules.LoadFS(testdata.ExamplePolicy(), "built-in")
	if err != nil {
		b.Fatal(err)
	}
	d := &rules.Decider{Policy: p}
	full := rules.Action{Type: "anthropic.messages.create", Connector: "anthropic", Params: map[string]any{"model": "m", "stream": true}}
	cut := rules.Action{Type: "anthropic.messages.create", Connector: "anthropic", Params: map[string]any{"body_truncated": true}}
	for _, c := range []struct {
		name string
		a    *rules.Action
	}{{"read in full", &full}, {"truncated", &cut}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if d.Decide(c.a).Effect != rules.Allow {
					b.Fatal("refused")
				}
			}
		})
	}
}
