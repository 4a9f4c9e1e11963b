package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/keyring"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// mcpConnector is the MCP sniffer of the default registry: it names
// servers after the policy in force at each request and the servers
// registered in the config file.
func (g *Gateway) mcpConnector() *mcp.Connector {
	return mcp.NewConnector(g.mcpServers.servers).
		DecodeParams(g.paramsRead)
}

// mcpVerdict adds to the verdict of an allowed MCP request what reads
// its answers: the answers to the list requests it holds (tools,
// resources, resource templates, prompts) lose the items the policy p
// (the revision that decided) refuses whatever their arguments, and so do
// lists in the server's GET stream (replays with Last-Event-ID included);
// the isError of tool results goes to the outcome record out. The request
// goes without Accept-Encoding, so that the answer can be read.
func (g *Gateway) mcpVerdict(v *httpproxy.Verdict, req *connectors.Request, actions []rules.Action, p *rules.Policy, out *outcome) {
	if len(actions) == 0 || actions[0].Connector != "mcp" {
		return
	}
	server := actions[0].Resource["server"]
	var hide mcp.Hider
	if p.MCPFilterTools {
		hide = mcp.PolicyHider(p, g.Mode(), server)
	}
	var endpoint atomic.Pointer[url.URL]
	a := mcp.Answers{Hide: hide, OnResult: out.isError, ServerRequest: g.serverRequests(req, actions, endpoint.Load), Pin: g.pinner(p, server),
		Inspect: g.inspector(p, server, actions[0].Request, out.session())}
	switch req.HTTP.Method {
	case http.MethodGet:
		a.Shape = true
		g.legacyStream(&a, req, server, &endpoint)
	case http.MethodPost:
		if (hide != nil || a.Pin != nil) && listing(actions) || calling(actions) {
			lists, calls := mcp.ActionCalls(actions, out.ids)
			a.Calls = calls
			if hide != nil || a.Pin != nil {
				a.Lists = lists
			}
		}
	default:
		return
	}
	if v.ModifyResponse = a.Hook(); v.ModifyResponse == nil {
		return
	}
	prepare := v.Prepare
	v.Prepare = func(out *http.Request) {
		out.Header.Del("Accept-Encoding")
		if prepare != nil {
			prepare(out)
		}
	}
}

// serverRequests returns the decider of the requests the server sends the
// client in the answer to req (sampling, elicitation, roots): each is
// decided and recorded as mcp.<server>.@<method> from the server; a
// refused one is answered to the server with a JSON-RPC error by a POST
// of tf's own (the session's headers and credentials), and the client
// never sees it. A hold waits in the stream, as the server does.
func (g *Gateway) serverRequests(req *connectors.Request, actions []rules.Action, endpoint func() *url.URL) func(*mcp.Message) bool {
	server := actions[0].Resource["server"]
	session := req.HTTP.Header.Get("Mcp-Session-Id")
	scheme, host := req.Scheme, req.HTTP.URL.Host
	if host == "" {
		host = req.HTTP.Host
	}
	if scheme == "" {
		scheme = "http"
	}
	reqInfo := rules.Request{Method: "SSE", Scheme: scheme, Host: req.Host(), Path: req.HTTP.URL.Path}
	return func(m *mcp.Message) bool {
		ctx := context.Background()
		a, err := mcp.ServerRequestAction(server, m)
		a.Request = reqInfo
		ref := &audit.MCP{Session: session, ID: string(m.ID)}
		r := g.decideAll(ctx, []rules.Action{a}, err, []*audit.MCP{ref}, func(err error) rules.Action {
			return rules.Action{Type: "tf.unclassified", Connector: "mcp", Resource: map[string]string{"server": server, "from": "server"},
				Params: map[string]any{"error": g.redact(err.Error())}, Request: reqInfo}
		})
		dec := r.decisions[0]
		if r.recordErr != nil {
			dec = rules.Decision{Effect: rules.Deny, Reason: "tf could not write the audit log: " + r.recordErr.Error()}
		} else if dec.Effect == rules.RequireApproval && err == nil {
			dec = g.hold(ctx, r.id, r.actions, r.decisions, 0)
		}
		if dec.Effect == rules.Allow && err == nil {
			g.recordOutcome(r.id, httpproxy.Outcome{Status: http.StatusOK}, ref)
			return true
		}
		refusal := mcp.Refusal{Type: r.actions[0].Type, Rule: dec.Rule, Reason: dec.Reason, Effect: dec.Effect, KillSwitch: dec.KillSwitch, RequestID: r.id}
		body := mcp.RefuseRequest(m.ID, refusal)
		to := endpoint()
		if to == nil {
			u := *req.HTTP.URL
			u.Scheme, u.Host = scheme, host
			to = &u
		}
		go g.answerServer(req, actions, to, body, r.id, ref)
		return false
	}
}

