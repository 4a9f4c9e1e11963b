package mcp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// maxDepth bounds nesting, so that a hostile message cannot make
// classification expensive or exhaust the stack.
const maxDepth = 64

var errEnd = errors.New("unexpected end of JSON")

// decoder is a strict JSON (RFC 8259) decoder over one buffer. It exists
// because classifying a tool call must be cheap even with large arguments:
// it validates and decodes in one pass (encoding/json validates the whole
// input before decoding it), scans strings eight bytes at a time, and
// refuses what encoding/json would accept silently but a smuggler could
// use: duplicate object keys (parsers disagree on which one wins) and
// invalid UTF-8. Values decode as encoding/json decodes into any: objects
// to map[string]any, arrays to []any, numbers to float64.
type decoder struct {
	b     []byte
	i     int
	depth int
	// buf receives the unescaped bytes of a string.
	buf []byte
	// stack holds the elements of the arrays being decoded, so that each
	// array is allocated once, at its final length.
	stack []any
	// keys are object keys seen so far: arrays of like objects repeat
	// their keys, and a key found here is not allocated again.
	keys  [16]string
	nkeys int
	// arena holds the bytes of short strings: an object of a few short
	// strings would otherwise cost an allocation for each. Bytes handed
	// out are never written again, and a full arena is replaced, not
	// grown, so strings made from it stay valid.
	arena []byte
	// lazy, when set, says which members of the object at depth
	// lazyDepth (a tool call's arguments) are decoded: the object and
	// array values of the others are validated and kept as compact
	// json.RawMessage, since no rule reads them.
	lazy      func(key string) bool
	lazyDepth int
	// argsRead, when set, is what lazy becomes for tools/call arguments.
	argsRead func(key string) bool
	// spaced is set whenever whitespace between tokens is skipped, so
	// that a kept value without any is copied rather than compacted.
	spaced bool
	// spelt is set when a string holds a \u or \/ escape: text that a
	// byte search cannot find as it is (see RedactMessage).
	spelt bool
}

// Strings up to arenaMax bytes are copied into an arena of arenaSize.
const (
	arenaMax  = 64
	arenaSize = 1024
)

// makeString returns b as a string, short strings from the arena.
func (d *decoder) makeString(b []byte) string {
	if len(b) == 0 || len(b) > arenaMax {
		return string(b)
	}
	if cap(d.arena)-len(d.arena) < len(b) {
		// The strings still to come fit in what is left of the input,
		// which a small message makes smaller than arenaSize.
		d.arena = make([]byte, 0, max(len(b), min(arenaSize, len(d.b)-d.i)))
	}
	n := len(d.arena)
	d.arena = append(d.arena, b...)
	return unsafe.String(&d.arena[n], len(b))
}

// smallInts holds the integers 0 to 255 as float64 in interfaces: numbers
// in tool arguments are mostly small counts and flags, and a shared boxed
// value spares an allocation per number (interface values are immutable).
var smallInts = func() (t [256]any) {
	for i := range t {
		t[i] = float64(i)
	}
	return t
}()

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
			d.spaced = true
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it.
func (d *decoder) peek() (byte, error) {
	d.ws()
	if d.i >= len(d.b) {
		return 0, errEnd
	}
	return d.b[d.i], nil
}

// end checks that only white space follows.
func (d *decoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return d.errorf("data after the value")
	}
	return nil
}

// value decodes the next value.
func (d *decoder) value() (any, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	switch c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.str()
	case 't':
		return true, d.lit("true")
	case 'f':
		return false, d.lit("false")
	case 'n':
		return nil, d.lit("null")
	}
	return d.numberValue()
}

// skip validates the next value without building it and returns its
// bytes.
func (d *decoder) skip() ([]byte, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	start := d.i
	switch c {
	case '{', '[':
		if err := d.skipComposite(c); err != nil {
			return nil, err
		}
	case '"':
		if _, _, err := d.scanString(); err != nil {
			return nil, err
		}
	case 't':
		err = d.lit("true")
	case 'f':
		err = d.lit("false")
	case 'n':
		err = d.lit("null")
	default:
		_, err = d.numberEnd()
	}
	if err != nil {
		return nil, err
	}
	return d.b[start:d.i], nil
}

func (d *decoder) skipComposite(open byte) error {
	d.depth++
	if d.depth > maxDepth {
		d.depth--
		return d.errorf("nested deeper than %d levels", maxDepth)
	}
	err := d.skipMembers(open)
	d.depth--
	return err
}

