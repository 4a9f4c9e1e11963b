package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// legacyGateway runs server-everything in SSE mode behind a gateway
// whose policy lists its stream, with extra rules.
func legacyGateway(t *testing.T, extra string, answerTimeout time.Duration) (*gateway.Gateway, string) {
	t.Helper()
	addr := startEverythingMode(t, "sse")
	home := t.TempDir()
	t.Setenv("TF_HOME", home)
	policy := strings.Replace(nodePolicy, "http://everything.test/mcp", "http://everything.test/sse", 1) + extra
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(policy)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Start(gateway.Config{Name: "ts-sse", Home: home, Policy: p, MCPAnswerTimeout: answerTimeout,
		Upstreams: map[string]string{"everything.test": addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, home
}

// legacyRecords returns the decision records of the log in home in order,
// and the outcome records by request id (all of them: one is expected).
func legacyRecords(t *testing.T, home string) (decisions []*audit.Record, outcomes map[string][]*audit.Record) {
	t.Helper()
	outcomes = map[string][]*audit.Record{}
	if err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{}, func(r *audit.Record) error {
		switch r.Kind {
		case audit.KindDecision:
			decisions = append(decisions, r)
		case audit.KindOutcome:
			outcomes[r.RequestID] = append(outcomes[r.RequestID], r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return decisions, outcomes
}

// outcomeOf returns the one outcome record of decision d.
func outcomeOf(t *testing.T, d *audit.Record, outcomes map[string][]*audit.Record) *audit.Record {
	t.Helper()
	rs := outcomes[d.RequestID]
	if len(rs) != 1 {
		t.Fatalf("%s (%s): %d outcome records", d.Action.Type, d.RequestID, len(rs))
	}
	return rs[0]
}

func isError(o *audit.Record) string {
	if o.MCP == nil || o.MCP.IsError == nil {
		return "absent"
	}
	if *o.MCP.IsError {
		return "true"
	}
	return "false"
}

// Issue 17: over the legacy HTTP+SSE transport, the outcome of a post
// waits for its answer on the stream and records what the Streamable
// HTTP path records: the session, the JSON-RPC id and the tool result's
// isError; a JSON-RPC error, an answer later than the bound and a stream
// that ends first are said in the record's error.
func TestLegacySSEOutcomes(t *testing.T) {
	g, home := legacyGateway(t, "  - {name: reads, actions: [mcp.everything.@resources/read], decision: allow}\n", 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var r struct {
		Bad struct {
			Text    string `json:"text"`
			IsError bool   `json:"isError"`
		} `json:"bad"`
		Read string `json:"read"`
		Slow struct {
			Text    string `json:"text"`
			IsError bool   `json:"isError"`
		} `json:"slow"`
		Abandoned string `json:"abandoned"`
	}
	out := runClientRaw(t, ctx, os.Environ(), "sse-outcomes", "http://everything.test/sse", g.ProxyURL())
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if !r.Bad.IsError || !strings.Contains(r.Read, "not found") || r.Slow.IsError ||
		!strings.Contains(r.Slow.Text, "completed") || !strings.Contains(r.Abandoned, "timed out") {
		t.Fatalf("the client saw %s", out)
	}
	g.Close()
	decisions, outcomes := legacyRecords(t, home)
	var echo, read *audit.Record
	var long []*audit.Record
	session := ""
	for _, d := range decisions {
		switch d.Action.Type {
		case "mcp.everything.echo":
			echo = d
		case "mcp.everything.@resources/read":
			read = d
		case "mcp.everything.trigger-long-running-operation":
			long = append(long, d)
		case "mcp.everything.@initialize":
			session = d.MCP.Session
		}
	}
	if echo == nil || read == nil || len(long) != 2 || session == "" {
		t.Fatalf("decisions: echo %v, read %v, long %d, session %q", echo, read, len(long), session)
	}
	for _, tc := range []struct {
		d       *audit.Record
		isError string
		err     string
	}{
		{echo, "true", ""},
		{read, "absent", "the server answered with an error: "},
		{long[0], "absent", mcp.NoAnswerTimeout + "2s"},
		{long[1], "absent", mcp.NoAnswerStreamEnded},
	} {
		o := outcomeOf(t, tc.d, outcomes)
		if o.Status != http.StatusAccepted || isError(o) != tc.isError || o.MCP.Session != session ||
			o.MCP.ID == "" || o.MCP.ID != tc.d.MCP.ID || !strings.HasPrefix(o.Error, tc.err) || (tc.err == "") != (o.Error == "") {
			t.Errorf("%s: outcome %d, mcp %+v, is_error %s, error %q; want is_error %s, error %q",
				tc.d.Action.Type, o.Status, o.MCP, isError(o), o.Error, tc.isError, tc.err)
		}
	}
	if o := outcomeOf(t, read, outcomes); !strings.Contains(o.Error, "-32002") && !strings.Contains(o.Error, "-32602") {
		t.Errorf("the JSON-RPC error is not in the record: %q", o.Error)
	}
	// The slow call waited for its answer until the bound, no longer.
	if o := outcomeOf(t, long[0], outcomes); o.DurationMS < 2000 || o.DurationMS > 3500 {
		t.Errorf("the slow call's outcome took %d ms", o.DurationMS)
	}
}

// sseClient is a client of the legacy transport that sends what the
// agent likes, through the gateway's proxy.
type sseClient struct {
	t        *testing.T
	http     *http.Client
	endpoint *url.URL
	events   chan mcp.Event
}

func dialSSE(t *testing.T, ctx context.Context, proxy, stream string) *sseClient {
	t.Helper()
	pu, _ := url.Parse(proxy)
	c := &sseClient{t: t, http: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}, events: make(chan mcp.Event, 64)}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stream, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", stream, res.Status)
	}
	t.Cleanup(func() { res.Body.Close() })
	go func() {
		defer close(c.events)
		sc := mcp.NewSSEScanner(bufio.NewReader(res.Body), 0)
		for {
			raw, err := sc.Next()
			if err != nil {
				return
			}
			c.events <- mcp.ParseEvent(raw)
		}
	}()
	ev := c.next()
	if ev.Event != "endpoint" {
		t.Fatalf("first event %+v", ev)
	}
	base, _ := url.Parse(stream)
	ref, _ := url.Parse(string(ev.Data))
	c.endpoint = base.ResolveReference(ref)
	return c
}

func (c *sseClient) next() mcp.Event {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		c.t.Fatal("no event")
	}
	return mcp.Event{}
}

// post sends body to the endpoint, changed by edit, and returns the
// status and body of the answer.
func (c *sseClient) post(body string, edit func(u *url.URL)) (int, string) {
	c.t.Helper()
	u := *c.endpoint
	if edit != nil {
		edit(&u)
	}
	res, err := c.http.Post(u.String(), "application/json", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// answer waits for the answer to id on the stream.
func (c *sseClient) answer(id string) map[string]json.RawMessage {
	c.t.Helper()
	for {
		ev := c.next()
		var m map[string]json.RawMessage
		if json.Unmarshal(ev.Data, &m) == nil && string(m["id"]) == id && m["method"] == nil {
			return m
		}
	}
}

// The agent is the adversary: it chooses the ids and the URL of its
// posts. A request may not reuse the id of one awaiting its answer in the
// session (whatever spelling of the endpoint it is posted to), nor name
// the session twice: refused, so that no answer can be recorded as
// another request's outcome.
func TestLegacySSEAgentCannotBorrowAnswers(t *testing.T) {
	g, home := legacyGateway(t, "", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialSSE(t, ctx, g.ProxyURL(), "http://everything.test/sse")
	session := c.endpoint.Query().Get("sessionId")
	if st, _ := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}`, nil); st != http.StatusAccepted {
		t.Fatalf("initialize: %d", st)
	}
	c.answer("0")
	c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	slow := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":2,"steps":1}}}`
	if st, body := c.post(slow, nil); st != http.StatusAccepted {
		t.Fatalf("slow call: %d %s", st, body)
	}
	echo := func(id string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{"message":"mine"}}}`
	}
	for _, tc := range []struct {
		name, body, id string
		edit           func(u *url.URL)
	}{
		{"same id", echo("1"), "1", nil},
		{"same id as a float", echo("1.0"), "1.0", nil},
		{"same id in a batch", "[" + echo("5") + "," + echo("1") + "]", "null", nil},
		{"another spelling of the endpoint", echo("1"), "1", func(u *url.URL) {
			u.Path = strings.ToUpper(u.Path) + "/"
			u.RawQuery = "x=1&" + u.RawQuery
		}},
	} {
		st, body := c.post(tc.body, tc.edit)
		if st != http.StatusAccepted {
			t.Fatalf("%s: %d %s", tc.name, st, body)
		}
		// Refused on the stream, where the client reads its answers.
		m := c.answer(tc.id)
		if !strings.Contains(string(m["error"]), "already awaits its answer") {
			t.Errorf("%s: answered %s", tc.name, m["error"])
		}
	}
	// The session named twice: not the session's, refused in the answer
	// to the post.
	st, body := c.post(echo("9"), func(u *url.URL) { u.RawQuery += "&sessionId=" + session })
	if st == http.StatusAccepted || !strings.Contains(body, "more than once") {
		t.Errorf("session named twice: %d %s", st, body)
	}
	// The slow call's own answer comes, and is its outcome.
	res := c.answer("1")
	if !strings.Contains(string(res["result"]), "completed") {
		t.Fatalf("the slow call's answer: %s", res["result"])
	}
	// A second call with its id is fine once it is answered.
	if st, _ := c.post(echo("1"), nil); st != http.StatusAccepted {
		t.Fatal(st)
	}
	if m := c.answer("1"); !strings.Contains(string(m["result"]), "Echo: mine") {
		t.Fatalf("echo: %s", m["result"])
	}
	g.Close()
	decisions, outcomes := legacyRecords(t, home)
	var refused []string
	var calls []*audit.Record
	for _, d := range decisions {
		switch d.Action.Type {
		case "tf.unclassified":
			refused = append(refused, d.Decision.Reason)
		case "mcp.everything.trigger-long-running-operation", "mcp.everything.echo":
			calls = append(calls, d)
		}
	}
	if len(refused) != 5 || !strings.Contains(refused[0], "already awaits") || !strings.Contains(refused[4], "more than once") {
		t.Errorf("refused: %q", refused)
	}
	if len(calls) != 2 {
		t.Fatalf("calls decided: %d", len(calls))
	}
	for i, want := range []string{"false", "false"} {
		o := outcomeOf(t, calls[i], outcomes)
		if isError(o) != want || o.Error != "" || o.MCP.ID != "1" || o.MCP.Session != session {
			t.Errorf("%s: %+v %q", calls[i].Action.Type, o.MCP, o.Error)
		}
	}
	if o := outcomeOf(t, calls[0], outcomes); o.DurationMS < 1500 {
		t.Errorf("the slow call's outcome took %d ms: recorded before its answer", o.DurationMS)
	}
}

// A server that answers a post of the legacy transport in the POST's own
// response (as Streamable HTTP does) or refuses it: the answers will not
// come on the stream, so the outcome is recorded at once, from the
// response. No SDK server does this; a small one stands in.
func TestLegacySSEAnsweredOnThePost(t *testing.T) {
	streamDone := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/sse":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: endpoint\ndata: /message?sessionId=s1\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-streamDone:
			}
		case r.Method == http.MethodPost && r.URL.Path == "/message":
			var m struct {
				ID     json.RawMessage `json:"id"`
				Params struct {
					Name string `json:"name"`
				} `json:"params"`
			}
			json.NewDecoder(r.Body).Decode(&m)
			if m.Params.Name == "gone" {
				http.Error(w, "no such session", http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"content":[{"type":"text","text":"failed"}],"isError":true}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer up.Close()
	defer close(streamDone)
	home := t.TempDir()
	t.Setenv("TF_HOME", home)
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(`version: 1
default: deny
mcp_servers:
  - {name: odd, url: "http://odd.test/sse"}
rules:
  - {name: calls, actions: ["mcp.odd.*"], decision: allow}
`)}}, "p")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.Start(gateway.Config{Name: "odd", Home: home, Policy: p,
		Upstreams: map[string]string{"odd.test": strings.TrimPrefix(up.URL, "http://")}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialSSE(t, ctx, g.ProxyURL(), "http://odd.test/sse")
	call := func(id, name string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	if st, body := c.post(call("1", "x"), nil); st != http.StatusOK || !strings.Contains(body, `"isError":true`) {
		t.Fatalf("answered on the post: %d %s", st, body)
	}
	if st, _ := c.post(call("2", "gone"), nil); st != http.StatusNotFound {
		t.Fatalf("refused post: %d", st)
	}
	// Both ids are free again: nothing awaits them on the stream.
	if st, _ := c.post(call("1", "x"), nil); st != http.StatusOK {
		t.Fatalf("id reused after its answer: %d", st)
	}
	// The records are written before the stream ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		decisions, outcomes := legacyRecords(t, home)
		var calls []*audit.Record
		for _, d := range decisions {
			if d.Action.Type == "mcp.odd.x" || d.Action.Type == "mcp.odd.gone" {
				calls = append(calls, d)
			}
		}
		if len(calls) == 3 && len(outcomes[calls[0].RequestID]) == 1 && len(outcomes[calls[1].RequestID]) == 1 && len(outcomes[calls[2].RequestID]) == 1 {
			for i, want := range []struct {
				status  int
				isError string
			}{{200, "true"}, {404, "absent"}, {200, "true"}} {
				o := outcomeOf(t, calls[i], outcomes)
				if o.Status != want.status || isError(o) != want.isError || strings.Contains(o.Error, "no answer") || o.MCP.Session != "s1" {
					t.Errorf("%s: %d %+v %q", calls[i].Action.Type, o.Status, o.MCP, o.Error)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			for _, d := range decisions {
				t.Logf("decision %s %s %s", d.RequestID, d.Action.Type, d.Decision.Effect)
			}
			for k, o := range outcomes {
				t.Logf("outcome %s status %d err %q", k, o[0].Status, o[0].Error)
			}
			cancel()
			g.Close()
			_, after := legacyRecords(t, home)
			for k, o := range after {
				t.Logf("after close: outcome %s status %d err %q", k, o[0].Status, o[0].Error)
			}
			t.Fatalf("outcomes not recorded while the stream is open: %d calls, %v", len(calls), outcomes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
