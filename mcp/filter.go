package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/tameflare/tf/rules"
)

// MaxListBytes bounds a JSON response body that tf reads to filter a tool
// list.
const MaxListBytes = 16 << 20

// AlwaysDenied reports whether p, in mode, denies every call of tool on
// server whatever its arguments: an enforcing deny rule without a
// condition matches the call's type, or the default is deny and no
// enforcing rule that could allow or hold it matches. A tool denied only
// for some arguments (a rule with when) is not always denied. Nothing is
// always denied in monitor mode. The kill switch is not considered: it is
// temporary, and calls are refused while it is on.
func AlwaysDenied(p *rules.Policy, mode rules.Mode, server, tool string) bool {
	if p == nil || mode == rules.Monitor || (mode == "" && p.Mode == rules.Monitor) {
		return false
	}
	return typeAlwaysDenied(p, mode, ToolType(server, tool))
}

// typeAlwaysDenied is AlwaysDenied for any action type.
func typeAlwaysDenied(p *rules.Policy, mode rules.Mode, typ string) bool {
	if p == nil || mode == rules.Monitor || (mode == "" && p.Mode == rules.Monitor) {
		return false
	}
	couldPass := false
	for _, r := range p.Rules {
		if r.Monitor() || !matchesAny(r.Actions, typ) {
			continue
		}
		if r.Decision == rules.Deny {
			if r.When == "" {
				return true
			}
			continue
		}
		couldPass = true
	}
	return !couldPass && p.Default == rules.Deny
}

func matchesAny(patterns []string, typ string) bool {
	for _, g := range patterns {
		if rules.GlobMatch(g, typ) {
			return true
		}
	}
	return false
}

// ListKind says which list an answer holds.
type ListKind uint8

const (
	ToolList ListKind = iota + 1
	ResourceList
	TemplateList
	PromptList
)

// listMethods are the methods whose answers are filtered.
var listMethods = map[string]ListKind{
	"tools/list":               ToolList,
	"resources/list":           ResourceList,
	"resources/templates/list": TemplateList,
	"prompts/list":             PromptList,
}

// listFields names, per kind, the result's array and the member of each
// item that names it.
var listFields = [...]struct{ member, key string }{
	ToolList:     {"tools", "name"},
	ResourceList: {"resources", "uri"},
	TemplateList: {"resourceTemplates", "uriTemplate"},
	PromptList:   {"prompts", "name"},
}

// A Hider reports whether an item of a list is hidden: a tool name, a
// resource's uri, a template's uriTemplate, a prompt's name.
type Hider func(kind ListKind, name string) bool

// PolicyHider hides, for server under p in mode, what the policy refuses
// whatever the arguments: tools always denied (AlwaysDenied), resources
// whose resources/read p denies (it takes no arguments), and templates
// and prompts when every resources/read or prompts/get is denied. Nothing
// is hidden in monitor mode.
func PolicyHider(p *rules.Policy, mode rules.Mode, server string) Hider {
	return func(kind ListKind, name string) bool {
		switch kind {
		case ToolList:
			return AlwaysDenied(p, mode, server, name)
		case ResourceList:
			if p == nil || mode == rules.Monitor || (mode == "" && p.Mode == rules.Monitor) {
				return false
			}
			a := rules.Action{Connector: "mcp", Type: MethodType(server, "resources/read"),
				Resource: map[string]string{"server": server, "method": "resources/read", "uri": name}}
			d := (&rules.Decider{Policy: p, Mode: mode}).Decide(&a)
			return d.Effect == rules.Deny && !d.Monitor
		case TemplateList:
			return typeAlwaysDenied(p, mode, MethodType(server, "resources/read"))
		case PromptList:
			return typeAlwaysDenied(p, mode, MethodType(server, "prompts/get"))
		}
		return false
	}
}

// idKey turns a raw JSON-RPC id into a comparable key: 1 and "1" differ,
// "a" and "\u0061" do not.
func idKey(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return "s:" + s
		}
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		return "n:" + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return "r:" + string(raw)
}

// ListIDs returns the keys of the ids of the list requests among msgs,
// with what they list.
func ListIDs(msgs []Message) map[string]ListKind {
	var ids map[string]ListKind
	for i := range msgs {
		if k, ok := listMethods[msgs[i].Method]; ok && msgs[i].Kind == Request {
			if ids == nil {
				ids = map[string]ListKind{}
			}
			ids[idKey(msgs[i].ID)] = k
		}
	}
	return ids
}