// skipMembers is skipComposite past the depth check: no defer, since
// arrays of small objects make this the hottest loop of a skip.
func (d *decoder) skipMembers(open byte) error {
	d.i++
	c, err := d.peek()
	if err != nil {
		return err
	}
	closer := byte('}')
	if open == '[' {
		closer = ']'
	}
	if c == closer {
		d.i++
		return nil
	}
	var keys keySet
	for {
		if open == '{' {
			if err := d.uniqueKey(&keys); err != nil {
				return err
			}
		}
		if _, err := d.skip(); err != nil {
			return err
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		d.i++
		switch c {
		case ',':
		case closer:
			return nil
		default:
			d.i--
			return d.errorf("want , or %c", closer)
		}
	}
}

// keySet detects duplicate keys of one object without allocating for the
// common case: a few keys without escapes, compared as raw bytes.
type keySet struct {
	small [8][]byte
	n     int
	big   map[string]struct{}
}

// uniqueKey reads a key and its colon, and fails if the object had it
// already.
func (d *decoder) uniqueKey(ks *keySet) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c != '"' {
		return d.errorf("object key is not a string")
	}
	raw, escaped, err := d.scanString()
	if err != nil {
		return err
	}
	if escaped {
		raw = []byte(unescape(raw))
	}
	if ks.big == nil && ks.n < len(ks.small) {
		for _, k := range ks.small[:ks.n] {
			if string(k) == string(raw) {
				return d.errorf("duplicate object key %q", raw)
			}
		}
		ks.small[ks.n] = raw
		ks.n++
	} else {
		if ks.big == nil {
			ks.big = make(map[string]struct{}, 2*len(ks.small))
			for _, k := range ks.small {
				ks.big[string(k)] = struct{}{}
			}
		}
		if _, dup := ks.big[string(raw)]; dup {
			return d.errorf("duplicate object key %q", raw)
		}
		ks.big[string(raw)] = struct{}{}
	}
	if c, err = d.peek(); err != nil {
		return err
	}
	if c != ':' {
		return d.errorf("want : after an object key")
	}
	d.i++
	return nil
}

// key reads an object key and the colon after it.
func (d *decoder) key() (string, error) {
	c, err := d.peek()
	if err != nil {
		return "", err
	}
	if c != '"' {
		return "", d.errorf("object key is not a string")
	}
	k, err := d.keyString()
	if err != nil {
		return "", err
	}
	if c, err = d.peek(); err != nil {
		return "", err
	}
	if c != ':' {
		return "", d.errorf("want : after an object key")
	}
	d.i++
	return k, nil
}

func (d *decoder) object() (map[string]any, error) {
	d.depth++
	if d.depth > maxDepth {
		return nil, d.errorf("nested deeper than %d levels", maxDepth)
	}
	defer func() { d.depth-- }()
	d.i++ // {
	m := make(map[string]any)
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == '}' {
		d.i++
		return m, nil
	}
	// The first keys are checked for duplicates against each other, not
	// by hashing: most objects are small.
	var first [8]string
	n := 0
	for {
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		dup := false
		if n < len(first) {
			for _, f := range first[:n] {
				if f == k {
					dup = true
					break
				}
			}
			first[n] = k
			n++
		} else {
			_, dup = m[k]
		}
		if dup {
			return nil, d.errorf("duplicate object key %q", k)
		}
		var v any
		if d.lazy != nil && d.depth == d.lazyDepth && d.composite() && !d.lazy(k) {
			d.spaced = false
			raw, err := d.skip()
			if err != nil {
				return nil, err
			}
			// Compact, so that a kept value is one line in an audit
			// record; most clients send it compact already.
			if d.spaced {
				var buf bytes.Buffer
				buf.Grow(len(raw))
				if err := json.Compact(&buf, raw); err != nil {
					return nil, err
				}
				v = json.RawMessage(buf.Bytes())
			} else {
				v = json.RawMessage(bytes.Clone(raw))
			}
		} else if v, err = d.value(); err != nil {
			return nil, err
		}
		m[k] = v
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		switch c {
		case ',':
			d.i++
		case '}':
			d.i++
			return m, nil
		default:
			return nil, d.errorf("want , or }")
		}
	}
}

func (d *decoder) array() ([]any, error) {
	d.depth++
	if d.depth > maxDepth {
		return nil, d.errorf("nested deeper than %d levels", maxDepth)
	}
	defer func() { d.depth-- }()
	d.i++ // [
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c == ']' {
		d.i++
		return []any{}, nil
	}
	base := len(d.stack)
	defer func() {
		clear(d.stack[base:]) // drop references for the collector
		d.stack = d.stack[:base]
	}()
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.stack = append(d.stack, v)
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		switch c {
		case ',':
			d.i++
		case ']':
			d.i++
			return slices.Clone(d.stack[base:]), nil
		default:
			return nil, d.errorf("want , or ]")
		}
	}
}

