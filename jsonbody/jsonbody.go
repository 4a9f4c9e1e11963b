// Package jsonbody reads the JSON bodies tf decides on exactly as the
// services behind it read them: names are matched byte for byte, and a body
// that two readers could read two ways (a duplicate name, names that differ
// only in case, invalid UTF-8, trailing data) is refused as ambiguous.
//
// encoding/json matches struct fields case-insensitively and keeps the last
// of duplicate names; GitHub, npm and most services read the exact name and
// often the first. A gateway that reads a body differently from its
// upstream decides on a request the upstream does not execute, so every
// connector reads its JSON through here. Syntax is checked by the JSON v2
// implementation (github.com/go-json-experiment/json/jsontext), which
// already rejects duplicate names and invalid UTF-8; this package adds the
// case-variant check, a depth bound and tf's value types.
package jsonbody

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxDepth bounds nesting, so that a hostile body cannot make a decision
// expensive.
const MaxDepth = 64

// ErrAmbiguous marks a body refused because it can be read two ways.
var ErrAmbiguous = errors.New("ambiguous JSON body")

// An Error says why a body was refused.
type Error struct {
	// Ambiguous is set for bodies that are valid JSON to some reader but
	// that readers disagree on: duplicate or case-variant names, invalid
	// UTF-8.
	Ambiguous bool
	Msg       string
}

func (e *Error) Error() string {
	if e.Ambiguous {
		return "ambiguous JSON body: " + e.Msg
	}
	return "invalid JSON body: " + e.Msg
}

// Is makes errors.Is(err, ErrAmbiguous) true for ambiguity.
func (e *Error) Is(target error) bool { return target == ErrAmbiguous && e.Ambiguous }

