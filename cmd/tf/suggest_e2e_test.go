package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tameflare/tf/rules"
)

// tf policy suggest on a recorded monitor-mode session: a sandboxed
// session of curl and git runs under tf run --mode monitor; the suggested
// policy validates and its tests pass through the real commands; enforced,
// it lets the same session (on another branch) through, and still refuses
// what the session never did.
func TestSuggestFromAMonitorSessionThenEnforce(t *testing.T) {
	requireTool(t, "curl", "curl")
	home := t.TempDir()
	g := newGitRepo(t)
	up := newUpstream(t, g.root)
	cloneDir := t.TempDir()
	clone := filepath.Join(cloneDir, "clone")
	g.git(g.root, "clone", "-q", g.bare, clone)
	g.git(clone, "remote", "set-url", "origin", "https://github.com/acme/app.git")
	os.WriteFile(filepath.Join(clone, "README"), []byte("v2\n"), 0o644)
	g.git(clone, "commit", "-q", "-am", "second")
	session := func(branch string) string {
		return `set -e
curl -sS --fail -o /dev/null https://api.github.com/repos/acme/app
curl -sS --fail -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"title":"found a bug"}' https://api.github.com/repos/acme/app/issues
curl -sS --fail -o /dev/null https://other.example.test/docs/page
git -C ` + clone + ` push -q origin HEAD:refs/heads/` + branch + `
echo session-done`
	}
	run := func(name string, args ...string) result {
		base := append([]string{"run", "--name", name, "--rw", cloneDir}, up.args()...)
		return runTF(t, home, g.env, append(append(base, args...), "--", "bash", "-c", session(name))...)
	}
	r := run("watched", "--mode", "monitor", "--policy", examplePolicy)
	if r.code != 0 || !strings.Contains(r.stdout, "session-done") {
		t.Fatalf("monitor session: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	out := filepath.Join(t.TempDir(), "suggested")
	r = runTF(t, home, nil, "policy", "suggest", "--gateway", "watched", "--since", "1h", "--out", out)
	if r.code != 0 {
		t.Fatalf("tf policy suggest: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	policy, _ := os.ReadFile(filepath.Join(out, "tameflare.yaml"))
	for _, want := range []string{"# yaml-language-server: $schema=", `"github.repo.get"  # 1 seen`, `"github.issue.create"  # 1 seen`,
		`other.example.test`, `"github.repo.push"`} {
		if !strings.Contains(string(policy), want) {
			t.Errorf("the suggestion lacks %q:\n%s", want, policy)
		}
	}
	t.Logf("the suggestion:\n%s", policy)
	if r := runTF(t, home, nil, "policy", "validate", out); r.code != 0 {
		t.Fatalf("tf policy validate: exit %d\n%s%s\n%s", r.code, r.stdout, r.stderr, policy)
	}
	if r := runTF(t, home, nil, "policy", "test", out); r.code != 0 || !strings.Contains(r.stdout, "0 failed") {
		t.Fatalf("tf policy test: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A second suggest into the same directory needs --force.
	if r := runTF(t, home, nil, "policy", "suggest", "--gateway", "watched", "--out", out); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("suggest over a directory: exit %d\n%s", r.code, r.stderr)
	}
	// Printed, it is the same policy with its tests after ---.
	if r := runTF(t, home, nil, "policy", "suggest", "--gateway", "watched", "--since", "1h"); r.code != 0 || !strings.HasPrefix(r.stdout, string(policy)+"---\n") {
		t.Errorf("printed suggestion: exit %d\n%s", r.code, r.stdout)
	}

	r = run("enforced", "--policy", out)
	if r.code != 0 || !strings.Contains(r.stdout, "session-done") {
		t.Fatalf("the same session under the suggestion: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := g.ref("enforced"); got == "" {
		t.Error("the push of the enforced session did not land")
	}
	n := 0
	for _, rec := range decisions(t, home) {
		if rec.Gateway != "enforced" {
			continue
		}
		n++
		if rec.Decision.Effect != rules.Allow || rec.Decision.Monitor {
			t.Errorf("%s under the suggestion: %+v", rec.Action.Type, rec.Decision)
		}
	}
	if n < 4 {
		t.Errorf("%d decisions of the enforced session, want at least 4", n)
	}
	// What the session never did stays refused.
	r = runTF(t, home, nil, append(append([]string{"run", "--policy", out}, up.args()...), "--", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", "https://api.github.com/repos/acme/app")...)
	if r.stdout != "403" {
		t.Errorf("a delete under the suggestion: %q\n%s", r.stdout, r.stderr)
	}
}
