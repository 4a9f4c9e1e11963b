package killswitch

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

func TestScope(t *testing.T) {
	for _, s := range []Scope{{}, {All: true, Connector: "x"}, {Connector: "a", Gateway: "b"}, {Connector: "a\n"}, {Agent: "a", Gateway: "b"}, {Agent: "a\x7f"}} {
		if s.Validate() == nil {
			t.Errorf("%+v validated", s)
		}
	}
	cases := []struct {
		s                    Scope
		gateway, agent, conn string
		match                bool
	}{
		{Scope{All: true}, "g", "", "github", true},
		{Scope{Connector: "github"}, "g", "", "github", true},
		{Scope{Connector: "github"}, "g", "", "npm", false},
		{Scope{Gateway: "g"}, "g", "", "npm", true},
		{Scope{Gateway: "g"}, "h", "", "npm", false},
		{Scope{Agent: "ci"}, "g", "ci", "npm", true},
		{Scope{Agent: "ci"}, "g", "dev", "npm", false},
		// tf run's traffic names no agent: an agent switch never stops it.
		{Scope{Agent: "ci"}, "ci", "", "npm", false},
		{Scope{All: true}, "g", "dev", "npm", true},
	}
	for _, c := range cases {
		if c.s.Validate() != nil || c.s.Matches(c.gateway, c.agent, c.conn) != c.match {
			t.Errorf("%v matches %s/%s/%s: want %v", c.s, c.gateway, c.agent, c.conn, c.match)
		}
	}
}