func (d *decoder) lit(s string) error {
	if len(d.b)-d.i < len(s) {
		return errEnd
	}
	if string(d.b[d.i:d.i+len(s)]) != s {
		return d.errorf("unknown literal")
	}
	d.i += len(s)
	return nil
}

// numberEnd checks the JSON number grammar and returns the number's bytes.
func (d *decoder) numberEnd() ([]byte, error) {
	start, b, i := d.i, d.b, d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return nil, errEnd
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, d.errorf("invalid character %q", b[i])
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			d.i = i
			return nil, d.errorf("no digits after the decimal point")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			d.i = i
			return nil, d.errorf("no digits in the exponent")
		}
	}
	d.i = i
	return b[start:i], nil
}

// numberValue decodes a number as a float64 in an interface.
func (d *decoder) numberValue() (any, error) {
	raw, err := d.numberEnd()
	if err != nil {
		return nil, err
	}
	if len(raw) <= 3 {
		n := 0
		for _, c := range raw {
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n >= 0 && n < len(smallInts) {
			return smallInts[n], nil
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return nil, d.errorf("number %s out of range", raw)
	}
	return f, nil
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialBytes flags, in the high bit of each byte of w, the bytes a
// string scan must look at: below 0x20, at or above 0x80, " (0x22) and
// \ (0x5c). Borrows only run upwards from a flagged byte, so the lowest
// flag marks the first such byte.
func specialBytes(w uint64) uint64 {
	return ((w - 0x20*lsb) | w | ((w ^ 0x22*lsb) - lsb) | ((w ^ 0x5c*lsb) - lsb)) & msb
}

// skipPlain returns the index of the first byte at or after i that a
// string scan must look at, eight bytes at a time; the last few bytes of b
// are left to the caller.
func skipPlain(b []byte, i int) int {
	for i+8 <= len(b) {
		if special := specialBytes(binary.LittleEndian.Uint64(b[i:])); special != 0 {
			return i + bits.TrailingZeros64(special)/8
		}
		i += 8
	}
	return i
}

// scanString finds the end of the string at d.i (on its opening quote)
// and advances past it. It returns the bytes between the quotes and
// whether they hold an escape. Eight bytes at a time, it looks for a byte
// that needs attention: a quote, a backslash, a control character or a
// non-ASCII byte (checked as UTF-8).
func (d *decoder) scanString() (raw []byte, escaped bool, err error) {
	b := d.b
	start := d.i + 1
	i := start
	for {
		i = skipPlain(b, i)
		if i >= len(b) {
			d.i = i
			return nil, false, errEnd
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return b[start:i], escaped, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				d.i = i
				return nil, false, errEnd
			}
			switch b[i+1] {
			case '"', '\\', 'b', 'f', 'n', 'r', 't':
				i += 2
			case '/':
				d.spelt = true
				i += 2
			case 'u':
				d.spelt = true
				if i+6 > len(b) {
					d.i = i
					return nil, false, errEnd
				}
				if _, ok := hex4(b[i+2 : i+6]); !ok {
					d.i = i
					return nil, false, d.errorf("invalid \\u escape")
				}
				i += 6
			default:
				d.i = i
				return nil, false, d.errorf("invalid escape \\%c", b[i+1])
			}
		case c < 0x20:
			d.i = i
			return nil, false, d.errorf("control character in a string")
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				d.i = i
				return nil, false, d.errorf("invalid UTF-8 in a string")
			}
			i += n
		default:
			i++
		}
	}
}

// simpleEscape returns the byte a one-letter escape \e stands for; ok is
// false for \u and for what is not an escape.
func simpleEscape(e byte) (c byte, ok bool) {
	switch e {
	case '"', '\\', '/':
		return e, true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	}
	return 0, false
}

// pairSurrogate completes r, a UTF-16 surrogate from a \u escape, with the
// \u escape at the start of rest, if that makes a pair: it returns the rune
// and the bytes of rest used. Like encoding/json, a lone surrogate becomes
// U+FFFD and uses nothing.
func pairSurrogate(r rune, rest []byte) (rune, int) {
	if len(rest) >= 6 && rest[0] == '\\' && rest[1] == 'u' {
		if r2, ok := hex4(rest[2:6]); ok {
			if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
				return dec, 6
			}
		}
	}
	return utf8.RuneError, 0
}

