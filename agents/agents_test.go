package agents

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestAddListRemove(t *testing.T) {
	home := t.TempDir()
	now := time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)
	ci, err := Add(home, "ci", now)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := Add(home, "dev-vm.1", now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ci, TokenPrefix) || len(ci) != len(TokenPrefix)+43 || ci == dev {
		t.Fatalf("tokens %q %q: want tfa_ and 43 base64url characters, distinct", ci, dev)
	}
	if _, err := Add(home, "ci", now); !errors.Is(err, ErrExists) {
		t.Fatalf("adding ci twice: %v, want ErrExists", err)
	}
	for _, bad := range []string{"", "a:b", "a b", "ü", "..", strings.Repeat("a", 65), "a/b"} {
		if _, err := Add(home, bad, now); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	fi, err := os.Stat(Path(home))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("agents file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(Path(home))
	if strings.Contains(string(data), ci) || strings.Contains(string(data), dev) {
		t.Fatal("the agents file holds a token")
	}
	list, err := List(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "ci" || list[1].Name != "dev-vm.1" || !list[0].Created.Equal(now) {
		t.Fatalf("list = %+v", list)
	}
	tab := NewTable(File{Version: Version, Agents: list})
	if a, ok := tab.Authenticate("ci", ci); !ok || a != "ci" {
		t.Errorf("ci's own token: %q %v", a, ok)
	}
	if a, ok := tab.Authenticate("", dev); !ok || a != "dev-vm.1" {
		t.Errorf("bearer dev token: %q %v", a, ok)
	}
	for _, c := range []struct{ user, token string }{
		{"ci", dev},      // another agent's token
		{"dev-vm.1", ci}, // the other way round
		{"nobody", ci},   // a name that does not exist
		{"ci", ci + "x"}, // a longer token
		{"ci", ci[:10]},  // a prefix
		{"ci", ""},       // nothing
		{"", "tfa_nope"}, // bearer, unknown
		{"tf", ci},       // tf run's session user
		{"CI", ci},       // names are case sensitive
	} {
		if a, ok := tab.Authenticate(c.user, c.token); ok {
			t.Errorf("Authenticate(%q, %.12q...) = %q: want refused", c.user, c.token, a)
		}
	}
	if err := Remove(home, "ci"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(home, "ci"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing ci twice: %v", err)
	}
	list, _ = List(home)
	if len(list) != 1 || list[0].Name != "dev-vm.1" {
		t.Fatalf("after rm: %+v", list)
	}
}

func TestParseRefuses(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, c := range []string{
		``, `{}`, `{"version":2,"agents":[]}`, `{"version":1,"agents":[]} {}`,
		`{"version":1,"agents":[],"extra":1}`,
		`{"version":1,"agents":[{"name":"a","sha256":"zz"}]}`,
		`{"version":1,"agents":[{"name":"a b","sha256":"` + h + `"}]}`,
		`{"version":1,"agents":[{"name":"a","sha256":"` + h + `"},{"name":"a","sha256":"` + h + `"}]}`,
		`{"version":1,"agents":[{"name":"a","sha256":"` + h + `","token":"x"}]}`,
	} {
		if _, err := Parse([]byte(c)); err == nil {
			t.Errorf("Parse(%s) accepted", c)
		}
	}
	if f, err := Parse([]byte(`{"version":1,"agents":[{"name":"a","sha256":"` + h + `"}]}`)); err != nil || len(f.Agents) != 1 {
		t.Fatalf("a good file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"agents":[{"name":"a","sha256":"` + strings.Repeat("ab", 32) + `","created":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"agents":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		tab := NewTable(file)
		if tab.Len() != len(file.Agents) {
			t.Fatalf("table holds %d of %d agents", tab.Len(), len(file.Agents))
		}
		for _, a := range file.Agents {
			if ValidName(a.Name) != nil {
				t.Fatalf("parsed an invalid name %q", a.Name)
			}
			if _, ok := tab.Authenticate(a.Name, ""); ok && a.Hash != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
				t.Fatal("an empty token authenticated")
			}
		}
	})
}

func TestWatcherFollowsTheFile(t *testing.T) {
	home := t.TempDir()
	var errs []error
	w := Watch(home, 10*time.Millisecond, func(err error) { errs = append(errs, err) })
	defer w.Close()
	tok, err := Add(home, "ci", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new agent", func() bool { _, ok := w.Authenticate("ci", tok); return ok })
	if err := Remove(home, "ci"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal", func() bool { _, ok := w.Authenticate("ci", tok); return !ok })
	tok, _ = Add(home, "ci", time.Now())
	waitFor(t, "the agent again", func() bool { _, ok := w.Authenticate("ci", tok); return ok })
	// A broken file leaves no agent in force.
	if err := os.WriteFile(Path(home), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broken file", func() bool { _, ok := w.Authenticate("ci", tok); return !ok })
	w.Close()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "decoding agents file") {
		t.Fatalf("errors reported: %v", errs)
	}
}

// A watcher notes when agents are let in; List shows it, and forgets it
// for an agent removed and added again.
func TestLastUsed(t *testing.T) {
	home := t.TempDir()
	created := time.Now().Add(-time.Hour)
	tok, _ := Add(home, "ci", created)
	Add(home, "idle", created)
	w := Watch(home, time.Hour, nil)
	if _, ok := w.Authenticate("ci", tok); !ok {
		t.Fatal("ci refused")
	}
	w.Authenticate("idle", "wrong")
	w.Close()
	list, err := List(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || time.Since(list[0].LastUsed) > time.Minute || !list[1].LastUsed.IsZero() {
		t.Fatalf("last used: %+v", list)
	}
	fi, err := os.Stat(home + "/" + UsedFileName)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("used file: %v %v", fi, err)
	}
	Remove(home, "ci")
	Add(home, "ci", time.Now().Add(time.Hour))
	if list, _ := List(home); !list[0].LastUsed.IsZero() {
		t.Fatalf("a new ci inherits the old one's last use: %+v", list[0])
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The lookup is O(1): authenticating among 100 or 10,000 agents costs what
// it costs among one (one SHA-256, one map lookup, one constant-time
// compare).
func BenchmarkAuthenticate(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		f := File{Version: Version}
		var tokens []string
		for i := range n {
			tok, _ := NewToken()
			h := hashToken(tok)
			f.Agents = append(f.Agents, Agent{Name: fmt.Sprintf("agent-%d", i), Hash: fmt.Sprintf("%x", h)})
			tokens = append(tokens, tok)
		}
		tab := NewTable(f)
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				k := i % n
				if _, ok := tab.Authenticate(f.Agents[k].Name, tokens[k]); !ok {
					b.Fatal("refused")
				}
				i++
			}
		})
	}
}
