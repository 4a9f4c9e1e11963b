package audit

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tameflare/tf/rules"
)

// fastDecode decodes a record line in the plain form this package writes:
// known keys, each once, spelled exactly, strings without escapes, numbers
// in the form their fields take. Reading a log is mostly decoding, and
// encoding/json validates each line in one pass and decodes it by
// reflection in another. ok is false for anything outside that form, and
// the caller then decodes with encoding/json, whose result (or error) is
// the one that counts: what fastDecode accepts, encoding/json with
// DisallowUnknownFields decodes to the same record (FuzzFastDecode checks
// this), so the fast path never accepts or refuses a line differently.
func fastDecode(line []byte, r *Record) (ok bool) { return fastDecodeIn(line, r, nil) }

// fastDecodeIn is fastDecode handing out the strings that repeat from
// record to record (kinds, gateways, action types, hosts, rules, map
// keys) from in, which may be nil.
func fastDecodeIn(line []byte, r *Record, in *interner) (ok bool) {
	p := fastParser{b: line, in: in}
	if !p.record(r) {
		return false
	}
	p.ws()
	return p.i == len(p.b)
}

// fastMaxDepth bounds nesting on the fast path; deeper values go to
// encoding/json.
const fastMaxDepth = 32

type fastParser struct {
	b     []byte
	i     int
	depth int
	in    *interner
}

// An interner hands out one string for each value it has seen, so that
// values repeated in every record are not allocated for every record:
// half of a log reader's allocations were such strings. It holds at most
// internMax strings of at most internMaxLen bytes.
type interner map[string]string

const (
	internMax    = 1024
	internMaxLen = 128
)

