package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tameflare/tf/rules"
)

// The writer's hot path encodes records by hand: reflection-based
// encoding/json was half of the CPU per record. The output is byte for
// byte what encoding/json gives for the same struct (TestEncodeMatchesJSON
// and FuzzEncode check this, TestEncoderKnowsEveryField catches a field
// added to the rules types); values of unknown shape (params, details)
// and strings that need escaping go through encoding/json itself.

// encodedFields lists, per type, the JSON members appendBody writes.
var encodedFields = map[string][]string{
	"Record":   {"schema_version", "seq", "time", "kind", "request_id", "gateway", "action", "decision", "approval", "status", "bytes_in", "bytes_out", "duration_ms", "error", "mcp", "usage", "event", "details", "prev", "hash"},
	"MCP":      {"session", "id", "is_error"},
	"Action":   {"id", "time", "gateway", "connector", "type", "resource", "params", "request", "agent"},
	"Request":  {"method", "scheme", "host", "port", "path", "query", "headers"},
	"Decision": {"decision", "rule", "reason", "matched", "default", "kill_switch", "monitor", "would", "would_rule", "would_reason", "approval_timeout", "revision", "counted"},
	"Match":    {"rule", "decision", "reason", "monitor", "error"},
	"Approval": {"id", "approver", "reason", "outcome", "at"},
	"Usage":    {"model", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "unknown"},
}

// enc appends JSON object members, writing the separating commas.
type enc struct {
	b     []byte
	first bool
	err   error
}

func (e *enc) key(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

func (e *enc) open()  { e.b = append(e.b, '{'); e.first = true }
func (e *enc) close() { e.b = append(e.b, '}'); e.first = false }

func (e *enc) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			e.marshal(s) // needs escaping exactly as encoding/json does it
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *enc) value(v any) {
	switch v := v.(type) {
	case string:
		e.str(v)
		return
	case bool:
		e.b = strconv.AppendBool(e.b, v)
		return
	case nil:
		e.b = append(e.b, "null"...)
		return
	}
	e.marshal(v)
}

func (e *enc) marshal(v any) {
	b, err := json.Marshal(v)
	if err != nil && e.err == nil {
		e.err = err
	}
	e.b = append(e.b, b...)
}

