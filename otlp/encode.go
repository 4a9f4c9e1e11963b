package otlp

import (
	"fmt"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	cpb "go.opentelemetry.io/proto/otlp/common/v1"
	rpb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
)

// The encoder writes the body of an OTLP/HTTP ExportLogsServiceRequest
// straight from audit records with protowire: one ResourceLogs (the
// shipper's resource) holding one ScopeLogs (tf's scope) holding a
// LogRecord per audit record. The official exporter built an SDK record,
// then a tree of generated messages (three objects per attribute), then
// marshalled the tree: about 9 µs and 45 allocations per record, more than
// the shipper's whole budget at 50,000 records/s on two cores. Here a
// batch is one append-only pass into a reused buffer, with no allocation
// per attribute. Field numbers are those of opentelemetry-proto
// (go.opentelemetry.io/proto/otlp); the tests require the result to
// unmarshal equal to what the official exporter sent.

// Field numbers of opentelemetry-proto's logs, common and resource
// messages.
const (
	fReqResourceLogs = 1 // ExportLogsServiceRequest.resource_logs

	fRLResource  = 1 // ResourceLogs.resource
	fRLScopeLogs = 2 // ResourceLogs.scope_logs

	fSLScope      = 1 // ScopeLogs.scope
	fSLLogRecords = 2 // ScopeLogs.log_records

	fLRTime         = 1  // LogRecord.time_unix_nano (fixed64)
	fLRSeverity     = 2  // LogRecord.severity_number (enum)
	fLRSeverityText = 3  // LogRecord.severity_text
	fLRBody         = 5  // LogRecord.body (AnyValue)
	fLRAttributes   = 6  // LogRecord.attributes (KeyValue)
	fLRObserved     = 11 // LogRecord.observed_time_unix_nano (fixed64)
	fLREventName    = 12 // LogRecord.event_name

	fKVKey   = 1 // KeyValue.key
	fKVValue = 2 // KeyValue.value (AnyValue)

	fAnyString = 1 // AnyValue.string_value
	fAnyBool   = 2 // AnyValue.bool_value
	fAnyInt    = 3 // AnyValue.int_value
)

// Severity numbers of opentelemetry-proto's SeverityNumber.
const (
	sevInfo  = 9
	sevWarn  = 13
	sevError = 17
)

// encoder encodes batches for one shipper. Its prefix fields are fixed;
// the scratch space is its own, so an encoder serves one batch at a time.
type encoder struct {
	resource []byte // ResourceLogs.resource, tag included
	scope    []byte // ScopeLogs.scope, tag included

	buf    []byte // the last request body
	attrs  []kv   // the current record's attributes
	joined []byte // the current record's joined rule names
}

// kv is one attribute of a record: a string (s, or b when built here), an
// int or a bool (i).
type kv struct {
	key  string
	kind kvKind
	s    string
	b    []byte
	i    int64
}

type kvKind uint8

const (
	kvString kvKind = iota
	kvBytes         // a string value held in b
	kvInt
	kvBool
)

// another is an encoder for another batch in flight: the same resource
// and scope (never written after newEncoder), scratch space of its own.
func (e *encoder) another() *encoder {
	return &encoder{resource: e.resource, scope: e.scope, attrs: make([]kv, 0, cap(e.attrs))}
}

// newEncoder encodes the resource and scope once.
func newEncoder(gateway string) (*encoder, error) {
	res := newResource(gateway)
	rp := &rpb.Resource{}
	for it := res.Iter(); it.Next(); {
		a := it.Attribute() // sorted by key, as the SDK exports them
		rp.Attributes = append(rp.Attributes, &cpb.KeyValue{Key: string(a.Key),
			Value: &cpb.AnyValue{Value: &cpb.AnyValue_StringValue{StringValue: a.Value.Emit()}}})
	}
	rb, err := proto.Marshal(rp)
	if err != nil {
		return nil, fmt.Errorf("encoding the resource: %w", err)
	}
	sb, err := proto.Marshal(&cpb.InstrumentationScope{Name: ScopeName})
	if err != nil {
		return nil, fmt.Errorf("encoding the scope: %w", err)
	}
	e := &encoder{attrs: make([]kv, 0, 24)}
	e.resource = protowire.AppendBytes(protowire.AppendTag(nil, fRLResource, protowire.BytesType), rb)
	e.scope = protowire.AppendBytes(protowire.AppendTag(nil, fSLScope, protowire.BytesType), sb)
	return e, nil
}

