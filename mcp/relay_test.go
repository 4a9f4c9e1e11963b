package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// fakeGovernor denies calls of "delete", holds calls of "write" until
// approve is closed, and allows the rest.
type fakeGovernor struct {
	mu       sync.Mutex
	outcomes []Outcome
	classErr []error
	approve  chan bool
	n        int
}

func (g *fakeGovernor) Decide(ctx context.Context, actions []rules.Action, err error) Ruling {
	g.mu.Lock()
	g.n++
	id := fmt.Sprint("r", g.n)
	if err != nil {
		g.classErr = append(g.classErr, err)
	}
	g.mu.Unlock()
	r := Ruling{RequestID: id, Done: func(o Outcome) {
		g.mu.Lock()
		g.outcomes = append(g.outcomes, o)
		g.mu.Unlock()
	}}
	if err != nil {
		r.Decisions = []rules.Decision{{Effect: rules.Deny, Reason: "tf could not classify this request, so it is refused: " + err.Error()}}
		return r
	}
	for _, a := range actions {
		d := rules.Decision{Effect: rules.Allow}
		switch a.Resource["tool"] {
		case "delete":
			d = rules.Decision{Effect: rules.Deny, Rule: "no-delete", Reason: "deleting is off limits"}
		case "write":
			d = rules.Decision{Effect: rules.RequireApproval, Rule: "ask", Reason: "writes need a person"}
		}
		r.Decisions = append(r.Decisions, d)
	}
	for _, d := range r.Decisions {
		if d.Effect == rules.RequireApproval {
			r.Hold = func(ctx context.Context) ([]rules.Decision, context.Context) {
				out := append([]rules.Decision(nil), r.Decisions...)
				ok := false
				select {
				case ok = <-g.approve:
				case <-ctx.Done():
				}
				for i := range out {
					if out[i].Effect == rules.RequireApproval {
						out[i].Effect = rules.Deny
						if ok {
							out[i].Effect = rules.Allow
						}
					}
				}
				return out, nil
			}
		}
	}
	return r
}

func (g *fakeGovernor) HideItems() Hider { return hideDelete }

// fakeServer answers tools/list with toolList's tools, tools/call with the
// tool's name, and records what reached it.
func fakeServer(in io.Reader, out io.WriteCloser, got chan<- string) {
	defer out.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		line := sc.Text()
		got <- line
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.ID == nil {
			continue
		}
		switch m.Method {
		case "tools/list":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"read"},{"name":"delete"}],"nextCursor":"c2"}}`+"\n", m.ID)
		case "tools/call":
			fmt.Fprintf(out, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`+"\n")
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"called %s"}]}}`+"\n", m.ID, m.Params.Name)
		default:
			fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":{}}`+"\n", m.ID)
		}
	}
}

type relayFixture struct {
	gov      *fakeGovernor
	toServer chan string
	client   io.WriteCloser
	answers  <-chan string
	done     chan error
}

func startRelay(t *testing.T, max int) *relayFixture {
	t.Helper()
	fg := &fakeGovernor{approve: make(chan bool, 1)}
	return startRelayGov(t, max, fg, fg)
}