func (in *interner) get(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := (*in)[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= internMaxLen {
		if *in == nil {
			*in = make(map[string]string, 64)
		} else if len(*in) >= internMax {
			clear(*in)
		}
		(*in)[s] = s
	}
	return s
}

// istr is str for a value that repeats across records.
func (p *fastParser) istr() (string, bool) {
	s, ok := p.rawString()
	return p.in.get(s), ok
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and reports whether c comes next, consuming it.
func (p *fastParser) next(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// peek returns the next non-space byte, or 0 at the end.
func (p *fastParser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// rawString returns the bytes of a string without escapes, control
// characters or invalid UTF-8; ok is false for any other string.
func (p *fastParser) rawString() ([]byte, bool) {
	if !p.next('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		p.i++
	}
	return nil, false
}

func (p *fastParser) str() (string, bool) {
	s, ok := p.rawString()
	return string(s), ok
}

// object walks the members of an object, calling member with each key,
// which must decode the value. Duplicate keys are refused by the callers
// that decode structs (encoding/json would merge them).
func (p *fastParser) object(member func(key []byte) bool) bool {
	if !p.next('{') {
		return false
	}
	p.depth++
	if p.depth > fastMaxDepth {
		return false
	}
	if p.next('}') {
		p.depth--
		return true
	}
	for {
		k, ok := p.rawString()
		if !ok || !p.next(':') || !member(k) {
			return false
		}
		if p.next(',') {
			continue
		}
		if p.next('}') {
			p.depth--
			return true
		}
		return false
	}
}

// numberEnd returns the end of a JSON number at p.i, or -1.
func (p *fastParser) numberEnd() int {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			return -1
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
			return -1
		}
	}
	return i
}

// integer returns an integer written without fraction or exponent.
func (p *fastParser) integer() (string, bool) {
	p.ws()
	end := p.numberEnd()
	if end < 0 {
		return "", false
	}
	s := string(p.b[p.i:end])
	for i := 0; i < len(s); i++ {
		if s[i] == '.' || s[i] == 'e' || s[i] == 'E' {
			return "", false
		}
	}
	p.i = end
	return s, true
}

func (p *fastParser) int64() (int64, bool) {
	s, ok := p.integer()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func (p *fastParser) int() (int, bool) {
	n, ok := p.int64()
	return int(n), ok && int64(int(n)) == n
}

func (p *fastParser) uint64() (uint64, bool) {
	s, ok := p.integer()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func (p *fastParser) bool() (bool, bool) {
	p.ws()
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true, true
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false, true
	}
	return false, false
}

// time decodes a string as time.Time's UnmarshalJSON does, which is what
// encoding/json calls.
func (p *fastParser) time() (time.Time, bool) {
	p.ws()
	start := p.i
	if _, ok := p.rawString(); !ok {
		return time.Time{}, false
	}
	var t time.Time
	return t, t.UnmarshalJSON(p.b[start:p.i]) == nil
}

// value decodes any JSON value as encoding/json decodes into any.
func (p *fastParser) value() (any, bool) {
	switch c := p.peek(); {
	case c == '"':
		return p.str()
	case c == '{':
		m := map[string]any{}
		ok := p.object(func(k []byte) bool {
			v, ok := p.value()
			m[p.in.get(k)] = v // a repeated key replaces, as in encoding/json
			return ok
		})
		return m, ok
	case c == '[':
		return p.array()
	case c == 't' || c == 'f':
		return p.bool()
	case c == 'n':
		if bytes.HasPrefix(p.b[p.i:], []byte("null")) {
			p.i += 4
			return nil, true
		}
		return nil, false
	case c == '-' || c >= '0' && c <= '9':
		end := p.numberEnd()
		if end < 0 {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(p.b[p.i:end]), 64)
		if err != nil {
			return nil, false
		}
		p.i = end
		return f, true
	}
	return nil, false
}

func (p *fastParser) array() ([]any, bool) {
	if !p.next('[') {
		return nil, false
	}
	p.depth++
	if p.depth > fastMaxDepth {
		return nil, false
	}
	a := []any{}
	if p.next(']') {
		p.depth--
		return a, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if p.next(',') {
			continue
		}
		if p.next(']') {
			p.depth--
			return a, true
		}
		return nil, false
	}
}

func (p *fastParser) anyMap() (map[string]any, bool) {
	if p.peek() != '{' {
		return nil, false
	}
	v, ok := p.value()
	m, _ := v.(map[string]any)
	return m, ok
}

func (p *fastParser) strMap() (map[string]string, bool) {
	m := map[string]string{}
	ok := p.object(func(k []byte) bool {
		v, ok := p.istr()
		m[p.in.get(k)] = v
		return ok
	})
	return m, ok
}

// fields tracks which keys of a struct were seen: a repeated one goes to
// encoding/json, which merges repeated objects into one value.
type fields uint32

func (f *fields) first(bit uint) bool {
	if *f&(1<<bit) != 0 {
		return false
	}
	*f |= 1 << bit
	return true
}

func (p *fastParser) record(r *Record) bool {
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "schema_version":
			ok = seen.first(0)
			r.SchemaVersion, ok = p.intIf(ok)
		case "seq":
			if seen.first(1) {
				r.Seq, ok = p.uint64()
			}
		case "time":
			if seen.first(2) {
				r.Time, ok = p.time()
			}
		case "kind":
			if seen.first(3) {
				var s string
				s, ok = p.istr()
				r.Kind = Kind(s)
			}
		case "request_id":
			if seen.first(4) {
				r.RequestID, ok = p.str()
			}
		case "gateway":
			if seen.first(5) {
				r.Gateway, ok = p.istr()
			}
		case "action":
			if seen.first(6) {
				r.Action = new(rules.Action)
				ok = p.action(r.Action)
			}
		case "decision":
			if seen.first(7) {
				r.Decision = new(rules.Decision)
				ok = p.decision(r.Decision)
			}
		case "approval":
			if seen.first(8) {
				r.Approval = new(Approval)
				ok = p.approval(r.Approval)
			}
		case "status":
			ok = seen.first(9)
			r.Status, ok = p.intIf(ok)
		case "bytes_in":
			if seen.first(10) {
				r.BytesIn, ok = p.int64()
			}
		case "bytes_out":
			if seen.first(11) {
				r.BytesOut, ok = p.int64()
			}
		case "duration_ms":
			if seen.first(12) {
				r.DurationMS, ok = p.int64()
			}
		case "error":
			if seen.first(13) {
				r.Error, ok = p.str()
			}
		case "mcp":
			if seen.first(18) {
				r.MCP = new(MCP)
				ok = p.mcp(r.MCP)
			}
		case "usage":
			if seen.first(19) && p.peek() == '{' {
				r.Usage = new(Usage)
				ok = p.usage(r.Usage)
			}
		case "event":
			if seen.first(14) {
				r.Event, ok = p.str()
			}
		case "details":
			if seen.first(15) {
				r.Details, ok = p.anyMap()
			}
		case "prev":
			if seen.first(16) {
				r.Prev, ok = p.str()
			}
		case "hash":
			if seen.first(17) {
				r.Hash, ok = p.str()
			}
		}
		return ok
	})
}

// intIf decodes an int when ok (the key was not seen before).
func (p *fastParser) intIf(ok bool) (int, bool) {
	if !ok {
		return 0, false
	}
	return p.int()
}

func (p *fastParser) action(a *rules.Action) bool {
	if p.peek() != '{' {
		return false
	}
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "id":
			if seen.first(0) {
				a.ID, ok = p.str()
			}
		case "time":
			if seen.first(1) {
				a.Time, ok = p.time()
			}
		case "gateway":
			if seen.first(2) {
				a.Gateway, ok = p.istr()
			}
		case "connector":
			if seen.first(3) {
				a.Connector, ok = p.istr()
			}
		case "type":
			if seen.first(4) {
				a.Type, ok = p.istr()
			}
		case "resource":
			if seen.first(5) {
				a.Resource, ok = p.strMap()
			}
		case "params":
			if seen.first(6) {
				a.Params, ok = p.anyMap()
			}
		case "request":
			if seen.first(7) {
				ok = p.request(&a.Request)
			}
		case "agent":
			if seen.first(8) {
				a.Agent, ok = p.istr()
			}
		}
		return ok
	})
}

