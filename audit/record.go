package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tameflare/tf/rules"
)

// SchemaVersion is the version of the record schema written by this
// package. Readers take every version from 1 up to it.
const SchemaVersion = 2

// MaxRecordBytes bounds one record line so that readers work in bounded
// memory; Append refuses larger records.
const MaxRecordBytes = 1 << 20

// Kind is the kind of a record.
type Kind string

const (
	KindDecision Kind = "decision"
	KindOutcome  Kind = "outcome"
	KindEvent    Kind = "event"
)

// Valid reports whether k is one of the three kinds.
func (k Kind) Valid() bool {
	return k == KindDecision || k == KindOutcome || k == KindEvent
}

// Event names recorded in event records.
const (
	EventGatewayStarted        = "gateway.started"
	EventGatewayStopped        = "gateway.stopped"
	EventKillSwitchActivated   = "kill_switch.activated"
	EventKillSwitchDeactivated = "kill_switch.deactivated"
	EventApprovalRequested     = "approval.requested"
	EventApprovalApproved      = "approval.approved"
	EventApprovalDenied        = "approval.denied"
	EventApprovalExpired       = "approval.expired"
	EventApprovalCancelled     = "approval.cancelled"
	EventPolicyApplied         = "policy.applied"
	// EventSandboxGitReverted: the agent set a git configuration key that
	// git would run outside the sandbox, and tf removed it.
	EventSandboxGitReverted = "sandbox.git_config_reverted"
	// EventMCPToolChanged: a pinned MCP tool was listed changed (details:
	// server, tool, pinned, seen, pin_tools).
	EventMCPToolChanged = "mcp.tool_changed"
	// EventMCPResponseRedacted: managed secrets were removed from the
	// answer to an MCP call (details: server, method, name, id).
	EventMCPResponseRedacted = "mcp.response_redacted"
	// EventTailRepaired is written by the log itself when it found bytes
	// after the last acknowledged record (a writer died mid-batch) and
	// adopted or removed them.
	EventTailRepaired = "audit.tail_repaired"
)