// startRelayGov starts a relay governed by gov, which decides through fg.
func startRelayGov(t *testing.T, max int, fg *fakeGovernor, gov Governor) *relayFixture {
	t.Helper()
	f := &relayFixture{gov: fg, toServer: make(chan string, 64), done: make(chan error, 1)}
	cin, cw := io.Pipe()
	cr, cout := io.Pipe()
	sin, sw := io.Pipe()
	sr, sout := io.Pipe()
	go fakeServer(sin, sout, f.toServer)
	f.client, f.answers = cw, readLines(cr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	rl := &Relay{Server: "docs", Governor: gov, ClientIn: cin, ClientOut: cout, ServerIn: sw, ServerOut: sr, MaxMessage: max}
	go func() {
		f.done <- rl.Run(ctx)
		cout.Close()
	}()
	t.Cleanup(func() {
		cw.Close()
		cancel()
		<-f.done
	})
	return f
}

func (f *relayFixture) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(f.client, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (f *relayFixture) answer(t *testing.T) map[string]any {
	t.Helper()
	select {
	case line, ok := <-f.answers:
		if !ok {
			t.Fatal("the relay closed the client's side")
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	return nil
}

func TestRelay(t *testing.T) {
	f := startRelay(t, 1024)

	// Allowed: forwarded, the progress notification first, then the result.
	f.send(t, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`)
	if m := f.answer(t); m["method"] != "notifications/progress" {
		t.Fatalf("want the progress notification first: %v", m)
	}
	if m := f.answer(t); m["id"].(float64) != 1 || !strings.Contains(fmt.Sprint(m["result"]), "called read") {
		t.Fatalf("allowed call: %v", m)
	}

	// Denied: answered by tf, never sent to the server.
	f.send(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete","arguments":{"path":"/"}}}`)
	m := f.answer(t)
	res := m["result"].(map[string]any)
	if m["id"].(float64) != 2 || res["isError"] != true || !strings.Contains(fmt.Sprint(res["content"]), "no-delete: deleting is off limits") {
		t.Fatalf("denied call: %v", m)
	}

	// tools/list: the always-denied tool is not offered.
	f.send(t, `{"jsonrpc":"2.0","id":"l","method":"tools/list"}`)
	m = f.answer(t)
	if fmt.Sprint(m["result"]) != "map[nextCursor:c2 tools:[map[name:read]]]" {
		t.Fatalf("tool list: %v", m)
	}

	// Held: the lines after it go on; it is sent once approved.
	f.send(t, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write"}}`)
	f.send(t, `{"jsonrpc":"2.0","id":4,"method":"ping"}`)
	if m = f.answer(t); m["id"].(float64) != 4 {
		t.Fatalf("a held call held up the next line: %v", m)
	}
	f.gov.approve <- true
	f.answer(t) // progress
	if m = f.answer(t); m["id"].(float64) != 3 || !strings.Contains(fmt.Sprint(m["result"]), "called write") {
		t.Fatalf("approved call: %v", m)
	}

	// A batch with one denied call is refused whole.
	f.send(t, `[{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read"}},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"delete"}}]`)
	line := <-f.answers
	var batch []map[string]any
	if err := json.Unmarshal([]byte(line), &batch); err != nil || len(batch) != 2 {
		t.Fatalf("batch answer: %s", line)
	}
	if batch[0]["error"].(map[string]any)["code"].(float64) != CodeNotSent || batch[1]["result"].(map[string]any)["isError"] != true {
		t.Fatalf("batch answers: %s", line)
	}

	// Malformed, not JSON-RPC, oversized: refused with a JSON-RPC error.
	for _, tc := range []struct{ line, want string }{
		{`{"jsonrpc":"2.0","id":7,"method":`, "unexpected end"},
		{`{"hello":"world"}`, "not a JSON-RPC 2.0 message"},
		{`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"read","arguments":{"x":"` + strings.Repeat("a", 2000) + `"}}}`, "larger than 1024 bytes"},
	} {
		f.send(t, tc.line)
		m := f.answer(t)
		e, ok := m["error"].(map[string]any)
		if !ok || !strings.Contains(e["message"].(string), tc.want) || e["data"].(map[string]any)["request_id"] == "" {
			t.Fatalf("%.40s: %v", tc.line, m)
		}
	}

	// What reached the server: never a refused message.
	f.client.Close()
	var sent []string
	for {
		select {
		case l := <-f.toServer:
			sent = append(sent, l)
			continue
		case err := <-f.done:
			f.done <- err
		case <-time.After(10 * time.Second):
			t.Fatal("the relay did not end when the client closed")
		}
		break
	}
	// The relay may end before the select above took every line.
	for len(f.toServer) > 0 {
		sent = append(sent, <-f.toServer)
	}
	all := strings.Join(sent, "\n")
	if len(sent) != 4 || strings.Contains(all, "delete") || strings.Contains(all, `"id":5`) || strings.Contains(all, "hello") {
		t.Fatalf("sent to the server:\n%s", all)
	}
	f.gov.mu.Lock()
	defer f.gov.mu.Unlock()
	if len(f.gov.classErr) != 3 {
		t.Errorf("unclassified lines recorded: %v", f.gov.classErr)
	}
	refused, ok := 0, 0
	for _, o := range f.gov.outcomes {
		if o.Refused {
			refused++
		} else if o.Err == nil {
			ok++
		}
	}
	if refused != 5 || ok != 4 {
		t.Errorf("outcomes: %d refused, %d answered: %+v", refused, ok, f.gov.outcomes)
	}
}

// cutGovernor allows everything; every line's cut context is the current
// one of cuts, as the gateway shares one among a connector's lines.
type cutGovernor struct {
	mu       sync.Mutex
	cut      context.Context
	outcomes []Outcome
}

func (g *cutGovernor) Decide(_ context.Context, actions []rules.Action, err error) Ruling {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := Ruling{RequestID: "r", Cut: g.cut, Done: func(o Outcome) {
		g.mu.Lock()
		g.outcomes = append(g.outcomes, o)
		g.mu.Unlock()
	}}
	for range actions {
		r.Decisions = append(r.Decisions, rules.Decision{Effect: rules.Allow})
	}
	return r
}

func (g *cutGovernor) HideItems() Hider { return nil }

// TestRelayKillSwitchCutsPendingLines checks that when the kill switch ends
// the shared cut context, every forwarded line still awaiting its answer is
// answered with a refusal and recorded, and that lines decided afterwards
// under a new context go through.
func TestRelayKillSwitchCutsPendingLines(t *testing.T) {
	cut, kill := context.WithCancelCause(context.Background())
	gov := &cutGovernor{cut: cut}
	cin, cw := io.Pipe()
	cr, cout := io.Pipe()
	sin, sw := io.Pipe()
	sr, sout := io.Pipe()
	toServer := make(chan string, 16)
	go func() { // a server that never answers
		defer sout.Close()
		sc := bufio.NewScanner(sin)
		for sc.Scan() {
			toServer <- sc.Text()
		}
	}()
	answers := readLines(cr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	rl := &Relay{Server: "docs", Governor: gov, ClientIn: cin, ClientOut: cout, ServerIn: sw, ServerOut: sr}
	go func() { done <- rl.Run(ctx); cout.Close() }()
	defer func() { cw.Close(); <-done }()

	recv := func(what string) string {
		t.Helper()
		select {
		case s := <-toServer:
			return s
		case <-ctx.Done():
			t.Fatalf("%s never reached the server", what)
		}
		return ""
	}
	for id := 1; id <= 2; id++ {
		fmt.Fprintf(cw, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"slow","arguments":{}}}`+"\n", id)
		recv(fmt.Sprint("call ", id))
	}
	kill(fmt.Errorf("incident 7"))
	ids := map[float64]bool{}
	for range 2 {
		select {
		case line := <-answers:
			var m struct {
				ID     float64 `json:"id"`
				Result struct {
					IsError bool `json:"isError"`
					Content []struct {
						Text string `json:"text"`
					} `json:"content"`
				} `json:"result"`
				Error *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			if !strings.Contains(line, "kill switch") || !strings.Contains(line, "incident 7") {
				t.Fatalf("answer does not name the kill switch and its reason: %s", line)
			}
			ids[m.ID] = true
		case <-ctx.Done():
			t.Fatal("the pending lines were not cut off")
		}
	}
	if !ids[1] || !ids[2] {
		t.Fatalf("answered ids %v, want 1 and 2", ids)
	}
	// Outcomes are recorded off the relay's path: wait for both.
	var n int
	for {
		gov.mu.Lock()
		n = len(gov.outcomes)
		gov.mu.Unlock()
		if n >= 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	gov.mu.Lock()
	for _, o := range gov.outcomes {
		if o.Err == nil || !strings.Contains(o.Err.Error(), "kill switch") {
			t.Errorf("outcome %+v does not record the cut", o)
		}
	}
	gov.cut = context.Background() // the switch is off again
	gov.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d outcomes recorded, want 2", n)
	}
	fmt.Fprintf(cw, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"slow","arguments":{}}}`+"\n")
	if got := recv("call 3"); !strings.Contains(got, `"id":3`) {
		t.Fatalf("server got %s", got)
	}
}

// batchGovernor is a fakeGovernor that also decides lines together, and
// notes the sizes of the groups it was given.
type batchGovernor struct {
	*fakeGovernor
	groups []int
}

func (g *batchGovernor) DecideLines(ctx context.Context, lines []Line) []Ruling {
	g.mu.Lock()
	g.groups = append(g.groups, len(lines))
	g.mu.Unlock()
	out := make([]Ruling, len(lines))
	for i, l := range lines {
		out[i] = g.Decide(ctx, l.Actions, l.Err)
	}
	return out
}

// TestRelayBurst writes several lines at once: they are decided as a
// group, and each is still forwarded, refused or answered as on its own,
// in order.
func TestRelayBurst(t *testing.T) {
	fg := &fakeGovernor{approve: make(chan bool, 1)}
	bg := &batchGovernor{fakeGovernor: fg}
	f := startRelayGov(t, 1024, fg, bg)
	burst := strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete"}}`,
		`{"jsonrpc":"2.0","id":3,"method":`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":4,"method":"ping"}`,
	}, "\n") + "\n"
	if _, err := io.WriteString(f.client, burst); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for range 5 { // read's progress and result, delete's refusal, the parse error, ping's result
		m := f.answer(t)
		id := fmt.Sprint(m["id"])
		switch {
		case m["method"] == "notifications/progress":
			id = "progress"
		case m["error"] != nil:
			got[id] = fmt.Sprint(m["error"].(map[string]any)["message"])
			continue
		}
		got[id] = fmt.Sprint(m["result"])
	}
	if !strings.Contains(got["1"], "called read") || !strings.Contains(got["2"], "deleting is off limits") ||
		!strings.Contains(got["<nil>"], "unexpected end") || got["4"] != "map[]" || got["progress"] == "" {
		t.Fatalf("answers: %v", got)
	}
	var sent []string
	for range 3 {
		select {
		case l := <-f.toServer:
			sent = append(sent, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("the server got only %q", sent)
		}
	}
	if !strings.Contains(sent[0], `"id":1`) || !strings.Contains(sent[1], "notifications/initialized") || !strings.Contains(sent[2], `"id":4`) {
		t.Fatalf("the server got %q, want read, the notification and ping, in order", sent)
	}
	bg.mu.Lock()
	defer bg.mu.Unlock()
	if len(bg.groups) == 0 {
		t.Fatal("the burst was not decided as a group")
	}
	if fg.n != 5 {
		t.Fatalf("%d lines decided, want 5", fg.n)
	}
}