// FilterToolList removes the hidden tools from msg, a JSON-RPC response to
// tools/list, and reports how many it removed.
func FilterToolList(msg []byte, hide func(tool string) bool) ([]byte, int, error) {
	return FilterList(msg, ToolList, func(_ ListKind, name string) bool { return hide(name) })
}

// FilterList removes the hidden items from msg, a JSON-RPC response to a
// list request of kind, and reports how many it removed. Every other
// member is kept. A result that is not such a list is an error.
func FilterList(msg []byte, kind ListKind, hide Hider) ([]byte, int, error) {
	return filterList(msg, kind, hide, nil)
}

// A Pinner sees the tools of a tools/list answer and returns those to
// hide (tools changed since they were pinned, under pin_tools: deny).
type Pinner func(tools []ToolDigest) map[string]bool

// filterList is FilterList with tools also shown to pin.
func filterList(msg []byte, kind ListKind, hide Hider, pin Pinner) ([]byte, int, error) {
	f := listFields[kind]
	var m map[string]json.RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, 0, fmt.Errorf("reading a list answer: %w", err)
	}
	res, ok := m["result"]
	if !ok {
		return msg, 0, nil // an error answer lists nothing
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(res, &result); err != nil {
		return nil, 0, fmt.Errorf("reading a list result: %w", err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(result[f.member], &items); err != nil {
		return nil, 0, fmt.Errorf("reading the %s of a list result: %w", f.member, err)
	}
	names := make([]string, len(items))
	var digests []ToolDigest
	for i, t := range items {
		var item map[string]json.RawMessage
		if err := json.Unmarshal(t, &item); err != nil || item[f.key] == nil || json.Unmarshal(item[f.key], &names[i]) != nil {
			return nil, 0, fmt.Errorf("an item of the %s of a list result has no %s", f.member, f.key)
		}
		if pin != nil && kind == ToolList {
			digests = append(digests, ToolDigest{Name: names[i], Digest: itemDigest(t, names[i], item["description"], item["inputSchema"])})
		}
	}
	var pinned map[string]bool
	if pin != nil && kind == ToolList {
		pinned = pin(digests)
	}
	kept := items[:0]
	removed := 0
	for i, t := range items {
		if pinned[names[i]] || (hide != nil && hide(kind, names[i])) {
			removed++
			continue
		}
		kept = append(kept, t)
	}
	if removed == 0 {
		return msg, 0, nil
	}
	var err error
	if result[f.member], err = json.Marshal(kept); err != nil {
		return nil, 0, err
	}
	if m["result"], err = json.Marshal(result); err != nil {
		return nil, 0, err
	}
	out, err := json.Marshal(m)
	return out, removed, err
}

// A listFilter reads the answers of one exchange: it filters the answers
// to list requests, those whose ids it holds or, by shape, every answer
// whose result holds a list (a GET stream, which replays answers to
// requests tf saw on another connection, or the legacy SSE transport's
// stream), and it reports the isError of tool results.
type listFilter struct {
	ids   map[string]ListKind
	shape bool
	hide  Hider
	// calls holds the ids of tools/call and resources/read requests
	// whose answers are awaited; onResult hears each tool result's
	// isError.
	calls    map[string]Call
	onResult func(isError bool)
	// inspect, when set, sees every answer to a request of calls (tool
	// results, resource contents) and may replace it.
	inspect Inspector
	// serverRequest, when set, decides each request the server sends the
	// client in the stream; false drops it (the server was answered).
	// The stream is then read to its end.
	serverRequest func(m *Message) bool
	// The legacy SSE transport: onEndpoint hears the endpoint event,
	// inject carries tf's own events into the stream, onClose hears its
	// end.
	onEndpoint func(string)
	inject     <-chan []byte
	onClose    func()
	awaited    func(id []byte, hasResult, isError bool, rpcErr []byte) (Call, bool)
	// pin sees the tools of every tools/list answer.
	pin Pinner
}

// done reports whether nothing is left to filter.
func (f *listFilter) done() bool {
	return !f.shape && len(f.ids) == 0 && len(f.calls) == 0 && f.serverRequest == nil
}

// dropped marks a message that filterOne removed from what the client
// sees.
var dropped = []byte{}

// filterMessages filters, in a JSON body of one message or a batch, the
// answers to list requests, and deletes their ids.
func (f *listFilter) filterMessages(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return body, nil
	}
	if trimmed[0] == '[' {
		var batch []json.RawMessage
		if err := json.Unmarshal(trimmed, &batch); err != nil {
			return nil, fmt.Errorf("reading a JSON-RPC batch answer: %w", err)
		}
		changed := false
		kept := batch[:0]
		for _, el := range batch {
			out, ok, err := f.filterOne(el)
			if err != nil {
				return nil, err
			}
			if ok {
				el, changed = out, true
			}
			if len(el) > 0 {
				kept = append(kept, el)
			}
		}
		if !changed {
			return body, nil
		}
		if len(kept) == 0 {
			return dropped, nil
		}
		return json.Marshal(kept)
	}
	out, ok, err := f.filterOne(trimmed)
	if err != nil || !ok {
		return body, err
	}
	return out, nil
}

// filterMessages is listFilter.filterMessages by ids.
func filterMessages(body []byte, ids map[string]ListKind, hide Hider) ([]byte, error) {
	return (&listFilter{ids: ids, hide: hide}).filterMessages(body)
}

// filterOne filters msg when it answers a list request, and reads it
// when it answers a call.
func (f *listFilter) filterOne(msg []byte) ([]byte, bool, error) {
	h, ok := responseHead(msg)
	id, result := h.id, h.result
	if !ok {
		return nil, false, fmt.Errorf("reading a JSON-RPC answer: not a JSON object")
	}
	if h.isRequest {
		if f.serverRequest == nil {
			return nil, false, nil
		}
		msgs, _, err := Parse(msg)
		if err != nil || len(msgs) != 1 {
			// A server request tf cannot read goes nowhere.
			return dropped, true, nil
		}
		if !f.serverRequest(&msgs[0]) {
			return dropped, true, nil
		}
		return nil, false, nil
	}
	if id == nil {
		return nil, false, nil // a notification from the server
	}
	if f.awaited != nil {
		// The legacy transport's stream: the answer ends its request's
		// wait; a call's answer is read as below.
		if call, ok := f.awaited(id, result != nil, h.isError, h.rpcErr); ok && (call.Method == "tools/call" || call.Method == "resources/read") {
			if f.inspect != nil && result != nil {
				out := f.inspect(Reply{Call: call, ID: id, Result: result, Msg: msg, Spelt: h.spelt})
				return out, !bytes.Equal(out, msg), nil
			}
			return nil, false, nil
		}
	}
	key := idKey(id)
	if call, ok := f.calls[key]; ok {
		delete(f.calls, key)
		if f.onResult != nil && call.Method == "tools/call" && result != nil {
			f.onResult(h.isError) // absent is false
		}
		if f.inspect != nil && result != nil {
			out := f.inspect(Reply{Call: call, ID: id, Result: result, Msg: msg, Spelt: h.spelt})
			return out, !bytes.Equal(out, msg), nil
		}
		return nil, false, nil
	}
	var kind ListKind
	if k, ok := f.ids[key]; ok {
		kind = k
		delete(f.ids, key)
	} else if f.shape && result != nil {
		kind = listShape(result)
	}
	if kind == 0 {
		return nil, false, nil
	}
	out, _, err := filterList(msg, kind, f.hide, f.pin)
	if err != nil {
		// Fail closed: the list is replaced by an error rather than passed
		// on unfiltered.
		return ErrorMessage(id, CodeRefused, "tf could not filter this list: "+err.Error(), nil), true, nil
	}
	return out, true, nil
}

// msgHead is what responseHead reads of a message.
type msgHead struct {
	id, result []byte // of a response; id nil otherwise
	isRequest  bool
	spelt      bool // a string holds a \u or \/ escape
	// isError is the result's isError member, false when it has none.
	isError bool
	// rpcErr is the error member of a response.
	rpcErr []byte
}

// responseHead reads msg's top level, and its result's, in one pass; ok
// is false when msg is not a JSON object.
func responseHead(msg []byte) (h msgHead, ok bool) {
	d := &decoder{b: msg}
	if c, err := d.peek(); err != nil || c != '{' {
		return h, false
	}
	d.i++
	if c, err := d.peek(); err != nil {
		return h, false
	} else if c == '}' {
		return h, true
	}
	method := false
	for {
		k, err := d.key()
		if err != nil {
			return h, false
		}
		var v []byte
		if c, _ := d.peek(); k == "result" && c == '{' {
			v, h.isError, err = d.resultObject()
		} else {
			v, err = d.skip()
		}
		if err != nil {
			return h, false
		}
		switch k {
		case "id":
			if string(v) != "null" {
				h.id = v
			}
		case "result":
			h.result = v
		case "error":
			h.rpcErr = v
		case "method":
			method = true
		}
		c, err := d.peek()
		if err != nil {
			return h, false
		}
		d.i++
		if c == '}' {
			break
		}
		if c != ',' {
			return h, false
		}
	}
	if method {
		return msgHead{isRequest: h.id != nil}, true
	}
	h.spelt = d.spelt
	return h, true
}

// resultObject skips the object at d.i, noting its isError member, and
// returns its bytes.
func (d *decoder) resultObject() (raw []byte, isError bool, err error) {
	start := d.i
	d.i++
	d.depth++
	defer func() { d.depth-- }()
	c, err := d.peek()
	if err != nil {
		return nil, false, err
	}
	if c == '}' {
		d.i++
		return d.b[start:d.i], false, nil
	}
	for {
		k, err := d.key()
		if err != nil {
			return nil, false, err
		}
		v, err := d.skip()
		if err != nil {
			return nil, false, err
		}
		if k == "isError" {
			isError = string(v) == "true"
		}
		c, err := d.peek()
		if err != nil {
			return nil, false, err
		}
		d.i++
		if c == '}' {
			return d.b[start:d.i], isError, nil
		}
		if c != ',' {
			return nil, false, d.errorf("want , or }")
		}
	}
}

// listShape returns the kind of list a result holds at its top level, 0
// for none.
func listShape(result []byte) ListKind {
	if len(result) == 0 || result[0] != '{' {
		return 0
	}
	d := &decoder{b: result}
	d.i++
	if c, err := d.peek(); err != nil || c == '}' {
		return 0
	}
	for {
		k, err := d.key()
		if err != nil {
			return 0
		}
		for kind := ToolList; kind <= PromptList; kind++ {
			if k == listFields[kind].member {
				return kind
			}
		}
		if _, err := d.skip(); err != nil {
			return 0
		}
		c, err := d.peek()
		if err != nil || c != ',' {
			return 0
		}
		d.i++
	}
}

// ResponseFilter returns a hook for the upstream response to a request
// that holds the list requests ids: it removes the items hide names from
// their answers, in a JSON body or in an event stream. An event
// stream goes on event by event (progress notifications are not held
// back), and once every list is answered the rest passes through
// unparsed. A response tf cannot read is replaced (fail closed).
func ResponseFilter(ids map[string]ListKind, hide Hider) func(*http.Response) error {
	return (&listFilter{ids: ids, hide: hide}).response
}

// Answers says what to do with the answers to one POST: filter the lists
// (Lists: the ids of its list requests, by ListIDs), and read the results
// of its tool calls and resource reads (Calls, by CallIDs): OnResult
// hears each tool result's isError, Inspect may replace each answer.
type Answers struct {
	Lists    map[string]ListKind
	Hide     Hider
	Calls    map[string]Call
	OnResult func(isError bool)
	Inspect  Inspector
	// Shape filters every list found in the stream (a GET stream).
	Shape bool
	// ServerRequest decides each request the server sends the client in
	// the stream; false drops it (tf answered the server).
	ServerRequest func(m *Message) bool
	// For the GET stream of the legacy HTTP+SSE transport: OnEndpoint
	// hears the endpoint the client is to post to, Inject carries events
	// of tf's own into the stream, OnClose hears the stream end.
	OnEndpoint func(endpoint string)
	Inject     <-chan []byte
	OnClose    func()
	// Awaited hears every answer in the stream (LegacySession.Answer)
	// and returns the call it answers, when tf awaited it: tool results
	// and resource contents are then inspected as Calls are.
	Awaited func(id []byte, hasResult, isError bool, rpcErr []byte) (Call, bool)
	// Pin sees the tools of every tools/list answer (see Pinner).
	Pin Pinner
}

// Hook returns the response hook for a: nil when there is nothing to do.
func (a Answers) Hook() func(*http.Response) error {
	f := &listFilter{ids: a.Lists, hide: a.Hide, calls: a.Calls, onResult: a.OnResult, inspect: a.Inspect,
		shape: a.Shape && (a.Hide != nil || a.Pin != nil), serverRequest: a.ServerRequest,
		onEndpoint: a.OnEndpoint, inject: a.Inject, onClose: a.OnClose, pin: a.Pin, awaited: a.Awaited}
	if f.done() {
		return nil
	}
	return f.response
}

// A Call is a request whose answer tf reads: a tools/call (Name is the
// tool) or a resources/read (Name is the uri).
type Call struct {
	Method, Name string
}

// A Reply is the answer to a Call: its id, result and the whole message
// (raw JSON); Spelt says that a string in it holds a \u or \/ escape.
type Reply struct {
	Call            Call
	ID, Result, Msg []byte
	Spelt           bool
}

// An Inspector sees an answer and returns what the client gets instead:
// its message itself, or a replacement.
type Inspector func(a Reply) []byte

// callOf returns the Call of m, ok false when m is no call tf reads.
func callOf(m *Message) (Call, bool) {
	if m.Kind != Request || (m.Method != "tools/call" && m.Method != "resources/read") {
		return Call{}, false
	}
	key := "name"
	if m.Method == "resources/read" {
		key = "uri"
	}
	p, _ := m.paramsObject(key)
	name, _ := p[key].(string)
	return Call{Method: m.Method, Name: name}, true
}

// ActionCalls returns what Answers needs of the messages of a POST from
// their actions and JSON-RPC ids (as JSON, one per action, by
// MessageIDs), without parsing the body again: its list requests and its
// tool calls and resource reads, by the keys of their ids.
func ActionCalls(actions []rules.Action, ids []string) (lists map[string]ListKind, calls map[string]Call) {
	for i := range actions {
		if i >= len(ids) || ids[i] == "" {
			continue
		}
		method := actions[i].Resource["method"]
		if k, ok := listMethods[method]; ok {
			if lists == nil {
				lists = map[string]ListKind{}
			}
			lists[idKey([]byte(ids[i]))] = k
		}
		var name string
		switch method {
		case "tools/call":
			name = actions[i].Resource["tool"]
		case "resources/read":
			name = actions[i].Resource["uri"]
		default:
			continue
		}
		if calls == nil {
			calls = map[string]Call{}
		}
		calls[idKey([]byte(ids[i]))] = Call{Method: method, Name: name}
	}
	return lists, calls
}

// CallIDs returns the tools/call and resources/read requests among msgs
// by the keys of their ids.
func CallIDs(msgs []Message) map[string]Call {
	var ids map[string]Call
	for i := range msgs {
		if c, ok := callOf(&msgs[i]); ok {
			if ids == nil {
				ids = map[string]Call{}
			}
			ids[idKey(msgs[i].ID)] = c
		}
	}
	return ids
}

// StreamFilter returns a hook for the response to a GET of a server's
// event stream: every answer in it that holds a list is filtered by its
// shape (replayed answers, with Last-Event-ID, included).
func StreamFilter(hide Hider) func(*http.Response) error {
	return (&listFilter{shape: true, hide: hide}).response
}

func (lf *listFilter) response(res *http.Response) error {
	if lf.done() || res.StatusCode != http.StatusOK {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if enc := res.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return replaceBody(res, ErrorMessage(nil, CodeRefused, "tf could not filter a list sent with Content-Encoding "+enc, nil))
	}
	switch mt {
	case "text/event-stream":
		res.Body = &sseFilter{body: res.Body, sc: NewSSEScanner(res.Body, 0), f: lf, inject: lf.inject}
		res.ContentLength = -1
		res.Header.Del("Content-Length")
		return nil
	case "application/json":
		if len(lf.ids) == 0 && len(lf.calls) == 0 {
			return nil // a JSON answer holds no server request, and no list here
		}
		body, err := io.ReadAll(io.LimitReader(res.Body, MaxListBytes+1))
		if err != nil {
			res.Body.Close()
			return fmt.Errorf("reading an MCP answer: %w", err)
		}
		if len(body) > MaxListBytes && len(lf.ids) == 0 {
			// Only results to read for their isError: a large one goes on
			// unread.
			res.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), res.Body), res.Body}
			return nil
		}
		res.Body.Close()
		if len(body) > MaxListBytes {
			return replaceBody(res, ErrorMessage(nil, CodeRefused, fmt.Sprintf("tf could not filter a list larger than %d bytes", MaxListBytes), nil))
		}
		out, err := lf.filterMessages(body)
		if err != nil {
			return replaceBody(res, ErrorMessage(nil, CodeRefused, "tf could not filter this list: "+err.Error(), nil))
		}
		return replaceBody(res, out)
	}
	return nil
}

