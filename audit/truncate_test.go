package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// A refusal whose params would exceed the record limit (a '<' is six bytes
// once escaped) is recorded truncated, with a marker and the digest of the
// whole, instead of being refused by the log.
func TestOversizedRecordTruncated(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{Gateway: "g"})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("<", 200<<10)
	a := &rules.Action{Type: "github.issue.create", Connector: "github", Resource: map[string]string{"owner": "acme", "repo": "app"},
		Params:  map[string]any{"title": huge, "number": 7, "labels": []any{huge}},
		Request: rules.Request{Method: "POST", Host: "api.github.com", Path: "/repos/acme/app/issues"}}
	rec := &Record{Time: time.Now(), Kind: KindDecision, RequestID: "r1", Action: a,
		Decision: &rules.Decision{Effect: rules.Deny, Reason: "no issues"}}
	if err := l.Append(context.Background(), rec); err != nil {
		t.Fatalf("append: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []*Record
	if err := Scan(dir, Filter{}, func(r *Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	p := got[0].Action.Params
	m, ok := p[TruncatedKey].(map[string]any)
	if !ok || len(m["sha256"].(string)) != 64 || m["bytes"].(float64) < float64(len(huge)*6) {
		t.Fatalf("marker %v", p[TruncatedKey])
	}
	if title := p["title"].(string); !strings.HasSuffix(title, "…[truncated]") || len(title) > 2*maxKeptString {
		t.Errorf("title kept as %d bytes", len(title))
	}
	if p["number"].(float64) != 7 || p["labels"] != nil {
		t.Errorf("params %v", p)
	}
	if got[0].Decision.Effect != rules.Deny || got[0].Action.Resource["repo"] != "app" {
		t.Errorf("record %+v", got[0])
	}
	if _, err := Verify(dir); err != nil {
		t.Errorf("verify: %v", err)
	}
}
