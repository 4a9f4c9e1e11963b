package mcp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

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
			want: []rules.Action{{Connector: "mcp", Type: "mcp.docs.search",
				Resource: map[string]string{"server": "docs", "tool": "Search", "method": "tools/call"},
				Params:   map[string]any{"q": "x", "n": 2.0, "deep": map[string]any{"a": []any{1.0, "b", nil, true}}}}},
		},
		{
			name: "an unlisted host is named after itself",
			url:  "https://other.example.org/x",
			body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"t"}}`,
			want: []rules.Action{{Connector: "mcp", Type: "mcp.other.example.org.t",
				Resource: map[string]string{"server": "other.example.org", "tool": "t", "method": "tools/call"}, Params: map[string]any{}}},
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
	strict := loadPolicy(t, "version: 1\ndefault: deny\nrules:\n  - {name: no-lists, actions: [mcp.docs.@resources/list], decision: deny, reason: no}\n")
	act := func(typ string) *rules.Action {
		return &rules.Action{Connector: "mcp", Type: typ, Resource: map[string]string{"server": "docs"}}
	}
	for _, tc := range []struct {
		typ  string
		want rules.Effect
		rule string
	}{
		{"mcp.docs.@initialize", rules.Allow, BaselineRule},
		{"mcp.docs.@ping", rules.Allow, BaselineRule},
		{"mcp.docs.@notifications/initialized", rules.Allow, BaselineRule},
		{"mcp.docs.@tools/list", rules.Allow, BaselineRule},
		{"mcp.docs.@resources/templates/list", rules.Allow, BaselineRule},
		{"mcp.docs.@resources/list", rules.Deny, "no-lists"}, // a rule overrides the baseline
		{"mcp.docs.@resources/read", rules.Deny, ""},
		{"mcp.docs.search", rules.Deny, ""},
	} {
		a := act(tc.typ)
		d := Baseline(a, strict.Decide(a))
		if d.Effect != tc.want || d.Rule != tc.rule {
			t.Errorf("%s: %s by %q, want %s by %q", tc.typ, d.Effect, d.Rule, tc.want, tc.rule)
		}
	}
	// Monitor mode: plumbing is not reported as "would deny".
	mon := &rules.Decider{Policy: strict, Mode: rules.Monitor}
	a := act("mcp.docs.@ping")
	if d := Baseline(a, mon.Decide(a)); d.Monitor || d.Would != "" || d.Rule != BaselineRule {
		t.Errorf("monitor: %+v", d)
	}
	a = act("mcp.docs.search")
	if d := Baseline(a, mon.Decide(a)); !d.Monitor || d.Would != rules.Deny {
		t.Errorf("monitor call: %+v", d)
	}
	// The kill switch is never overridden.
	killed := Baseline(act("mcp.docs.@ping"), rules.Decision{Effect: rules.Deny, KillSwitch: true})
	if killed.Effect != rules.Deny {
		t.Errorf("kill switch overridden: %+v", killed)
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
		{"Read_File", false},
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
