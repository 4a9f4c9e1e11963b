package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
	"unsafe"
)

// RedactMessage returns msg, a JSON-RPC message, with every string that
// holds a secret passed through redact; mentions tells whether a text
// holds one. It costs one search of msg when no secret is in it. A secret
// the server spelt with \u escapes (which a byte search would miss) is
// found by decoding the message's strings.
func RedactMessage(msg []byte, mentions func(string) bool, redact func(string) string) ([]byte, bool) {
	return redactMessage(msg, bytes.Contains(msg, []byte(`\u`)) || bytes.Contains(msg, []byte(`\/`)), mentions, redact)
}

// RedactReply is RedactMessage of a reply, whose reading found its
// escapes already.
func RedactReply(a Reply, mentions func(string) bool, redact func(string) string) ([]byte, bool) {
	return redactMessage(a.Msg, a.Spelt, mentions, redact)
}

// redactMessage is RedactMessage; escaped says that msg holds a \u or \/
// escape.
func redactMessage(msg []byte, escaped bool, mentions func(string) bool, redact func(string) string) ([]byte, bool) {
	if len(msg) == 0 {
		return msg, false
	}
	// The string shares msg's bytes for the length of the search only.
	if !escaped {
		if !mentions(unsafe.String(&msg[0], len(msg))) {
			return msg, false
		}
		// Unescaped, a secret in msg is the same bytes in a string of it:
		// replacing them keeps the JSON valid.
		return []byte(redact(string(msg))), true
	}
	d := &decoder{b: msg}
	v, err := d.value()
	if err != nil {
		return msg, false // not JSON: not passed on as a message either
	}
	changed := false
	v = walkStrings(v, func(s string) string {
		if mentions(s) {
			changed = true
			return redact(s)
		}
		return s
	})
	if !changed {
		return msg, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		return msg, false
	}
	return out, true
}

// walkStrings returns v with f applied to every string, keys included.
func walkStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[f(k)] = walkStrings(e, f)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = walkStrings(e, f)
		}
		return x
	}
	return v
}

// maxResultText bounds the text of a result that rules see.
const maxResultText = 64 << 10

// ResultText returns the text of a tool result or of resource contents
// (result, raw JSON): the text of its content blocks (text, and the text
// of embedded resources) or contents, and its structured content as JSON,
// joined by newlines, at most 64 KiB.
func ResultText(result []byte) string {
	d := &decoder{b: result}
	v, err := d.value()
	if err != nil {
		return ""
	}
	obj, _ := v.(map[string]any)
	var b strings.Builder
	add := func(s string) {
		if s == "" || b.Len() >= maxResultText {
			return
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(s[:min(len(s), maxResultText-b.Len())])
	}
	blocks := func(list any) {
		items, _ := list.([]any)
		for _, it := range items {
			m, _ := it.(map[string]any)
			if t, ok := m["text"].(string); ok {
				add(t)
			}
			if r, ok := m["resource"].(map[string]any); ok {
				if t, ok := r["text"].(string); ok {
					add(t)
				}
			}
		}
	}
	blocks(obj["content"])
	blocks(obj["contents"])
	if sc, ok := obj["structuredContent"]; ok {
		if j, err := json.Marshal(sc); err == nil {
			add(string(j))
		}
	}
	return b.String()
}