// Approval describes the human decision on a require_approval action.
type Approval struct {
	ID       string `json:"id"`
	Approver string `json:"approver,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Outcome is approved, denied, expired or cancelled.
	Outcome string    `json:"outcome,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// MCP identifies an MCP message: its session and JSON-RPC id, and for the
// outcome of a tool call whether the tool reported an error.
type MCP struct {
	// Session is the Mcp-Session-Id the message was sent in.
	Session string `json:"session,omitempty"`
	// ID is the message's JSON-RPC id as JSON: 7 or "a".
	ID string `json:"id,omitempty"`
	// IsError is the isError of a tool call's result (outcome records).
	IsError *bool `json:"is_error,omitempty"`
}

// Usage is the token usage a model API reported for one call (outcome
// records). Counts are as the API reports them: OpenAI's input includes
// its cached tokens, Anthropic's does not. Unknown, when set, says why the
// usage could not be read (a malformed event, a field of the wrong type,
// no usage in the response); the counts are then zero.
type Usage struct {
	Model      string `json:"model,omitempty"`
	Input      int64  `json:"input_tokens"`
	Output     int64  `json:"output_tokens"`
	CacheRead  int64  `json:"cache_read_tokens,omitempty"`
	CacheWrite int64  `json:"cache_write_tokens,omitempty"`
	Unknown    string `json:"unknown,omitempty"`
}

// A Record is one line of the audit log. The field order is the order of
// the keys on disk; see doc.go for the schema.
type Record struct {
	// SchemaVersion, Seq, Prev and Hash are filled in by Append.
	SchemaVersion int       `json:"schema_version,omitempty"`
	Seq           uint64    `json:"seq,omitempty"`
	Time          time.Time `json:"time"`
	Kind          Kind      `json:"kind"`
	RequestID     string    `json:"request_id,omitempty"`
	Gateway       string    `json:"gateway,omitempty"`

	// Decision records.
	Action   *rules.Action   `json:"action,omitempty"`
	Decision *rules.Decision `json:"decision,omitempty"`
	Approval *Approval       `json:"approval,omitempty"`

	// Outcome records.
	Status     int    `json:"status,omitempty"`
	BytesIn    int64  `json:"bytes_in,omitempty"`
	BytesOut   int64  `json:"bytes_out,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Error      string `json:"error,omitempty"`

	// MCP identifies the MCP message of a decision or outcome record.
	MCP *MCP `json:"mcp,omitempty"`

	// Usage is the token usage of a model call (outcome records), as its
	// response reported it.
	Usage *Usage `json:"usage,omitempty"`

	// Event records.
	Event   string         `json:"event,omitempty"`
	Details map[string]any `json:"details,omitempty"`

	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`

	// Line is the record's line as stored, without the newline; readers
	// set it so that output can repeat the exact bytes.
	Line []byte `json:"-"`
}

// validate checks what a record of each kind must carry. It is used both
// when appending and when reading, so the log never holds what readers
// would refuse.
func (r *Record) validate() error {
	if !r.Kind.Valid() {
		return fmt.Errorf("unknown record kind %q", r.Kind)
	}
	if r.Time.IsZero() {
		return errors.New("record has no time")
	}
	switch r.Kind {
	case KindDecision:
		if r.Action == nil || r.Action.Type == "" {
			return errors.New("decision record has no action type")
		}
		if r.Decision == nil || !r.Decision.Effect.Valid() {
			return errors.New("decision record has no valid decision")
		}
		if r.Approval != nil && r.Approval.ID == "" {
			return errors.New("decision record has an approval without id")
		}
	case KindOutcome:
		if r.RequestID == "" {
			return errors.New("outcome record has no request_id")
		}
	case KindEvent:
		if r.Event == "" {
			return errors.New("event record has no event name")
		}
	}
	if r.Usage != nil && r.Kind != KindOutcome {
		return errors.New("only an outcome record carries usage")
	}
	if r.Kind != KindDecision && (r.Action != nil || r.Decision != nil || r.Approval != nil) {
		return fmt.Errorf("%s record carries decision fields", r.Kind)
	}
	if r.Kind == KindEvent && r.MCP != nil {
		return errors.New("event record carries mcp")
	}
	return nil
}

// body encodes the record without the fields the writer fills in, so the
// expensive part of encoding runs in the appending goroutine.
func (r *Record) body() ([]byte, error) { return r.appendBody(make([]byte, 0, 1024)) }

// appendBody is body, appended to b.
func (r *Record) appendBody(b []byte) ([]byte, error) {
	b, err := appendBody(b, r)
	if err != nil || len(b) <= maxBodyBytes {
		return b, err
	}
	return r.truncatedBody(b)
}

// maxBodyBytes leaves room under MaxRecordBytes for what the writer adds
// (schema_version, seq, prev, hash).
const maxBodyBytes = MaxRecordBytes - 256

// TruncatedKey is the param (or detail) that marks a record cut to fit a
// line: its value holds the size and SHA-256 of the whole encoded record.
const TruncatedKey = "_tf_truncated"

// maxKeptString bounds each string kept in a truncated record.
const maxKeptString = 1024

// truncatedBody encodes a record too large for one line rather than drop
// it: every decision, refusals above all, must be on record. What an agent
// can make grow without bound is cut (strings in params and details to
// maxKeptString, deeper values dropped; error, reason and the recorded
// path and query to 4 KiB), and a marker records the size and digest of
// the whole encoding.
func (r *Record) truncatedBody(whole []byte) ([]byte, error) {
	sum := sha256.Sum256(whole)
	marker := map[string]any{"bytes": len(whole), "sha256": hex.EncodeToString(sum[:])}
	c := *r
	if c.Action != nil {
		a := *c.Action
		a.Params = keepScalars(a.Params, marker)
		a.Request.Path = cutString(a.Request.Path, 4096)
		a.Request.Query = cutString(a.Request.Query, 4096)
		if len(a.Resource) > 0 {
			res := make(map[string]string, len(a.Resource))
			for k, v := range a.Resource {
				res[cutString(k, 256)] = cutString(v, maxKeptString)
			}
			a.Resource = res
		}
		c.Action = &a
	}
	if c.Decision != nil {
		d := *c.Decision
		d.Reason = cutString(d.Reason, 4096)
		c.Decision = &d
	}
	if c.Details != nil || c.Kind == KindEvent {
		c.Details = keepScalars(c.Details, marker)
	}
	c.Error = cutString(c.Error, 4096)
	b, err := appendBody(make([]byte, 0, 4096), &c)
	if err != nil {
		return nil, err
	}
	if len(b) > maxBodyBytes {
		return nil, fmt.Errorf("record of %d bytes exceeds the %d byte limit even truncated", len(whole), MaxRecordBytes)
	}
	return b, nil
}

// keepScalars returns the first 64 keys of m (in order) with their strings
// cut and numbers and booleans kept; other values are dropped. The marker
// goes under TruncatedKey.
func keepScalars(m map[string]any, marker map[string]any) map[string]any {
	out := map[string]any{TruncatedKey: marker}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 64 {
			break
		}
		switch v := m[k].(type) {
		case string:
			out[cutString(k, 256)] = cutString(v, maxKeptString)
		case bool, int, int64, float64, json.Number:
			out[cutString(k, 256)] = v
		}
	}
	return out
}

// cutString shortens s to at most n bytes, at a rune boundary, marking
// the cut.
func cutString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…[truncated]"
}

var (
	zeroHash   = [sha256.Size]byte{}
	hashKey    = []byte(`,"hash":"`)
	prevKey    = []byte(`,"prev":"`)
	lineHeader = []byte(`{"schema_version":2,"seq":`)
)

// ZeroHash is the prev of the first record of a log.
var ZeroHash = hex.EncodeToString(zeroHash[:])

// suffixLen is the length of `,"hash":"<64 hex>"}`.
const suffixLen = 9 + 64 + 2

