package mcp

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf16"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/rules"
)

func post(t testing.TB, rawURL, body string, header http.Header) *connectors.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if header == nil {
		header = http.Header{}
	}
	return &connectors.Request{
		HTTP:   &http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: header},
		Scheme: u.Scheme,
		Body:   []byte(body),
	}
}

func servers(list ...rules.MCPServer) func() []rules.MCPServer {
	return func() []rules.MCPServer { return list }
}

func TestClassifyMessages(t *testing.T) {
	c := NewConnector(servers(rules.MCPServer{Name: "docs", URL: "https://mcp.example.com/mcp"}))
	cases := []struct {
		name, url, body string
		want            []rules.Action
	}{
		{
			name: "tool call with arguments",
			url:  "https://mcp.example.com/mcp",
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Search","arguments":{"q":"x","n":2,"deep":{"a":[1,"b",null,true]}}}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.Search",
				Resource: map[string]string{"server": "docs", "tool": "Search", "method": "tools/call"},
				Params:   map[string]any{"q": "x", "n": 2.0, "deep": map[string]any{"a": []any{1.0, "b", nil, true}}}}},
		},
		{
			name: "an unlisted host is named after itself, in parentheses",
			url:  "https://Other.Example.org:443/x",
			body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.(other.example.org).t",
				Resource: map[string]string{"server": "(other.example.org)", "tool": "t", "method": "tools/call"}, Params: map[string]any{}}},
		},
		{
			name: "a listed server under another spelling of its path",
			url:  "https://MCP.example.com./%4dCP//",
			body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.t",
				Resource: map[string]string{"server": "docs", "tool": "t", "method": "tools/call"}, Params: map[string]any{}}},
		},
		{
			name: "resources/read carries the uri",
			url:  "https://mcp.example.com/mcp/",
			body: `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.@resources/read",
				Resource: map[string]string{"server": "docs", "uri": "file:///etc/passwd", "method": "resources/read"}}},
		},
		{
			name: "prompts/get carries the name and arguments",
			url:  "https://mcp.example.com/mcp",
			body: `{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"review","arguments":{"lang":"go"}}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.@prompts/get",
				Resource: map[string]string{"server": "docs", "name": "review", "method": "prompts/get"}, Params: map[string]any{"lang": "go"}}},
		},
		{
			name: "a batch gives one action per element, a response among them",
			url:  "https://mcp.example.com/mcp",
			body: `[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":9,"result":{"roots":[]}},{"jsonrpc":"2.0","id":4,"method":"tools/list"}]`,
			want: []rules.Action{
				{Connector: "mcp", Type: "mcp.docs.@notifications/initialized", Resource: map[string]string{"server": "docs", "method": "notifications/initialized"}},
				{Connector: "mcp", Type: "mcp.docs.@response", Resource: map[string]string{"server": "docs"}, Params: map[string]any{"error": false}},
				{Connector: "mcp", Type: "mcp.docs.@tools/list", Resource: map[string]string{"server": "docs", "method": "tools/list"}},
			},
		},
		{
			name: "protocol methods show their params",
			url:  "https://mcp.example.com/mcp",
			body: `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"c2"}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.@tools/list",
				Resource: map[string]string{"server": "docs", "method": "tools/list"}, Params: map[string]any{"cursor": "c2"}}},
		},
		{
			name: "tool names that look like methods are escaped",
			url:  "https://mcp.example.com/mcp",
			body: `[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x.@ping"}},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"@tools/list"}},{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a*b %"}}]`,
			want: []rules.Action{
				{Connector: "mcp", Type: "mcp.docs.x.%40ping", Resource: map[string]string{"server": "docs", "tool": "x.@ping", "method": "tools/call"}, Params: map[string]any{}},
				{Connector: "mcp", Type: "mcp.docs.%40tools/list", Resource: map[string]string{"server": "docs", "tool": "@tools/list", "method": "tools/call"}, Params: map[string]any{}},
				{Connector: "mcp", Type: "mcp.docs.a%2Ab%20%25", Resource: map[string]string{"server": "docs", "tool": "a*b %", "method": "tools/call"}, Params: map[string]any{}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Classify(post(t, tc.url, tc.body, nil))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestClassifyRefuses(t *testing.T) {
	c := NewConnector(servers(rules.MCPServer{Name: "docs", URL: "https://mcp.example.com/mcp"}))
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}`
	cases := []struct {
		name, body string
		header     http.Header
		truncated  bool
		want       string
	}{
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":`, nil, false, "unexpected end"},
		{"not JSON-RPC", `{"hello":"world"}`, nil, false, "not a JSON-RPC 2.0 message"},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, nil, false, "not \"2.0\""},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}`, nil, false, "duplicate object key \"method\""},
		{"duplicate argument", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"p":"/tmp","p":"/etc"}}}`, nil, false, "duplicate object key \"p\""},
		{"call without name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, nil, false, "without a tool name"},
		{"arguments not an object", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}`, nil, false, "arguments are not an object"},
		{"empty batch", `[]`, nil, false, "empty JSON-RPC batch"},
		{"batch with garbage", `[` + call + `,7]`, nil, false, "batch element 2 is not an object"},
		{"oversized", call, nil, true, "larger than"},
		{"protocol method with array params", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}`, nil, false, "params are an array"},
		{"UTF-16", "\xff\xfe" + utf16le(call), nil, false, "UTF-16"},
		{"UTF-16 without a mark", utf16le(call), nil, false, "UTF-16"},
		{"UTF-32", "\x00\x00\xfe\xff" + strings.Repeat("\x00\x00\x00{", 1), nil, false, "UTF-16"},
		{"unknown encoding", call, http.Header{"Content-Encoding": {"br"}}, false, `Content-Encoding "br"`},
		{"gzip that is not", call, http.Header{"Content-Encoding": {"gzip"}}, false, "Content-Encoding gzip"},
		{"Mcp-Name mismatch", call, http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"harmless"}}, false, `Mcp-Name header "harmless" does not match`},
		{"Mcp-Method mismatch", call, http.Header{"Mcp-Method": {"tools/list"}}, false, "Mcp-Method header"},
		{"headers on a batch", `[` + call + `]`, http.Header{"Mcp-Method": {"tools/call"}}, false, "on a batch"},
		{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}", nil, false, "invalid UTF-8"},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}}`, nil, false, "nested deeper"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, "https://mcp.example.com/mcp", tc.body, tc.header)
			r.Truncated = tc.truncated
			_, err := c.Classify(r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestHeadersThatAgreePass(t *testing.T) {
	c := NewConnector(nil)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo"}}`
	h := http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?aMOpbGxv?="}}
	if _, err := c.Classify(post(t, "https://x.test/mcp", body, h)); err != nil {
		t.Fatal(err)
	}
}

func TestSniff(t *testing.T) {
	c := NewConnector(servers(rules.MCPServer{Name: "docs", URL: "https://mcp.example.com/mcp"}))
	cases := []struct {
		url, method, body string
		header            http.Header
		want              bool
	}{
		{"https://mcp.example.com/mcp", "GET", "", nil, true},
		{"https://mcp.example.com:443/mcp/sub", "POST", "garbage", nil, true},
		{"https://mcp.example.com/mcpx", "POST", "garbage", nil, false},
		{"http://mcp.example.com/mcp", "POST", "garbage", nil, false},
		{"https://api.example.org/rpc", "POST", ` {"jsonrpc":"2.0","id":1,"method":"x"}`, nil, true},
		{"https://api.example.org/rpc", "POST", `{"query":"{ viewer }"}`, nil, false},
		{"https://api.example.org/rpc", "GET", ``, http.Header{"Mcp-Protocol-Version": {"2025-06-18"}}, true},
		// A listed server whatever the spelling of its host and path.
		{"https://MCP.Example.com/MCP", "POST", "garbage", nil, true},
		{"https://mcp.example.com/a/../mcp/", "POST", "garbage", nil, true},
		{"https://mcp.example.com//mcp", "POST", "garbage", nil, true},
		// JSON-RPC however it hides on an unlisted host.
		{"https://api.example.org/rpc", "POST", `{"json\u0072pc":"2.0","id":1,"method":"x"}`, nil, true},
		{"https://api.example.org/rpc", "POST", `{"JSONRPC":"2.0","id":1,"method":"x"}`, nil, true},
		{"https://api.example.org/rpc", "POST", strings.Repeat(" ", 5000) + `{"id":1,"method":"x","jsonrpc":"2.0"}`, nil, true},
		{"https://api.example.org/rpc", "POST", `{"id":1,"method":"x","params":{"pad":"` + strings.Repeat("x", 5000) + `"},"jsonrpc":"2.0"}`, nil, true},
		{"https://api.example.org/rpc", "POST", "\xef\xbb\xbf" + `{"jsonrpc":"2.0","id":1,"method":"x"}`, nil, true},
		{"https://api.example.org/rpc", "POST", utf16le(`{"jsonrpc":"2.0","id":1,"method":"x"}`), nil, true},
		{"https://api.example.org/rpc", "POST", gzipped(`{"jsonrpc":"2.0","id":1,"method":"x"}`), http.Header{"Content-Encoding": {"gzip"}}, true},
		{"https://api.example.org/rpc", "POST", gzipped(`{"query":"{ viewer }"}`), http.Header{"Content-Encoding": {"gzip"}}, false},
		{"https://api.example.org/rpc", "POST", `anything`, http.Header{"Content-Encoding": {"br"}}, true},
	}
	for _, tc := range cases {
		r := post(t, tc.url, tc.body, tc.header)
		r.HTTP.Method = tc.method
		if got := c.Sniff(r); got != tc.want {
			t.Errorf("Sniff(%s %s %q) = %v, want %v", tc.method, tc.url, tc.body, got, tc.want)
		}
	}
}

func loadPolicy(t testing.TB, src string) *rules.Policy {
	t.Helper()
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(src)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBaseline(t *testing.T) {
	strict := loadPolicy(t, "version: 1\ndefault: deny\nmcp_servers: [{name: docs, url: \"https://mcp.example.com/mcp\"}]\nrules:\n  - {name: no-lists, actions: [mcp.docs.@resources/list], decision: deny, reason: no}\n")
	c := NewConnector(servers(strict.MCPServers...))
	act := func(url, method, body string) *rules.Action {
		t.Helper()
		r := post(t, url, body, nil)
		r.HTTP.Method = method
		as, err := c.Classify(r)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s %s: %v", url, body, err)
		}
		return &as[0]
	}
	msg := func(method, params string) string {
		if params != "" {
			params = `,"params":` + params
		}
		return `{"jsonrpc":"2.0","id":1,"method":"` + method + `"` + params + `}`
	}
	note := func(method, params string) string {
		if params != "" {
			params = `,"params":` + params
		}
		return `{"jsonrpc":"2.0","method":"` + method + `"` + params + `}`
	}
	const listed, unlisted = "https://mcp.example.com/mcp", "https://evil.example.org/mcp"
	for _, tc := range []struct {
		url, method, body string
		want              rules.Effect
		rule              string
	}{
		{listed, "POST", msg("initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}`), rules.Allow, BaselineRule},
		{listed, "POST", msg("ping", ""), rules.Allow, BaselineRule},
		{listed, "POST", msg("ping", `{"_meta":{"progressToken":1}}`), rules.Allow, BaselineRule},
		{listed, "POST", note("notifications/initialized", ""), rules.Allow, BaselineRule},
		{listed, "POST", note("notifications/cancelled", `{"requestId":3,"reason":"user"}`), rules.Allow, BaselineRule},
		{listed, "POST", msg("tools/list", `{"cursor":"abc"}`), rules.Allow, BaselineRule},
		{listed, "POST", msg("resources/templates/list", ""), rules.Allow, BaselineRule},
		{listed, "POST", msg("tasks/get", `{"taskId":"t1"}`), rules.Allow, BaselineRule},
		{listed, "POST", msg("tasks/result", `{"taskId":"t1"}`), rules.Allow, BaselineRule},
		{listed, "POST", msg("tasks/cancel", `{"taskId":"t1"}`), rules.Allow, BaselineRule},
		{listed, "GET", "", rules.Allow, BaselineRule},
		{listed, "DELETE", "", rules.Allow, BaselineRule},
		{listed, "POST", `{"jsonrpc":"2.0","id":9,"result":{}}`, rules.Allow, BaselineRule},
		{listed, "POST", msg("resources/list", ""), rules.Deny, "no-lists"}, // a rule overrides the baseline
		{listed, "POST", msg("resources/read", `{"uri":"file:///x"}`), rules.Deny, ""},
		{listed, "POST", msg("tools/call", `{"name":"search"}`), rules.Deny, ""},
		// Not the protocol's own methods, or not well-formed: decided as
		// what they are.
		{listed, "POST", msg("anything/list", `{"data":"x"}`), rules.Deny, ""},
		{listed, "POST", note("notifications/anything", `{"data":"x"}`), rules.Deny, ""},
		{listed, "POST", msg("ping", `{"data":"exfiltrated"}`), rules.Deny, ""},
		{listed, "POST", msg("tools/list", `{"cursor":{"data":"x"}}`), rules.Deny, ""},
		{listed, "POST", msg("Tools/List", ""), rules.Deny, ""},
		{listed, "POST", msg("initialize", `{"protocolVersion":"2025-06-18","data":"x"}`), rules.Deny, ""},
		// Nothing is plumbing to a server the policy does not list.
		{unlisted, "POST", msg("initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}`), rules.Deny, ""},
		{unlisted, "POST", msg("ping", ""), rules.Deny, ""},
		{unlisted, "POST", note("notifications/initialized", ""), rules.Deny, ""},
		{unlisted, "POST", msg("tools/list", ""), rules.Deny, ""},
		{unlisted, "GET", "", rules.Deny, ""},
		{unlisted, "DELETE", "", rules.Deny, ""},
		{unlisted, "POST", `{"jsonrpc":"2.0","id":9,"result":{}}`, rules.Deny, ""},
	} {
		var h http.Header
		if tc.method != "POST" {
			h = http.Header{"Mcp-Session-Id": {"s1"}}
		}
		r := post(t, tc.url, tc.body, h)
		r.HTTP.Method = tc.method
		as, err := c.Classify(r)
		if err != nil || len(as) != 1 {
			t.Fatalf("%s %s %s: %v", tc.method, tc.url, tc.body, err)
		}
		a := &as[0]
		d := Baseline(a, strict.Decide(a))
		if d.Effect != tc.want || d.Rule != tc.rule {
			t.Errorf("%s %s %s (%s): %s by %q, want %s by %q", tc.method, tc.url, tc.body, a.Type, d.Effect, d.Rule, tc.want, tc.rule)
		}
	}
	// Monitor mode: plumbing is not reported as "would deny".
	mon := &rules.Decider{Policy: strict, Mode: rules.Monitor}
	a := act(listed, "POST", msg("ping", ""))
	if d := Baseline(a, mon.Decide(a)); d.Monitor || d.Would != "" || d.Rule != BaselineRule {
		t.Errorf("monitor: %+v", d)
	}
	a = act(listed, "POST", msg("tools/call", `{"name":"search"}`))
	if d := Baseline(a, mon.Decide(a)); !d.Monitor || d.Would != rules.Deny {
		t.Errorf("monitor call: %+v", d)
	}
	// The kill switch is never overridden.
	killed := Baseline(act(listed, "POST", msg("ping", "")), rules.Decision{Effect: rules.Deny, KillSwitch: true})
	if killed.Effect != rules.Deny {
		t.Errorf("kill switch overridden: %+v", killed)
	}
}

// A rule for a listed server reaches none of the unlisted ones, and a rule
// for a tool none of another case.
func TestNamesDoNotCollide(t *testing.T) {
	p := loadPolicy(t, `version: 1
default: deny
mcp_servers: [{name: docs, url: "https://mcp.example.com/mcp"}]
rules:
  - {name: docs, actions: ["mcp.docs.*"], decision: allow}
  - {name: safe, actions: [mcp.other.safe], decision: allow}
  - {name: pings, actions: ["mcp.*.@ping"], decision: allow}
`)
	c := NewConnector(servers(p.MCPServers...))
	for _, tc := range []struct{ url, tool string }{
		{"https://docs.evil.test/mcp", "echo"},
		{"https://docs/mcp", "echo"},
		{"https://other/mcp", "SAFE"},
		{"https://mcp.example.com/mcp", "x.@ping"},
	} {
		as, err := c.Classify(post(t, tc.url, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+tc.tool+`"}}`, nil))
		if err != nil {
			t.Fatal(err)
		}
		if tc.tool == "x.@ping" {
			// docs allows every tool of docs; but no @ping rule reads it.
			if d := p.Decide(&as[0]); d.Rule != "docs" {
				t.Errorf("%s on %s: %+v", tc.tool, tc.url, d)
			}
			if plumbing(&as[0]) {
				t.Errorf("tool %s is plumbing", tc.tool)
			}
			continue
		}
		if d := Baseline(&as[0], p.Decide(&as[0])); d.Effect != rules.Deny {
			t.Errorf("%s on %s (%s): %s by %s", tc.tool, tc.url, as[0].Type, d.Effect, d.Rule)
		}
	}
}

func TestAlwaysDenied(t *testing.T) {
	p := loadPolicy(t, `version: 1
default: deny
rules:
  - {name: reads, actions: ["mcp.docs.read*"], decision: allow}
  - {name: no-etc, actions: [mcp.docs.read_file], when: 'params.path startsWith "/etc"', decision: deny}
  - {name: never-delete, actions: [mcp.docs.delete], decision: deny}
  - {name: shadow, actions: [mcp.docs.readme], decision: deny, mode: monitor}
  - {name: ask, actions: [mcp.docs.write], decision: require_approval}
`)
	for _, tc := range []struct {
		tool string
		want bool
	}{
		{"read_file", false}, // denied only for some arguments
		{"Read_File", true},  // another tool: names keep their case
		{"delete", true},
		{"readme", false}, // a shadow rule refuses nothing
		{"write", false},  // a person may approve it
		{"exec", true},    // the default denies and nothing allows
	} {
		if got := AlwaysDenied(p, "", "docs", tc.tool); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.tool, got, tc.want)
		}
	}
	if AlwaysDenied(p, rules.Monitor, "docs", "delete") {
		t.Error("monitor mode hides tools")
	}
	open := loadPolicy(t, "version: 1\ndefault: allow\n")
	if AlwaysDenied(open, "", "docs", "exec") {
		t.Error("default allow hides tools")
	}
}

func TestRefuseEach(t *testing.T) {
	c := NewConnector(nil)
	body := `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok"}},{"jsonrpc":"2.0","id":"two","method":"tools/call","params":{"name":"rm"}},{"jsonrpc":"2.0","method":"notifications/progress"},{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"x:y"}}]`
	r := post(t, "https://x.test/mcp", body, nil)
	actions, err := c.Classify(r)
	if err != nil {
		t.Fatal(err)
	}
	ds := []rules.Decision{{Effect: rules.Allow}, {Effect: rules.Deny, Rule: "no-rm", Reason: "rm is off limits"}, {Effect: rules.Allow}, {Effect: rules.Deny, Default: true, Reason: "no rule matched"}}
	status, h, out, ok := c.RefuseEach(r, actions, ds, "req1")
	if !ok || status != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%v %d %v", ok, status, h)
	}
	var answers []map[string]any
	if err := json.Unmarshal(out, &answers); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(answers) != 3 {
		t.Fatalf("want 3 answers (one per request): %s", out)
	}
	if e := answers[0]["error"].(map[string]any); e["code"].(float64) != CodeNotSent || answers[0]["id"].(float64) != 1 {
		t.Errorf("allowed element of a refused batch: %v", answers[0])
	}
	res := answers[1]["result"].(map[string]any)
	text := res["content"].([]any)[0].(map[string]any)["text"]
	if answers[1]["id"] != "two" || res["isError"] != true || text != "no-rm: rm is off limits" {
		t.Errorf("refused call: %v", answers[1])
	}
	e := answers[2]["error"].(map[string]any)
	data := e["data"].(map[string]any)
	if e["code"].(float64) != CodeRefused || !strings.Contains(e["message"].(string), "no rule matched") || data["request_id"] != "req1" {
		t.Errorf("refused read: %v", answers[2])
	}

	// Unclassifiable: a JSON-RPC error with status 400.
	bad := post(t, "https://x.test/mcp", `{"jsonrpc":`, nil)
	status, _, out, ok = c.RefuseEach(bad, []rules.Action{{Type: "tf.unclassified"}}, []rules.Decision{{Effect: rules.Deny, Reason: "tf could not classify this request"}}, "req2")
	var m map[string]any
	if !ok || status != 400 || json.Unmarshal(out, &m) != nil || m["error"].(map[string]any)["code"].(float64) != CodeParse || m["id"] != nil {
		t.Errorf("unclassified: %v %d %s", ok, status, out)
	}
}

// TestClassifyKeepsUnreadArguments checks that object and array arguments
// no rule reads stay as compact, validated JSON, that those a rule reads
// are decoded and decided on, and that either way nothing invalid passes.
func TestClassifyKeepsUnreadArguments(t *testing.T) {
	const pol = `version: 1
default: allow
mcp_servers: [{name: docs, url: "https://mcp.example.com/mcp"}]
rules:
  - {name: etc, actions: [mcp.docs.write], when: 'params.path startsWith "/etc"', decision: deny}
  - {name: evil, actions: [mcp.docs.write], when: 'any(params.flags ?? [], {# == "evil"})', decision: deny}
`
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(pol)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	c := NewConnector(func() []rules.MCPServer { return p.MCPServers }).DecodeParams(p.ParamsRead)
	classify := func(args string) (rules.Action, error) {
		t.Helper()
		acts, err := c.Classify(post(t, "https://mcp.example.com/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":`+args+`}}`, nil))
		if err != nil {
			return rules.Action{}, err
		}
		return acts[0], nil
	}
	a, err := classify(`{"path":"/home/a","options": [ {"k" : 1}, {"s":"x y"} ],"meta":{"m":null},"n":3,"flags":["ok"]}`)
	if err != nil {
		t.Fatal(err)
	}
	if raw, ok := a.Params["options"].(json.RawMessage); !ok || string(raw) != `[{"k":1},{"s":"x y"}]` {
		t.Fatalf("options = %#v, want compact raw JSON", a.Params["options"])
	}
	if raw, ok := a.Params["meta"].(json.RawMessage); !ok || string(raw) != `{"m":null}` {
		t.Fatalf("meta = %#v", a.Params["meta"])
	}
	if a.Params["path"] != "/home/a" || a.Params["n"] != 3.0 || !reflect.DeepEqual(a.Params["flags"], []any{"ok"}) {
		t.Fatalf("read params not decoded: %#v", a.Params)
	}
	d := &rules.Decider{Policy: p}
	if dec := d.Decide(&a); dec.Effect != rules.Allow {
		t.Fatalf("decision %+v", dec)
	}
	if a, err = classify(`{"path":"/x","flags":["evil"],"options":[1]}`); err != nil {
		t.Fatal(err)
	}
	if dec := d.Decide(&a); dec.Effect != rules.Deny || dec.Rule != "evil" {
		t.Fatalf("a rule on a read array: %+v", dec)
	}
	// A kept value is still checked whole.
	for _, bad := range []string{`{"options":[{"a":1,"a":2}]}`, `{"options":["\xff"]}`, `{"options":[1,]}`, `{"options":{"x":01}}`} {
		if _, err := classify(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	// Without DecodeParams, everything is decoded.
	full := NewConnector(func() []rules.MCPServer { return p.MCPServers })
	acts, err := full.Classify(post(t, "https://mcp.example.com/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{"options":[{"k":1}]}}}`, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(acts[0].Params["options"], []any{map[string]any{"k": 1.0}}) {
		t.Fatalf("options = %#v, want decoded", acts[0].Params["options"])
	}
}

func utf16le(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

// A gzip body is classified as what it decodes to.
func TestClassifyDecodesGzip(t *testing.T) {
	c := NewConnector(nil)
	r := post(t, "https://api.example.org/rpc", gzipped(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete"}}`), http.Header{"Content-Encoding": {"gzip"}})
	got, err := c.Classify(r)
	if err != nil || len(got) != 1 || got[0].Type != "mcp.(api.example.org).delete" {
		t.Fatalf("%+v %v", got, err)
	}
}

// GET and DELETE carry no body: one with a body is refused, not forwarded
// unread.
func TestClassifyRefusesBodiesOfGetAndDelete(t *testing.T) {
	c := NewConnector(servers(rules.MCPServer{Name: "docs", URL: "https://mcp.example.com/mcp"}))
	for _, m := range []string{"GET", "DELETE"} {
		r := post(t, "https://mcp.example.com/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete"}}`, nil)
		r.HTTP.Method = m
		if _, err := c.Classify(r); err == nil || !strings.Contains(err.Error(), "with a body") {
			t.Errorf("%s: %v", m, err)
		}
		r.Body = nil
		if _, err := c.Classify(r); err != nil {
			t.Errorf("%s without a body: %v", m, err)
		}
	}
}