func hex4(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// str decodes the string at d.i (on its opening quote). It validates as
// scanString does and unescapes in the same pass, so that a long string
// full of escapes (source code in tool arguments) is read once: after the
// first escape, each eight bytes scanned are stored to the output as they
// are, and only the bytes that need attention are handled one by one.
func (d *decoder) str() (string, error) {
	b := d.b
	start := d.i + 1
	i := start
	for {
		i = skipPlain(b, i)
		if i >= len(b) {
			d.i = i
			return "", errEnd
		}
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return d.makeString(b[start:i]), nil
		case c == '\\':
			return d.unescapeFrom(start, i)
		case c < 0x20:
			d.i = i
			return "", d.errorf("control character in a string")
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				d.i = i
				return "", d.errorf("invalid UTF-8 in a string")
			}
			i += n
		default:
			i++
		}
	}
}

// unescapeFrom goes on with the string that starts at start, at its first
// escape, at i.
func (d *decoder) unescapeFrom(start, i int) (string, error) {
	b := d.b
	// Escapes only shrink, so the output never outgrows the input read;
	// eight bytes more let each word be stored whole. One buffer serves
	// every escaped string of the input.
	if cap(d.buf) < len(b)-start+8 {
		d.buf = make([]byte, len(b)-start+8)
	}
	out := d.buf[:cap(d.buf)]
	o := copy(out, b[start:i])
	for {
		for i+8 <= len(b) && o+8 <= len(out) {
			w := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(out[o:], w)
			if special := specialBytes(w); special != 0 {
				n := bits.TrailingZeros64(special) / 8
				i += n
				o += n
				break
			}
			i += 8
			o += 8
		}
		if i >= len(b) {
			d.i = i
			return "", errEnd
		}
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			if o <= arenaMax || 2*o < len(out) {
				return d.makeString(out[:o]), nil
			}
			// A string that fills most of the buffer takes it over rather
			// than being copied; the next escaped string gets a new one,
			// at most half as large, as the rest of the input is.
			d.buf = nil
			return unsafe.String(&out[0], o), nil
		case c == '\\':
			if i+1 >= len(b) {
				d.i = i
				return "", errEnd
			}
			e := b[i+1]
			if c, ok := simpleEscape(e); ok {
				out[o] = c
				o++
				i += 2
				continue
			}
			if e != 'u' {
				d.i = i
				return "", d.errorf("invalid escape \\%c", e)
			}
			if i+6 > len(b) {
				d.i = i
				return "", errEnd
			}
			r, ok := hex4(b[i+2 : i+6])
			if !ok {
				d.i = i
				return "", d.errorf("invalid \\u escape")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				var n int
				r, n = pairSurrogate(r, b[i:])
				i += n
			}
			o += utf8.EncodeRune(out[o:], r)
		case c < 0x20:
			d.i = i
			return "", d.errorf("control character in a string")
		case c >= 0x80:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				d.i = i
				return "", d.errorf("invalid UTF-8 in a string")
			}
			o += copy(out[o:], b[i:i+n])
			i += n
		default:
			out[o] = c
			o++
			i++
		}
	}
}

// keyString is str for object keys: a key without escapes that the input
// had before is not allocated again.
func (d *decoder) keyString() (string, error) {
	start := d.i
	raw, escaped, err := d.scanString()
	if err != nil {
		return "", err
	}
	if escaped {
		end := d.i
		d.i = start
		k, err := d.str()
		d.i = end
		return k, err
	}
	for _, k := range d.keys[:d.nkeys] {
		if k == string(raw) {
			return k, nil
		}
	}
	k := d.makeString(raw)
	if d.nkeys < len(d.keys) {
		d.keys[d.nkeys] = k
		d.nkeys++
	}
	return k, nil
}

// unescape decodes the escapes of a string scanString accepted. Like
// encoding/json, a lone surrogate becomes U+FFFD.
func unescape(raw []byte) string {
	out := make([]byte, len(raw)) // escapes only shrink
	w := 0
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := bytes.IndexByte(raw[i:], '\\')
			if j < 0 {
				j = len(raw) - i
			}
			w += copy(out[w:], raw[i:i+j])
			i += j
			continue
		}
		if c, ok := simpleEscape(raw[i+1]); ok {
			out[w] = c
			w++
			i += 2
			continue
		}
		// \uXXXX: scanString accepted it.
		r, _ := hex4(raw[i+2 : i+6])
		i += 6
		if utf16.IsSurrogate(r) {
			var n int
			r, n = pairSurrogate(r, raw[i:])
			i += n
		}
		// At most 4 bytes for the 6 or 12 of the escapes.
		w += utf8.EncodeRune(out[w:], r)
	}
	// out is not used after this: the string may share it.
	return unsafe.String(unsafe.SliceData(out), w)
}

// composite reports whether the next value is an object or an array.
func (d *decoder) composite() bool {
	c, err := d.peek()
	return err == nil && (c == '{' || c == '[')
}