// answerServer posts body, tf's answer to a request of the server, to the
// endpoint of req, in req's session and with the credentials the policy
// gives the server, and records how that went.
func (g *Gateway) answerServer(req *connectors.Request, actions []rules.Action, to *url.URL, body []byte, id string, ref *audit.MCP) {
	out, err := http.NewRequest(http.MethodPost, to.String(), bytes.NewReader(body))
	if err != nil {
		g.recordOutcome(id, httpproxy.Outcome{Status: http.StatusForbidden, Err: err}, ref)
		return
	}
	for _, k := range []string{"Mcp-Session-Id", "Mcp-Protocol-Version", "Authorization"} {
		if v := req.HTTP.Header.Get(k); v != "" {
			out.Header.Set(k, v)
		}
	}
	out.Header.Set("Content-Type", "application/json")
	out.Header.Set("Accept", "application/json, text/event-stream")
	if prepare := g.prepare(req, actions); prepare != nil {
		prepare(out)
	}
	o := httpproxy.Outcome{Status: http.StatusForbidden}
	res, err := g.direct.Do(out)
	if err != nil {
		o.Err = fmt.Errorf("answering the server's request: %w", err)
	} else {
		io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		if res.StatusCode/100 != 2 {
			o.Err = fmt.Errorf("answering the server's request: %s", res.Status)
		}
	}
	g.recordOutcome(id, o, ref)
}

// legacyStream sets up the GET stream of req as one of the legacy
// HTTP+SSE transport, should the server announce an endpoint on it: the
// endpoint becomes the server's (posts to it are its messages), tf's
// answers to the server go there, refusals of what the client posts
// there are delivered on this stream, where the client waits for them,
// and the answers on it complete the outcomes of the posts that asked.
func (g *Gateway) legacyStream(a *mcp.Answers, req *connectors.Request, server string, endpoint *atomic.Pointer[url.URL]) {
	if g.mcpConn == nil {
		return
	}
	stream := *req.HTTP.URL
	stream.Scheme, stream.Host = req.Scheme, req.HTTP.URL.Host
	if stream.Host == "" {
		stream.Host = req.HTTP.Host
	}
	if stream.Scheme == "" {
		stream.Scheme = "http"
	}
	inject := make(chan []byte, 16)
	var session atomic.Pointer[mcp.LegacySession]
	a.Inject = inject
	a.OnEndpoint = func(data string) {
		if session.Load() != nil {
			return // one endpoint per stream: a second would re-route its posts
		}
		u, ok := g.mcpConn.LearnEndpoint(&stream, data, server)
		if !ok {
			return
		}
		endpoint.Store(u)
		if ls, ok := g.legacy.Open(u, inject); ok {
			session.Store(ls)
		}
	}
	a.Awaited = func(id []byte, hasResult, isError bool, rpcErr []byte) (mcp.Call, bool) {
		ls := session.Load()
		if ls == nil {
			return mcp.Call{}, false
		}
		return ls.Answer(id, hasResult, isError, rpcErr)
	}
	a.OnClose = func() {
		if ls := session.Load(); ls != nil {
			ls.CloseStream(inject)
		}
	}
}

// legacyURL is the absolute URL req was sent to.
func legacyURL(req *connectors.Request) *url.URL {
	u := *req.HTTP.URL
	if u.Host == "" {
		u.Host = req.HTTP.Host
	}
	u.Scheme = req.Scheme
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	return &u
}