// encode returns the request body of a batch, valid until the next
// encode; observed is every record's observed time. The nested messages' lengths
// are known only once their records are written: the records go after a
// reserved header space, and the header is written right-aligned before
// them, so nothing is moved or encoded twice.
func (e *encoder) encode(batch []*audit.Record, observed time.Time) []byte {
	reserve := 2*(1+protowire.SizeVarint(1<<63)) + len(e.resource) + len(e.scope)
	buf := e.buf
	if cap(buf) < reserve+len(batch)*512 {
		buf = make([]byte, 0, reserve+len(batch)*512)
	}
	buf = buf[:reserve]
	obs := unixNano(observed)
	for i, r := range batch {
		if i%yieldEvery == yieldEvery-1 {
			runtime.Gosched() // see yieldEvery
		}
		buf = e.appendRecord(buf, r, obs)
	}
	e.buf = buf
	records := len(buf) - reserve
	slLen := len(e.scope) + records
	rlLen := len(e.resource) + 1 + protowire.SizeVarint(uint64(slLen)) + slLen
	head := 1 + protowire.SizeVarint(uint64(rlLen)) + len(e.resource) + 1 + protowire.SizeVarint(uint64(slLen)) + len(e.scope)
	start := reserve - head
	h := buf[start:start]
	h = protowire.AppendTag(h, fReqResourceLogs, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(rlLen))
	h = append(h, e.resource...)
	h = protowire.AppendTag(h, fRLScopeLogs, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(slLen))
	h = append(h, e.scope...)
	if len(h) != head {
		panic("otlp: header size mismatch") // a bug in the sizes above
	}
	return buf[start:]
}

// appendRecord appends one ScopeLogs.log_records field: the sizes first,
// then the bytes.
func (e *encoder) appendRecord(buf []byte, r *audit.Record, observed uint64) []byte {
	sev, text := e.collect(r)
	event := eventName(r.Kind)
	line := r.Line
	if !utf8.Valid(line) {
		// A protobuf string must be UTF-8; a collector would refuse the
		// whole batch, and the shipper would retry it forever.
		line = []byte(strings.ToValidUTF8(string(line), "\uFFFD"))
	}
	t := unixNano(r.Time)

	size := 0
	if t != 0 {
		size += 1 + 8
	}
	if observed != 0 {
		size += 1 + 8
	}
	size += 1 + protowire.SizeVarint(sev)
	size += 1 + sizeBytes(len(text))
	bodyLen := 1 + sizeBytes(len(line))
	size += 1 + sizeBytes(bodyLen)
	for i := range e.attrs {
		size += 1 + sizeBytes(e.attrs[i].size())
	}
	size += 1 + sizeBytes(len(event))

	buf = protowire.AppendTag(buf, fSLLogRecords, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(size))
	if t != 0 {
		buf = protowire.AppendTag(buf, fLRTime, protowire.Fixed64Type)
		buf = protowire.AppendFixed64(buf, t)
	}
	buf = protowire.AppendTag(buf, fLRSeverity, protowire.VarintType)
	buf = protowire.AppendVarint(buf, sev)
	buf = protowire.AppendTag(buf, fLRSeverityText, protowire.BytesType)
	buf = protowire.AppendString(buf, text)
	buf = protowire.AppendTag(buf, fLRBody, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(bodyLen))
	buf = protowire.AppendTag(buf, fAnyString, protowire.BytesType)
	buf = protowire.AppendBytes(buf, line)
	for i := range e.attrs {
		a := &e.attrs[i]
		buf = protowire.AppendTag(buf, fLRAttributes, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(a.size()))
		buf = protowire.AppendTag(buf, fKVKey, protowire.BytesType)
		buf = protowire.AppendString(buf, a.key)
		buf = protowire.AppendTag(buf, fKVValue, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(a.valueSize()))
		switch a.kind {
		case kvString:
			buf = protowire.AppendTag(buf, fAnyString, protowire.BytesType)
			buf = protowire.AppendString(buf, a.s)
		case kvBytes:
			buf = protowire.AppendTag(buf, fAnyString, protowire.BytesType)
			buf = protowire.AppendBytes(buf, a.b)
		case kvInt:
			buf = protowire.AppendTag(buf, fAnyInt, protowire.VarintType)
			buf = protowire.AppendVarint(buf, uint64(a.i))
		case kvBool:
			buf = protowire.AppendTag(buf, fAnyBool, protowire.VarintType)
			buf = protowire.AppendVarint(buf, uint64(a.i))
		}
	}
	if observed != 0 {
		buf = protowire.AppendTag(buf, fLRObserved, protowire.Fixed64Type)
		buf = protowire.AppendFixed64(buf, observed)
	}
	buf = protowire.AppendTag(buf, fLREventName, protowire.BytesType)
	buf = protowire.AppendString(buf, event)
	return buf
}