func (p *fastParser) request(q *rules.Request) bool {
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "method":
			if seen.first(0) {
				q.Method, ok = p.istr()
			}
		case "scheme":
			if seen.first(1) {
				q.Scheme, ok = p.istr()
			}
		case "host":
			if seen.first(2) {
				q.Host, ok = p.istr()
			}
		case "port":
			ok = seen.first(3)
			q.Port, ok = p.intIf(ok)
		case "path":
			if seen.first(4) {
				q.Path, ok = p.istr()
			}
		case "query":
			if seen.first(5) {
				q.Query, ok = p.str()
			}
		case "headers":
			if seen.first(6) {
				q.Headers, ok = p.strMap()
			}
		}
		return ok
	})
}

func (p *fastParser) effect() (rules.Effect, bool) {
	s, ok := p.istr()
	return rules.Effect(s), ok
}

func (p *fastParser) decision(d *rules.Decision) bool {
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "decision":
			if seen.first(0) {
				d.Effect, ok = p.effect()
			}
		case "rule":
			if seen.first(1) {
				d.Rule, ok = p.istr()
			}
		case "reason":
			if seen.first(2) {
				d.Reason, ok = p.istr()
			}
		case "matched":
			if seen.first(3) {
				d.Matched, ok = p.matches()
			}
		case "default":
			if seen.first(4) {
				d.Default, ok = p.bool()
			}
		case "kill_switch":
			if seen.first(5) {
				d.KillSwitch, ok = p.bool()
			}
		case "monitor":
			if seen.first(6) {
				d.Monitor, ok = p.bool()
			}
		case "would":
			if seen.first(7) {
				d.Would, ok = p.effect()
			}
		case "would_rule":
			if seen.first(8) {
				d.WouldRule, ok = p.istr()
			}
		case "would_reason":
			if seen.first(9) {
				d.WouldReason, ok = p.istr()
			}
		case "approval_timeout":
			if seen.first(10) {
				var n int64
				n, ok = p.int64()
				d.ApprovalTimeout = time.Duration(n)
			}
		case "revision":
			if seen.first(11) {
				d.Revision, ok = p.istr()
			}
		case "counted":
			if seen.first(12) {
				d.Counted, ok = p.strings()
			}
		}
		return ok
	})
}

// strings reads an array of strings.
func (p *fastParser) strings() ([]string, bool) {
	if !p.next('[') {
		return nil, false
	}
	out := []string{}
	if p.next(']') {
		return out, true
	}
	for {
		s, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if p.next(',') {
			continue
		}
		if p.next(']') {
			return out, true
		}
		return nil, false
	}
}

func (p *fastParser) matches() ([]rules.Match, bool) {
	if !p.next('[') {
		return nil, false
	}
	ms := []rules.Match{}
	if p.next(']') {
		return ms, true
	}
	for {
		var m rules.Match
		var seen fields
		ok := p.object(func(k []byte) bool {
			var ok bool
			switch string(k) {
			case "rule":
				if seen.first(0) {
					m.Rule, ok = p.istr()
				}
			case "decision":
				if seen.first(1) {
					m.Decision, ok = p.effect()
				}
			case "reason":
				if seen.first(2) {
					m.Reason, ok = p.istr()
				}
			case "monitor":
				if seen.first(3) {
					m.Monitor, ok = p.bool()
				}
			case "error":
				if seen.first(4) {
					m.Error, ok = p.str()
				}
			}
			return ok
		})
		if !ok {
			return nil, false
		}
		ms = append(ms, m)
		if p.next(',') {
			continue
		}
		if p.next(']') {
			return ms, true
		}
		return nil, false
	}
}

func (p *fastParser) usage(u *Usage) bool {
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "model":
			if seen.first(0) {
				u.Model, ok = p.str()
			}
		case "input_tokens":
			if seen.first(1) {
				u.Input, ok = p.int64()
			}
		case "output_tokens":
			if seen.first(2) {
				u.Output, ok = p.int64()
			}
		case "cache_read_tokens":
			if seen.first(3) {
				u.CacheRead, ok = p.int64()
			}
		case "cache_write_tokens":
			if seen.first(4) {
				u.CacheWrite, ok = p.int64()
			}
		case "unknown":
			if seen.first(5) {
				u.Unknown, ok = p.str()
			}
		}
		return ok
	})
}

func (p *fastParser) approval(a *Approval) bool {
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "id":
			if seen.first(0) {
				a.ID, ok = p.str()
			}
		case "approver":
			if seen.first(1) {
				a.Approver, ok = p.str()
			}
		case "reason":
			if seen.first(2) {
				a.Reason, ok = p.str()
			}
		case "outcome":
			if seen.first(3) {
				a.Outcome, ok = p.str()
			}
		case "at":
			if seen.first(4) {
				a.At, ok = p.time()
			}
		}
		return ok
	})
}

func (p *fastParser) mcp(m *MCP) bool {
	if p.peek() != '{' {
		return false
	}
	var seen fields
	return p.object(func(k []byte) bool {
		var ok bool
		switch string(k) {
		case "session":
			if seen.first(0) {
				m.Session, ok = p.str()
			}
		case "id":
			if seen.first(1) {
				m.ID, ok = p.str()
			}
		case "is_error":
			if seen.first(2) {
				var v bool
				v, ok = p.bool()
				m.IsError = &v
			}
		}
		return ok
	})
}
