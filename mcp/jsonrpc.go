package mcp

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tameflare/tf/connectors"
)

// Limits on what one HTTP body or stdio line may hold.
const (
	// MaxBatch bounds the messages of one batch.
	MaxBatch = 256
	// MaxMessageBytes bounds one stdio line from the client. Over HTTP the
	// proxy's peek limit applies (httpproxy.DefaultPeekLimit, 1 MiB).
	MaxMessageBytes = 4 << 20
)

// Kind says what a JSON-RPC message is.
type Kind uint8

const (
	// Request has a method and an id, and wants a response.
	Request Kind = iota + 1
	// Notification has a method and no id.
	Notification
	// Response has an id and a result or an error.
	Response
)

func (k Kind) String() string {
	switch k {
	case Request:
		return "request"
	case Notification:
		return "notification"
	case Response:
		return "response"
	}
	return "unknown"
}

// Message is one JSON-RPC 2.0 message, with its members as raw JSON.
type Message struct {
	Kind   Kind
	ID     []byte // raw JSON: a string or a number; nil for a notification
	Method string
	Params []byte // raw JSON, nil when absent
	Result []byte
	Error  []byte
	// decoded holds the members of params that classifying a tools/call
	// needs, when Parse decoded them already.
	decoded map[string]any
	// argsRead is parse's: which tools/call arguments to decode.
	argsRead func(string) bool
}

// ErrNotJSONRPC is wrapped by parse errors for bodies that are JSON but
// not JSON-RPC 2.0.
var ErrNotJSONRPC = errors.New("not a JSON-RPC 2.0 message")

// Parse parses body as one JSON-RPC message or a batch of them. Every
// element must be a valid message; an empty batch, a batch longer than
// MaxBatch, duplicate keys and invalid JSON are errors.
func Parse(body []byte) (msgs []Message, batch bool, err error) {
	return parse(body, nil)
}

// parse is Parse, with the object and array values of tools/call
// arguments that argsRead refuses kept as json.RawMessage (argsRead nil
// decodes everything).
func parse(body []byte, argsRead func(string) bool) (msgs []Message, batch bool, err error) {
	d := &decoder{b: body, argsRead: argsRead}
	c, err := d.peek()
	if err != nil {
		return nil, false, errors.New("empty body where a JSON-RPC message is expected")
	}
	switch c {
	case '{':
		m, err := d.message()
		if err != nil {
			return nil, false, err
		}
		if err := d.end(); err != nil {
			return nil, false, err
		}
		return []Message{m}, false, nil
	case '[':
		d.i++
		if c, err = d.peek(); err != nil {
			return nil, true, err
		}
		if c == ']' {
			return nil, true, errors.New("empty JSON-RPC batch")
		}
		for {
			if len(msgs) == MaxBatch {
				return nil, true, fmt.Errorf("JSON-RPC batch of more than %d messages", MaxBatch)
			}
			if c, err = d.peek(); err != nil {
				return nil, true, err
			}
			if c != '{' {
				return nil, true, fmt.Errorf("%w: batch element %d is not an object", ErrNotJSONRPC, len(msgs)+1)
			}
			m, err := d.message()
			if err != nil {
				return nil, true, fmt.Errorf("batch element %d: %w", len(msgs)+1, err)
			}
			msgs = append(msgs, m)
			if c, err = d.peek(); err != nil {
				return nil, true, err
			}
			d.i++
			if c == ']' {
				break
			}
			if c != ',' {
				d.i--
				return nil, true, d.errorf("want , or ] in a batch")
			}
		}
		if err := d.end(); err != nil {
			return nil, true, err
		}
		return msgs, true, nil
	}
	if _, err := d.skip(); err == nil && d.end() == nil {
		return nil, false, fmt.Errorf("%w: the body is JSON but not an object", ErrNotJSONRPC)
	}
	return nil, false, d.errorf("not a JSON value")
}

