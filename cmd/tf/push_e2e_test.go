package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo is a bare repository served by the upstream's git http-backend,
// and a working clone to push from.
type gitRepo struct {
	t          *testing.T
	root, bare string
	env        []string
}

func newGitRepo(t *testing.T) *gitRepo {
	root := t.TempDir()
	g := &gitRepo{t: t, root: root, bare: filepath.Join(root, "acme", "app.git"),
		env: []string{"HOME=" + root, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e"}}
	g.git(root, "init", "-q", "--bare", "--initial-branch=main", g.bare)
	g.git(g.bare, "config", "http.receivepack", "true")
	seed := filepath.Join(root, "seed")
	g.git(root, "init", "-q", "--initial-branch=main", seed)
	os.WriteFile(filepath.Join(seed, "README"), []byte("v1\n"), 0o644)
	g.git(seed, "add", ".")
	g.git(seed, "commit", "-q", "-m", "first")
	g.git(seed, "push", "-q", g.bare, "main", "main:refs/heads/old-feature")
	return g
}

func (g *gitRepo) git(dir string, args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), g.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (g *gitRepo) ref(name string) string {
	cmd := exec.Command("git", "rev-parse", "--verify", "-q", name)
	cmd.Dir = g.bare
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// git push through tf run, to a real git http-backend standing in for
// github.com: a feature branch goes through; main and a deletion are
// refused, git prints the rule's reason, and the refused refs stay as they
// were.
func TestRunGitPush(t *testing.T) {
	home := t.TempDir()
	g := newGitRepo(t)
	up := newUpstream(t, g.root)
	cloneDir := t.TempDir()
	clone := filepath.Join(cloneDir, "clone")
	base := append([]string{"run", "--policy", examplePolicy, "--rw", cloneDir}, up.args()...)
	g.git(g.root, "clone", "-q", g.bare, clone)
	g.git(clone, "remote", "set-url", "origin", "https://github.com/acme/app.git")
	os.WriteFile(filepath.Join(clone, "README"), []byte("v2\n"), 0o644)
	g.git(clone, "commit", "-q", "-am", "second")
	head := g.git(clone, "rev-parse", "HEAD")
	mainBefore, oldBefore := g.ref("main"), g.ref("old-feature")

	r := runTF(t, home, g.env, append(base, "--", "git", "-C", clone, "push", "origin", "HEAD:refs/heads/feature/x")...)
	if r.code != 0 {
		t.Fatalf("push to feature/x: exit %d\n%s", r.code, r.stderr)
	}
	if got := g.ref("feature/x"); got != head {
		t.Errorf("feature/x is %q upstream, want %s", got, head)
	}

	r = runTF(t, home, g.env, append(base, "--", "git", "-C", clone, "push", "origin", "HEAD:main")...)
	if r.code == 0 {
		t.Fatal("push to main succeeded")
	}
	if want := "! [remote rejected] HEAD -> main (refused by rule protect-main: Protected branches change through pull requests.)"; !strings.Contains(r.stderr, want) {
		t.Errorf("git did not print the reason; want %q in:\n%s", want, r.stderr)
	}
	if g.ref("main") != mainBefore {
		t.Error("main moved upstream")
	}

	r = runTF(t, home, g.env, append(base, "--", "git", "-C", clone, "push", "origin", "--delete", "old-feature")...)
	if r.code == 0 {
		t.Fatal("branch deletion succeeded")
	}
	if want := "! [remote rejected] old-feature (refused by rule no-branch-deletion: Branches are deleted by people, not agents.)"; !strings.Contains(r.stderr, want) {
		t.Errorf("git did not print the reason; want %q in:\n%s", want, r.stderr)
	}
	if g.ref("old-feature") != oldBefore {
		t.Error("old-feature was deleted upstream")
	}

	var pushes []string
	for _, rec := range decisions(t, home) {
		if rec.Action.Type == "github.repo.pull" {
			continue
		}
		pushes = append(pushes, rec.Action.Type+" "+rec.Action.Params["branch"].(string)+" "+string(rec.Decision.Effect)+" "+rec.Decision.Rule)
		if rec.Action.Resource["owner"] != "acme" || rec.Action.Resource["repo"] != "app" {
			t.Errorf("resource %v", rec.Action.Resource)
		}
	}
	want := []string{
		"github.repo.push feature/x allow push-feature-branches",
		"github.repo.push main deny protect-main",
		"github.branch.delete old-feature deny no-branch-deletion",
	}
	if strings.Join(pushes, "\n") != strings.Join(want, "\n") {
		t.Errorf("push records:\n%s\nwant:\n%s", strings.Join(pushes, "\n"), strings.Join(want, "\n"))
	}
}