// awaitLegacy enters the requests of req, a POST to an endpoint of an
// open legacy SSE session, in the session's table of awaited answers,
// before anything is decided or forwarded: the answers come on the
// session's stream, and the outcome record waits for them. nil when req
// is no such POST or holds no request. An error refuses req: its ids
// clash with requests in flight (the answers could not be told apart),
// the tables are full, or the endpoint's parameters are given twice.
func (g *Gateway) awaitLegacy(req *connectors.Request, actions []rules.Action, refs []*audit.MCP, done func(mcp.Answered)) (*mcp.Wait, error) {
	if req.HTTP.Method != http.MethodPost || g.mcpConn == nil {
		return nil, nil
	}
	ls, err := g.legacy.Lookup(legacyURL(req))
	if ls == nil || err != nil {
		return nil, err
	}
	var ids []string
	var calls []mcp.Call
	for i := range actions {
		method := actions[i].Resource["method"]
		if i >= len(refs) || refs[i] == nil || refs[i].ID == "" || method == "" {
			continue // a notification or a response: nothing answers it
		}
		c := mcp.Call{Method: method}
		switch method {
		case "tools/call":
			c.Name = actions[i].Resource["tool"]
		case "resources/read":
			c.Name = actions[i].Resource["uri"]
		}
		ids, calls = append(ids, refs[i].ID), append(calls, c)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ls.Await(ids, calls, done)
}

// legacyOutcome joins the two halves of a legacy POST's outcome: the
// exchange of the POST (202 Accepted, as a rule) and the answers on the
// stream. Whichever comes second writes the record.
type legacyOutcome struct {
	g   *Gateway
	id  string
	out *outcome
	w   *mcp.Wait

	mu   sync.Mutex
	post *httpproxy.Outcome
	ans  *mcp.Answered
}

// posted is the POST's Done. A status other than 202 means the answers
// will not come on the stream: the server answered in the response (read
// as Streamable HTTP answers are) or not at all.
func (l *legacyOutcome) posted(o httpproxy.Outcome) {
	l.mu.Lock()
	l.post = &o
	ans := l.ans
	l.mu.Unlock()
	if ans != nil {
		l.record(o, *ans)
		return
	}
	if o.Status == http.StatusAccepted {
		l.w.Start()
	} else {
		l.w.Finish("")
	}
}

// answered is the Wait's done.
func (l *legacyOutcome) answered(a mcp.Answered) {
	l.mu.Lock()
	l.ans = &a
	post := l.post
	l.mu.Unlock()
	if post != nil {
		l.record(*post, a)
	}
}

func (l *legacyOutcome) record(o httpproxy.Outcome, a mcp.Answered) {
	if a.IsError != nil {
		l.out.isError(*a.IsError)
	}
	switch {
	case o.Err != nil:
	case a.NoAnswer != "":
		o.Err = errors.New(a.NoAnswer)
	case a.Error != "":
		o.Err = errors.New("the server answered with an error: " + a.Error)
	}
	// The exchange lasted until its last answer.
	o.Duration = max(o.Duration, a.Took)
	l.g.recordOutcome(l.id, o, l.out.get())
}

// legacyRefusal delivers body, the JSON-RPC answers that refuse what req
// posted, on the legacy SSE stream that req's endpoint belongs to, and
// reports whether it did: the client reads answers there, not in the
// response to its post, which is then 202 Accepted.
func (g *Gateway) legacyRefusal(req *connectors.Request, body []byte) bool {
	if req.HTTP.Method != http.MethodPost {
		return false
	}
	ls, _ := g.legacy.Lookup(legacyURL(req))
	if ls == nil {
		return false
	}
	inject, ok := ls.Inject()
	if !ok {
		return false
	}
	var msgs []json.RawMessage
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		if json.Unmarshal(b, &msgs) != nil {
			return false
		}
	} else {
		msgs = []json.RawMessage{body}
	}
	for _, m := range msgs {
		ev := mcp.Event{Event: "message", Data: bytes.TrimSpace(m), HasData: true}
		select {
		case inject <- ev.Encode():
		case <-time.After(5 * time.Second):
			return false
		}
	}
	return true
}

// pinner returns what pins the tools of server's lists under p: nil when
// p pins nothing (mcp: {pin_tools}) or the server is not listed. A tool
// seen changed is recorded (an mcp.tool_changed event) and, under deny,
// hidden; a store tf cannot write hides every tool under deny.
func (g *Gateway) pinner(p *rules.Policy, server string) mcp.Pinner {
	mode := p.MCPPinTools
	if mode == "" || g.pins == nil || !mcp.Listed(server) {
		return nil
	}
	return func(tools []mcp.ToolDigest) map[string]bool {
		changed, newly, err := g.pins.Observe(server, tools)
		if err != nil {
			_ = g.log.Event(context.Background(), g.name, audit.EventMCPToolChanged, map[string]any{
				"server": server, "error": "tf could not keep the pins: " + err.Error(), "pin_tools": mode})
			if mode == "deny" {
				all := map[string]bool{}
				for _, t := range tools {
					all[t.Name] = true
				}
				return all
			}
			return nil
		}
		for _, t := range newly {
			_ = g.log.Event(context.Background(), g.name, audit.EventMCPToolChanged, map[string]any{
				"server": server, "tool": t.Name, "seen": t.Digest, "pin_tools": mode})
		}
		if mode != "deny" {
			return nil
		}
		return changed
	}
}

