package keyring

import (
	"encoding/json"
	"unsafe"
)

// eachJSONString calls f with every string of the JSON value raw, keys
// included (key set), unescaped, and the nesting depth of the object or
// array that holds it (1 for the outermost). It stops and returns false
// when f does, or when raw is not JSON it can read: callers then take the
// slow path of decoding raw whole. It allocates only for strings with
// escapes; the string f gets is valid only during the call.
func eachJSONString(raw []byte, f func(s string, key bool, depth int) bool) bool {
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			end, escaped := i+1, false
			for ; end < len(raw) && raw[end] != '"'; end++ {
				if raw[end] == '\\' {
					escaped = true
					end++
				}
			}
			if end >= len(raw) {
				return false
			}
			body := raw[i+1 : end]
			var s string
			if escaped {
				s = unquote(raw[i : end+1])
				if s == "" {
					return false
				}
			} else if len(body) > 0 {
				s = unsafe.String(&body[0], len(body))
			}
			j := end + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\n' || raw[j] == '\r') {
				j++
			}
			if !f(s, j < len(raw) && raw[j] == ':', depth) {
				return false
			}
			i = end
		}
	}
	return true
}

// rawClean is clean for a value kept as JSON at depth: no secret key or
// value in it and nothing deeper than redaction walks.
func rawClean(raw json.RawMessage, depth int) bool {
	if len(raw) == 0 {
		return false
	}
	ok := eachJSONString(raw, func(s string, key bool, d int) bool {
		// A string inside d containers sits at depth+d in the decoded
		// value; keys are checked as redactMap does.
		if depth+d > maxDepth {
			return false
		}
		if key {
			return !SecretKey(s)
		}
		return !SecretValue(s)
	})
	// Containers nested past the limit with no string in them: counted
	// by brackets.
	return ok && depth+maxNesting(raw) <= maxDepth
}

// maxNesting returns how deeply raw's containers nest.
func maxNesting(raw []byte) int {
	depth, deepest, in := 0, 0, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case in:
			if c == '\\' {
				i++
			} else if c == '"' {
				in = false
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// decodeRaw decodes a value kept as JSON for a walk that may change it;
// what does not decode cannot be inspected and is Redacted.
func decodeRaw(raw json.RawMessage) any {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return Redacted
	}
	return v
}

// unquote decodes a JSON string literal with escapes; "" when it does not
// decode (a literal with escapes is never empty).
func unquote(lit []byte) string {
	var u string
	if json.Unmarshal(lit, &u) != nil {
		return ""
	}
	return u
}
