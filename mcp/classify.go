// Package mcp governs Model Context Protocol traffic: it turns JSON-RPC
// messages into actions, answers refusals in JSON-RPC, filters tool lists,
// and relays stdio servers under governance.
package mcp

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
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

// ToolType is the action type of a call of tool on server:
// mcp.<server>.<tool>, the tool's name as the server spells it (case and
// all), with the bytes that could make it read as something else escaped
// as %XX: "@" (a tool named "@ping" must not pass for the method ping),
// "%", "*" (a pattern's wildcard), and everything outside printable ASCII.
// resource.tool keeps the name exactly.
func ToolType(server, tool string) string {
	return "mcp." + server + "." + escapeSegment(tool)
}

// MethodType is the action type of any other message:
// mcp.<server>.@<method>, the method escaped like a tool name (methods are
// case-sensitive: "Tools/List" is not tools/list).
func MethodType(server, method string) string {
	return "mcp." + server + ".@" + escapeSegment(method)
}

// escapeSegment escapes the bytes of a tool or method name that an action
// type must not hold as they are.
func escapeSegment(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !segmentByte(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if segmentByte(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&0xf])
	}
	return string(b)
}

// segmentByte reports the bytes a tool or method name keeps in an action
// type.
func segmentByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '_', c == '-', c == '.', c == '/', c == ':':
		return true
	}
	return false
}

// UnlistedServer is the name of an MCP server that the policy does not
// list: its host in parentheses, "(docs.evil.test)" or
// "(127.0.0.1:8080)". Listed names hold only [a-z0-9_-], so no pattern
// written for a listed server (mcp.docs.*) reaches an unlisted one, and
// the parentheses say where the host ends and the tool begins.
func UnlistedServer(host string) string { return "(" + host + ")" }