func invalid(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

func ambiguous(format string, args ...any) error {
	return &Error{Ambiguous: true, Msg: fmt.Sprintf(format, args...)}
}

// A Visitor sees one top-level member of an object: its name, unescaped
// (valid only during the call), and its value, raw (a slice of the body).
type Visitor func(name []byte, raw []byte) error

// Members reads body, which must be one JSON object and nothing else,
// checking the whole of it, and calls visit for each top-level member in
// order. Nothing is visited unless the whole body is valid and
// unambiguous: the check runs to the end before the first visit.
func Members(body []byte, visit Visitor) error {
	r := getReader(body)
	defer putReader(r)
	if k := r.dec.PeekKind(); k != '{' {
		if k == 0 {
			return r.syntaxErr()
		}
		return invalid("the body is not a JSON object")
	}
	if err := r.value(0, true); err != nil {
		return err
	}
	if err := r.end(); err != nil {
		return err
	}
	for _, m := range r.top {
		if err := visit(m.name, body[m.start:m.end]); err != nil {
			return err
		}
	}
	return nil
}

// Elements reads body, which must be one JSON array and nothing else,
// checking the whole of it, and calls visit with each element, raw (a
// slice of body), in order: a JSON-RPC batch, say. As with Members,
// nothing is visited unless the whole body is valid and unambiguous.
func Elements(body []byte, visit func(raw []byte) error) error {
	r := getReader(body)
	defer putReader(r)
	if k := r.dec.PeekKind(); k != '[' {
		if k == 0 {
			return r.syntaxErr()
		}
		return invalid("the body is not a JSON array")
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return r.wrap(err)
	}
	for {
		k := r.dec.PeekKind()
		if k == ']' || k == 0 {
			break
		}
		start := r.nextStart()
		if err := r.value(1, false); err != nil {
			return err
		}
		r.top = append(r.top, member{start: start, end: int(r.dec.InputOffset())})
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return r.wrap(err)
	}
	if err := r.end(); err != nil {
		return err
	}
	for _, m := range r.top {
		if err := visit(body[m.start:m.end]); err != nil {
			return err
		}
	}
	return nil
}

// Decode reads data, which must be one JSON value and nothing else, into
// tf's value types: map[string]any, []any, string, bool, nil, and numbers
// as int when integral and within int64, else float64.
func Decode(data []byte) (any, error) {
	// Scalars, the common case for a member a rule reads, skip the
	// decoder.
	if v, ok := scalar(data); ok {
		return v, nil
	}
	r := getReader(data)
	defer putReader(r)
	if r.dec.PeekKind() == 0 {
		return nil, r.syntaxErr()
	}
	v, err := r.build(0)
	if err != nil {
		return nil, err
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return v, nil
}

// Check reads data as Decode does without building anything.
func Check(data []byte) error {
	r := getReader(data)
	defer putReader(r)
	if r.dec.PeekKind() == 0 {
		return r.syntaxErr()
	}
	if err := r.value(0, false); err != nil {
		return err
	}
	return r.end()
}

// member is a top-level member recorded by Members.
type member struct {
	name       []byte
	start, end int
}

type reader struct {
	dec   jsontext.Decoder
	buf   bytes.Buffer
	data  []byte
	names [][]byte // names of the objects being read, innermost last
	top   []member
	fold  map[string]struct{}
}

var readers = sync.Pool{New: func() any { return new(reader) }}

func getReader(data []byte) *reader {
	r := readers.Get().(*reader)
	r.data = data
	// A bytes.Buffer is parsed in place: values and names are slices of
	// data.
	r.buf = *bytes.NewBuffer(data)
	r.dec.Reset(&r.buf)
	return r
}

func putReader(r *reader) {
	r.data = nil
	r.buf = bytes.Buffer{}
	r.dec.Reset(&r.buf)
	clear(r.names)
	r.names = r.names[:0]
	clear(r.top)
	r.top = r.top[:0]
	readers.Put(r)
}

// end checks that nothing but whitespace follows the value.
func (r *reader) end() error {
	if _, err := r.dec.ReadValue(); err != io.EOF {
		return invalid("data after the JSON value")
	}
	return nil
}

// syntaxErr returns the decoder's error for the value it could not peek.
func (r *reader) syntaxErr() error {
	_, err := r.dec.ReadValue()
	return r.wrap(err)
}

func (r *reader) wrap(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if len(bytes.TrimSpace(r.data)) == 0 {
			return invalid("empty body where JSON is expected")
		}
		return invalid("unexpected end of JSON input")
	}
	if errors.Is(err, jsontext.ErrDuplicateName) {
		return ambiguous("duplicate name (%v)", err)
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && bytes.Contains([]byte(se.Error()), []byte("UTF-8")) {
		return ambiguous("%v", err)
	}
	return invalid("%v", err)
}

// value reads the next value, checking it; at the top level of Members
// (record) it notes where each member's value lies.
func (r *reader) value(depth int, record bool) error {
	switch r.dec.PeekKind() {
	case '{':
		if depth >= MaxDepth {
			return invalid("nested more than %d deep", MaxDepth)
		}
		if _, err := r.dec.ReadToken(); err != nil {
			return r.wrap(err)
		}
		base := len(r.names)
		for r.dec.PeekKind() == '"' {
			name, err := r.name(base)
			if err != nil {
				return err
			}
			start := 0
			if record {
				start = r.valueStart()
			}
			if err := r.value(depth+1, false); err != nil {
				return err
			}
			if record {
				r.top = append(r.top, member{name: name, start: start, end: int(r.dec.InputOffset())})
			}
		}
		clear(r.names[base:])
		r.names = r.names[:base]
		if _, err := r.dec.ReadToken(); err != nil { // '}'
			return r.wrap(err)
		}
		return nil
	case '[':
		if depth >= MaxDepth {
			return invalid("nested more than %d deep", MaxDepth)
		}
		if _, err := r.dec.ReadToken(); err != nil {
			return r.wrap(err)
		}
		for {
			k := r.dec.PeekKind()
			if k == ']' || k == 0 {
				break
			}
			if err := r.value(depth+1, false); err != nil {
				return err
			}
		}
		if _, err := r.dec.ReadToken(); err != nil { // ']'
			return r.wrap(err)
		}
		return nil
	case 0:
		return r.syntaxErr()
	default:
		raw, err := r.dec.ReadValue()
		if err != nil {
			return r.wrap(err)
		}
		if raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' {
			// A number no float64 holds reads as infinity to some
			// services and as an error to others.
			if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
				return invalid("number %s is out of range", raw)
			}
		}
		return nil
	}
}

// valueStart returns the offset of the value that follows the name just
// read: past the colon and whitespace.
func (r *reader) valueStart() int { return r.skipFrom(int(r.dec.InputOffset()), ':') }

// nextStart returns the offset of the next array element: past the comma
// and whitespace.
func (r *reader) nextStart() int { return r.skipFrom(int(r.dec.InputOffset()), ',') }

// skipFrom returns the first offset from i that is neither whitespace nor
// sep.
func (r *reader) skipFrom(i int, sep byte) int {
	for i < len(r.data) && (r.data[i] == ' ' || r.data[i] == '\t' || r.data[i] == '\n' || r.data[i] == '\r' || r.data[i] == sep) {
		i++
	}
	return i
}

