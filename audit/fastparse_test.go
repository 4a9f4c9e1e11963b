package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// decodeSlow decodes a line as parseLine did before the fast path.
func decodeSlow(line []byte) (*Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the record")
	}
	return &r, nil
}

// writtenLines appends records of every kind, with every field the fast
// path reads, and returns the lines of the log.
func writtenLines(t testing.TB) [][]byte {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	ctx := testCtx(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("x", 3600))
	full := decision(2)
	full.Action.ID, full.Action.Time, full.Action.Gateway = "a1", at, "gw"
	full.Action.Request = rules.Request{Method: "PUT", Scheme: "https", Host: "h", Port: 8443, Path: "/p", Query: "q=1",
		Headers: map[string]string{"User-Agent": "ua ünï"}}
	full.Action.Params = map[string]any{"n": -1.5e-3, "list": []any{"x", true, nil, map[string]any{"k": []any{}}}, "empty": map[string]any{}}
	full.Decision = &rules.Decision{Effect: rules.RequireApproval, Rule: "r", Reason: "why", Default: true, KillSwitch: true,
		Monitor: true, Would: rules.Deny, WouldRule: "w", WouldReason: "wr", ApprovalTimeout: time.Minute, Revision: "rev",
		Matched: []rules.Match{{Rule: "r", Decision: rules.Deny, Reason: "m", Monitor: true, Error: "e"}}}
	full.Approval = &Approval{ID: "ap1", Approver: "me", Reason: "ok", Outcome: "approved", At: at}
	recs := []*Record{decision(0), decision(1), decision(4), full,
		{Kind: KindOutcome, RequestID: "req-1", Status: 502, BytesIn: 10, BytesOut: 1 << 40, DurationMS: 7, Error: "upstream"},
		{Kind: KindEvent, Event: EventPolicyApplied, Details: map[string]any{"n": 1, "s": "x", "nested": map[string]any{"a": []any{1, 2}}}},
	}
	for _, r := range recs {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(segPath(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) > 0 {
			lines = append(lines, line)
		}
	}
	return lines
}

// Every line this package writes takes the fast path, and decodes as
// encoding/json decodes it.
func TestFastDecodeTakesWrittenLines(t *testing.T) {
	n := 0
	for _, line := range writtenLines(t) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		n++
		var r Record
		if !fastDecode(line, &r) {
			t.Fatalf("fast path refused a written line: %s", line)
		}
		want, err := decodeSlow(line)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&r, want) {
			t.Fatalf("fast path read %+v, encoding/json %+v", r, *want)
		}
	}
	if n < 6 {
		t.Fatalf("only %d lines to check", n)
	}
}

// The fast path refuses what encoding/json would read differently or
// refuse: the caller then decodes with encoding/json.
func TestFastDecodeDefers(t *testing.T) {
	for _, line := range []string{
		`{"kind":"event","Kind":"event"}`,             // a case variant
		`{"kind":"event","kind":"decision"}`,          // a repeated key
		`{"action":{"type":"a"},"action":{"id":"b"}}`, // repeated objects merge
		`{"kind":"ev\u0065nt"}`,                       // an escape
		"{\"kind\":\"\xff\"}",                         // invalid UTF-8, replaced
		`{"seq":1.0}`, `{"seq":-1}`, `{"status":1e2}`, // numbers of another form
		`{"action":null}`, `{"details":null}`, `{"unknown":1}`, // null, unknown keys
		`{"details":{"a":1e999}}`,               // out of range
		`{"kind":"event"} x`, `{"kind":"event"`, // after and short
	} {
		var r Record
		if fastDecode([]byte(line), &r) {
			t.Errorf("fast path took %s", line)
		}
	}
}

// FuzzFastDecode: whatever the fast path accepts, encoding/json with
// DisallowUnknownFields decodes to the same record.
func FuzzFastDecode(f *testing.F) {
	for _, line := range writtenLines(f) {
		f.Add(line)
	}
	f.Add([]byte(`{"details":{"a":[1,-0.5e3,true,null,{"b":"c"},[]],"a":{}},"action":{"params":{}}}`))
	f.Add([]byte(`{"decision":{"matched":[],"approval_timeout":-5},"approval":{"at":"2026-01-02T03:04:05.123+01:00"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var r Record
		if !fastDecode(line, &r) {
			return
		}
		want, err := decodeSlow(line)
		if err != nil {
			t.Fatalf("fast path took %q, which encoding/json refuses: %v", line, err)
		}
		if !reflect.DeepEqual(&r, want) {
			t.Fatalf("%q: fast path read %+v, encoding/json %+v", line, r, *want)
		}
	})
}