func TestActivateDeactivateRecordsAndPersists(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	if st, err := Read(home); err != nil || st.Active() {
		t.Fatalf("no file: %+v %v", st, err)
	}
	if _, err := Activate(ctx, home, Switch{Scope: Scope{Connector: "npm"}, Reason: "leak", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Activate(ctx, home, Switch{Scope: Scope{Gateway: "ci"}, By: "alice"}); err != nil {
		t.Fatal(err)
	}
	// The same scope again replaces the switch.
	if _, err := Activate(ctx, home, Switch{Scope: Scope{Connector: "npm"}, Reason: "leak 2", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	st, err := Read(home)
	if err != nil || len(st.Switches) != 2 {
		t.Fatalf("state %+v %v", st, err)
	}
	if sw, ok := st.Match("x", "", "npm"); !ok || sw.Reason != "leak 2" || !strings.Contains(sw.Describe(), "bob") {
		t.Fatalf("match %+v %v", sw, ok)
	}
	if fi, err := os.Stat(Path(home)); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("file mode %v %v", fi.Mode(), err)
	}
	off, st, err := Deactivate(ctx, home, Scope{Connector: "npm"}, "carol", "fixed")
	if err != nil || len(off) != 1 || len(st.Switches) != 1 {
		t.Fatalf("deactivate: %+v %+v %v", off, st, err)
	}
	off, st, err = Deactivate(ctx, home, Scope{All: true}, "carol", "")
	if err != nil || len(off) != 1 || st.Active() {
		t.Fatalf("deactivate all: %+v %+v %v", off, st, err)
	}
	var events []*audit.Record
	if err := audit.Scan(audit.Dir(home), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		events = append(events, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range events {
		names = append(names, e.Event+" "+e.Details["scope"].(string)+" "+e.Details["by"].(string))
	}
	want := "kill_switch.activated connector npm alice,kill_switch.activated gateway ci alice,kill_switch.activated connector npm bob," +
		"kill_switch.deactivated connector npm carol,kill_switch.deactivated gateway ci carol"
	if strings.Join(names, ",") != want {
		t.Fatalf("events:\n%s\nwant\n%s", strings.Join(names, ","), want)
	}
	if events[3].Details["reason"] != "fixed" || events[2].Details["reason"] != "leak 2" {
		t.Fatalf("reasons not recorded: %+v", events)
	}
}

func TestBrokenFileStopsEverything(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(Path(home), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := Watch(home, "g", 5*time.Millisecond, nil)
	defer w.Close()
	reason, killed := w.Killed(&rules.Action{Connector: "github"})
	if !killed || !strings.Contains(reason, "cannot be read") {
		t.Fatalf("broken file: %q %v", reason, killed)
	}
	// Activating still works and repairs the file.
	if _, err := Activate(context.Background(), home, Switch{Scope: Scope{Connector: "npm"}}); err != nil {
		t.Fatal(err)
	}
	if st := w.Reload(); st.Broken != "" || len(st.Switches) != 1 {
		t.Fatalf("after repair: %+v", st)
	}
	if _, killed := w.Killed(&rules.Action{Connector: "github"}); killed {
		t.Fatal("github stopped by an npm switch")
	}
}

func TestWatcherFollowsFile(t *testing.T) {
	home := t.TempDir()
	changes := make(chan State, 8)
	w := Watch(home, "g", 5*time.Millisecond, func(s State) { changes <- s })
	defer w.Close()
	if _, killed := w.Killed(&rules.Action{Connector: "github"}); killed {
		t.Fatal("killed with no file")
	}
	if _, err := Activate(context.Background(), home, Switch{Scope: Scope{All: true}, Reason: "stop"}); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-changes:
		if !s.Active() {
			t.Fatalf("change %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watcher missed the switch")
	}
	if reason, killed := w.Killed(&rules.Action{Connector: "github"}); !killed || !strings.Contains(reason, "stop") {
		t.Fatalf("after activation: %q %v", reason, killed)
	}
	if err := os.Remove(Path(home)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-changes:
		if s.Active() {
			t.Fatalf("change %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watcher missed the removal")
	}
}

func TestParse(t *testing.T) {
	good := `{"version":1,"switches":[{"scope":{"connector":"npm"},"reason":"r","by":"a","at":"2026-01-02T03:04:05Z"}]}`
	if st, err := Parse([]byte(good)); err != nil || len(st.Switches) != 1 {
		t.Fatalf("good: %+v %v", st, err)
	}
	for _, bad := range []string{
		`{"version":2,"switches":[]}`,
		`{"version":1,"switches":[{"scope":{}}]}`,
		`{"version":1,"switches":[],"extra":1}`,
		`{"version":1,"switches":[]} {}`,
		`{"version":1,"broken":"x","switches":[]}`,
		``,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"switches":[{"scope":{"all":true}}]}`))
	f.Add([]byte(`{"version":1,"switches":[{"scope":{"gateway":"g"},"at":"2026-01-02T03:04:05Z"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Parse(b)
		if err != nil {
			return
		}
		for _, sw := range st.Switches {
			if sw.Scope.Validate() != nil {
				t.Fatalf("invalid scope accepted: %+v", sw.Scope)
			}
		}
	})
}

// BenchmarkPickup measures how long a running watcher takes to obey a
// switch written as tf kill writes it (the brief's bound: 100 ms).
func BenchmarkPickup(b *testing.B) {
	home := b.TempDir()
	seen := make(chan State, 1)
	w := Watch(home, "g", DefaultInterval, func(s State) {
		select {
		case seen <- s:
		default:
		}
	})
	defer w.Close()
	var worst, total time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		if _, err := update(home, func(s *State) bool {
			if s.Active() {
				s.Switches = nil
			} else {
				s.Switches = []Switch{{Scope: Scope{All: true}}}
			}
			return true
		}); err != nil {
			b.Fatal(err)
		}
		<-seen
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		n++
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "ms-mean")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-max")
}

// A process that holds the lock (an agent trying to stall the operator)
// makes tf kill fail with a clear error after LockWait, never hang.
func TestLockHeldFailsInBoundedTime(t *testing.T) {
	home := t.TempDir()
	holder := flock.New(Path(home) + ".lock")
	if err := holder.Lock(); err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	old := LockWait
	LockWait = 100 * time.Millisecond
	defer func() { LockWait = old }()
	done := make(chan error, 1)
	go func() {
		_, err := Activate(context.Background(), home, Switch{Scope: Scope{All: true}, By: "op"})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLockHeld) {
			t.Fatalf("got %v, want ErrLockHeld", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Activate hung behind a held lock")
	}
	holder.Unlock()
	if _, err := Activate(context.Background(), home, Switch{Scope: Scope{All: true}, By: "op"}); err != nil {
		t.Fatalf("after release: %v", err)
	}
}
