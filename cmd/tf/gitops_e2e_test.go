package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tf init, then tf policy show and tf policy plan through the binary: the
// plan of an unchanged policy reports no change, and is kept for the
// dashboard; tf run then governs with the pinned policy.
func TestInitShowPlan(t *testing.T) {
	home := t.TempDir()
	repo := filepath.Join(t.TempDir(), "policy")
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e", "HOME=" + t.TempDir()}
	if r := runTF(t, home, env, "init", repo); r.code != 0 {
		t.Fatalf("tf init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTF(t, home, env, "policy", "show"); r.code != 0 || !strings.Contains(r.stdout, repo) {
		t.Errorf("tf policy show: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runTF(t, home, env, "policy", "plan", "--detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, "Plan: ") {
		t.Errorf("tf policy plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(home, "plans", "latest")); err != nil {
		t.Errorf("the latest plan was not kept: %v", err)
	}
	r = runTF(t, home, env, "run", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "governing with the pinned policy "+repo+"@") {
		t.Errorf("tf run did not use the pinned policy:\n%s", r.stderr)
	}
}

// tf init --agent X writes a starter that tf policy test passes, for every
// preset; an unknown agent is a usage error.
func TestInitAgentPresets(t *testing.T) {
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e", "HOME=" + t.TempDir()}
	for _, agent := range []string{"claude-code", "codex", "gemini", "generic"} {
		repo := filepath.Join(t.TempDir(), "policy")
		if r := runTF(t, t.TempDir(), env, "init", "--agent", agent, repo); r.code != 0 {
			t.Fatalf("tf init --agent %s: exit %d\n%s%s", agent, r.code, r.stdout, r.stderr)
		}
		if r := runTF(t, t.TempDir(), env, "policy", "test", repo); r.code != 0 || !strings.Contains(r.stdout, " 0 failed") {
			t.Errorf("tf policy test after tf init --agent %s: exit %d\n%s%s", agent, r.code, r.stdout, r.stderr)
		}
	}
	if r := runTF(t, t.TempDir(), env, "init", "--agent", "cursor", t.TempDir()); r.code != 2 || !strings.Contains(r.stderr, `unknown agent "cursor"`) {
		t.Errorf("tf init --agent cursor: exit %d\n%s", r.code, r.stderr)
	}
}
