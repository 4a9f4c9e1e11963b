package agent

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGitRunKey(t *testing.T) {
	for k, want := range map[string]bool{
		"core.fsmonitor": true, "core.hooksPath": true, "alias.st": true, "filter.lfs.smudge": true,
		"url.https://evil.example/.insteadof": true, "includeIf.gitdir:~/x/.path": true,
		"branch.main.remote": false, "remote.origin.url": false, "user.name": false, "alias": false,
	} {
		if got := gitRunKey(k); got != want {
			t.Errorf("gitRunKey(%q) = %v", k, got)
		}
	}
}

// Keys git would run are put back as they were; everything else the agent
// wrote stays.
func TestGitGuardReverts(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	git("config", "core.pager", "less")
	g := NewGitGuard([]string{filepath.Dir(dir)}) // the repository one level down
	git("config", "core.pager", "evil")
	git("config", "core.fsmonitor", "evil")
	git("config", "branch.main.merge", "refs/heads/main")
	ch := g.Revert()
	if len(ch) != 2 || ch[0].Entry != "core.fsmonitor=evil" || ch[1].Entry != "core.pager=evil" {
		t.Fatalf("changes %+v", ch)
	}
	out, _ := exec.Command("git", "-C", dir, "config", "--local", "--list").Output()
	list := string(out)
	if strings.Contains(list, "evil") || !strings.Contains(list, "core.pager=less") || !strings.Contains(list, "branch.main.merge=refs/heads/main") {
		t.Errorf("config after revert:\n%s", list)
	}
}
