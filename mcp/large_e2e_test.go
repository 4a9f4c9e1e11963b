package mcp_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// Issue 17, item 7 (HTTP): a call with arguments that escape to more than
// a record holds is decided, forwarded and recorded (their size and
// digest in place of the arguments); one beyond what tf inspects gets a
// JSON-RPC error with its own id, which the client sees at once.
func TestLargeMessagesOverHTTP(t *testing.T) {
	f := startGoServer(t, e2ePolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := mcpgoClient(t, f, "https://mcp.test/mcp")
	if err := initialize(ctx, c); err != nil {
		t.Fatal(err)
	}
	req := mcpgo.CallToolRequest{}
	// mcp-go escapes < as \u003c: 150 KB of them are 900 KB on the wire.
	req.Params.Name, req.Params.Arguments = "echo", map[string]any{"text": strings.Repeat("<", 150<<10)}
	res, err := c.CallTool(ctx, req)
	if err != nil || res.IsError || len(resultText(res)) != len("echo ran: ")+150<<10 {
		t.Fatalf("150 KB of <: %v %v", err, res != nil && res.IsError)
	}
	recorded := false
	for _, r := range f.records(t) {
		// 900 KB escaped fits one record; the line is kept whole.
		if r.Action.Type == "mcp.docs.echo" && r.Decision.Effect == rules.Allow && (r.Action.Params["text"] != nil || r.Action.Params[audit.TruncatedKey] != nil) {
			recorded = true
		}
	}
	if !recorded {
		t.Error("no record of the 150 KB call")
	}

	// 200 KB of < are 1.2 MB on the wire, beyond the 1 MiB tf inspects.
	start := time.Now()
	req.Params.Arguments = map[string]any{"text": strings.Repeat("<", 200<<10)}
	_, err = c.CallTool(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "larger than") || time.Since(start) > 10*time.Second {
		t.Fatalf("200 KB of <: %v after %v", err, time.Since(start))
	}
	found := false
	for _, r := range f.records(t) {
		if r.Action.Type == "tf.unclassified" && strings.Contains(r.Decision.Reason, "larger than") {
			found = true
		}
	}
	if !found {
		t.Error("no record of the refused 1.1 MB call")
	}
}

// Issue 17, item 7 (stdio): the relay between mcp-go's stdio client and
// server, governed by a real gateway: a 3.3 MB line is decided, recorded
// and forwarded; a 4.4 MB one is refused with its own id.
func TestLargeMessagesOverStdio(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, g, home := stdioHarness(t, ctx, e2ePolicy)
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "echo", map[string]any{"text": strings.Repeat("<", 3300<<10/6)}
	if res, err := c.CallTool(ctx, req); err != nil || res.IsError {
		t.Fatalf("3.3 MB line: %v %+v", err, res)
	}
	start := time.Now()
	req.Params.Arguments = map[string]any{"text": strings.Repeat("x", 4400<<10)}
	_, err := c.CallTool(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "larger than") || time.Since(start) > 10*time.Second {
		t.Fatalf("4.4 MB line: %v after %v", err, time.Since(start))
	}
	g.Close()
	var omitted, refused bool
	if err := audit.Scan(home+"/audit", audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		omitted = omitted || (r.Action.Type == "mcp.docs.echo" && r.Action.Params[audit.TruncatedKey] != nil)
		refused = refused || (r.Action.Type == "tf.unclassified" && strings.Contains(r.Decision.Reason, "larger than"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !omitted || !refused {
		t.Fatalf("records: large call %v, refused line %v", omitted, refused)
	}
}

// stdioHarness runs mcp-go's stdio server (tools echo, fail, leak) behind a
// relay governed by a real gateway, and returns mcp-go's stdio client of
// it, initialized.
func stdioHarness(t *testing.T, ctx context.Context, policy string) (*mcpclient.Client, *gateway.Gateway, string) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("TF_HOME", home)
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(policy)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Start(gateway.Config{Name: "stdio", Home: home, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	s := mcpserver.NewMCPServer("docs", "1.0.0", mcpserver.WithToolCapabilities(false))
	s.AddTool(mcpgo.NewTool("echo", mcpgo.WithString("text")), func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("echo ran: " + req.GetString("text", "")), nil
	})
	s.AddTool(mcpgo.NewTool("fail"), func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultError("it failed"), nil
	})
	s.AddTool(mcpgo.NewTool("leak"), func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
		return mcpgo.NewToolResultText("<token>" + os.Getenv("TF_SECRET_DOCS_TOKEN") + "</token>"), nil
	})
	cin, cw := io.Pipe()  // client -> relay
	cr, cout := io.Pipe() // relay -> client
	sin, sw := io.Pipe()  // relay -> server
	sr, sout := io.Pipe() // server -> relay
	go mcpserver.NewStdioServer(s).Listen(ctx, sin, sout)
	rl := &mcp.Relay{Server: "docs", Governor: g.MCPGovernor("docs"), ClientIn: cin, ClientOut: cout, ServerIn: sw, ServerOut: sr}
	go rl.Run(ctx)
	t.Cleanup(func() { cw.Close(); sout.Close(); cout.Close() })
	c := mcpclient.NewClient(transport.NewIO(cr, cw, io.NopCloser(strings.NewReader(""))))
	if err := initialize(ctx, c); err != nil {
		t.Fatal(err)
	}
	return c, g, home
}
