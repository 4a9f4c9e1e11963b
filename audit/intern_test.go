package audit

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/tameflare/tf/rules"
)

// The interner gives back equal strings, keeps at most internMax short
// ones, and a nil interner only copies.
func TestInterner(t *testing.T) {
	var in interner
	for i := range 3 * internMax {
		v := fmt.Sprintf("value-%d", i%(internMax+7))
		if got := in.get([]byte(v)); got != v {
			t.Fatalf("got %q for %q", got, v)
		}
		if len(in) > internMax {
			t.Fatalf("%d strings kept, at most %d", len(in), internMax)
		}
	}
	long := strings.Repeat("x", internMaxLen+1)
	if in.get([]byte(long)) != long || in[long] != "" {
		t.Fatal("a long string is returned and not kept")
	}
	var none *interner
	if none.get([]byte("a")) != "a" {
		t.Fatal("nil interner")
	}
}

// A parser that interns reads a log as one that does not: the records of
// a log whose values repeat, read by Scan (whose parsers intern), equal
// those encoding/json decodes from the same lines.
func TestInterningParserReadsTheSame(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		eff := []rules.Effect{rules.Allow, rules.Deny}[i%2]
		r := &Record{Kind: KindDecision, RequestID: fmt.Sprint("r", i), Gateway: "laptop",
			Action: &rules.Action{Type: "github.repo.push", Connector: "github", Resource: map[string]string{"owner": "acme", "repo": "app"},
				Params: map[string]any{"branch": fmt.Sprint("b", i%3)}, Request: rules.Request{Method: "POST", Host: "github.com", Path: "/acme/app"}},
			Decision: &rules.Decision{Effect: eff, Rule: "r-" + string(eff), Reason: "because", Revision: "abc",
				Matched: []rules.Match{{Rule: "r-" + string(eff), Decision: eff, Reason: "because"}}}}
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(context.Background(), &Record{Kind: KindOutcome, RequestID: r.RequestID, Gateway: "laptop", Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := Scan(dir, Filter{}, func(r *Record) error {
		want, err := parseLineFresh(r.Line)
		if err != nil {
			return err
		}
		want.Line = r.Line
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("interning %+v\nfresh     %+v", r, want)
		}
		n++
		return nil
	}); err != nil || n != 80 {
		t.Fatalf("%d records, %v", n, err)
	}
}
