package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

// The agent API is what a sandboxed agent's own tf (tf mcp wrap of a
// stdio MCP server, which runs inside the sandbox with the agent) asks of
// the gateway outside: $TF_HOME is not visible there, so the decisions,
// records, approvals and kill switch of stdio MCP lines are the gateway's.
// It is served on a unix socket bound into the sandbox, and asks for the
// session's proxy credential.

// maxAgentBody bounds a request to the agent API: a line's actions.
const maxAgentBody = 8 << 20

type decideRequest struct {
	Server  string         `json:"server"`
	Actions []rules.Action `json:"actions"`
	Error   string         `json:"error,omitempty"`
	// IDs are the JSON-RPC ids of the line's messages, for the records.
	IDs []string `json:"ids,omitempty"`
}

type decideReply struct {
	RequestID string           `json:"request_id"`
	Decisions []rules.Decision `json:"decisions"`
	Held      bool             `json:"held,omitempty"`
	Cuttable  bool             `json:"cuttable,omitempty"`
	// Pin and Inspect say that the policy pins the server's tools and
	// inspects its results: the relay then shows the gateway its lists
	// (/v1/mcp/pin) and answers (/v1/mcp/inspect), since the pins and the
	// secrets to look for stay outside the sandbox.
	Pin     bool `json:"pin,omitempty"`
	Inspect bool `json:"inspect,omitempty"`
}

type pinRequest struct {
	Server string           `json:"server"`
	Tools  []mcp.ToolDigest `json:"tools"`
}

// inspectRequest is an answer the relay shows the gateway: Msg whole, and
// the id and result as offsets into it, so the gateway sees the same bytes.
type inspectRequest struct {
	Server   string   `json:"server"`
	Call     mcp.Call `json:"call"`
	Msg      []byte   `json:"msg"`
	IDAt     [2]int   `json:"id_at"`
	ResultAt [2]int   `json:"result_at"`
	Spelt    bool     `json:"spelt,omitempty"`
}

type doneRequest struct {
	IsError  *bool         `json:"is_error,omitempty"`
	Refused  bool          `json:"refused,omitempty"`
	Err      string        `json:"err,omitempty"`
	Duration time.Duration `json:"duration"`
	Bytes    int           `json:"bytes"`
}

type hideRequest struct {
	Server string   `json:"server"`
	Tools  []string `json:"tools"`
	// Kinds says what list each name is of (mcp.ListKind); absent, tools.
	Kinds []mcp.ListKind `json:"kinds,omitempty"`
}

// pendingLine is what the gateway keeps of a line between its decision
// and its outcome.
type pendingLine struct {
	ruling mcp.Ruling
	cut    context.Context
}

type agentAPI struct {
	g       *Gateway
	mu      sync.Mutex
	pending map[string]*pendingLine
}

// maxPendingLines bounds the lines awaiting their outcome; the oldest are
// forgotten (their outcome records are then missing, not wrong).
const maxPendingLines = 4096

// ServeAgentAPI serves the agent API on ln (a unix socket bound into the
// sandbox). It stops with Close.
func (g *Gateway) ServeAgentAPI(ln net.Listener) {
	a := &agentAPI{g: g, pending: map[string]*pendingLine{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/mcp/decide", a.decide)
	mux.HandleFunc("POST /v1/mcp/hold/{id}", a.hold)
	mux.HandleFunc("POST /v1/mcp/cut/{id}", a.cut)
	mux.HandleFunc("POST /v1/mcp/done/{id}", a.done)
	mux.HandleFunc("POST /v1/mcp/hide", a.hide)
	mux.HandleFunc("POST /v1/mcp/pin", a.pin)
	mux.HandleFunc("POST /v1/mcp/inspect", a.inspect)
	srv := &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 10 * time.Second}
	g.agentSrv = srv
	go func() { _ = srv.Serve(ln) }()
}

func (a *agentAPI) auth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(a.g.token)) != 1 {
			http.Error(w, "tf agent API: the session's proxy credential is required", http.StatusUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAgentBody)
		h.ServeHTTP(w, r)
	})
}

