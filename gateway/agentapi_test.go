package gateway

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// A stdio line decided through the agent API gets the gateway's decision;
// a wrong credential, or no gateway at all, is a denial, never a pass.
func TestAgentAPIDecidesAndFailsClosed(t *testing.T) {
	f := start(t, policy(t, mcpPolicy), nil)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f.g.ServeAgentAPI(ln)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call := func(tool string) []rules.Action {
		return []rules.Action{{Connector: "mcp", Type: mcp.ToolType("docs", tool), Resource: map[string]string{"server": "docs", "tool": tool}}}
	}
	gov := RemoteMCPGovernor(sock, f.g.token, "docs")
	for tool, want := range map[string]rules.Effect{"read": rules.Allow, "delete": rules.Deny} {
		r := gov.Decide(ctx, call(tool), nil)
		if len(r.Decisions) != 1 || r.Decisions[0].Effect != want || r.RequestID == "" {
			t.Errorf("%s: %+v", tool, r)
		}
		if want == rules.Allow && r.Cut == nil {
			t.Errorf("%s: an allowed line must be cut by the kill switch", tool)
		}
		r.Done(mcp.Outcome{Duration: time.Millisecond})
	}
	for name, g := range map[string]mcp.Governor{
		"wrong credential": RemoteMCPGovernor(sock, "not-the-token", "docs"),
		"no gateway":       RemoteMCPGovernor(filepath.Join(t.TempDir(), "none.sock"), f.g.token, "docs"),
	} {
		r := g.Decide(ctx, call("read"), nil)
		if len(r.Decisions) != 1 || r.Decisions[0].Effect != rules.Deny || !strings.Contains(r.Decisions[0].Reason, "could not reach its gateway") {
			t.Errorf("%s: %+v", name, r.Decisions)
		}
	}
}
