package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// jsonBody is the reference: encoding/json over the record with the
// writer's fields empty.
func jsonBody(r *Record) ([]byte, error) {
	c := *r
	c.SchemaVersion, c.Seq, c.Prev, c.Hash, c.Line = 0, 0, "", "", nil
	return json.Marshal(&c)
}

func fullRecord() *Record {
	r := decision(4)
	r.Action.ID = "01J\u2028<id>"
	r.Action.Time = time.Date(2026, 2, 3, 4, 5, 6, 789, time.FixedZone("x", 3600))
	r.Action.Gateway = "g\"w"
	r.Action.Params["nested"] = map[string]any{"b": []any{1.5, "x", nil, true}, "a": "\x00\xff"}
	r.Action.Params["ünï"] = "v&"
	r.Action.Request = rules.Request{Method: "GET", Scheme: "https", Host: "h", Port: 443, Path: "/p", Query: "a=1&b=<2>", Headers: map[string]string{"Accept": "*/*", "x": "y"}}
	r.Decision = &rules.Decision{Effect: rules.Deny, Rule: "r", Reason: "why\n", Default: true, KillSwitch: true, Monitor: true,
		Would: rules.Deny, WouldRule: "wr", WouldReason: "w<r>", ApprovalTimeout: 15 * time.Minute, Revision: "rev",
		Matched: []rules.Match{{Rule: "a", Decision: rules.Deny, Reason: "x", Monitor: true, Error: "boom"}, {Rule: "b", Decision: rules.Allow}}}
	r.Approval = &Approval{ID: "ap", Approver: "al", Reason: "ok", Outcome: "approved", At: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC)}
	r.MCP = &MCP{Session: "s<1>", ID: `"a\u0001"`}
	return r
}

func TestEncodeMatchesJSON(t *testing.T) {
	recs := map[string]*Record{
		"full":               fullRecord(),
		"minimal decision":   {Kind: KindDecision, Time: time.Unix(0, 0).UTC(), Action: &rules.Action{Type: "x"}, Decision: &rules.Decision{Effect: rules.Allow}},
		"empty headers map":  {Kind: KindDecision, Time: time.Unix(1, 0).UTC(), Action: &rules.Action{Type: "x", Request: rules.Request{Headers: map[string]string{}}, Resource: map[string]string{}}, Decision: &rules.Decision{Effect: rules.Allow}},
		"outcome":            {Kind: KindOutcome, Time: time.Unix(5, 5).UTC(), RequestID: "r", Status: 502, BytesIn: -1, BytesOut: 9, DurationMS: 3, Error: "upstream: <eof>"},
		"outcome with usage": {Kind: KindOutcome, Time: time.Unix(5, 5).UTC(), RequestID: "r", Status: 200, Usage: &Usage{Model: "claude-\u2028\"x", Input: 10, Output: 5, CacheRead: 3, CacheWrite: 2}},
		"mcp outcome":        {Kind: KindOutcome, Time: time.Unix(5, 5).UTC(), RequestID: "r", Status: 200, MCP: &MCP{ID: "7", IsError: new(true)}},
		"unknown usage":      {Kind: KindOutcome, Time: time.Unix(5, 5).UTC(), RequestID: "r", Status: 200, Usage: &Usage{Unknown: "malformed <event>"}},
		"event":              {Kind: KindEvent, Time: time.Unix(5, 5).UTC(), Event: EventPolicyApplied, Details: map[string]any{"commit": "abc", "n": 3, "f": 0.1, "list": []string{"a"}}},
		"empty details":      {Kind: KindEvent, Time: time.Unix(5, 5).UTC(), Event: "e", Details: map[string]any{}},
	}
	for name, r := range recs {
		got, err := r.body()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := jsonBody(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	bad := &Record{Kind: KindEvent, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Event: "e"}
	if _, err := bad.body(); err == nil {
		t.Error("year 10000 encoded")
	}
}

// TestEncoderKnowsEveryField fails when a field is added to a type the
// hand encoder writes, so the encoder is updated with it.
func TestEncoderKnowsEveryField(t *testing.T) {
	types := map[string]reflect.Type{
		"Record":   reflect.TypeFor[Record](),
		"Action":   reflect.TypeFor[rules.Action](),
		"Request":  reflect.TypeFor[rules.Request](),
		"Decision": reflect.TypeFor[rules.Decision](),
		"Match":    reflect.TypeFor[rules.Match](),
		"Approval": reflect.TypeFor[Approval](),
		"MCP":      reflect.TypeFor[MCP](),
		"Usage":    reflect.TypeFor[Usage](),
	}
	for name, typ := range types {
		var tags []string
		for f := range typ.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag != "-" {
				tags = append(tags, tag)
			}
		}
		if !reflect.DeepEqual(tags, encodedFields[name]) {
			t.Errorf("%s has members %v; the encoder writes %v: update encode.go", name, tags, encodedFields[name])
		}
	}
}

// FuzzEncode: the hand encoder agrees with encoding/json on arbitrary
// strings and numbers.
func FuzzEncode(f *testing.F) {
	f.Add("github.pr.merge", "main", "reason", int64(7), 1.5)
	f.Add("\u2028<>&\"\\\x01\xff", "\t", "", int64(-1), -0.0)
	f.Fuzz(func(t *testing.T, s1, s2, s3 string, n int64, x float64) {
		r := fullRecord()
		r.Action.Type, r.Action.Params[s2] = s1, s3
		r.Action.Params["x"] = x
		r.Action.Resource[s3] = s1
		r.Decision.Reason, r.Decision.Matched[0].Rule = s2, s3
		r.BytesIn = n
		r.Details = map[string]any{s1: n}
		got, gerr := r.body()
		want, werr := jsonBody(r)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("errors differ: %v vs %v", gerr, werr)
		}
		if gerr == nil && !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}
