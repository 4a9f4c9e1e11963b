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
	"os"
	"strings"
	"sync"
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

// ServeAgentAPI serves the agent API on a unix socket created 0600 at
// path. It stops with Close.
func (g *Gateway) ServeAgentAPI(path string) error {
	ln, err := listenUnix(path)
	if err != nil {
		return err
	}
	a := &agentAPI{g: g, pending: map[string]*pendingLine{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/mcp/decide", a.decide)
	mux.HandleFunc("POST /v1/mcp/hold/{id}", a.hold)
	mux.HandleFunc("POST /v1/mcp/cut/{id}", a.cut)
	mux.HandleFunc("POST /v1/mcp/done/{id}", a.done)
	mux.HandleFunc("POST /v1/mcp/hide", a.hide)
	srv := &http.Server{Handler: a.auth(mux), ReadHeaderTimeout: 10 * time.Second}
	g.agentSrv = srv
	go func() { _ = srv.Serve(ln) }()
	return nil
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
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "tf agent API: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := mcp.ValidServerName(req.Server); err != nil {
		http.Error(w, "tf agent API: "+err.Error(), http.StatusBadRequest)
		return
	}
	var classErr error
	if req.Error != "" {
		classErr = errors.New(req.Error)
		req.Actions = nil
	}
	ru := a.g.MCPGovernor(req.Server).(mcp.BatchGovernor).DecideLines(r.Context(), []mcp.Line{{Actions: req.Actions, Err: classErr, IDs: req.IDs}})[0]
	a.keep(ru.RequestID, &pendingLine{ruling: ru, cut: ru.Cut})
	writeJSON(w, decideReply{RequestID: ru.RequestID, Decisions: ru.Decisions, Held: ru.Hold != nil, Cuttable: ru.Cut != nil})
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
}

func (rg *remoteGovernor) call(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://tf"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+rg.token)
	resp, err := rg.c.Do(req)
	if err != nil {
		return fmt.Errorf("asking the gateway: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("the gateway answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
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

// listenUnix listens on a new unix socket at path, 0600, replacing a stale
// one. The sockets tf binds into a sandbox live in a private 0700
// directory, so the mode is a second fence, not the first.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
