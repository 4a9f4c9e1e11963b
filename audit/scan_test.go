package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"github.*", "github.pr.merge", true},
		{"github.*.merge", "github.pr.merge", true},
		{"*.merge", "github.pr.merge", true},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"github.pr.merge", "github.pr.merge", true},
		{"github.pr", "github.pr.merge", false},
		{"npm.*", "github.pr.merge", false},
		{"mcp.*.@tools/list", "mcp.docs.@tools/list", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"**x", "abcx", true},
	}
	for _, c := range cases {
		if got := rules.GlobMatch(c.pattern, c.s); got != c.want {
			t.Errorf("rules.GlobMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

// filterLog holds decisions 0..29, an outcome for every even one and two
// events.
func filterLog(t *testing.T) string {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 8 << 10})
	ctx := testCtx(t)
	for i := range 30 {
		if err := l.Append(ctx, decision(i)); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			o := &Record{Kind: KindOutcome, Time: decision(i).Time, RequestID: decision(i).RequestID, Gateway: decision(i).Gateway, Status: 200 + i}
			if err := l.Append(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, name := range []string{EventGatewayStarted, EventPolicyApplied} {
		if err := l.Event(ctx, "gw0", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestScanFilters(t *testing.T) {
	dir := filterLog(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// want is a predicate over the input index, written independently of
	// Filter.Match, so the test checks the filter rather than repeating it.
	cases := []struct {
		name string
		f    Filter
		want func(i int, d *Record) bool
	}{
		{"deny (and would deny)", Filter{Decision: rules.Deny}, func(i int, d *Record) bool { return i%3 == 1 || i%5 == 4 }},
		{"allow", Filter{Decision: rules.Allow}, func(i int, d *Record) bool { return i%3 == 0 || i%5 == 4 }},
		{"connector npm", Filter{Connector: "npm"}, func(i int, d *Record) bool { return i%3 == 1 }},
		{"action glob", Filter{Action: "github.*"}, func(i int, d *Record) bool { return i%3 == 0 }},
		{"action glob middle", Filter{Action: "*.package.*"}, func(i int, d *Record) bool { return i%3 == 1 }},
		{"gateway", Filter{Gateway: "gw1", Kind: KindDecision}, func(i int, d *Record) bool { return i%2 == 1 }},
		{"agent", Filter{Agent: "ci-runner"}, func(i int, d *Record) bool { return i%2 == 1 }},
		{"since/until", Filter{Since: base.Add(10 * time.Second), Until: base.Add(20 * time.Second), Kind: KindDecision},
			func(i int, d *Record) bool { return i >= 10 && i < 20 }},
		{"combined", Filter{Decision: rules.RequireApproval, Gateway: "gw0"}, func(i int, d *Record) bool { return i%3 == 2 && i%5 != 4 && i%2 == 0 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var want []string
			for i := range 30 {
				if c.want(i, decision(i)) {
					want = append(want, decision(i).RequestID)
				}
			}
			var got []string
			err := Scan(dir, c.f, func(r *Record) error {
				if r.Kind != KindDecision {
					return fmt.Errorf("filter passed a %s record", r.Kind)
				}
				got = append(got, r.RequestID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
	t.Run("kinds", func(t *testing.T) {
		counts := map[Kind]int{}
		for _, k := range []Kind{KindDecision, KindOutcome, KindEvent} {
			if err := Scan(dir, Filter{Kind: k}, func(r *Record) error {
				if r.Kind != k {
					return fmt.Errorf("got %s", r.Kind)
				}
				counts[k]++
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if counts[KindDecision] != 30 || counts[KindOutcome] != 15 || counts[KindEvent] != 2 {
			t.Fatalf("counts = %v", counts)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		for _, f := range []Filter{{Decision: "maybe"}, {Kind: "x"}, {Since: base.Add(time.Hour), Until: base}} {
			if err := Scan(dir, f, func(*Record) error { return nil }); err == nil {
				t.Errorf("Scan accepted filter %+v", f)
			}
		}
	})
	t.Run("callback error stops", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := Scan(dir, Filter{}, func(*Record) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Scan = %v after %d calls", err, n)
		}
	})
}

func TestLast(t *testing.T) {
	dir := filterLog(t)
	recs, err := Last(dir, Filter{Kind: KindDecision}, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.RequestID)
	}
	if want := "req-0026,req-0027,req-0028,req-0029"; strings.Join(got, ",") != want {
		t.Fatalf("Last = %v, want %s", got, want)
	}
	all, err := Last(dir, Filter{}, 1000)
	if err != nil || len(all) != 47 || all[0].Seq != 1 || all[46].Seq != 47 {
		t.Fatalf("Last(1000) = %d records, %v", len(all), err)
	}
	if end, err := End(dir); err != nil || end != 47 {
		t.Fatalf("End = %d, %v; want 47", end, err)
	}
}

func TestRows(t *testing.T) {
	dir := filterLog(t)
	check := func(rows []Row, from int) {
		t.Helper()
		for j, row := range rows {
			i := from + j
			if row.Decision.RequestID != decision(i).RequestID {
				t.Fatalf("row %d is %s, want %s", j, row.Decision.RequestID, decision(i).RequestID)
			}
			want := ""
			if i%2 == 0 {
				want = fmt.Sprint(200 + i)
			}
			if row.Status() != want {
				t.Fatalf("row %s status %q, want %q", row.Decision.RequestID, row.Status(), want)
			}
		}
	}
	var rows []Row
	if err := Rows(dir, Filter{}, 0, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 30 {
		t.Fatalf("got %d rows, want 30", len(rows))
	}
	check(rows, 0)
	rows = rows[:0]
	if err := Rows(dir, Filter{}, 5, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("got %d rows, want 5", len(rows))
	}
	check(rows, 25)
	if err := Rows(dir, Filter{Kind: KindEvent}, 0, func(Row) error { return nil }); err == nil {
		t.Fatal("Rows accepted kind event")
	}
}

func TestLabelsAndTarget(t *testing.T) {
	d := decision(1)
	if d.Label() != "deny" || d.Target() != "acme/app" {
		t.Fatalf("label %q target %q", d.Label(), d.Target())
	}
	if m := decision(4); m.Label() != "would deny" {
		t.Fatalf("monitor label = %q", m.Label())
	}
	k := decision(1)
	k.Decision.KillSwitch = true
	if k.Label() != "deny (kill switch)" {
		t.Fatalf("kill switch label = %q", k.Label())
	}
	h := decision(2)
	h.Action.Resource = map[string]string{"host": "example.com"}
	if h.Target() != "example.com" {
		t.Fatalf("host target = %q", h.Target())
	}
	h.Action.Resource = nil
	if h.Target() != "api.github.com" {
		t.Fatalf("request host target = %q", h.Target())
	}
	m := decision(0)
	m.Action.Resource = map[string]string{"server": "docs", "tool": "search"}
	if m.Target() != "docs/search" {
		t.Fatalf("mcp target = %q", m.Target())
	}
}

// TestFollow follows a log while another goroutine appends across
// segment rotations and compression, starting after the current end.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 4 << 10, Compress: true}
	l := openLog(t, dir, opts)
	appendDecisions(t, l, 0, 10)
	end, err := End(dir)
	if err != nil || end != 10 {
		t.Fatalf("End = %d, %v", end, err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	got := make(chan *Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, dir, Filter{Decision: rules.Deny}, end, func(r *Record) error {
			got <- r
			return nil
		})
	}()
	appendDecisions(t, l, 10, 60)
	var want []string
	for i := 10; i < 60; i++ {
		if i%3 == 1 || i%5 == 4 {
			want = append(want, decision(i).RequestID)
		}
	}
	var seen []string
	for len(seen) < len(want) {
		select {
		case r := <-got:
			seen = append(seen, r.RequestID)
		case <-ctx.Done():
			t.Fatalf("Follow delivered %d of %d records before the deadline: %v", len(seen), len(want), seen)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow: %v", err)
	}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("followed %v\nwant %v", seen, want)
	}
	select {
	case r := <-got:
		t.Fatalf("extra record %s", r.RequestID)
	default:
	}
}

// TestFollowFromStart starts Follow from seq 0 on a log whose early
// segments are compressed.
func TestFollowFromStart(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 4 << 10, Compress: true})
	appendDecisions(t, l, 0, 40)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var seqs []uint64
	err := Follow(ctx, dir, Filter{}, 0, func(r *Record) error {
		seqs = append(seqs, r.Seq)
		if len(seqs) == 40 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("seqs = %v", seqs)
		}
	}
	if len(seqs) != 40 {
		t.Fatalf("got %d records", len(seqs))
	}
}

// Before keeps the records below a seq: the dashboard's older page.
func TestScanBefore(t *testing.T) {
	dir := filterLog(t)
	var all []*Record
	if err := Scan(dir, Filter{Kind: KindDecision}, func(r *Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) < 20 {
		t.Fatalf("%d decisions", len(all))
	}
	var got []uint64
	if err := Scan(dir, Filter{Kind: KindDecision, Before: all[10].Seq}, func(r *Record) error { got = append(got, r.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[9] != all[9].Seq {
		t.Fatalf("before seq %d: got %v", all[10].Seq, got)
	}
}

// TestEndAfterCompression: End counts from a head written lazily, whose
// segment has been compressed since (a writer rotated and compressed it
// while End read): it reads the .gz rather than stopping at the head.
func TestEndAfterCompression(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{SegmentBytes: 4 << 10})
	appendDecisions(t, l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	stale, err := os.ReadFile(filepath.Join(dir, headName))
	if err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, Options{SegmentBytes: 4 << 10})
	appendDecisions(t, l, 5, 60)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, headName), stale, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := compressSegment(dir, 1); err != nil {
		t.Fatal(err)
	}
	if end, err := End(dir); err != nil || end != 60 {
		t.Fatalf("End = %d, %v; want 60", end, err)
	}
}