// Listed reports whether server is a name the policy (or tf mcp wrap
// --server) gave, not an unlisted host.
func Listed(server string) bool { return !strings.HasPrefix(server, "(") }

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
		if _, ok := protocolMethods[m.Method]; ok && m.Params != nil && m.Params[0] == '[' {
			return a, fmt.Errorf("%s params are an array; MCP's are objects", m.Method)
		} else if ok && m.Params != nil {
			// The protocol's own methods show their params to rules, and
			// the baseline checks their shape.
			d := &decoder{b: m.Params}
			v, err := d.value()
			if err == nil {
				err = d.end()
			}
			if err != nil {
				return a, fmt.Errorf("%s params: %w", m.Method, err)
			}
			a.Params, _ = v.(map[string]any)
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

// A paramKind is what a member of a protocol method's params must be.
type paramKind uint8

const (
	pString paramKind = iota + 1
	pObject
	pNumber
	pID // a string or a number: a request id or progress token
)

// protocolMethods are the client's messages that the built-in baseline
// allows to a listed server, with the members their params may have
// (_meta, an object, always may): the protocol's own housekeeping, which
// a session cannot do without and which does nothing on the server's
// side. Anything else, and these with other members or members of
// another type, is decided by the rules alone.
var protocolMethods = map[string]map[string]paramKind{
	"initialize":                       {"protocolVersion": pString, "capabilities": pObject, "clientInfo": pObject},
	"ping":                             {},
	"notifications/initialized":        {},
	"notifications/cancelled":          {"requestId": pID, "reason": pString},
	"notifications/progress":           {"progressToken": pID, "progress": pNumber, "total": pNumber, "message": pString},
	"notifications/roots/list_changed": {},
	"tools/list":                       {"cursor": pString},
	"resources/list":                   {"cursor": pString},
	"resources/templates/list":         {"cursor": pString},
	"prompts/list":                     {"cursor": pString},
	// 2025-11-25 tasks: the client polls, fetches and cancels the tasks
	// of calls that were decided already.
	"tasks/list":   {"cursor": pString},
	"tasks/get":    {"taskId": pString},
	"tasks/result": {"taskId": pString},
	"tasks/cancel": {"taskId": pString},
	// The 2026-07-28 revision's successors of initialize and of the GET
	// stream.
	"server/discover":      {},
	"subscriptions/listen": {},
}

// wellFormed reports whether params (decoded) hold only what the protocol
// method's params may hold.
func wellFormed(params map[string]any, kinds map[string]paramKind) bool {
	for k, v := range params {
		if k == "_meta" {
			if _, ok := v.(map[string]any); !ok {
				return false
			}
			continue
		}
		kind, ok := kinds[k]
		if !ok {
			return false
		}
		switch v.(type) {
		case string:
			ok = kind == pString || kind == pID
		case map[string]any:
			ok = kind == pObject
		case float64:
			ok = kind == pNumber || kind == pID
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
	return true
}

// plumbing reports what the built-in baseline allows: on a listed server
// only, the protocol's own methods with well-formed params, the GET
// stream, ending a session, and the client's answers to the server's own
// requests.
func plumbing(a *rules.Action) bool {
	if a.Connector != "mcp" || !Listed(a.Resource["server"]) {
		return false
	}
	method, ok := a.Resource["method"]
	if ok && a.Resource["from"] == "server" {
		kinds, ok := serverPlumbing[method]
		return ok && a.Type == MethodType(a.Resource["server"], method) && wellFormed(a.Params, kinds)
	}
	if !ok {
		// Not a JSON-RPC request or notification: the GET stream, the
		// DELETE, a response.
		_, rest, _ := strings.Cut(a.Type, ".@")
		return "@"+rest == MethodStream || "@"+rest == MethodSessionDelete || "@"+rest == MethodResponse
	}
	kinds, ok := protocolMethods[method]
	return ok && a.Type == MethodType(a.Resource["server"], method) && wellFormed(a.Params, kinds)
}

// PinRule names tool pinning in decisions (mcp: {pin_tools}).
const PinRule = "tf:mcp-pin"

// BaselineRule names the built-in baseline in decisions.
const BaselineRule = "tf:mcp-baseline"

// Baseline applies the built-in baseline to the decision rules made for a:
// protocol plumbing to a listed server (see plumbing) is allowed when no
// rule decided it, that is when the policy's default did. A rule that matches plumbing, of any effect,
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
	// endpoints maps the endpoints that listed servers of the legacy
	// HTTP+SSE transport announced (scheme://host/path, normalised) to
	// their server's name.
	endpoints  sync.Map
	nEndpoints atomic.Int32
}

// maxEndpoints bounds the endpoints a connector learns.
const maxEndpoints = 4096

// LearnEndpoint notes the endpoint that the GET stream of the legacy
// HTTP+SSE transport at stream (a URL of listed server) announced: data,
// resolved against stream. It returns the endpoint's absolute URL, and
// false when it is on another origin (which clients refuse too) or
// unreadable. Posts to the endpoint's path are then the server's.
func (c *Connector) LearnEndpoint(stream *url.URL, data, server string) (*url.URL, bool) {
	ref, err := url.Parse(data)
	if err != nil {
		return nil, false
	}
	u := stream.ResolveReference(ref)
	if u.Scheme != stream.Scheme || !strings.EqualFold(u.Host, stream.Host) {
		return nil, false
	}
	key := u.Scheme + "://" + stripDefaultPort(u.Scheme, strings.ToLower(u.Host)) + normalPath(u.Path)
	if _, loaded := c.endpoints.LoadOrStore(key, server); !loaded {
		if c.nEndpoints.Add(1) > maxEndpoints {
			c.endpoints.Delete(key)
			c.nEndpoints.Add(-1)
			return nil, false
		}
	}
	return u, true
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
// whose URL it falls under, else UnlistedServer of its host.
func (c *Connector) Server(r *connectors.Request) (name string, listed bool) {
	scheme, host, p := target(r)
	for _, s := range c.servers() {
		if urlMatch(s.URL, scheme, host, p) {
			return s.Name, true
		}
	}
	if name, ok := c.endpoints.Load(scheme + "://" + host + p); ok {
		for _, s := range c.servers() {
			if s.Name == name {
				return s.Name, true
			}
		}
	}
	if host == "" {
		host = "unknown"
	}
	return UnlistedServer(host), false
}

// target returns r's scheme, lower-case host[:port] without a default port
// or a trailing dot, and its path normalised the way servers route:
// percent-escapes decoded, lower case, dot segments resolved, repeated
// slashes merged.
func target(r *connectors.Request) (scheme, host, p string) {
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
	host = stripDefaultPort(scheme, strings.ToLower(host))
	if strings.HasSuffix(host, ".") || strings.Contains(host, ".:") {
		if h, port, err := net.SplitHostPort(host); err == nil {
			host = net.JoinHostPort(strings.TrimRight(h, "."), port)
		} else {
			host = strings.TrimRight(host, ".")
		}
	}
	return scheme, host, normalPath(r.HTTP.URL.Path)
}

// normalPath is p (decoded) as servers that route without regard to case
// (Express, the TypeScript SDK's default) and that resolve dot segments
// see it; a trailing slash is kept off.
func normalPath(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	if normalAlready(p) {
		return p
	}
	return path.Clean("/" + strings.ToLower(strings.ReplaceAll(p, "\\", "/")))
}

// normalAlready reports a path that normalPath leaves as it is: absolute,
// lower case, without a trailing slash, a backslash, repeated slashes or
// a segment that starts with a dot.
func normalAlready(p string) bool {
	if p[0] != '/' || p[len(p)-1] == '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'A' <= c && c <= 'Z', c == '\\':
			return false
		case c == '/' && i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.'):
			return false
		}
	}
	return true
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
// loader normalised (scheme://host[:port]/path, no trailing slash); p is
// normalised by normalPath.
func urlMatch(u, scheme, host, p string) bool {
	rest, ok := strings.CutPrefix(u, scheme+"://")
	if !ok {
		return false
	}
	uhost, upath := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		uhost, upath = rest[:i], rest[i:]
	}
	if stripDefaultPort(scheme, uhost) != host {
		return false
	}
	if upath == "" || upath == "/" {
		return true
	}
	upath = normalPath(upath)
	return p == upath || len(p) > len(upath) && p[len(upath)] == '/' && strings.HasPrefix(p, upath)
}

// Sniff reports whether r is MCP: it goes to a listed server, carries an
// MCP header, or posts a body that is or may be JSON-RPC: a JSON object
// or array with a "jsonrpc" key anywhere in what tf sees of it (escaped
// or in any case), JSON in UTF-16 or UTF-32, or a Content-Encoding tf
// cannot read. What is claimed and is not valid MCP is refused.
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
	body, err := decodedBody(r, true)
	if err != nil {
		return true // an encoding tf cannot read: refused by Classify
	}
	return looksLikeJSONRPC(body)
}