// errHash marks a line whose hash does not match its content.
var errHash = errors.New("hash does not match the record")

// parseLine checks one stored line (without newline): its hash over the
// canonical bytes, strict JSON decoding against the schema, and the rules
// of its kind. It never panics on arbitrary input.
func parseLine(line []byte) (*Record, error) {
	p := lineParsers.Get().(*lineParser)
	r, err := p.parse(line)
	lineParsers.Put(p)
	return r, err
}

// A lineParser holds what parsing reuses from line to line: reading a log
// is mostly parsing, and a new json.Decoder per line allocated its buffer
// anew each time.
type lineParser struct {
	rd bytes.Reader
	// dec reads rd, which is reset to each line. It is kept only after a
	// line that decoded cleanly, ending where the line ends: the decoder
	// then holds nothing of that line, and the next one starts afresh.
	dec *json.Decoder
	off int64 // dec.InputOffset() at the start of the line
	sha hash.Hash
	sum [sha256.Size]byte
	in  interner
}

var lineParsers = sync.Pool{New: func() any { return &lineParser{sha: sha256.New()} }}

func (p *lineParser) parse(line []byte) (*Record, error) {
	if len(line) > MaxRecordBytes {
		return nil, fmt.Errorf("line of %d bytes exceeds the %d byte limit", len(line), MaxRecordBytes)
	}
	if len(line) < suffixLen+2 || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.Equal(line[len(line)-suffixLen:len(line)-suffixLen+len(hashKey)], hashKey) {
		return nil, errors.New("line does not end with a hash member")
	}
	want := line[len(line)-suffixLen+len(hashKey) : len(line)-2]
	if !isLowerHex(want) {
		return nil, errors.New("hash is not lower-case hex")
	}
	// Compared as bytes: want is 64 lower-case hex digits, so this is the
	// comparison of canonicalHash's hex with want.
	var wantSum [sha256.Size]byte
	if _, err := hex.Decode(wantSum[:], want); err != nil {
		return nil, errors.New("hash is not lower-case hex")
	}
	p.sha.Reset()
	p.sha.Write(line[:len(line)-suffixLen])
	p.sha.Write([]byte{'}'})
	if !bytes.Equal(p.sha.Sum(p.sum[:0]), wantSum[:]) {
		return nil, errHash
	}
	var r Record
	if fastDecodeIn(line, &r, &p.in) {
		return checkRecord(&r, line, want)
	}
	r = Record{}
	p.rd.Reset(line)
	if p.dec == nil {
		p.dec = json.NewDecoder(&p.rd)
		p.dec.DisallowUnknownFields()
		p.off = 0
	}
	if err := p.dec.Decode(&r); err != nil {
		p.dec = nil
		return nil, fmt.Errorf("decoding record: %w", err)
	}
	// The line ends in a non-space byte, so anything but a record that
	// ends exactly where the line does is data after the record.
	end := p.dec.InputOffset()
	if end-p.off != int64(len(line)) {
		p.dec = nil
		return nil, errors.New("data after the record")
	}
	p.off = end
	return checkRecord(&r, line, want)
}

// checkRecord applies the rules every decoded line must meet.
func checkRecord(r *Record, line, want []byte) (*Record, error) {
	if r.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("schema_version %d is newer than this tf reads (1 to %d): upgrade tf to read this log", r.SchemaVersion, SchemaVersion)
	}
	if r.SchemaVersion < 1 {
		return nil, fmt.Errorf("unsupported schema_version %d", r.SchemaVersion)
	}
	if r.Seq == 0 {
		return nil, errors.New("record has no seq")
	}
	if len(r.Prev) != 64 || !isLowerHex(r.Prev) {
		return nil, errors.New("prev is not a 64-digit hex hash")
	}
	if r.Hash != string(want) {
		return nil, errors.New("hash member is duplicated")
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	r.Line = line
	return r, nil
}

// canonicalHash returns the hex SHA-256 of the canonical bytes: the line
// up to (not including) the hash member, followed by the closing brace.
func canonicalHash(prefix []byte) []byte {
	h := sha256.New()
	h.Write(prefix)
	h.Write([]byte{'}'})
	return hex.AppendEncode(nil, h.Sum(nil))
}

// lineHash returns the SHA-256 of a whole line (without newline); the next
// record's prev holds it.
func lineHash(line []byte) [sha256.Size]byte { return sha256.Sum256(line) }

// isLowerHex reports whether b is lower-case hex digits only. It runs
// twice for every record read; a table without branches is several times
// faster on random digits than comparisons, and taking a string spares
// the copy of []byte(r.Prev).
func isLowerHex[T ~string | ~[]byte](b T) bool {
	var bad byte
	for i := 0; i < len(b); i++ {
		bad |= notLowerHex[b[i]]
	}
	return bad == 0
}

// notLowerHex is 1 for every byte but 0-9 and a-f.
var notLowerHex = func() (t [256]byte) {
	for c := range t {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			t[c] = 1
		}
	}
	return t
}()
