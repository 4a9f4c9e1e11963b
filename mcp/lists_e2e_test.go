package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/testdata"
)

const listsPolicy = `version: 1
default: deny
mcp_servers:
  - {name: everything, url: "http://everything.test/mcp"}
rules:
  - {name: echo-ok, actions: [mcp.everything.echo], decision: allow}
  - name: documents
    actions: [mcp.everything.@resources/read]
    when: 'resource.uri startsWith "demo://resource/static/document/"'
    decision: allow
  - name: not-architecture
    actions: [mcp.everything.@resources/read]
    when: 'resource.uri endsWith "architecture.md"'
    decision: deny
`

func startEverythingGateway(t *testing.T, policy string) *gateway.Gateway {
	t.Helper()
	addr := startEverything(t)
	home := t.TempDir()
	t.Setenv("TF_HOME", home)
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(policy)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Start(gateway.Config{Name: "lists", Home: home, Policy: p, Upstreams: map[string]string{"everything.test": addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// Issue 17, item 6: every list loses what the policy refuses, not only
// the tools: resources, resource templates, prompts.
func TestEveryListFiltered(t *testing.T) {
	g := startEverythingGateway(t, listsPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := runClientRaw(t, ctx, os.Environ(), "lists", "http://everything.test/mcp", g.ProxyURL())
	var r struct {
		Tools, Resources, Templates, Prompts []string
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if strings.Join(r.Tools, ",") != "echo" {
		t.Errorf("tools: %v", r.Tools)
	}
	if len(r.Resources) == 0 {
		t.Errorf("resources: none")
	}
	for _, u := range r.Resources {
		if !strings.HasPrefix(u, "demo://resource/static/document/") || strings.HasSuffix(u, "architecture.md") {
			t.Errorf("resource offered: %s", u)
		}
	}
	if len(r.Templates) == 0 {
		t.Error("templates hidden, though some reads are allowed")
	}
	if len(r.Prompts) != 0 {
		t.Errorf("prompts offered, though every prompts/get is denied: %v", r.Prompts)
	}
}

// Issue 17, item 6: a GET with Last-Event-ID replays the answer to a
// tools/list; the replay is filtered like the answer was.
func TestReplayedListFiltered(t *testing.T) {
	g := startEverythingGateway(t, listsPolicy)
	tr, err := testdata.ProxyTransport(g.ProxyURL(), g.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	session := ""
	// do sends one message and returns the events of its answer.
	do := func(method, body string, header map[string]string) (*http.Response, []mcp.Event) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://everything.test/mcp", strings.NewReader(body))
		if body == "" {
			req.Body = nil
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var evs []mcp.Event
		sc := mcp.NewSSEScanner(bufio.NewReader(res.Body), 0)
		for {
			raw, err := sc.Next()
			if err != nil {
				break
			}
			ev := mcp.ParseEvent(raw)
			evs = append(evs, ev)
			// The GET stream stays open: stop at the replayed list.
			if method == http.MethodGet && strings.Contains(string(ev.Data), `"tools"`) {
				break
			}
		}
		return res, evs
	}
	res, evs := do("POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	session = res.Header.Get("Mcp-Session-Id")
	if session == "" || len(evs) == 0 || evs[len(evs)-1].ID == "" {
		t.Fatalf("initialize: %d %+v", res.StatusCode, evs)
	}
	first := evs[len(evs)-1].ID
	do("POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	tools := func(evs []mcp.Event) []string {
		for _, ev := range evs {
			var m struct {
				Result struct {
					Tools []struct{ Name string } `json:"tools"`
				} `json:"result"`
			}
			if json.Unmarshal(ev.Data, &m) == nil && m.Result.Tools != nil {
				var names []string
				for _, tl := range m.Result.Tools {
					names = append(names, tl.Name)
				}
				slices.Sort(names)
				return names
			}
		}
		return nil
	}
	if _, evs := do("POST", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil); strings.Join(tools(evs), ",") != "echo" {
		t.Fatalf("tools/list: %v", tools(evs))
	}
	res, evs = do("GET", "", map[string]string{"Last-Event-ID": first, "Accept": "text/event-stream"})
	if got := tools(evs); res.StatusCode != 200 || strings.Join(got, ",") != "echo" {
		t.Fatalf("replayed tools/list: %d %v", res.StatusCode, got)
	}
}