func replaceBody(res *http.Response, body []byte) error {
	if res.Body != nil {
		res.Body.Close()
	}
	res.Header.Del("Content-Encoding")
	res.Header.Set("Content-Type", "application/json")
	res.Header.Set("Content-Length", strconv.Itoa(len(body)))
	res.ContentLength = int64(len(body))
	res.Body = io.NopCloser(bytes.NewReader(body))
	return nil
}

// sseFilter passes an event stream on event by event, filtering the
// answers to the tools/list requests.
type sseFilter struct {
	body io.ReadCloser
	sc   *SSEScanner
	f    *listFilter
	out  []byte
	err  error
	// With inject (the legacy SSE transport's stream), events are read
	// by a goroutine and tf's own events (refusals of messages the client
	// posted) are merged in between them.
	inject <-chan []byte
	events chan sseRead
	closed chan struct{}
	once   sync.Once
}

type sseRead struct {
	raw []byte
	err error
}

func (f *sseFilter) Read(p []byte) (int, error) {
	if f.inject != nil {
		return f.readMerged(p)
	}
	for len(f.out) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.f.done() {
			// Every list is answered: the rest is not inspected.
			if rest := f.sc.Buffered(); len(rest) > 0 {
				f.out = rest
				break
			}
			return f.body.Read(p)
		}
		raw, err := f.sc.Next()
		if err != nil {
			f.err = err
			if errors.Is(err, ErrEventTooLarge) {
				f.err = fmt.Errorf("filtering a list: %w", err)
			}
			continue
		}
		f.out = f.event(raw)
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// readMerged is Read for a stream with injected events.
func (f *sseFilter) readMerged(p []byte) (int, error) {
	f.once.Do(func() {
		f.events, f.closed = make(chan sseRead), make(chan struct{})
		go func() {
			for {
				raw, err := f.sc.Next()
				select {
				case f.events <- sseRead{raw, err}:
				case <-f.closed:
					return
				}
				if err != nil {
					return
				}
			}
		}()
	})
	for len(f.out) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		select {
		case ev := <-f.events:
			if ev.err != nil {
				f.err = ev.err
				continue
			}
			f.out = f.event(ev.raw)
		case b := <-f.inject:
			f.out = b
		}
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

func (f *sseFilter) event(raw []byte) []byte {
	ev := ParseEvent(raw)
	if ev.Event == "endpoint" && f.f.onEndpoint != nil {
		// The legacy transport names where the client posts.
		f.f.onEndpoint(string(bytes.TrimSpace(ev.Data)))
	}
	data := bytes.TrimSpace(ev.Data)
	if !ev.HasData || len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		return raw
	}
	out, err := f.f.filterMessages(data)
	if err != nil {
		// Not JSON-RPC: no list in it, passed on as it came.
		return raw
	}
	if bytes.Equal(out, data) {
		return raw
	}
	if len(out) == 0 {
		// Dropped (a refused server request): an event without data
		// keeps its id for resumption and dispatches nothing.
		ev.HasData, ev.Data, ev.Event = false, nil, ""
		if ev.ID == "" {
			return []byte(":\n\n")
		}
	} else {
		ev.Data = out
	}
	return ev.Encode()
}

func (f *sseFilter) Close() error {
	if f.closed != nil {
		f.once.Do(func() {})
		select {
		case <-f.closed:
		default:
			close(f.closed)
		}
	}
	if f.f.onClose != nil {
		f.f.onClose()
	}
	return f.body.Close()
}
