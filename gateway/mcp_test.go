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