// message reads one message object.
func (d *decoder) message() (Message, error) {
	m := Message{argsRead: d.argsRead}
	d.depth++
	defer func() { d.depth-- }()
	d.i++ // {
	var version string
	var seen uint8
	const (
		seenVersion = 1 << iota
		seenID
		seenMethod
		seenParams
		seenResult
		seenError
	)
	c, err := d.peek()
	if err != nil {
		return m, err
	}
	if c == '}' {
		d.i++
		return m, fmt.Errorf("%w: empty object", ErrNotJSONRPC)
	}
	others := map[string]bool{}
	for {
		k, err := d.key()
		if err != nil {
			return m, err
		}
		var bit uint8
		switch k {
		case "jsonrpc":
			bit = seenVersion
			c, err := d.peek()
			if err != nil {
				return m, err
			}
			if c != '"' {
				return m, fmt.Errorf("%w: jsonrpc is not \"2.0\"", ErrNotJSONRPC)
			}
			if version, err = d.str(); err != nil {
				return m, err
			}
		case "id":
			bit = seenID
			if m.ID, err = d.skip(); err != nil {
				return m, err
			}
		case "method":
			bit = seenMethod
			c, err := d.peek()
			if err != nil {
				return m, err
			}
			if c != '"' {
				return m, fmt.Errorf("%w: method is not a string", ErrNotJSONRPC)
			}
			if m.Method, err = d.str(); err != nil {
				return m, err
			}
		case "params":
			bit = seenParams
			start := d.i
			if m.Method == "tools/call" && seen&seenMethod != 0 {
				// Clients write the method first: the arguments are
				// decoded in this one pass rather than checked here and
				// decoded again.
				c, err := d.peek()
				if err != nil {
					return m, err
				}
				if c == '{' {
					start = d.i
					if m.decoded, err = d.members("name", "arguments"); err != nil {
						return m, err
					}
					m.Params = d.b[start:d.i]
					break
				}
			}
			if m.Params, err = d.skip(); err != nil {
				return m, err
			}
		case "result":
			bit = seenResult
			if m.Result, err = d.skip(); err != nil {
				return m, err
			}
		case "error":
			bit = seenError
			if m.Error, err = d.skip(); err != nil {
				return m, err
			}
		default:
			if err := caseVariant(k, "jsonrpc", "id", "method", "params", "result", "error"); err != nil {
				return m, err
			}
			if others[k] {
				return m, d.errorf("duplicate object key %q", k)
			}
			others[k] = true
			if _, err := d.skip(); err != nil {
				return m, err
			}
		}
		if bit != 0 {
			if seen&bit != 0 {
				// Parsers disagree on which of two keys wins; a message
				// that is read one way here and another way upstream
				// could smuggle a call, so it is refused.
				return m, d.errorf("duplicate object key %q", k)
			}
			seen |= bit
		}
		c, err := d.peek()
		if err != nil {
			return m, err
		}
		d.i++
		if c == '}' {
			break
		}
		if c != ',' {
			d.i--
			return m, d.errorf("want , or }")
		}
	}
	if version != "2.0" {
		return m, fmt.Errorf("%w: jsonrpc is not \"2.0\"", ErrNotJSONRPC)
	}
	if m.ID != nil {
		switch m.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			return m, fmt.Errorf("%w: id is neither a string nor a number", ErrNotJSONRPC)
		}
	}
	switch {
	case seen&seenMethod != 0:
		if seen&(seenResult|seenError) != 0 {
			return m, fmt.Errorf("%w: a message with a method has a result or an error", ErrNotJSONRPC)
		}
		if m.Method == "" {
			return m, fmt.Errorf("%w: empty method", ErrNotJSONRPC)
		}
		if m.Params != nil && m.Params[0] != '{' && m.Params[0] != '[' {
			return m, fmt.Errorf("%w: params is neither an object nor an array", ErrNotJSONRPC)
		}
		m.Kind = Notification
		if seen&seenID != 0 {
			m.Kind = Request
		}
	case seen&(seenResult|seenError) != 0:
		if seen&seenResult != 0 && seen&seenError != 0 {
			return m, fmt.Errorf("%w: a response has both a result and an error", ErrNotJSONRPC)
		}
		if seen&seenID == 0 {
			return m, fmt.Errorf("%w: a response without an id", ErrNotJSONRPC)
		}
		m.Kind = Response
	default:
		return m, fmt.Errorf("%w: neither a method nor a result or error", ErrNotJSONRPC)
	}
	return m, nil
}

// caseVariant refuses a key that differs from a known one only in case:
// encoding/json, which Go servers decode with, matches field names without
// regard to case, so {"Arguments": ...} would be arguments to them and
// nothing to tf.
func caseVariant(k string, known ...string) error {
	for _, w := range known {
		if k != w && strings.EqualFold(k, w) {
			return fmt.Errorf("key %q differs from %q only in case; refused as ambiguous", k, w)
		}
	}
	return nil
}

// paramsObject reads the members of m.Params named in want, decoded; the
// others are validated and skipped. Params absent or null give an empty
// result.
func (m *Message) paramsObject(want ...string) (map[string]any, error) {
	if m.decoded != nil {
		return m.decoded, nil
	}
	if m.Params == nil || string(m.Params) == "null" {
		return nil, nil
	}
	if m.Params[0] != '{' {
		return nil, fmt.Errorf("%s params are not an object", m.Method)
	}
	d := &decoder{b: m.Params, argsRead: m.argsRead}
	out, err := d.members(want...)
	if err != nil {
		return nil, err
	}
	return out, d.end()
}

