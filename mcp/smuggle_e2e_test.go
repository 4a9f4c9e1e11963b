package mcp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/tameflare/tf/rules"
)

// send sends a raw request to url through the gateway.
func (f *goFixture) send(t *testing.T, method, url string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if body == nil {
		req.Body = nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	return res, b.Bytes()
}

func mcpgoClient(t *testing.T, f *goFixture, url string) *mcpclient.Client {
	t.Helper()
	c, err := mcpclient.NewStreamableHttpClient(url, transport.WithHTTPBasicClient(f.client))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// legacyClient is an mcp-go client of the legacy HTTP+SSE transport
// through f's gateway.
func legacyClient(t *testing.T, f *goFixture, url string) *mcpclient.Client {
	t.Helper()
	// No client timeout: it would cut the stream.
	c, err := mcpclient.NewSSEMCPClient(url, transport.WithHTTPClient(&http.Client{Transport: f.client.Transport}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func initialize(ctx context.Context, c *mcpclient.Client) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	init := mcpgo.InitializeRequest{}
	init.Params.ClientInfo = mcpgo.Implementation{Name: "tf-test", Version: "1"}
	_, err := c.Initialize(ctx, init)
	return err
}

// Issue 17, item 1: the protocol baseline opens only the servers the
// policy lists, and only for the protocol's own methods, well-formed.
func TestBaselineOpensOnlyListedServers(t *testing.T) {
	f := startGoServer(t, e2ePolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The listed server works as before.
	if err := initialize(ctx, mcpgoClient(t, f, "https://mcp.test/mcp")); err != nil {
		t.Fatalf("listed server: %v", err)
	}
	before := f.reached()

	// An SDK client cannot even start a session with an unlisted host.
	if err := initialize(ctx, mcpgoClient(t, f, "https://other.test/mcp")); err == nil {
		t.Fatal("initialize with an unlisted host was allowed")
	}
	for _, tc := range []struct {
		method, url, body string
	}{
		{"POST", "https://other.test/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping"}`},
		{"POST", "https://other.test/mcp", `{"jsonrpc":"2.0","method":"notifications/anything","params":{"data":"secret stuff"}}`},
		{"POST", "https://other.test/mcp", `{"jsonrpc":"2.0","id":2,"method":"anything/list","params":{"data":"secret stuff"}}`},
		{"POST", "https://other.test/mcp", `{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`},
		{"GET", "https://other.test/mcp", ""},
		{"DELETE", "https://other.test/mcp", ""},
		// To the listed server, only the protocol's own methods, with
		// their own params, are plumbing.
		{"POST", "https://mcp.test/mcp", `{"jsonrpc":"2.0","id":4,"method":"anything/list","params":{"data":"secret stuff"}}`},
		{"POST", "https://mcp.test/mcp", `{"jsonrpc":"2.0","id":5,"method":"ping","params":{"data":"secret stuff"}}`},
		{"POST", "https://mcp.test/mcp", `{"jsonrpc":"2.0","method":"notifications/anything","params":{"data":"secret stuff"}}`},
		{"POST", "https://mcp.test/mcp", `{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"cursor":"x","data":"secret stuff"}}`},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		res, out := f.send(t, tc.method, tc.url, body, map[string]string{"Mcp-Session-Id": "s-1", "Mcp-Protocol-Version": "2025-06-18"})
		if res.Header.Get("X-TF-Decision") != "deny" {
			t.Errorf("%s %s %s: %d %s %.200s", tc.method, tc.url, tc.body, res.StatusCode, res.Header.Get("X-TF-Decision"), out)
		}
	}
	if n := f.reached() - before; n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
	for _, r := range f.records(t) {
		if r.Decision.Rule == "tf:mcp-baseline" && r.Action.Resource["server"] != "docs" {
			t.Errorf("baseline allowed %s", r.Action.Type)
		}
	}
}

// Issue 17, items 2 and 4: an unlisted server cannot take a listed
// server's name, and a tool cannot take another tool's name by its case
// or a method's by its spelling.
func TestNamesCannotBeBorrowed(t *testing.T) {
	f := startGoServer(t, e2ePolicy+`  - {name: docs-everything, actions: ["mcp.docs.e*"], decision: allow}
`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := f.reached()
	res, out := f.send(t, "POST", "https://docs.evil.test/mcp",
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`), nil)
	if res.Header.Get("X-TF-Decision") != "deny" || f.reached() != before {
		t.Fatalf("a call to docs.evil.test: %d %s", res.StatusCode, out)
	}
	found := false
	for _, r := range f.records(t) {
		if r.Action.Type == "mcp.(docs.evil.test).echo" && r.Action.Resource["server"] == "(docs.evil.test)" && r.Decision.Effect == rules.Deny {
			found = true
		}
	}
	if !found {
		t.Error("no record of mcp.(docs.evil.test).echo")
	}

	c := mcpgoClient(t, f, "https://mcp.test/mcp")
	if err := initialize(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"ECHO", "x.@ping"} {
		req := mcpgo.CallToolRequest{}
		req.Params.Name = tool
		res, err := c.CallTool(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if !res.IsError || !strings.HasPrefix(resultText(res), "policy-default:") {
			t.Errorf("%s: %+v", tool, res)
		}
	}
	if ran := f.ran(); len(ran) != 0 {
		t.Fatalf("the server ran %v", ran)
	}
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func utf16LE(s string) []byte {
	b := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// Issue 17, item 3: neither another spelling of a listed server's path
// nor an encoding of the body takes a call out of the MCP rules.
func TestDetectionCannotBeDodged(t *testing.T) {
	f := startGoServer(t, `version: 1
default: deny
mcp_servers:
  - {name: docs, url: "https://mcp.test/mcp"}
rules:
  - {name: web, actions: ["http.*"], decision: allow}
  - {name: docs, actions: ["mcp.docs.*"], decision: allow}
  - {name: no-delete, actions: [mcp.docs.delete], decision: deny, reason: never}
`)
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete","arguments":{"path":"/"}}}`
	for _, tc := range []struct {
		name, method, url string
		body              []byte
		header            map[string]string
		typ               string
	}{
		{"upper-case path", "POST", "https://mcp.test/MCP", []byte(call), nil, "mcp.docs.delete"},
		{"trailing slash", "POST", "https://mcp.test/mcp/", []byte(call), nil, "mcp.docs.delete"},
		{"double slash", "POST", "https://mcp.test//mcp", []byte(call), nil, "mcp.docs.delete"},
		{"escaped path", "POST", "https://mcp.test/%6dcp", []byte(call), nil, "mcp.docs.delete"},
		{"upper-case host", "POST", "https://MCP.TEST/mcp", []byte(call), nil, "mcp.docs.delete"},
		{"escaped key", "POST", "https://other.test/mcp", []byte(strings.Replace(call, `"jsonrpc"`, `"json\u0072pc"`, 1)), nil, "mcp.(other.test).delete"},
		{"key in upper case", "POST", "https://other.test/mcp", []byte(strings.Replace(call, `"jsonrpc"`, `"JSONRPC"`, 1)), nil, "tf.unclassified"},
		{"padding", "POST", "https://other.test/mcp", []byte(strings.Repeat(" ", 5000) + call), nil, "mcp.(other.test).delete"},
		{"jsonrpc last", "POST", "https://other.test/mcp", []byte(`{"id":1,"method":"tools/call","params":{"name":"delete","arguments":{"pad":"` + strings.Repeat("x", 5000) + `"}},"jsonrpc":"2.0"}`), nil, "mcp.(other.test).delete"},
		{"gzip", "POST", "https://other.test/mcp", gz(call), map[string]string{"Content-Encoding": "gzip"}, "mcp.(other.test).delete"},
		{"brotli", "POST", "https://other.test/mcp", []byte("\x1b\x00\x00"), map[string]string{"Content-Encoding": "br"}, "tf.unclassified"},
		{"UTF-16", "POST", "https://other.test/mcp", utf16LE(call), nil, "tf.unclassified"},
		{"GET with a body", "GET", "https://mcp.test/mcp", []byte(call), map[string]string{"Mcp-Session-Id": "s-1"}, "tf.unclassified"},
		{"DELETE with a body", "DELETE", "https://mcp.test/mcp", []byte(call), map[string]string{"Mcp-Session-Id": "s-1"}, "tf.unclassified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.reached()
			res, out := f.send(t, tc.method, tc.url, tc.body, tc.header)
			if res.Header.Get("X-TF-Decision") != "deny" || f.reached() != before {
				t.Fatalf("%d %s %.300s", res.StatusCode, res.Header.Get("X-TF-Decision"), out)
			}
			id := res.Header.Get("X-TF-Request-Id")
			for _, r := range f.records(t) {
				if r.RequestID == id {
					if r.Action.Type != tc.typ {
						t.Fatalf("decided as %s, want %s", r.Action.Type, tc.typ)
					}
					return
				}
			}
			t.Fatalf("no record of %s", id)
		})
	}
	if ran := f.ran(); len(ran) != 0 {
		t.Fatalf("the server ran %v", ran)
	}
}
