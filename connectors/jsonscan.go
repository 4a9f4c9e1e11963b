package connectors

import (
	"errors"
	"strings"

	"github.com/tameflare/tf/jsonbody"
)

// maxJSONDepth bounds nesting in values the connectors build (GraphQL
// arguments), as jsonbody bounds it in bodies.
const maxJSONDepth = jsonbody.MaxDepth

// errTruncatedBody refuses a body a rule could depend on that is larger
// than the inspected prefix: what was not read cannot be known to be
// unambiguous (a repeated key after the prefix would be what the upstream
// applies).
var errTruncatedBody = errors.New("request body is larger than the inspected prefix and the action depends on its contents; a body tf cannot read to its end cannot be known to be unambiguous, so it is refused")

// bodyMembers reads a JSON object body strictly (jsonbody) and returns the
// top-level members that want accepts, decoded. A truncated body is
// refused.
func bodyMembers(body []byte, truncated bool, want func(key string) bool) (map[string]any, error) {
	if truncated {
		return nil, errTruncatedBody
	}
	var vals map[string]any
	err := jsonbody.Members(body, func(name, raw []byte) error {
		if !want(string(name)) {
			return nil
		}
		v, err := jsonbody.Decode(raw)
		if err != nil {
			return err
		}
		if vals == nil {
			vals = map[string]any{}
		}
		vals[string(name)] = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return vals, nil
}

// decodeBody decodes a whole JSON body strictly. A truncated body is
// refused: the caller needs values from it.
func decodeBody(body []byte, truncated bool) (any, error) {
	if truncated {
		return nil, errTruncatedBody
	}
	return jsonbody.Decode(body)
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
