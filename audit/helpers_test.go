package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// testCtx is bounded by the test deadline so that no test can hang.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	d := 2 * time.Minute
	if tt, ok := t.(*testing.T); ok {
		if dl, ok := tt.Deadline(); ok {
			d = time.Until(dl) - 5*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// decision builds the i-th decision record of the test data set: effects,
// connectors and gateways vary with i so filters have something to pick.
func decision(i int) *Record {
	effects := []rules.Effect{rules.Allow, rules.Deny, rules.RequireApproval}
	conns := []string{"github", "npm", "http"}
	types := []string{"github.repo.push", "npm.package.publish", "http.post"}
	k := i % 3
	d := &rules.Decision{Effect: effects[k], Rule: fmt.Sprintf("rule-%d", k), Reason: "because", Revision: "abc123"}
	if i%5 == 4 {
		// Monitor mode: let through what enforce would refuse.
		d = &rules.Decision{Effect: rules.Allow, Monitor: true, Would: rules.Deny, Rule: "shadow"}
	}
	return &Record{
		Kind:      KindDecision,
		Time:      time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC),
		RequestID: fmt.Sprintf("req-%04d", i),
		Gateway:   fmt.Sprintf("gw%d", i%2),
		Action: &rules.Action{
			Type:      types[k],
			Connector: conns[k],
			Resource:  map[string]string{"owner": "acme", "repo": "app"},
			Params:    map[string]any{"branch": fmt.Sprintf("branch-%04d", i), "number": float64(i)},
			Request:   rules.Request{Method: "POST", Host: "api.github.com", Path: "/repos/acme/app"},
			Agent:     []string{"", "ci-runner"}[i%2],
		},
		Decision: d,
	}
}

func openLog(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendDecisions appends decisions from..to-1 one by one.
func appendDecisions(t testing.TB, l *Log, from, to int) {
	t.Helper()
	ctx := testCtx(t)
	for i := from; i < to; i++ {
		if err := l.Append(ctx, decision(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func mustVerify(t testing.TB, dir string) Report {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func requireOK(t testing.TB, dir string, records int) {
	t.Helper()
	rep := mustVerify(t, dir)
	if !rep.OK() {
		t.Fatalf("verify found problems: %v", rep.Problems)
	}
	if rep.Records != records {
		t.Fatalf("verify counted %d records, want %d", rep.Records, records)
	}
}

func scanAll(t testing.TB, dir string) []*Record {
	t.Helper()
	var out []*Record
	if err := Scan(dir, Filter{}, func(r *Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// segLines returns the lines of a plain segment file (without newlines).
func segLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeSeg(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func segPath(dir string, n uint64) string { return filepath.Join(dir, segmentName(n)) }