// looksLikeJSONRPC reports whether b (the start of a body) may be a
// JSON-RPC message for a server's parser.
func looksLikeJSONRPC(b []byte) bool {
	if wideJSON(b) {
		return true
	}
	b = bytes.TrimPrefix(b, utf8BOM)
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || (b[0] != '{' && b[0] != '[') {
		return false
	}
	if bytes.Contains(b, []byte(`"jsonrpc"`)) {
		return true
	}
	// Slower paths for what a server's parser reads as the same key:
	// another case (encoding/json ignores case) or \u escapes.
	return containsFold(b, "jsonrpc") || bytes.Contains(b, []byte(`\u`)) || bytes.Contains(b, []byte(`\U`))
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// wideJSON reports a body in UTF-16 or UTF-32: a byte-order mark, or a NUL
// beside the first non-space character, which UTF-8 JSON never has.
func wideJSON(b []byte) bool {
	switch {
	case bytes.HasPrefix(b, []byte{0xfe, 0xff}), bytes.HasPrefix(b, []byte{0xff, 0xfe}),
		bytes.HasPrefix(b, []byte{0, 0, 0xfe, 0xff}):
		return true
	}
	return len(b) >= 2 && (b[0] == 0 || b[1] == 0)
}

// containsFold reports whether b holds s (lower case ASCII) in any case.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if b[i]|0x20 == s[0] && bytes.EqualFold(b[i:i+len(s)], []byte(s)) {
			return true
		}
	}
	return false
}

// maxDecodedBytes bounds what tf inflates of a compressed body.
const maxDecodedBytes = 4 << 20

// errTruncated says that a body is larger than what tf inspects.
var errTruncated = errors.New("larger than tf inspects")