// resultMethod names the action of the answer to a tool call or a
// resource read: mcp.<server>.@result.
const resultMethod = "result"

// inspector returns what reads the answers to the tool calls and resource
// reads of server under p, before the client does: managed secrets in
// them are redacted (an mcp.response_redacted event records it), and when
// a rule of p can match mcp.<server>.@result, each answer is decided as
// that action (resource tool or uri, params text and is_error) and, when
// refused, replaced by the refusal. nil when there is nothing to look for.
func (g *Gateway) inspector(p *rules.Policy, server string, reqInfo rules.Request, session string) mcp.Inspector {
	var red *keyring.Redactor
	if g.secrets != nil {
		red = g.secrets.Redactor()
	}
	typ := mcp.MethodType(server, resultMethod)
	resultRules := false
	for _, r := range p.Rules {
		for _, gl := range r.Actions {
			if rules.GlobMatch(gl, typ) {
				resultRules = true
			}
		}
	}
	if red == nil && !resultRules {
		return nil
	}
	return func(ans mcp.Reply) []byte {
		call, id, result, out := ans.Call, ans.ID, ans.Result, ans.Msg
		if red != nil {
			if o, changed := mcp.RedactReply(ans, red.Mentions, red.Redact); changed {
				out = o
				_ = g.log.Event(context.Background(), g.name, audit.EventMCPResponseRedacted, map[string]any{
					"server": server, "method": call.Method, "name": red.Redact(call.Name), "id": string(id)})
			}
		}
		if !resultRules {
			return out
		}
		isErr, _ := mcp.ResultIsError(result)
		a := rules.Action{Connector: "mcp", Type: typ, Request: reqInfo,
			Resource: map[string]string{"server": server, "method": call.Method, "from": "server"},
			Params:   map[string]any{"text": mcp.ResultText(result), "is_error": isErr}}
		if call.Method == "tools/call" {
			a.Resource["tool"] = call.Name
		} else {
			a.Resource["uri"] = call.Name
		}
		ref := &audit.MCP{Session: session, ID: string(id)}
		ctx := context.Background()
		r := g.decideAll(ctx, []rules.Action{a}, nil, []*audit.MCP{ref}, nil)
		dec := r.decisions[0]
		switch {
		case r.recordErr != nil:
			dec = rules.Decision{Effect: rules.Deny, Reason: "tf could not write the audit log: " + r.recordErr.Error()}
		case dec.Default && !dec.KillSwitch:
			// No rule is about this result: it is not tf's to refuse.
			dec.Effect = rules.Allow
		case dec.Effect == rules.RequireApproval:
			dec = g.hold(ctx, r.id, r.actions, r.decisions, 0)
		}
		if dec.Effect == rules.Allow {
			g.recordOutcome(r.id, httpproxy.Outcome{Status: http.StatusOK}, ref)
			return out
		}
		g.recordOutcome(r.id, httpproxy.Outcome{Status: http.StatusForbidden}, ref)
		refusal := mcp.Refusal{Type: typ, Rule: dec.Rule, Reason: dec.Reason, Effect: dec.Effect, KillSwitch: dec.KillSwitch, RequestID: r.id}
		if call.Method == "tools/call" {
			return mcp.RefuseCall(id, refusal)
		}
		return mcp.RefuseRequest(id, refusal)
	}
}

// InspectResults is the stdio relay's inspector.
func (m *mcpGovernor) InspectResults() mcp.Inspector {
	return m.g.inspector(m.g.policy.Load(), m.server, stdioRequest, "")
}

// PinTools is the stdio relay's pinner.
func (m *mcpGovernor) PinTools() mcp.Pinner { return m.g.pinner(m.g.policy.Load(), m.server) }

