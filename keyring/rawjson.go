package keyring

import (
	"encoding/json"
	"unsafe"
)

// eachJSONString calls f with every string of the JSON value raw, keys
// included (key set), unescaped, and returns how deeply raw's objects and
// arrays nest. It stops with ok false when f returns false, or when raw is
// not JSON it can read: callers then take the slow path of decoding raw
// whole. It allocates only for strings with escapes; the string f gets is
// valid only during the call.
func eachJSONString(raw []byte, f func(s string, key bool) bool) (deepest int, ok bool) {
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
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
				return deepest, false
			}
			body := raw[i+1 : end]
			var s string
			if escaped {
				s = unquote(raw[i : end+1])
				if s == "" {
					return deepest, false
				}
			} else if len(body) > 0 {
				s = unsafe.String(&body[0], len(body))
			}
			j := end + 1
			for j < len(raw) && (raw[j] == ' ' || raw[j] == '\t' || raw[j] == '\n' || raw[j] == '\r') {
				j++
			}
			if !f(s, j < len(raw) && raw[j] == ':') {
				return deepest, false
			}
			i = end
		}
	}
	return deepest, true
}

// rawClean is clean for a value kept as JSON at depth: no secret key or
// value in it, keys checked as redactMap does, and nothing nested deeper
// than redaction walks.
func rawClean(raw json.RawMessage, depth int) bool {
	if len(raw) == 0 {
		return false
	}
	deepest, ok := eachJSONString(raw, func(s string, key bool) bool {
		if key {
			return !SecretKey(s)
		}
		return !SecretValue(s)
	})
	return ok && depth+deepest <= maxDepth
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