// decodedBody returns r's body with its Content-Encoding undone (gzip,
// x-gzip, deflate; identity or none as it is). Other encodings are an
// error: tf cannot see what the server would. With partial, a body that
// tf saw only the start of gives what inflates of that start; otherwise
// it is errTruncated.
func decodedBody(r *connectors.Request, partial bool) ([]byte, error) {
	encs := r.HTTP.Header.Values("Content-Encoding")
	var list []string
	for _, v := range encs {
		for _, e := range strings.Split(v, ",") {
			if e = strings.ToLower(strings.TrimSpace(e)); e != "" && e != "identity" {
				list = append(list, e)
			}
		}
	}
	if len(list) == 0 {
		return r.Body, nil
	}
	if r.Truncated && !partial {
		return nil, errTruncated
	}
	b := r.Body
	// Encodings are listed in the order they were applied.
	for i := len(list) - 1; i >= 0; i-- {
		var zr io.Reader
		var err error
		switch list[i] {
		case "gzip", "x-gzip":
			zr, err = gzip.NewReader(bytes.NewReader(b))
		case "deflate":
			zr, err = zlib.NewReader(bytes.NewReader(b))
		default:
			return nil, fmt.Errorf("Content-Encoding %q, which tf cannot read", list[i])
		}
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding %s: %w", list[i], err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxDecodedBytes+1))
		if len(out) > maxDecodedBytes {
			return nil, fmt.Errorf("Content-Encoding %s: more than %d bytes decoded: %w", list[i], maxDecodedBytes, errTruncated)
		}
		if err != nil && !(partial && r.Truncated && errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil, fmt.Errorf("Content-Encoding %s: %w", list[i], err)
		}
		b = out
	}
	return b, nil
}

// Classify returns one action per JSON-RPC message of a POST (every
// element of a batch), or the action of the GET stream or the DELETE that
// ends a session. An error refuses the request.
func (c *Connector) Classify(r *connectors.Request) ([]rules.Action, error) {
	server, _ := c.Server(r)
	switch r.HTTP.Method {
	case http.MethodGet, http.MethodDelete:
		if len(r.Body) > 0 || r.Truncated || r.HTTP.ContentLength > 0 {
			return nil, fmt.Errorf("an MCP %s with a body, which MCP does not define", r.HTTP.Method)
		}
		m := MethodStream
		if r.HTTP.Method == http.MethodDelete {
			m = MethodSessionDelete
		}
		return []rules.Action{{Connector: "mcp", Type: "mcp." + server + "." + m,
			Resource: map[string]string{"server": server}}}, nil
	case http.MethodPost:
	default:
		return nil, fmt.Errorf("an MCP endpoint takes POST, GET and DELETE, not %s", r.HTTP.Method)
	}
	if r.Truncated {
		return nil, fmt.Errorf("MCP message larger than the %d bytes tf inspects", len(r.Body))
	}
	body, err := decodedBody(r, false)
	if err != nil {
		return nil, fmt.Errorf("MCP message: %w", err)
	}
	if wideJSON(body) {
		return nil, errors.New("MCP message in UTF-16 or UTF-32; JSON-RPC over MCP is UTF-8")
	}
	msgs, batch, err := parse(body, argsRead(c.reads))
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

// ServerRequestAction returns the action of a request the server sends
// the client (sampling/createMessage, elicitation/create, roots/list,
// ping): mcp.<server>.@<method>, with resource.from "server" and the
// request's params, so that rules decide what a server may ask of the
// client and its model.
func ServerRequestAction(server string, m *Message) (rules.Action, error) {
	a := rules.Action{Connector: "mcp", Type: MethodType(server, m.Method),
		Resource: map[string]string{"server": server, "method": m.Method, "from": "server"}}
	if err := checkName("method", m.Method); err != nil {
		return a, err
	}
	if m.Params != nil && m.Params[0] == '{' {
		d := &decoder{b: m.Params}
		v, err := d.value()
		if err == nil {
			err = d.end()
		}
		if err != nil {
			return a, fmt.Errorf("%s params: %w", m.Method, err)
		}
		a.Params, _ = v.(map[string]any)
	} else if m.Params != nil {
		return a, fmt.Errorf("%s params are not an object", m.Method)
	}
	return a, nil
}

// serverPlumbing are the server's requests that the baseline allows: a
// ping, and asking for the client's roots (the workspace it was started
// in), which sessions do as a matter of course. Sampling and elicitation
// are decided by the rules.
var serverPlumbing = map[string]map[string]paramKind{
	"ping":       {},
	"roots/list": {},
}