// members reads the object at d.i, decoding the members named in want and
// validating the rest, duplicate keys and keys that differ from a wanted
// one only in case included.
func (d *decoder) members(want ...string) (map[string]any, error) {
	d.depth++
	if d.depth > maxDepth {
		return nil, d.errorf("nested deeper than %d levels", maxDepth)
	}
	defer func() { d.depth-- }()
	d.i++ // {
	out := map[string]any{}
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == '}' {
		d.i++
		return out, nil
	}
	var keys keySet
	for {
		start := d.i
		if err := d.uniqueKey(&keys); err != nil {
			return nil, err
		}
		end := d.i
		d.i = start
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		d.i = end
		if slices.Contains(want, k) {
			if k == "arguments" && d.argsRead != nil {
				d.lazy, d.lazyDepth = d.argsRead, d.depth+1
			}
			out[k], err = d.value()
			d.lazy = nil
			if err != nil {
				return nil, err
			}
		} else if err := caseVariant(k, want...); err != nil {
			return nil, err
		} else if _, err := d.skip(); err != nil {
			return nil, err
		}
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		d.i++
		if c == '}' {
			return out, nil
		}
		if c != ',' {
			d.i--
			return nil, d.errorf("want , or }")
		}
	}
}

// leadingID returns the raw id of the message that b, the start of a
// message too large to read whole, begins: the value of a top-level "id"
// member (a string or a number) found before b ends, else nil. It lets
// tf answer a message it refuses for its size to the request it is.
func leadingID(b []byte) []byte {
	d := &decoder{b: b}
	if c, err := d.peek(); err != nil || c != '{' {
		return nil
	}
	d.i++
	for {
		k, err := d.key()
		if err != nil {
			return nil
		}
		v, err := d.skip()
		if err != nil {
			return nil
		}
		if k == "id" {
			if len(v) > 0 && (v[0] == '"' || v[0] == '-' || ('0' <= v[0] && v[0] <= '9')) {
				return append([]byte(nil), v...)
			}
			return nil
		}
		c, err := d.peek()
		if err != nil || c != ',' {
			return nil
		}
		d.i++
	}
}

// ResultIsError returns the isError member of a tool call's result (raw
// JSON); ok is false when the result has none.
func ResultIsError(result []byte) (isError, ok bool) { return resultIsError(result) }

// resultIsError returns the isError member of a tool call's result (raw
// JSON); ok is false when the result has none.
func resultIsError(result []byte) (isError, ok bool) {
	if len(result) == 0 || result[0] != '{' {
		return false, false
	}
	d := &decoder{b: result}
	d.i++
	if c, err := d.peek(); err != nil || c == '}' {
		return false, false
	}
	for {
		k, err := d.key()
		if err != nil {
			return false, false
		}
		v, err := d.skip()
		if err != nil {
			return false, false
		}
		if k == "isError" {
			return string(v) == "true", string(v) == "true" || string(v) == "false"
		}
		c, err := d.peek()
		if err != nil || c != ',' {
			return false, false
		}
		d.i++
	}
}

// MessageIDs returns the JSON-RPC id (as JSON; "" for none) of each
// message of a POST body that Classify accepted, in order, for the
// records; nil when the body is not such a message or batch.
func MessageIDs(r *connectors.Request) []string {
	body, err := decodedBody(r, false)
	if err != nil {
		return nil
	}
	d := &decoder{b: body}
	c, err := d.peek()
	if err != nil {
		return nil
	}
	if c == '{' {
		id, ok := d.memberID()
		if !ok {
			return nil
		}
		return []string{id}
	}
	if c != '[' {
		return nil
	}
	d.i++
	var ids []string
	for {
		id, ok := d.memberID()
		if !ok {
			return nil
		}
		ids = append(ids, id)
		c, err := d.peek()
		if err != nil {
			return nil
		}
		d.i++
		if c == ']' {
			return ids
		}
		if c != ',' {
			return nil
		}
	}
}

// memberID reads the object at d.i and returns its "id" member as JSON.
func (d *decoder) memberID() (string, bool) {
	if c, err := d.peek(); err != nil || c != '{' {
		return "", false
	}
	d.i++
	id := ""
	if c, err := d.peek(); err != nil {
		return "", false
	} else if c == '}' {
		d.i++
		return "", true
	}
	for {
		k, err := d.key()
		if err != nil {
			return "", false
		}
		v, err := d.skip()
		if err != nil {
			return "", false
		}
		if k == "id" && string(v) != "null" {
			id = string(v)
		}
		c, err := d.peek()
		if err != nil {
			return "", false
		}
		d.i++
		if c == '}' {
			return id, true
		}
		if c != ',' {
			return "", false
		}
	}
}
