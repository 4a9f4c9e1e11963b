// Package mcp governs Model Context Protocol traffic: it turns JSON-RPC
// messages into actions, answers refusals in JSON-RPC, filters tool lists,
// and relays stdio servers under governance.
package mcp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/rules"
)

// Action types of what is not a JSON-RPC method: the GET stream on which a
// server sends its own messages, and the DELETE that ends a session.
const (
	MethodStream        = "@stream"
	MethodSessionDelete = "@session/delete"
	MethodResponse      = "@response"
)

// maxNameLen bounds tool and prompt names and resource URIs copied into
// actions.
const maxNameLen = 1024

// ToolType is the action type of a call of tool on server: mcp.<server>.<tool>,
// the tool's name in lower case (action patterns are lower case;
// resource.tool keeps the name as the server spells it).
func ToolType(server, tool string) string {
	return "mcp." + server + "." + strings.ToLower(tool)
}

// MethodType is the action type of any other message: mcp.<server>.@<method>.
func MethodType(server, method string) string {
	return "mcp." + server + ".@" + strings.ToLower(method)
}

// MessageAction returns the action of one message to server. It fails on
// what cannot be decided safely: a tool call without a name, arguments
// that are not an object.
func MessageAction(server string, m *Message) (rules.Action, error) {
	a := rules.Action{Connector: "mcp", Resource: map[string]string{"server": server}}
	if m.Kind == Response {
		// The client answering the server (sampling, elicitation, roots).
		a.Type = "mcp." + server + "." + MethodResponse
		a.Params = map[string]any{"error": m.Error != nil}
		return a, nil
	}
	a.Resource["method"] = m.Method
	switch m.Method {
	case "tools/call":
		p, err := m.paramsObject("name", "arguments")
		if err != nil {
			return a, fmt.Errorf("tools/call params: %w", err)
		}
		name, ok := p["name"].(string)
		if !ok || name == "" {
			return a, errors.New("tools/call without a tool name")
		}
		if err := checkName("tool name", name); err != nil {
			return a, err
		}
		args := map[string]any{}
		switch v := p["arguments"].(type) {
		case nil:
		case map[string]any:
			args = v
		default:
			return a, fmt.Errorf("tools/call %s: arguments are not an object", name)
		}
		a.Type = ToolType(server, name)
		a.Resource["tool"] = name
		a.Params = args
		return a, nil
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		p, err := m.paramsObject("uri")
		if err != nil {
			return a, fmt.Errorf("%s params: %w", m.Method, err)
		}
		uri, ok := p["uri"].(string)
		if !ok || uri == "" {
			return a, fmt.Errorf("%s without a uri", m.Method)
		}
		if err := checkName("resource uri", uri); err != nil {
			return a, err
		}
		a.Resource["uri"] = uri
	case "prompts/get":
		p, err := m.paramsObject("name", "arguments")
		if err != nil {
			return a, fmt.Errorf("prompts/get params: %w", err)
		}
		name, ok := p["name"].(string)
		if !ok || name == "" {
			return a, errors.New("prompts/get without a prompt name")
		}
		if err := checkName("prompt name", name); err != nil {
			return a, err
		}
		a.Resource["name"] = name
		if args, ok := p["arguments"].(map[string]any); ok {
			a.Params = args
		}
	default:
		if err := checkName("method", m.Method); err != nil {
			return a, err
		}
		if m.Params != nil && m.Params[0] != '{' && m.Params[0] != '[' {
			return a, fmt.Errorf("%s params are neither an object nor an array", m.Method)
		}
	}
	a.Type = MethodType(server, m.Method)
	return a, nil
}

func checkName(what, s string) error {
	if len(s) > maxNameLen {
		return fmt.Errorf("%s longer than %d bytes", what, maxNameLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("%s %q holds a control character", what, s)
		}
	}
	return nil
}