// name reads an object member name and refuses it when an earlier name of
// the same object (names[base:]) equals it or differs from it only in case.
func (r *reader) name(base int) ([]byte, error) {
	raw, err := r.dec.ReadValue()
	if err != nil {
		return nil, r.wrap(err)
	}
	name := raw[1 : len(raw)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		if name, err = jsontext.AppendUnquote(nil, raw); err != nil {
			return nil, r.wrap(err)
		}
	}
	seen := r.names[base:]
	if len(seen) < 32 {
		for _, s := range seen {
			if bytes.EqualFold(s, name) {
				if bytes.Equal(s, name) {
					return nil, ambiguous("duplicate name %q", name)
				}
				return nil, ambiguous("names %q and %q differ only in case", s, name)
			}
		}
	} else {
		// Many names: compare folded forms through a map, built afresh
		// for this object.
		if len(seen) == 32 {
			if r.fold == nil {
				r.fold = map[string]struct{}{}
			}
			clear(r.fold)
			for _, s := range seen {
				r.fold[foldKey(s)] = struct{}{}
			}
		}
		k := foldKey(name)
		if _, dup := r.fold[k]; dup {
			return nil, ambiguous("name %q repeats an earlier name, or differs from it only in case", name)
		}
		r.fold[k] = struct{}{}
	}
	r.names = append(r.names, name)
	return name, nil
}

// foldKey maps s to one representative of its case-folding class, so that
// bytes.EqualFold(a, b) exactly when foldKey(a) == foldKey(b).
func foldKey(s []byte) string {
	out := make([]rune, 0, len(s))
	for len(s) > 0 {
		c, n := utf8.DecodeRune(s)
		s = s[n:]
		m := c
		for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
			if f < m {
				m = f
			}
		}
		out = append(out, m)
	}
	return string(out)
}

// build reads and decodes the next value.
func (r *reader) build(depth int) (any, error) {
	switch r.dec.PeekKind() {
	case '{':
		if depth >= MaxDepth {
			return nil, invalid("nested more than %d deep", MaxDepth)
		}
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, r.wrap(err)
		}
		m := map[string]any{}
		base := len(r.names)
		for r.dec.PeekKind() == '"' {
			name, err := r.name(base)
			if err != nil {
				return nil, err
			}
			v, err := r.build(depth + 1)
			if err != nil {
				return nil, err
			}
			m[string(name)] = v
		}
		clear(r.names[base:])
		r.names = r.names[:base]
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, r.wrap(err)
		}
		return m, nil
	case '[':
		if depth >= MaxDepth {
			return nil, invalid("nested more than %d deep", MaxDepth)
		}
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, r.wrap(err)
		}
		s := []any{}
		for {
			k := r.dec.PeekKind()
			if k == ']' || k == 0 {
				break
			}
			v, err := r.build(depth + 1)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		if _, err := r.dec.ReadToken(); err != nil {
			return nil, r.wrap(err)
		}
		return s, nil
	case 0:
		return nil, r.syntaxErr()
	default:
		raw, err := r.dec.ReadValue()
		if err != nil {
			return nil, r.wrap(err)
		}
		if v, ok := scalar(raw); ok {
			return v, nil
		}
		if raw[0] == '"' {
			// Escapes or non-ASCII, already checked by the decoder.
			s, err := jsontext.AppendUnquote(nil, raw)
			if err != nil {
				return nil, r.wrap(err)
			}
			return string(s), nil
		}
		return nil, invalid("number %s is out of range", raw)
	}
}

// scalar decodes a literal, a number or a string that needs no checking
// beyond its form: ok is false for anything else, which the decoder then
// reads.
func scalar(raw []byte) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	switch c := raw[0]; {
	case c == '"':
		s := raw[1:]
		if len(s) == 0 || s[len(s)-1] != '"' {
			return nil, false
		}
		s = s[:len(s)-1]
		for _, b := range s {
			if b < 0x20 || b == '"' || b == '\\' || b >= 0x80 {
				return nil, false // escapes, non-ASCII: the decoder checks them
			}
		}
		return string(s), true
	case c == 't':
		return true, string(raw) == "true"
	case c == 'f':
		return false, string(raw) == "false"
	case c == 'n':
		return nil, string(raw) == "null"
	case c == '-' || c >= '0' && c <= '9':
		if !validNumber(raw) {
			return nil, false
		}
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return int(i), true
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			// Out of range: encoding/json refuses it too.
			return nil, false
		}
		return f, true
	}
	return nil, false
}

// validNumber reports whether raw is exactly one JSON number.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}