// pinDecision applies pin_tools to the decision on a, a tool call: a tool
// changed since it was pinned, and not accepted, is refused (deny) or held
// (require_approval) by tf:mcp-pin unless something refuses it already.
func (g *Gateway) pinDecision(p *rules.Policy, a *rules.Action, d rules.Decision) rules.Decision {
	mode := p.MCPPinTools
	tool := a.Resource["tool"]
	if (mode != "deny" && mode != "require_approval") || tool == "" || a.Resource["method"] != "tools/call" ||
		d.Effect == rules.Deny || g.Mode() == rules.Monitor || g.pins == nil {
		return d
	}
	server := a.Resource["server"]
	if !mcp.Listed(server) || !g.pins.Changed(server, tool) {
		return d
	}
	d.Rule, d.Default, d.Monitor = mcp.PinRule, false, false
	d.Reason = fmt.Sprintf("tool %s of MCP server %s changed since it was pinned (a rug pull?); a person accepts the change with tf mcp tools accept --server %s %s", tool, server, server, tool)
	if mode == "deny" {
		d.Effect = rules.Deny
	} else {
		d.Effect = rules.RequireApproval
	}
	return d
}

// calling reports whether actions hold a tool call or a resource read.
func calling(actions []rules.Action) bool {
	for i := range actions {
		switch actions[i].Resource["method"] {
		case "tools/call", "resources/read":
			return true
		}
	}
	return false
}

// mcpRefs returns the MCP references of the n actions of req: its
// session and each message's JSON-RPC id.
func mcpRefs(req *connectors.Request, n int, classErr error) []*audit.MCP {
	session := req.HTTP.Header.Get("Mcp-Session-Id")
	if session == "" && req.HTTP.Method == http.MethodPost {
		// The legacy SSE transport names its session in the endpoint.
		session = req.HTTP.URL.Query().Get("sessionId")
	}
	if classErr != nil {
		if session == "" {
			return nil
		}
		return []*audit.MCP{{Session: session}}
	}
	var ids []string
	if req.HTTP.Method == http.MethodPost {
		ids = mcp.MessageIDs(req)
	}
	if session == "" && len(ids) == 0 {
		return nil
	}
	refs := make([]*audit.MCP, n)
	for i := range refs {
		refs[i] = &audit.MCP{Session: session}
		if i < len(ids) {
			refs[i].ID = ids[i]
		}
		if *refs[i] == (audit.MCP{}) {
			refs[i] = nil
		}
	}
	return refs
}

// idRefs returns references of stdio messages by their ids.
func idRefs(ids []string) []*audit.MCP {
	if len(ids) == 0 {
		return nil
	}
	refs := make([]*audit.MCP, len(ids))
	for i, id := range ids {
		if id != "" {
			refs[i] = &audit.MCP{ID: id}
		}
	}
	return refs
}

// outcome is the MCP part of an exchange's outcome record, filled in as
// the answer is read.
type outcome struct {
	mu  sync.Mutex
	ref audit.MCP
	// ids are the JSON-RPC ids of the request's messages.
	ids []string
}

// outcomeRef starts the outcome reference of a request whose actions have
// refs: the session, and the id when it is one message.
func outcomeRef(refs []*audit.MCP) *outcome {
	o := &outcome{}
	for _, r := range refs {
		id := ""
		if r != nil {
			id = r.ID
		}
		o.ids = append(o.ids, id)
	}
	if len(refs) > 0 && refs[0] != nil {
		o.ref.Session = refs[0].Session
		if len(refs) == 1 {
			o.ref.ID = refs[0].ID
		}
	}
	return o
}

// isError notes a tool result's isError: true when any result was one.
func (o *outcome) isError(e bool) {
	o.mu.Lock()
	if o.ref.IsError == nil || e {
		o.ref.IsError = &e
	}
	o.mu.Unlock()
}

func (o *outcome) session() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ref.Session
}

func (o *outcome) get() *audit.MCP {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ref == (audit.MCP{}) {
		return nil
	}
	r := o.ref
	return &r
}

// listing reports whether actions hold a list request.
func listing(actions []rules.Action) bool {
	for i := range actions {
		switch actions[i].Resource["method"] {
		case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
			return true
		}
	}
	return false
}

// MCPGovernor returns the governor of a stdio MCP server's messages for
// tf mcp wrap: the decisions, records, approvals and kill switch of this
// gateway, with actions named after server.
func (g *Gateway) MCPGovernor(server string) mcp.Governor {
	return &mcpGovernor{g: g, server: server}
}

var (
	_ mcp.BatchGovernor   = (*mcpGovernor)(nil)
	_ mcp.ParamsReader    = (*mcpGovernor)(nil)
	_ mcp.ToolPinner      = (*mcpGovernor)(nil)
	_ mcp.ResultInspector = (*mcpGovernor)(nil)
)

