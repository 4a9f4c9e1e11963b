package mcp_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

const inspectPolicy = e2ePolicy + `  - {name: leaks, actions: [mcp.docs.leak, mcp.docs.leak-escaped, mcp.docs.key], decision: allow}
  - name: no-private-keys
    actions: [mcp.docs.@result]
    when: 'params.text contains "BEGIN PRIVATE KEY"'
    decision: deny
    reason: results holding private keys are withheld
credentials:
  mcp: {docs: {secret: docs-token}}
`

const docsToken = "s3cret-docs-token-0123456789"

// Issue 17, item 8: tool results are inspected before the agent sees
// them: a managed secret a server hands back is redacted (escaped or
// not), and a rule on mcp.<server>.@result refuses a result by its text.
func TestResponseInspection(t *testing.T) {
	t.Setenv("TF_SECRET_DOCS_TOKEN", docsToken)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	checkLog := func(t *testing.T, home string, wantRedacted int) {
		t.Helper()
		redacted := 0
		if err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{}, func(r *audit.Record) error {
			if strings.Contains(string(r.Line), docsToken) {
				t.Errorf("the secret is in the log: %s", r.Line)
			}
			if r.Event == audit.EventMCPResponseRedacted && r.Details["server"] == "docs" {
				redacted++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if redacted != wantRedacted {
			t.Errorf("%d mcp.response_redacted events, want %d", redacted, wantRedacted)
		}
	}
	// checkResults calls the tools whose results tf rewrites or refuses.
	checkResults := func(t *testing.T, c *mcpclient.Client) {
		t.Helper()
		for _, tool := range []string{"leak", "leak-escaped"} {
			res := callTool(t, ctx, c, tool)
			if text := resultText(res); res.IsError || strings.Contains(text, docsToken) || !strings.Contains(text, "[redacted]") {
				t.Errorf("%s: %q", tool, text)
			}
		}
		res := callTool(t, ctx, c, "key")
		if text := resultText(res); !res.IsError || text != "no-private-keys: results holding private keys are withheld" {
			t.Errorf("key: %+v %q", res.IsError, text)
		}
	}
	t.Run("http", func(t *testing.T) {
		f := startGoServer(t, inspectPolicy)
		c := mcpgoClient(t, f, "https://mcp.test/mcp")
		if err := initialize(ctx, c); err != nil {
			t.Fatal(err)
		}
		checkResults(t, c)
		if res := callTool(t, ctx, c, "echo"); res.IsError {
			t.Errorf("echo: %q", resultText(res))
		}
		f.g.Close()
		checkLog(t, f.home, 2)
		found := false
		for _, r := range f.records(t) {
			if r.Action.Type == "mcp.docs.@result" && r.Action.Resource["tool"] == "key" && r.Decision.Effect == rules.Deny && r.Decision.Rule == "no-private-keys" {
				found = true
			}
		}
		if !found {
			t.Error("no record of the refused result")
		}
	})
	t.Run("legacy sse", func(t *testing.T) {
		// The answers come on the GET stream, read as they pass.
		f := startGoServer(t, strings.Replace(inspectPolicy, "https://mcp.test/mcp", "https://mcp.test/sse", 1))
		c := legacyClient(t, f, "https://mcp.test/sse")
		if err := initialize(ctx, c); err != nil {
			t.Fatal(err)
		}
		checkResults(t, c)
		f.g.Close()
		checkLog(t, f.home, 2)
	})
	t.Run("stdio", func(t *testing.T) {
		c, g, home := stdioHarness(t, ctx, inspectPolicy)
		res := callTool(t, ctx, c, "leak")
		if text := resultText(res); res.IsError || strings.Contains(text, docsToken) || !strings.Contains(text, "[redacted]") {
			t.Errorf("leak: %q", text)
		}
		g.Close()
		checkLog(t, home, 1)
	})
}