// Actions returns the actions of msgs, one per message, in order.
func Actions(server string, msgs []Message) ([]rules.Action, error) {
	out := make([]rules.Action, len(msgs))
	for i := range msgs {
		a, err := MessageAction(server, &msgs[i])
		if err != nil {
			if len(msgs) > 1 {
				return nil, fmt.Errorf("batch element %d: %w", i+1, err)
			}
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// plumbing reports the methods the built-in baseline allows: the protocol's
// own housekeeping, which a session cannot do without and which does
// nothing on the server's side.
func plumbing(a *rules.Action) bool {
	_, rest, ok := strings.Cut(a.Type, ".@")
	if !ok || a.Connector != "mcp" {
		return false
	}
	switch {
	case rest == "initialize", rest == "ping",
		// The 2026-07-28 revision's successors of initialize and of the
		// GET stream.
		rest == "server/discover", rest == "subscriptions/listen",
		strings.HasPrefix(rest, "notifications/"),
		strings.HasSuffix(rest, "/list"),
		rest == MethodStream[1:], rest == MethodSessionDelete[1:], rest == MethodResponse[1:]:
		return true
	}
	return false
}

// BaselineRule names the built-in baseline in decisions.
const BaselineRule = "tf:mcp-baseline"

// Baseline applies the built-in baseline to the decision rules made for a:
// protocol plumbing (initialize and server/discover, ping,
// notifications/*, the */list methods, the GET stream and
// subscriptions/listen, ending a session, and the client's answers to the
// server's own requests) is allowed when no rule decided it, that is when
// the policy's default did. A rule that matches plumbing, of any effect,
// still decides it; so does the kill switch.
func Baseline(a *rules.Action, d rules.Decision) rules.Decision {
	if d.KillSwitch || !plumbing(a) {
		return d
	}
	switch {
	case d.Default:
	case d.Monitor && d.WouldRule == "" && d.Rule == "" && !enforcedMatch(d):
		// Monitor mode hides the default: "would deny" by no rule.
	default:
		return d
	}
	d.Effect, d.Rule, d.Default = rules.Allow, BaselineRule, false
	d.Monitor, d.Would, d.WouldRule, d.WouldReason = false, "", "", ""
	d.Reason = "MCP protocol plumbing is allowed by tf's built-in baseline"
	return d
}

func enforcedMatch(d rules.Decision) bool {
	for _, m := range d.Matched {
		if !m.Monitor {
			return true
		}
	}
	return false
}

// Connector classifies MCP over Streamable HTTP. It serves no host by
// name: the registry asks it, as a sniffer, about requests to hosts no
// specific connector serves, and it claims those to the URLs of the
// policy's mcp_servers and those that look like MCP (a JSON-RPC body or
// MCP headers).
type Connector struct {
	servers func() []rules.MCPServer
	reads   func() rules.ParamsRead
}

var (
	_ connectors.Sniffer     = (*Connector)(nil)
	_ connectors.EachRefuser = (*Connector)(nil)
)

// NewConnector returns the MCP connector; servers returns the policy's
// mcp_servers at the time of each request (nil means none).
func NewConnector(servers func() []rules.MCPServer) *Connector {
	if servers == nil {
		servers = func() []rules.MCPServer { return nil }
	}
	return &Connector{servers: servers}
}

// DecodeParams sets what the connector decodes of tool-call arguments:
// reads returns what the rules in force read of params (Policy.ParamsRead),
// and the object and array arguments they do not read are kept as
// json.RawMessage. Without it every argument is decoded. It returns c.
func (c *Connector) DecodeParams(reads func() rules.ParamsRead) *Connector {
	c.reads = reads
	return c
}

// argsRead returns the argument filter for parse, nil for all.
func argsRead(reads func() rules.ParamsRead) func(string) bool {
	if reads == nil {
		return nil
	}
	pr := reads()
	if pr.All {
		return nil
	}
	return pr.Reads
}

// Name returns "mcp".
func (*Connector) Name() string { return "mcp" }

// Handles reports false: MCP is recognised by content, through Sniff.
func (*Connector) Handles(string) bool { return false }

// Server returns the name of the server r goes to: the mcp_servers entry
// whose URL it falls under, else its host.
func (c *Connector) Server(r *connectors.Request) (name string, listed bool) {
	scheme, host, path := target(r)
	for _, s := range c.servers() {
		if urlMatch(s.URL, scheme, host, path) {
			return s.Name, true
		}
	}
	h := r.Host()
	if h == "" {
		h = "unknown"
	}
	return h, false
}

// target returns r's scheme, lower-case host[:port] without a default port,
// and path.
func target(r *connectors.Request) (scheme, host, path string) {
	scheme = r.Scheme
	if scheme == "" {
		scheme = r.HTTP.URL.Scheme
	}
	if scheme == "" {
		scheme = "http"
	}
	host = r.HTTP.URL.Host
	if host == "" {
		host = r.HTTP.Host
	}
	return scheme, stripDefaultPort(scheme, strings.ToLower(host)), r.HTTP.URL.Path
}

func stripDefaultPort(scheme, host string) string {
	switch {
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		return host[:len(host)-4]
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		return host[:len(host)-3]
	}
	return host
}

// urlMatch reports whether the request falls under u, a URL the policy
// loader normalised (scheme://host[:port]/path, no trailing slash).
func urlMatch(u, scheme, host, path string) bool {
	rest, ok := strings.CutPrefix(u, scheme+"://")
	if !ok {
		return false
	}
	uhost, upath, _ := strings.Cut(rest, "/")
	if stripDefaultPort(scheme, uhost) != host {
		return false
	}
	if upath == "" {
		return true
	}
	upath = "/" + upath
	return path == upath || path == upath+"/" || strings.HasPrefix(path, upath+"/")
}

// Sniff reports whether r is MCP: it goes to a listed server, carries an
// MCP header, or posts a JSON-RPC body.
func (c *Connector) Sniff(r *connectors.Request) bool {
	if _, listed := c.Server(r); listed {
		return true
	}
	h := r.HTTP.Header
	if h.Get("Mcp-Session-Id") != "" || h.Get("Mcp-Protocol-Version") != "" || h.Get("Mcp-Method") != "" {
		return true
	}
	if r.HTTP.Method != http.MethodPost {
		return false
	}
	b := bytes.TrimLeft(r.Body, " \t\r\n")
	if len(b) == 0 || (b[0] != '{' && b[0] != '[') {
		return false
	}
	return bytes.Contains(b[:min(len(b), 4096)], []byte(`"jsonrpc"`))
}

// Classify returns one action per JSON-RPC message of a POST (every
// element of a batch), or the action of the GET stream or the DELETE that
// ends a session. An error refuses the request.
func (c *Connector) Classify(r *connectors.Request) ([]rules.Action, error) {
	server, _ := c.Server(r)
	switch r.HTTP.Method {
	case http.MethodGet:
		return []rules.Action{{Connector: "mcp", Type: "mcp." + server + "." + MethodStream,
			Resource: map[string]string{"server": server}}}, nil
	case http.MethodDelete:
		return []rules.Action{{Connector: "mcp", Type: "mcp." + server + "." + MethodSessionDelete,
			Resource: map[string]string{"server": server}}}, nil
	case http.MethodPost:
	default:
		return nil, fmt.Errorf("an MCP endpoint takes POST, GET and DELETE, not %s", r.HTTP.Method)
	}
	if r.Truncated {
		return nil, fmt.Errorf("MCP message larger than the %d bytes tf inspects", len(r.Body))
	}
	msgs, batch, err := parse(r.Body, argsRead(c.reads))
	if err != nil {
		return nil, err
	}
	if err := checkHeaders(r.HTTP.Header, msgs, batch); err != nil {
		return nil, err
	}
	return Actions(server, msgs)
}

// checkHeaders checks that Mcp-Method and Mcp-Name, where the client sends
// them, say what the body says: a hop that routes by header must not be
// told one thing while the server does another.
func checkHeaders(h http.Header, msgs []Message, batch bool) error {
	method, hasMethod := headerValue(h, "Mcp-Method")
	name, hasName := headerValue(h, "Mcp-Name")
	if !hasMethod && !hasName {
		return nil
	}
	if batch {
		return errors.New("Mcp-Method or Mcp-Name header on a batch, which no single header describes")
	}
	m := &msgs[0]
	if hasMethod && method != m.Method {
		return fmt.Errorf("Mcp-Method header %q does not match the body's method %q", method, m.Method)
	}
	if hasName {
		var key string
		switch m.Method {
		case "tools/call", "prompts/get":
			key = "name"
		case "resources/read", "resources/subscribe", "resources/unsubscribe":
			key = "uri"
		default:
			return fmt.Errorf("Mcp-Name header on %s, which names nothing", describe(m))
		}
		p, err := m.paramsObject(key)
		if err != nil {
			return err
		}
		want, ok := decodeHeaderValue(name)
		if got, _ := p[key].(string); !ok || got != want {
			return fmt.Errorf("Mcp-Name header %q does not match the body's %s %q", name, key, got)
		}
	}
	return nil
}

// decodeHeaderValue undoes the =?base64?...?= wrapping that clients use
// for values a header cannot carry as they are (SEP-2243); ok is false for
// a wrapper around invalid Base64.
func decodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	inner, ok = strings.CutSuffix(inner, "?=")
	if !ok {
		return v, true
	}
	b, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}

func headerValue(h http.Header, k string) (string, bool) {
	vs := h.Values(k)
	if len(vs) == 0 {
		return "", false
	}
	if len(vs) > 1 {
		return "\x00several", true // never equal to a method or name
	}
	return vs[0], true
}

func describe(m *Message) string {
	if m.Kind == Response {
		return "a response"
	}
	return m.Method
}