type mcpGovernor struct {
	g      *Gateway
	server string
}

// stdioRequest is what actions relayed over stdio carry as their request:
// rules can tell them apart with request.scheme == "stdio".
var stdioRequest = rules.Request{Scheme: "stdio"}

func (m *mcpGovernor) Decide(ctx context.Context, actions []rules.Action, classErr error) mcp.Ruling {
	r := m.g.decideAll(ctx, m.stdio(actions), classErr, nil, m.unclassified)
	return m.ruling(r, classErr)
}

// DecideLines decides the lines of a burst and records all their
// decisions with one wait.
func (m *mcpGovernor) DecideLines(ctx context.Context, lines []mcp.Line) []mcp.Ruling {
	g := m.g
	rs := make([]ruling, len(lines))
	var recs []*audit.Record
	for i, l := range lines {
		rs[i] = g.decideOnly(m.stdio(l.Actions), l.Err, m.unclassified, "")
		recs = g.decisionRecords(recs, rs[i].id, rs[i].actions, rs[i].decisions, idRefs(l.IDs))
	}
	err := g.log.AppendAll(ctx, recs)
	if err == nil {
		for i := range rs {
			g.countDecisions(rs[i].actions, rs[i].decisions)
		}
	}
	out := make([]mcp.Ruling, len(lines))
	for i := range rs {
		rs[i].recordErr = err
		out[i] = m.ruling(rs[i], lines[i].Err)
	}
	return out
}

func (m *mcpGovernor) stdio(actions []rules.Action) []rules.Action {
	for i := range actions {
		actions[i].Request = stdioRequest
	}
	return actions
}

func (m *mcpGovernor) unclassified(err error) rules.Action {
	return rules.Action{
		Type: "tf.unclassified", Connector: "mcp",
		Resource: map[string]string{"server": m.server},
		Params:   map[string]any{"error": m.g.redact(err.Error())},
		Request:  stdioRequest,
	}
}

// ruling turns a recorded ruling into the relay's.
func (m *mcpGovernor) ruling(r ruling, classErr error) mcp.Ruling {
	g := m.g
	out := mcp.Ruling{RequestID: r.id, Decisions: r.decisions}
	out.Done = func(o mcp.Outcome) {
		ho := httpproxy.Outcome{Status: http.StatusOK, Err: o.Err, Duration: o.Duration, RequestBytes: int64(o.Bytes)}
		switch {
		case o.Refused:
			ho.Status = http.StatusForbidden
		case o.Err != nil:
			ho.Status = http.StatusBadGateway
		}
		var ref *audit.MCP
		if o.IsError != nil {
			ref = &audit.MCP{IsError: o.IsError}
		}
		g.recordOutcome(r.id, ho, ref)
	}
	if r.recordErr != nil {
		reason := "tf could not write the audit log, so nothing is forwarded: " + r.recordErr.Error()
		out.Decisions = make([]rules.Decision, len(r.decisions))
		for i := range out.Decisions {
			out.Decisions[i] = rules.Decision{Effect: rules.Deny, Reason: reason, Revision: r.policy.Revision}
		}
		return out
	}
	if classErr != nil {
		return out
	}
	k := strongest(r.decisions)
	switch r.decisions[k].Effect {
	case rules.RequireApproval:
		out.Hold = func(ctx context.Context) ([]rules.Decision, context.Context) {
			final := settle(r.decisions, g.hold(ctx, r.id, r.actions, r.decisions, k))
			if final[strongest(final)].Effect == rules.Allow {
				// Approved: from here on the line is cut like any other.
				return final, g.cutOff(r.actions)
			}
			return final, nil
		}
	case rules.Allow:
		out.Cut = g.cutOff(r.actions)
	}
	return out
}

// ParamsRead says what the rules in force read of params, so that the
// relay decodes only the tool-call arguments they read.
func (m *mcpGovernor) ParamsRead() rules.ParamsRead { return m.g.paramsRead() }

// paramsRead is what the policy in force reads of params.
func (g *Gateway) paramsRead() rules.ParamsRead { return g.policy.Load().ParamsRead() }

func (m *mcpGovernor) HideItems() mcp.Hider {
	p := m.g.policy.Load()
	if !p.MCPFilterTools {
		return nil
	}
	return mcp.PolicyHider(p, m.g.Mode(), m.server)
}