func (e *enc) time(t time.Time) {
	if y := t.Year(); y < 0 || y >= 10000 {
		if e.err == nil {
			e.err = errors.New("time year outside of range [0,9999]")
		}
		return
	}
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

func (e *enc) optStr(k, v string) {
	if v != "" {
		e.key(k)
		e.str(v)
	}
}

func (e *enc) optBool(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}

func (e *enc) optInt(k string, v int64) {
	if v != 0 {
		e.key(k)
		e.b = strconv.AppendInt(e.b, v, 10)
	}
}

func (e *enc) strMap(m map[string]string) { encMap(e, m, e.str) }

func (e *enc) anyMap(m map[string]any) { encMap(e, m, e.value) }

// encMap writes m as an object, keys sorted as encoding/json sorts them,
// each value by value.
func encMap[V any](e *enc, m map[string]V, value func(V)) {
	var arr [8]string
	keys := sortedKeys(arr[:0], m)
	e.open()
	for _, k := range keys {
		e.keyStr(k)
		value(m[k])
	}
	e.close()
}

// keyStr writes a map key, which may need escaping.
func (e *enc) keyStr(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.str(k)
	e.b = append(e.b, ':')
}

// sortedKeys appends the keys of m to keys, sorted. Callers pass a small
// array's slice so that the maps of most records cost no allocation.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendBody encodes r without schema_version, seq, prev and hash, as
// encoding/json would with those fields empty.
func appendBody(b []byte, r *Record) ([]byte, error) {
	e := enc{b: b}
	e.open()
	e.key("time")
	e.time(r.Time)
	e.key("kind")
	e.str(string(r.Kind))
	e.optStr("request_id", r.RequestID)
	e.optStr("gateway", r.Gateway)
	if r.Action != nil {
		e.key("action")
		e.action(r.Action)
	}
	if r.Decision != nil {
		e.key("decision")
		e.decision(r.Decision)
	}
	if a := r.Approval; a != nil {
		e.key("approval")
		e.open()
		e.key("id")
		e.str(a.ID)
		e.optStr("approver", a.Approver)
		e.optStr("reason", a.Reason)
		e.optStr("outcome", a.Outcome)
		if !a.At.IsZero() {
			e.key("at")
			e.time(a.At)
		}
		e.close()
	}
	e.optInt("status", int64(r.Status))
	e.optInt("bytes_in", r.BytesIn)
	e.optInt("bytes_out", r.BytesOut)
	e.optInt("duration_ms", r.DurationMS)
	e.optStr("error", r.Error)
	if m := r.MCP; m != nil {
		e.key("mcp")
		e.open()
		e.optStr("session", m.Session)
		e.optStr("id", m.ID)
		if m.IsError != nil {
			e.key("is_error")
			e.b = strconv.AppendBool(e.b, *m.IsError)
		}
		e.close()
	}
	if u := r.Usage; u != nil {
		e.key("usage")
		e.open()
		e.optStr("model", u.Model)
		e.key("input_tokens")
		e.b = strconv.AppendInt(e.b, u.Input, 10)
		e.key("output_tokens")
		e.b = strconv.AppendInt(e.b, u.Output, 10)
		e.optInt("cache_read_tokens", u.CacheRead)
		e.optInt("cache_write_tokens", u.CacheWrite)
		e.optStr("unknown", u.Unknown)
		e.close()
	}
	e.optStr("event", r.Event)
	if len(r.Details) > 0 {
		e.key("details")
		e.anyMap(r.Details)
	}
	e.close()
	if e.err != nil {
		return nil, fmt.Errorf("encoding audit record: %w", e.err)
	}
	return e.b, nil
}

func (e *enc) action(a *rules.Action) {
	e.open()
	e.optStr("id", a.ID)
	if !a.Time.IsZero() {
		e.key("time")
		e.time(a.Time)
	}
	e.optStr("gateway", a.Gateway)
	e.optStr("connector", a.Connector)
	e.key("type")
	e.str(a.Type)
	if len(a.Resource) > 0 {
		e.key("resource")
		e.strMap(a.Resource)
	}
	if len(a.Params) > 0 {
		e.key("params")
		e.anyMap(a.Params)
	}
	q := &a.Request
	// omitzero: a non-nil empty Headers map makes the struct non-zero.
	if q.Method != "" || q.Scheme != "" || q.Host != "" || q.Port != 0 || q.Path != "" || q.Query != "" || q.Headers != nil {
		e.key("request")
		e.open()
		e.optStr("method", q.Method)
		e.optStr("scheme", q.Scheme)
		e.optStr("host", q.Host)
		e.optInt("port", int64(q.Port))
		e.optStr("path", q.Path)
		e.optStr("query", q.Query)
		if len(q.Headers) > 0 {
			e.key("headers")
			e.strMap(q.Headers)
		}
		e.close()
	}
	e.optStr("agent", a.Agent)
	e.close()
}

func (e *enc) decision(d *rules.Decision) {
	e.open()
	e.key("decision")
	e.str(string(d.Effect))
	e.optStr("rule", d.Rule)
	e.optStr("reason", d.Reason)
	if len(d.Matched) > 0 {
		e.key("matched")
		e.b = append(e.b, '[')
		for i, m := range d.Matched {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.open()
			e.key("rule")
			e.str(m.Rule)
			e.key("decision")
			e.str(string(m.Decision))
			e.optStr("reason", m.Reason)
			e.optBool("monitor", m.Monitor)
			e.optStr("error", m.Error)
			e.close()
		}
		e.b = append(e.b, ']')
		e.first = false
	}
	e.optBool("default", d.Default)
	e.optBool("kill_switch", d.KillSwitch)
	e.optBool("monitor", d.Monitor)
	e.optStr("would", string(d.Would))
	e.optStr("would_rule", d.WouldRule)
	e.optStr("would_reason", d.WouldReason)
	e.optInt("approval_timeout", int64(d.ApprovalTimeout))
	e.optStr("revision", d.Revision)
	if len(d.Counted) > 0 {
		e.key("counted")
		e.b = append(e.b, '[')
		for i, name := range d.Counted {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.str(name)
		}
		e.b = append(e.b, ']')
	}
	e.close()
}
