package mcp_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/tameflare/tf/audit"
)

const auditPolicy = e2ePolicy + `  - {name: fail-ok, actions: [mcp.docs.fail], decision: allow}
`

// mcpRecords returns the decision and outcome records of the log in home
// by request id.
func mcpRecords(t *testing.T, home string) (decisions map[string][]*audit.Record, outcomes map[string]*audit.Record) {
	t.Helper()
	decisions, outcomes = map[string][]*audit.Record{}, map[string]*audit.Record{}
	if err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{}, func(r *audit.Record) error {
		switch r.Kind {
		case audit.KindDecision:
			decisions[r.Action.Type] = append(decisions[r.Action.Type], r)
		case audit.KindOutcome:
			outcomes[r.RequestID] = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return decisions, outcomes
}

func callTool(t *testing.T, ctx context.Context, c interface {
	CallTool(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error)
}, name string) *mcpgo.CallToolResult {
	t.Helper()
	req := mcpgo.CallToolRequest{}
	req.Params.Name = name
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

// Issue 17, item 8: records carry the MCP session id and JSON-RPC id, and
// outcomes the tool result's isError, over HTTP and stdio.
func TestRecordsCarryMCPFields(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	check := func(t *testing.T, home string, wantSession bool) {
		t.Helper()
		decisions, outcomes := mcpRecords(t, home)
		for _, tc := range []struct {
			typ     string
			isError *bool
		}{{"mcp.docs.echo", new(false)}, {"mcp.docs.fail", new(true)}, {"mcp.docs.delete", nil}} {
			ds := decisions[tc.typ]
			if len(ds) != 1 || ds[0].MCP == nil || ds[0].MCP.ID == "" || (ds[0].MCP.Session != "") != wantSession {
				t.Fatalf("%s: decision records %+v", tc.typ, ds)
			}
			o := outcomes[ds[0].RequestID]
			if o == nil {
				t.Fatalf("%s: no outcome", tc.typ)
			}
			got := o.MCP != nil && o.MCP.IsError != nil
			if got != (tc.isError != nil) || (got && *o.MCP.IsError != *tc.isError) {
				t.Errorf("%s: outcome mcp %+v, want is_error %v", tc.typ, o.MCP, tc.isError)
			}
		}
	}
	t.Run("http", func(t *testing.T) {
		f := startGoServer(t, auditPolicy)
		c := mcpgoClient(t, f, "https://mcp.test/mcp")
		if err := initialize(ctx, c); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"echo", "fail", "delete"} {
			callTool(t, ctx, c, n)
		}
		f.g.Close()
		// mcp-go speaks the sessionless 2026 revision; sessions are
		// checked with the TypeScript SDK (checkRecords).
		check(t, f.home, false)
	})
	t.Run("legacy sse", func(t *testing.T) {
		// The answers come on the GET stream, after the posts' 202.
		f := startGoServer(t, strings.Replace(auditPolicy, "https://mcp.test/mcp", "https://mcp.test/sse", 1))
		c := legacyClient(t, f, "https://mcp.test/sse")
		if err := initialize(ctx, c); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"echo", "fail", "delete"} {
			callTool(t, ctx, c, n)
		}
		f.g.Close()
		check(t, f.home, true)
	})
	t.Run("stdio", func(t *testing.T) {
		c, g, home := stdioHarness(t, ctx, auditPolicy)
		for _, n := range []string{"echo", "fail", "delete"} {
			callTool(t, ctx, c, n)
		}
		g.Close()
		check(t, home, false)
	})
}