func (a *agentAPI) decide(w http.ResponseWriter, r *http.Request) {
	var req decideRequest
	if !readRequest(w, r, &req, &req.Server) {
		return
	}
	var classErr error
	if req.Error != "" {
		classErr = errors.New(req.Error)
		req.Actions = nil
	}
	ru := a.g.MCPGovernor(req.Server).(mcp.BatchGovernor).DecideLines(r.Context(), []mcp.Line{{Actions: req.Actions, Err: classErr, IDs: req.IDs}})[0]
	a.keep(ru.RequestID, &pendingLine{ruling: ru, cut: ru.Cut})
	p := a.g.policy.Load()
	writeJSON(w, decideReply{RequestID: ru.RequestID, Decisions: ru.Decisions, Held: ru.Hold != nil, Cuttable: ru.Cut != nil,
		Pin: a.g.pinner(p, req.Server) != nil, Inspect: a.g.inspector(p, req.Server, stdioRequest, "") != nil})
}

// pin observes the tools a list of the server showed, as the gateway's own
// stdio relay does, and answers the names to hide.
func (a *agentAPI) pin(w http.ResponseWriter, r *http.Request) {
	var req pinRequest
	if !readRequest(w, r, &req, &req.Server) {
		return
	}
	hide := []string{}
	if pin := a.g.pinner(a.g.policy.Load(), req.Server); pin != nil {
		for name, h := range pin(req.Tools) {
			if h {
				hide = append(hide, name)
			}
		}
	}
	writeJSON(w, hide)
}