// sizeBytes is the size of a length-delimited value of n bytes, without
// its tag.
func sizeBytes(n int) int { return protowire.SizeVarint(uint64(n)) + n }

// valueSize is the size of the attribute's AnyValue message.
func (a *kv) valueSize() int {
	switch a.kind {
	case kvString:
		return 1 + sizeBytes(len(a.s))
	case kvBytes:
		return 1 + sizeBytes(len(a.b))
	default: // kvInt, kvBool
		return 1 + protowire.SizeVarint(uint64(a.i))
	}
}

// size is the size of the attribute's KeyValue message.
func (a *kv) size() int { return 1 + sizeBytes(len(a.key)) + 1 + sizeBytes(a.valueSize()) }

// unixNano is t as OTLP carries it: 0 for the zero time and times before
// 1970, as the official exporter does.
func unixNano(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		return 0
	}
	return uint64(n)
}

// collect sets e.attrs to the record's attributes (see docs/otel.md) and
// returns its severity. The order is part of the export: readers should
// not rely on it, but the tests compare it with the official exporter's.
func (e *encoder) collect(r *audit.Record) (sev uint64, text string) {
	sev, text = sevInfo, "INFO"
	e.joined = e.joined[:0]
	a := append(e.attrs[:0],
		kv{key: AttrKind, s: string(r.Kind)},
		kv{key: AttrSeq, kind: kvInt, i: int64(r.Seq)},
		kv{key: AttrHash, s: r.Hash},
	)
	str := func(k, v string) {
		if v != "" {
			a = append(a, kv{key: k, s: v})
		}
	}
	str(AttrRequestID, r.RequestID)
	str(AttrGateway, r.Gateway)
	if ac := r.Action; ac != nil {
		str(AttrActionType, ac.Type)
		str(AttrConnector, ac.Connector)
		str(AttrTarget, r.Target())
		str(AttrMethod, ac.Request.Method)
		str(AttrHost, ac.Request.Host)
	}
	if d := r.Decision; d != nil {
		str(AttrDecision, string(d.Effect))
		// The deciding rules: the one the decision names and every other
		// enforcing match with the same effect (deny wins, so several
		// deny rules decide together).
		start := len(e.joined)
		if d.Rule != "" {
			e.joined = append(e.joined, d.Rule...)
		}
		for _, m := range d.Matched {
			if m.Decision == d.Effect && !m.Monitor && m.Rule != d.Rule {
				if len(e.joined) > start {
					e.joined = append(e.joined, ',')
				}
				e.joined = append(e.joined, m.Rule...)
			}
		}
		if len(e.joined) > start {
			a = append(a, kv{key: AttrRule, kind: kvBytes, b: e.joined[start:len(e.joined):len(e.joined)]})
		}
		start = len(e.joined)
		for i, m := range d.Matched {
			if i > 0 {
				e.joined = append(e.joined, ',')
			}
			e.joined = append(e.joined, m.Rule...)
		}
		if len(e.joined) > start {
			a = append(a, kv{key: AttrMatched, kind: kvBytes, b: e.joined[start:len(e.joined):len(e.joined)]})
		}
		if d.Monitor {
			a = append(a, kv{key: AttrMonitor, kind: kvBool, i: 1})
			str(AttrWould, string(d.Would))
		}
		if d.KillSwitch {
			a = append(a, kv{key: AttrKillSwitch, kind: kvBool, i: 1})
		}
		str(AttrRevision, d.Revision)
		if d.Effect != "allow" {
			sev, text = sevWarn, "WARN"
		}
	}
	if r.Approval != nil {
		str(AttrApproval, r.Approval.Outcome)
	}
	if r.Kind == audit.KindOutcome {
		if r.Status != 0 {
			a = append(a, kv{key: AttrStatus, kind: kvInt, i: int64(r.Status)})
		}
		a = append(a, kv{key: AttrDurationMS, kind: kvInt, i: r.DurationMS})
	}
	if r.Error != "" {
		str(AttrError, r.Error)
		sev, text = sevError, "ERROR"
	}
	str(AttrEvent, r.Event)
	if u := r.Usage; u != nil {
		str(AttrModel, u.Model)
		a = append(a, kv{key: AttrInputTokens, kind: kvInt, i: u.Input}, kv{key: AttrOutputTokens, kind: kvInt, i: u.Output})
	}
	if m := r.MCP; m != nil {
		str(AttrMCPSession, m.Session)
		if m.IsError != nil {
			var b int64
			if *m.IsError {
				b = 1
			}
			a = append(a, kv{key: AttrMCPIsError, kind: kvBool, i: b})
		}
	}
	e.attrs = a
	return sev, text
}
