package mcp_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	"github.com/tameflare/tf/testdata"
)

const e2ePolicy = `version: 1
default: deny
mcp_servers:
  - {name: docs, url: "https://mcp.test/mcp"}
rules:
  - name: echo-is-fine
    actions: [mcp.docs.echo]
    decision: allow
  - name: files
    actions: [mcp.docs.write_file]
    decision: allow
  - name: not-etc
    actions: [mcp.docs.write_file]
    when: 'params.path startsWith "/etc"'
    decision: deny
    reason: nothing under /etc
  - name: never-delete
    actions: [mcp.docs.delete]
    decision: deny
    reason: deleting is off limits
`

type goFixture struct {
	g      *gateway.Gateway
	home   string
	client *http.Client
	mu     sync.Mutex
	calls  []string // tools the server ran
	auth   []string // Authorization headers the server saw
	hosts  []string // the Host of each request the server saw
}

// fixtureHosts all reach the one server: mcp.test is the listed one, the
// others are unlisted names of it.
var fixtureHosts = []string{"mcp.test", "docs.evil.test", "other.test"}

// reached returns how many requests reached the server.
func (f *goFixture) reached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.hosts)
}

func (f *goFixture) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func startGoServer(t *testing.T, policySrc string) *goFixture {
	t.Helper()
	f := &goFixture{home: t.TempDir()}
	t.Setenv("TF_HOME", f.home)
	s := mcpserver.NewMCPServer("docs", "1.0.0", mcpserver.WithToolCapabilities(false))
	tool := func(name string) {
		s.AddTool(mcpgo.NewTool(name, mcpgo.WithString("text"), mcpgo.WithString("path")),
			func(ctx context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
				f.mu.Lock()
				f.calls = append(f.calls, name)
				f.mu.Unlock()
				switch name {
				case "fail":
					return mcpgo.NewToolResultError("it failed"), nil
				case "leak":
					// A server that hands back the credential tf gave it.
					return mcpgo.NewToolResultText("the token is " + os.Getenv("TF_SECRET_DOCS_TOKEN")), nil
				case "leak-escaped":
					// Go escapes < as \u003c: the message has escapes.
					return mcpgo.NewToolResultText("<token>" + os.Getenv("TF_SECRET_DOCS_TOKEN") + "</token>"), nil
				case "key":
					return mcpgo.NewToolResultText("here: -----BEGIN PRIVATE KEY-----\nMIIEvQ...\n-----END PRIVATE KEY-----"), nil
				}
				return mcpgo.NewToolResultText(name + " ran: " + req.GetString("text", "")), nil
			})
	}
	for _, n := range []string{"echo", "write_file", "delete", "exec", "ECHO", "x.@ping", "fail", "leak", "leak-escaped", "key"} {
		tool(n)
	}
	cert, caPEM, err := testdata.ServerCert(fixtureHosts...)
	if err != nil {
		t.Fatal(err)
	}
	h := mcpserver.NewStreamableHTTPServer(s, mcpserver.WithDisableLocalhostProtection(true))
	// The same server over the legacy HTTP+SSE transport: GET /sse,
	// POST /message?sessionId=...
	legacy := mcpserver.NewSSEServer(s, mcpserver.WithSSEDisableLocalhostProtection(true))
	// The server routes as Express does: /MCP and /mcp/ are /mcp.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var serve http.Handler
		switch path.Clean(strings.ToLower(r.URL.Path)) {
		case "/mcp":
			serve = h
		case "/sse":
			serve = legacy.SSEHandler()
		case "/message":
			serve = legacy.MessageHandler()
		default:
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.hosts = append(f.hosts, r.Host)
		f.mu.Unlock()
		serve.ServeHTTP(w, r)
	}))
	up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	up.StartTLS()
	t.Cleanup(up.Close)

	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(policySrc)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	upstreams := map[string]string{}
	for _, h := range fixtureHosts {
		upstreams[h] = strings.TrimPrefix(up.URL, "https://")
	}
	g, err := gateway.Start(gateway.Config{Name: "e2e", Home: f.home, Policy: p,
		Upstreams:   upstreams,
		UpstreamCAs: [][]byte{caPEM}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	f.g = g
	tr, err := testdata.ProxyTransport(g.ProxyURL(), g.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	f.client = &http.Client{Transport: tr, Timeout: 20 * time.Second}
	return f
}

func (f *goFixture) records(t *testing.T) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if err := audit.Scan(filepath.Join(f.home, "audit"), audit.Filter{Kind: audit.KindDecision}, func(r *audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func resultText(r *mcpgo.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestMCPGoThroughGateway(t *testing.T) {
	f := startGoServer(t, e2ePolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mcpclient.NewStreamableHttpClient("https://mcp.test/mcp", transport.WithHTTPBasicClient(f.client))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ClientInfo = mcpgo.Implementation{Name: "tf-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatalf("initialize: %v", err)
	}

	list, err := c.ListTools(ctx, mcpgo.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	// delete is denied outright and exec by the default: neither is offered;
	// write_file is denied only for some paths and stays.
	if strings.Join(names, ",") != "echo,write_file" {
		t.Fatalf("tools offered: %v", names)
	}

	call := func(name string, args map[string]any) *mcpgo.CallToolResult {
		t.Helper()
		req := mcpgo.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = name, args
		res, err := c.CallTool(ctx, req)
		if err != nil {
			t.Fatalf("call %s: %v", name, err)
		}
		return res
	}
	if res := call("echo", map[string]any{"text": "hi"}); res.IsError || resultText(res) != "echo ran: hi" {
		t.Fatalf("allowed call: %+v", res)
	}
	if res := call("delete", map[string]any{"path": "/"}); !res.IsError || resultText(res) != "never-delete: deleting is off limits" {
		t.Fatalf("denied call: %+v", res)
	}
	if res := call("exec", nil); !res.IsError || !strings.HasPrefix(resultText(res), "policy-default: no rule matched mcp.docs.exec") {
		t.Fatalf("hidden tool called anyway: %+v", res)
	}
	if res := call("write_file", map[string]any{"path": "/etc/passwd"}); !res.IsError || resultText(res) != "not-etc: nothing under /etc" {
		t.Fatalf("denied by argument: %+v", res)
	}
	if res := call("write_file", map[string]any{"path": "/tmp/x", "text": "ok"}); res.IsError {
		t.Fatalf("allowed by argument: %+v", res)
	}
	if got := f.ran(); strings.Join(got, ",") != "echo,write_file" {
		t.Fatalf("the server ran %v", got)
	}

	// The records name the server, the tool and the rule.
	var denied *audit.Record
	for _, r := range f.records(t) {
		if r.Action.Type == "mcp.docs.delete" {
			denied = r
		}
	}
	if denied == nil || denied.Decision.Effect != rules.Deny || denied.Decision.Rule != "never-delete" ||
		denied.Action.Resource["tool"] != "delete" || denied.Action.Params["path"] != "/" {
		t.Fatalf("record of the denied call: %+v", denied)
	}
}

// post sends a raw body to the server through the gateway.
func (f *goFixture) post(t *testing.T, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "https://mcp.test/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-03-26")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestBatchAndBadInputThroughGateway(t *testing.T) {
	f := startGoServer(t, e2ePolicy)
	before := len(f.records(t))

	// A batch with one denied call is refused whole: the allowed call
	// does not run either.
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}},` +
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete","arguments":{}}}]`
	res, body := f.post(t, batch, nil)
	var answers []map[string]any
	if res.StatusCode != 200 || json.Unmarshal(body, &answers) != nil || len(answers) != 2 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if res.Header.Get("X-TF-Decision") != "deny" || res.Header.Get("X-TF-Rule") != "never-delete" || res.Header.Get("X-TF-Request-Id") == "" {
		t.Errorf("headers: %v", res.Header)
	}
	if e, _ := answers[0]["error"].(map[string]any); e == nil || e["code"].(float64) != mcp.CodeNotSent {
		t.Errorf("allowed element: %v", answers[0])
	}
	if r, _ := answers[1]["result"].(map[string]any); r == nil || r["isError"] != true {
		t.Errorf("denied element: %v", answers[1])
	}
	if got := f.ran(); len(got) != 0 {
		t.Fatalf("the server ran %v from a refused batch", got)
	}

	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete","arguments":{}}}`
	for _, tc := range []struct {
		name, body string
		header     map[string]string
		want       string
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{`, nil, "unexpected end of JSON"},
		{"not JSON-RPC", `{"query":"{ viewer { login } }"}`, nil, "not a JSON-RPC 2.0 message"},
		{"oversized", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 1100<<10) + `"}}}`, nil, "MCP message larger than"},
		{"mismatched Mcp-Name", call, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}, `Mcp-Name header "echo" does not match`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := f.post(t, tc.body, tc.header)
			var m struct {
				Error struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
					Data    struct {
						RequestID string `json:"request_id"`
					} `json:"data"`
				} `json:"error"`
			}
			if res.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &m) != nil || !strings.Contains(m.Error.Message, tc.want) || m.Error.Data.RequestID == "" {
				t.Fatalf("%d %.300s", res.StatusCode, body)
			}
			found := false
			for _, r := range f.records(t) {
				if r.RequestID == m.Error.Data.RequestID && r.Action.Type == "tf.unclassified" && r.Action.Connector == "mcp" && r.Decision.Effect == rules.Deny {
					found = true
				}
			}
			if !found {
				t.Fatalf("no record of request %s", m.Error.Data.RequestID)
			}
		})
	}
	if got := f.ran(); len(got) != 0 {
		t.Fatalf("the server ran %v", got)
	}
	if n := len(f.records(t)) - before; n != 6 {
		t.Errorf("%d decision records, want 6 (2 for the batch, 4 refusals)", n)
	}
}

// The server's credential is injected by the gateway for the server's
// actions: the agent's own token never reaches it, nor the secret the log.
func TestMCPCredentialInjected(t *testing.T) {
	t.Setenv("TF_SECRET_DOCS_TOKEN", "s3cret-docs-token")
	f := startGoServer(t, e2ePolicy+"credentials:\n  mcp: {docs: {secret: docs-token}}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mcpclient.NewStreamableHttpClient("https://mcp.test/mcp", transport.WithHTTPBasicClient(f.client),
		transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer agent-token"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ClientInfo = mcpgo.Implementation{Name: "tf-test", Version: "1"}
	if _, err := c.Initialize(ctx, init); err != nil {
		t.Fatal(err)
	}
	req := mcpgo.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = "echo", map[string]any{"text": "s3cret-docs-token"}
	if _, err := c.CallTool(ctx, req); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	auth := append([]string(nil), f.auth...)
	f.mu.Unlock()
	if len(auth) == 0 {
		t.Fatal("nothing reached the server")
	}
	for _, a := range auth {
		if a != "Bearer s3cret-docs-token" {
			t.Fatalf("the server saw Authorization %q", a)
		}
	}
	for _, r := range f.records(t) {
		if strings.Contains(fmt.Sprint(r.Action.Params), "s3cret") {
			t.Fatalf("the secret is in a record: %+v", r.Action.Params)
		}
	}
}