// inspect reads an answer of the server as the gateway's own stdio relay
// does and returns what the client gets: the answer, redacted, or a
// refusal in its place.
func (a *agentAPI) inspect(w http.ResponseWriter, r *http.Request) {
	var req inspectRequest
	if !readRequest(w, r, &req, &req.Server) {
		return
	}
	in := func(at [2]int) ([]byte, bool) {
		if at[0] < 0 || at[0] > at[1] || at[1] > len(req.Msg) {
			return nil, false
		}
		return req.Msg[at[0]:at[1]], true
	}
	id, ok1 := in(req.IDAt)
	result, ok2 := in(req.ResultAt)
	if !ok1 || !ok2 {
		http.Error(w, "tf agent API: id or result outside the message", http.StatusBadRequest)
		return
	}
	out := req.Msg
	if insp := a.g.inspector(a.g.policy.Load(), req.Server, stdioRequest, ""); insp != nil {
		out = insp(mcp.Reply{Call: req.Call, ID: id, Result: result, Msg: req.Msg, Spelt: req.Spelt})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// readRequest decodes the JSON body of r into v and checks the server name
// it holds (server points into v); false when it has answered 400.
func readRequest(w http.ResponseWriter, r *http.Request, v any, server *string) bool {
	err := json.NewDecoder(r.Body).Decode(v)
	if err == nil {
		err = mcp.ValidServerName(*server)
	}
	if err != nil {
		http.Error(w, "tf agent API: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (a *agentAPI) keep(id string, p *pendingLine) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) >= maxPendingLines {
		for k := range a.pending { // forget one; map order is arbitrary
			delete(a.pending, k)
			break
		}
	}
	a.pending[id] = p
}

func (a *agentAPI) line(w http.ResponseWriter, r *http.Request, forget bool) *pendingLine {
	a.mu.Lock()
	p := a.pending[r.PathValue("id")]
	if forget {
		delete(a.pending, r.PathValue("id"))
	}
	a.mu.Unlock()
	if p == nil {
		http.Error(w, "tf agent API: no such line", http.StatusNotFound)
	}
	return p
}

// hold waits for a person's answer to a held line.
func (a *agentAPI) hold(w http.ResponseWriter, r *http.Request) {
	p := a.line(w, r, false)
	if p == nil {
		return
	}
	if p.ruling.Hold == nil {
		http.Error(w, "tf agent API: the line is not held", http.StatusConflict)
		return
	}
	final, cut := p.ruling.Hold(r.Context())
	a.mu.Lock()
	p.cut = cut
	a.mu.Unlock()
	writeJSON(w, decideReply{RequestID: p.ruling.RequestID, Decisions: final, Cuttable: cut != nil})
}

// cut answers when the kill switch stops the line's traffic, or when the
// caller stops asking (the line was answered).
func (a *agentAPI) cut(w http.ResponseWriter, r *http.Request) {
	p := a.line(w, r, false)
	if p == nil {
		return
	}
	a.mu.Lock()
	cut := p.cut
	a.mu.Unlock()
	if cut == nil {
		http.Error(w, "tf agent API: the line cannot be cut", http.StatusConflict)
		return
	}
	select {
	case <-cut.Done():
		writeJSON(w, map[string]bool{"cut": true})
	case <-r.Context().Done():
	}
}

func (a *agentAPI) done(w http.ResponseWriter, r *http.Request) {
	var d doneRequest
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil {
		http.Error(w, "tf agent API: "+err.Error(), http.StatusBadRequest)
		return
	}
	p := a.line(w, r, true)
	if p == nil {
		return
	}
	if p.ruling.Done != nil {
		o := mcp.Outcome{Refused: d.Refused, Duration: d.Duration, Bytes: d.Bytes, IsError: d.IsError}
		if d.Err != "" {
			o.Err = errors.New(d.Err)
		}
		p.ruling.Done(o)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *agentAPI) hide(w http.ResponseWriter, r *http.Request) {
	var req hideRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "tf agent API: "+err.Error(), http.StatusBadRequest)
		return
	}
	hidden := make([]bool, len(req.Tools))
	if f := a.g.MCPGovernor(req.Server).HideItems(); f != nil {
		for i, t := range req.Tools {
			kind := mcp.ToolList
			if i < len(req.Kinds) {
				kind = req.Kinds[i]
			}
			hidden[i] = f(kind, t)
		}
	}
	writeJSON(w, hidden)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// RemoteMCPGovernor governs a stdio MCP server's lines through the agent
// API of the gateway that runs the sandbox (socket), with the session's
// proxy credential: what tf mcp wrap uses inside the sandbox. A gateway
// that cannot be asked is a denial, never a pass.
func RemoteMCPGovernor(socket, token, server string) mcp.Governor {
	return &remoteGovernor{server: server, token: token, c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

var _ mcp.BatchGovernor = (*remoteGovernor)(nil)

type remoteGovernor struct {
	server, token string
	c             *http.Client
	// pin and inspect are what the gateway said with its last decision.
	pin, inspect atomic.Bool
}

func (rg *remoteGovernor) call(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ans, err := rg.post(ctx, path, b)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(ans, out)
}

func (rg *remoteGovernor) Decide(ctx context.Context, actions []rules.Action, classErr error) mcp.Ruling {
	return rg.decide(ctx, mcp.Line{Actions: actions, Err: classErr})
}

// DecideLines decides each line in turn, with its ids for the records.
func (rg *remoteGovernor) DecideLines(ctx context.Context, lines []mcp.Line) []mcp.Ruling {
	out := make([]mcp.Ruling, len(lines))
	for i, l := range lines {
		out[i] = rg.decide(ctx, l)
	}
	return out
}

func (rg *remoteGovernor) decide(ctx context.Context, l mcp.Line) mcp.Ruling {
	actions, classErr := l.Actions, l.Err
	req := decideRequest{Server: rg.server, Actions: actions, IDs: l.IDs}
	if classErr != nil {
		req.Error = classErr.Error()
	}
	var rep decideReply
	if err := rg.call(ctx, "/v1/mcp/decide", req, &rep); err != nil {
		n := max(len(actions), 1)
		out := mcp.Ruling{Decisions: make([]rules.Decision, n)}
		for i := range out.Decisions {
			out.Decisions[i] = rules.Decision{Effect: rules.Deny, Reason: "tf could not reach its gateway, so nothing is forwarded: " + err.Error()}
		}
		return out
	}
	rg.pin.Store(rep.Pin)
	rg.inspect.Store(rep.Inspect)
	out := mcp.Ruling{RequestID: rep.RequestID, Decisions: rep.Decisions}
	id := rep.RequestID
	var mu sync.Mutex
	var stops []func()
	cutFor := func() context.Context {
		ctx, stop := rg.cutContext(id)
		mu.Lock()
		stops = append(stops, stop)
		mu.Unlock()
		return ctx
	}
	out.Done = func(o mcp.Outcome) {
		mu.Lock()
		for _, stop := range stops {
			stop()
		}
		mu.Unlock()
		d := doneRequest{Refused: o.Refused, Duration: o.Duration, Bytes: o.Bytes, IsError: o.IsError}
		if o.Err != nil {
			d.Err = o.Err.Error()
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = rg.call(ctx, "/v1/mcp/done/"+id, d, nil)
		}()
	}
	if rep.Cuttable {
		out.Cut = cutFor()
	}
	if rep.Held {
		out.Hold = func(ctx context.Context) ([]rules.Decision, context.Context) {
			var final decideReply
			if err := rg.call(ctx, "/v1/mcp/hold/"+id, struct{}{}, &final); err != nil {
				ds := make([]rules.Decision, len(rep.Decisions))
				for i := range ds {
					ds[i] = rules.Decision{Effect: rules.Deny, Reason: "the held request was not answered: " + err.Error()}
				}
				return ds, nil
			}
			if final.Cuttable {
				return final.Decisions, cutFor()
			}
			return final.Decisions, nil
		}
	}
	return out
}

// cutContext ends when the gateway's kill switch stops the line (or the
// gateway can no longer be asked: fail closed), through a long-poll that
// stop ends once the line is done.
func (rg *remoteGovernor) cutContext(id string) (cut context.Context, stop func()) {
	cutCtx, cutNow := context.WithCancel(context.Background())
	poll, stop := context.WithCancel(context.Background())
	go func() {
		_ = rg.call(poll, "/v1/mcp/cut/"+id, struct{}{}, nil)
		if poll.Err() == nil {
			cutNow() // answered "cut", or the gateway is gone
		}
	}()
	return cutCtx, stop
}

func (rg *remoteGovernor) HideItems() mcp.Hider {
	type key struct {
		kind mcp.ListKind
		name string
	}
	cache := map[key]bool{}
	return func(kind mcp.ListKind, name string) bool {
		if h, ok := cache[key{kind, name}]; ok {
			return h
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var hidden []bool
		if err := rg.call(ctx, "/v1/mcp/hide", hideRequest{Server: rg.server, Tools: []string{name}, Kinds: []mcp.ListKind{kind}}, &hidden); err != nil || len(hidden) != 1 {
			return false // the call itself is still decided
		}
		cache[key{kind, name}] = hidden[0]
		return hidden[0]
	}
}

// PinTools shows the gateway each tools list when its policy pins the
// server's tools; a gateway that cannot be asked hides every tool, since
// nothing vouches for them.
func (rg *remoteGovernor) PinTools() mcp.Pinner {
	if !rg.pin.Load() {
		return nil
	}
	return func(tools []mcp.ToolDigest) map[string]bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var hide []string
		out := map[string]bool{}
		if err := rg.call(ctx, "/v1/mcp/pin", pinRequest{Server: rg.server, Tools: tools}, &hide); err != nil {
			for _, t := range tools {
				out[t.Name] = true
			}
			return out
		}
		for _, name := range hide {
			out[name] = true
		}
		return out
	}
}

// InspectResults shows the gateway each answer to a tool call or resource
// read when its policy inspects the server's results; what the gateway
// cannot be asked about is withheld.
func (rg *remoteGovernor) InspectResults() mcp.Inspector {
	if !rg.inspect.Load() {
		return nil
	}
	return func(a mcp.Reply) []byte {
		req := inspectRequest{Server: rg.server, Call: a.Call, Msg: a.Msg, IDAt: offsetIn(a.Msg, a.ID), ResultAt: offsetIn(a.Msg, a.Result), Spelt: a.Spelt}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := json.Marshal(req)
		if err == nil {
			var out []byte
			if out, err = rg.post(ctx, "/v1/mcp/inspect", b); err == nil {
				return out
			}
		}
		return mcp.ErrorMessage(a.ID, mcp.CodeRefused, "tf withheld this answer: it could not ask its gateway to inspect it: "+err.Error(), nil)
	}
}

// offsetIn returns where sub sits in msg: by its address when it is a
// slice of msg, else by its bytes.
func offsetIn(msg, sub []byte) [2]int {
	if len(sub) == 0 {
		return [2]int{0, 0}
	}
	if i := cap(msg) - cap(sub); i >= 0 && i+len(sub) <= len(msg) && &msg[i] == &sub[0] {
		return [2]int{i, i + len(sub)}
	}
	if i := bytes.Index(msg, sub); i >= 0 {
		return [2]int{i, i + len(sub)}
	}
	return [2]int{0, 0}
}

// post sends body to the agent API and returns the answer's body, at most
// maxAgentBody bytes.
func (rg *remoteGovernor) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tf"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+rg.token)
	resp, err := rg.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the gateway: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAgentBody+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("the gateway answered %s: %s", resp.Status, strings.TrimSpace(string(out[:min(len(out), 1024)])))
	}
	if len(out) > maxAgentBody {
		return nil, errors.New("the gateway's answer is too large")
	}
	return out, nil
}
