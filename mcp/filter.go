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
	typ := ToolType(server, tool)
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

// ListIDs returns the keys of the ids of the tools/list requests among
// msgs.
func ListIDs(msgs []Message) map[string]bool {
	var ids map[string]bool
	for i := range msgs {
		if msgs[i].Kind == Request && msgs[i].Method == "tools/list" {
			if ids == nil {
				ids = map[string]bool{}
			}
			ids[idKey(msgs[i].ID)] = true
		}
	}
	return ids
}

// FilterToolList removes the hidden tools from msg, a JSON-RPC response to
// tools/list, and reports how many it removed. Every other member is kept.
// A result that is not a tool list is an error.
func FilterToolList(msg []byte, hide func(tool string) bool) ([]byte, int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, 0, fmt.Errorf("reading a tools/list answer: %w", err)
	}
	res, ok := m["result"]
	if !ok {
		return msg, 0, nil // an error answer lists nothing
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(res, &result); err != nil {
		return nil, 0, fmt.Errorf("reading a tools/list result: %w", err)
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(result["tools"], &tools); err != nil {
		return nil, 0, fmt.Errorf("reading the tools of a tools/list result: %w", err)
	}
	kept := tools[:0]
	removed := 0
	for _, t := range tools {
		var tool struct {
			Name *string `json:"name"`
		}
		if err := json.Unmarshal(t, &tool); err != nil || tool.Name == nil {
			return nil, 0, errors.New("a tool in a tools/list result has no name")
		}
		if hide(*tool.Name) {
			removed++
			continue
		}
		kept = append(kept, t)
	}
	if removed == 0 {
		return msg, 0, nil
	}
	var err error
	if result["tools"], err = json.Marshal(kept); err != nil {
		return nil, 0, err
	}
	if m["result"], err = json.Marshal(result); err != nil {
		return nil, 0, err
	}
	out, err := json.Marshal(m)
	return out, removed, err
}

// filterMessages filters, in a JSON body of one message or a batch, the
// answers whose ids are in ids, and deletes those ids.
func filterMessages(body []byte, ids map[string]bool, hide func(string) bool) ([]byte, error) {
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
		for i, el := range batch {
			out, ok, err := filterOne(el, ids, hide)
			if err != nil {
				return nil, err
			}
			if ok {
				batch[i], changed = out, true
			}
		}
		if !changed {
			return body, nil
		}
		return json.Marshal(batch)
	}
	out, ok, err := filterOne(trimmed, ids, hide)
	if err != nil || !ok {
		return body, err
	}
	return out, nil
}

// filterOne filters msg when it answers one of ids.
func filterOne(msg []byte, ids map[string]bool, hide func(string) bool) ([]byte, bool, error) {
	var head struct {
		ID     json.RawMessage `json:"id"`
		Method *string         `json:"method"`
	}
	if err := json.Unmarshal(msg, &head); err != nil {
		return nil, false, fmt.Errorf("reading a JSON-RPC answer: %w", err)
	}
	if head.Method != nil || head.ID == nil || !ids[idKey(head.ID)] {
		return nil, false, nil
	}
	delete(ids, idKey(head.ID))
	out, _, err := FilterToolList(msg, hide)
	if err != nil {
		// Fail closed: the list is replaced by an error rather than passed
		// on unfiltered.
		return ErrorMessage(head.ID, CodeRefused, "tf could not filter this tool list: "+err.Error(), nil), true, nil
	}
	return out, true, nil
}

// ResponseFilter returns a hook for the upstream response to a request
// that holds the tools/list requests ids: it removes the tools hide names
// from their answers, in a JSON body or in an event stream. An event
// stream goes on event by event (progress notifications are not held
// back), and once every list is answered the rest passes through
// unparsed. A response tf cannot read is replaced (fail closed).
func ResponseFilter(ids map[string]bool, hide func(tool string) bool) func(*http.Response) error {
	return func(res *http.Response) error {
		if len(ids) == 0 || res.StatusCode != http.StatusOK {
			return nil
		}
		mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if enc := res.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
			return replaceBody(res, ErrorMessage(nil, CodeRefused, "tf could not filter a tool list sent with Content-Encoding "+enc, nil))
		}
		switch mt {
		case "text/event-stream":
			res.Body = &sseFilter{body: res.Body, sc: NewSSEScanner(res.Body, 0), ids: ids, hide: hide}
			res.ContentLength = -1
			res.Header.Del("Content-Length")
			return nil
		case "application/json":
			body, err := io.ReadAll(io.LimitReader(res.Body, MaxListBytes+1))
			res.Body.Close()
			if err != nil {
				return fmt.Errorf("reading a tools/list answer: %w", err)
			}
			if len(body) > MaxListBytes {
				return replaceBody(res, ErrorMessage(nil, CodeRefused, fmt.Sprintf("tf could not filter a tool list larger than %d bytes", MaxListBytes), nil))
			}
			out, err := filterMessages(body, ids, hide)
			if err != nil {
				return replaceBody(res, ErrorMessage(nil, CodeRefused, "tf could not filter this tool list: "+err.Error(), nil))
			}
			return replaceBody(res, out)
		}
		return nil
	}
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
	ids  map[string]bool
	hide func(string) bool
	out  []byte
	err  error
}

func (f *sseFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if len(f.ids) == 0 {
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
				f.err = fmt.Errorf("filtering a tool list: %w", err)
			}
			continue
		}
		f.out = f.event(raw)
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

func (f *sseFilter) event(raw []byte) []byte {
	ev := ParseEvent(raw)
	data := bytes.TrimSpace(ev.Data)
	if !ev.HasData || len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		return raw
	}
	out, err := filterMessages(data, f.ids, f.hide)
	if err != nil {
		// Not JSON-RPC: no list in it, passed on as it came.
		return raw
	}
	if bytes.Equal(out, data) {
		return raw
	}
	ev.Data = out
	return ev.Encode()
}

func (f *sseFilter) Close() error { return f.body.Close() }
