package connectors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting in bodies the connectors decode, so that a
// hostile body cannot make a classification expensive.
const maxJSONDepth = 64

// errJSONEnd reports a JSON value cut off by the end of the prefix.
var errJSONEnd = errors.New("unexpected end of JSON input")

// scanObject reads the members of the JSON object at the start of body and
// returns the values of the keys that want accepts; the others are skipped
// without being decoded. It works on a prefix of a larger body: complete is
// false when body ended before the object did (the members found so far are
// returned). A body that is not a JSON object is an error; so is invalid
// JSON when the body is not truncated.
func scanObject(body []byte, truncated bool, want func(key string) bool) (vals map[string]any, complete bool, err error) {
	complete, err = scanMembers(body, truncated, func(rawKey, rawVal []byte) error {
		key, err := jsonString(rawKey)
		if err != nil {
			return fmt.Errorf("invalid JSON body: %w", err)
		}
		if !want(key) {
			return nil
		}
		v, err := decodeValue(rawVal)
		if err != nil {
			return err
		}
		if vals == nil {
			vals = map[string]any{}
		}
		vals[key] = v
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return vals, complete, nil
}

// scanMembers walks the members of the JSON object at the start of body,
// as scanObject describes, and calls visit with each complete member: the
// key literal with its quotes (already known to decode) and the raw value.
// The bytes are body's: visit copies what it keeps. Keeping the walk apart
// from decoding lets a caller that wants a few known keys match them
// without allocating a string per key.
func scanMembers(body []byte, truncated bool, visit func(rawKey, rawVal []byte) error) (complete bool, err error) {
	if !truncated && !json.Valid(body) {
		if len(bytes.TrimSpace(body)) == 0 {
			return false, errors.New("empty body where a JSON object is expected")
		}
		return false, errors.New("invalid JSON body")
	}
	i := skipWS(body, 0)
	if i == len(body) {
		return false, nil // truncated before anything
	}
	if body[i] != '{' {
		return false, errors.New("body is not a JSON object")
	}
	i = skipWS(body, i+1)
	if i < len(body) && body[i] == '}' {
		return true, nil
	}
	for i < len(body) {
		if body[i] != '"' {
			return false, errors.New("invalid JSON body: object key is not a string")
		}
		kend, err := skipString(body, i)
		if err != nil {
			return false, nil
		}
		rawKey := body[i:kend]
		if !plainString(rawKey) {
			if _, err := jsonString(rawKey); err != nil {
				return false, fmt.Errorf("invalid JSON body: %w", err)
			}
		}
		i = skipWS(body, kend)
		if i == len(body) {
			return false, nil
		}
		if body[i] != ':' {
			return false, errors.New("invalid JSON body: no colon after an object key")
		}
		vstart := skipWS(body, i+1)
		vend, err := skipValue(body, vstart, 0)
		if err != nil {
			if err == errJSONEnd {
				return false, nil
			}
			return false, fmt.Errorf("invalid JSON body: %w", err)
		}
		if err := visit(rawKey, body[vstart:vend]); err != nil {
			return false, err
		}
		i = skipWS(body, vend)
		if i == len(body) {
			return false, nil
		}
		switch body[i] {
		case ',':
			i = skipWS(body, i+1)
		case '}':
			return true, nil
		default:
			return false, errors.New("invalid JSON body: bad separator between members")
		}
	}
	return false, nil
}

// plainString reports whether a JSON string literal (quotes included)
// means exactly the bytes between its quotes: no escape, valid UTF-8.
func plainString(raw []byte) bool {
	return bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errJSONEnd
}

// skipValue returns the index after the JSON value starting at b[i]. It
// checks structure lightly; full validation is json.Valid's job.
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxJSONDepth {
		return 0, errors.New("nested too deeply")
	}
	if i >= len(b) {
		return 0, errJSONEnd
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		j := skipWS(b, i+1)
		if j < len(b) && b[j] == closer {
			return j + 1, nil
		}
		for {
			if c == '{' {
				if j >= len(b) {
					return 0, errJSONEnd
				}
				if b[j] != '"' {
					return 0, errors.New("object key is not a string")
				}
				k, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = skipWS(b, k)
				if j >= len(b) {
					return 0, errJSONEnd
				}
				if b[j] != ':' {
					return 0, errors.New("no colon after an object key")
				}
				j = skipWS(b, j+1)
			}
			end, err := skipValue(b, j, depth+1)
			if err != nil {
				return 0, err
			}
			j = skipWS(b, end)
			if j >= len(b) {
				return 0, errJSONEnd
			}
			if b[j] == closer {
				return j + 1, nil
			}
			if b[j] != ',' {
				return 0, errors.New("bad separator")
			}
			j = skipWS(b, j+1)
		}
	default:
		j := i
		for j < len(b) && (b[j] >= 'a' && b[j] <= 'z' || b[j] >= '0' && b[j] <= '9' || b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'E') {
			j++
		}
		if j == i {
			return 0, fmt.Errorf("unexpected character %q", c)
		}
		if j == len(b) {
			// A number or literal may continue past the prefix.
			return 0, errJSONEnd
		}
		return j, nil
	}
}

// jsonString decodes a JSON string literal, without copying escapes
// through encoding/json unless it has some.
func jsonString(raw []byte) (string, error) {
	if plainString(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

// decodeValue decodes one complete JSON value, numbers as int when
// integral.
func decodeValue(raw []byte) (any, error) {
	switch raw[0] {
	case '"':
		s, err := jsonString(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON body: %w", err)
		}
		return s, nil
	case 't':
		if string(raw) == "true" {
			return true, nil
		}
	case 'f':
		if string(raw) == "false" {
			return false, nil
		}
	case 'n':
		if string(raw) == "null" {
			return nil, nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON body: %w", err)
	}
	return normalizeJSON(v), nil
}

// decodeBody decodes a whole JSON body. A truncated body cannot be decoded
// and is an error: the caller needs values from it.
func decodeBody(body []byte, truncated bool) (any, error) {
	if truncated {
		return nil, errors.New("request body is larger than the inspected prefix")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty body where JSON is expected")
		}
		return nil, fmt.Errorf("invalid JSON body: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON body: data after the value")
	}
	if depth(v, 0) > maxJSONDepth {
		return nil, errors.New("JSON body nested too deeply")
	}
	return normalizeJSON(v), nil
}

func depth(v any, d int) int {
	if d > maxJSONDepth {
		return d
	}
	m := d
	switch t := v.(type) {
	case map[string]any:
		for _, e := range t {
			if x := depth(e, d+1); x > m {
				m = x
			}
		}
	case []any:
		for _, e := range t {
			if x := depth(e, d+1); x > m {
				m = x
			}
		}
	}
	return m
}

// normalizeJSON turns json.Number into int (when integral) or float64, so
// that rules compare numbers without caring how they were written.
func normalizeJSON(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return int(i)
		}
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeJSON(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeJSON(e)
		}
	}
	return v
}

// lookupPath follows a dot path (config.url) into decoded JSON.
func lookupPath(v any, path string) (any, bool) {
	for path != "" {
		key, rest, _ := strings.Cut(path, ".")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok = m[key]
		if !ok {
			return nil, false
		}
		path = rest
	}
	return v, true
}
