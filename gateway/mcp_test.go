package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

const mcpPolicy = `version: 1
default: deny
rules:
  - {name: reads, actions: [mcp.docs.read], decision: allow}
  - {name: no-delete, actions: [mcp.docs.delete], decision: deny, reason: deleting is off limits}
`

// TestMCPDecideLines decides a burst of stdio lines: each line gets its own
// ruling and request id, and every decision is on record, in order, before
// DecideLines returns.
func TestMCPDecideLines(t *testing.T) {
	f := start(t, policy(t, mcpPolicy), nil)
	gov := f.g.MCPGovernor("docs").(mcp.BatchGovernor)
	call := func(tool string) []rules.Action {
		// options as the connector leaves an argument no rule reads.
		return []rules.Action{{Connector: "mcp", Type: mcp.ToolType("docs", tool), Resource: map[string]string{"server": "docs", "tool": tool},
			Params: map[string]any{"options": json.RawMessage(`[{"k":1}]`)}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs := gov.DecideLines(ctx, []mcp.Line{
		{Actions: call("read")},
		{Actions: call("delete")},
		{Err: errors.New("unexpected end of JSON input")},
	})
	if len(rs) != 3 {
		t.Fatalf("%d rulings for 3 lines", len(rs))
	}
	want := []rules.Effect{rules.Allow, rules.Deny, rules.Deny}
	for i, r := range rs {
		if len(r.Decisions) != 1 || r.Decisions[0].Effect != want[i] {
			t.Fatalf("line %d: %+v, want %s", i, r.Decisions, want[i])
		}
		if r.RequestID == "" || i > 0 && r.RequestID == rs[i-1].RequestID {
			t.Fatalf("line %d has request id %q", i, r.RequestID)
		}
	}
	if rs[0].Cut == nil || rs[1].Cut != nil {
		t.Fatal("only the allowed line is cut by the kill switch")
	}
	var recs []*audit.Record
	if err := audit.Scan(audit.Dir(f.home), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d decision records, want 3", len(recs))
	}
	types := []string{"mcp.docs.read", "mcp.docs.delete", "tf.unclassified"}
	for i, r := range recs {
		if r.RequestID != rs[i].RequestID || r.Action.Type != types[i] || r.Decision.Effect != want[i] || r.Action.Request.Scheme != "stdio" {
			t.Fatalf("record %d: %s %s %s, want %s %s", i, r.RequestID, r.Action.Type, r.Decision.Effect, rs[i].RequestID, types[i])
		}
	}
	if got := recs[0].Action.Params["options"]; !reflect.DeepEqual(got, []any{map[string]any{"k": 1.0}}) {
		t.Fatalf("an argument kept as JSON is recorded as %#v", got)
	}
	if recs[1].Decision.Reason != "deleting is off limits" {
		t.Fatalf("deny reason %q", recs[1].Decision.Reason)
	}
}

// TestPinToolsModes: a tool changed since it was pinned is refused under
// pin_tools: deny, held under require_approval, and only recorded under
// monitor; an unchanged tool is decided by the rules alone.
func TestPinToolsModes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want rules.Effect
	}{{"deny", rules.Deny}, {"require_approval", rules.RequireApproval}, {"monitor", rules.Allow}} {
		t.Run(tc.mode, func(t *testing.T) {
			f := start(t, policy(t, "version: 1\ndefault: deny\nmcp: {pin_tools: "+tc.mode+"}\nrules:\n  - {name: all, actions: [\"mcp.docs.*\"], decision: allow}\n"), nil)
			pin := f.g.MCPGovernor("docs").(mcp.ToolPinner).PinTools()
			if pin == nil {
				t.Fatal("no pinner")
			}
			pin([]mcp.ToolDigest{{Name: "read", Digest: "sha256:1"}, {Name: "write", Digest: "sha256:2"}})
			hidden := pin([]mcp.ToolDigest{{Name: "read", Digest: "sha256:1"}, {Name: "write", Digest: "sha256:3"}})
			if hidden["write"] != (tc.mode == "deny") || hidden["read"] {
				t.Fatalf("hidden: %v", hidden)
			}
			decide := func(tool string) rules.Decision {
				a := rules.Action{Connector: "mcp", Type: mcp.ToolType("docs", tool), Resource: map[string]string{"server": "docs", "tool": tool, "method": "tools/call"}}
				return f.g.pinDecision(f.g.Policy(), &a, rules.Decision{Effect: rules.Allow, Rule: "all"})
			}
			if d := decide("write"); d.Effect != tc.want || (tc.mode != "monitor" && d.Rule != mcp.PinRule) {
				t.Fatalf("changed tool: %+v", d)
			}
			if d := decide("read"); d.Effect != rules.Allow || d.Rule != "all" {
				t.Fatalf("unchanged tool: %+v", d)
			}
		})
	}
}
