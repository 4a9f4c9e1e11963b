package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The operator commands against a running tf run: a held merge appears in
// tf approvals list and tf status, is approved at the tf approvals watch
// prompt and reaches the upstream; tf kill refuses the next request until
// tf kill --off.
func TestOperatorCommands(t *testing.T) {
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	run := append([]string{"run", "--name", "ops", "--policy", absPath(t, examplePolicy)}, up.args()...)

	held := startTF(t, t.TempDir(), home, nil, append(run, "--", "curl", "-sS", "-X", "PUT",
		"-d", `{"merge_method":"merge"}`, "https://api.github.com/repos/acme/app/pulls/7/merge")...)
	var pending []struct{ ID, Action, Gateway, Rule string }
	for deadline := time.Now().Add(30 * time.Second); len(pending) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) || held.exited() {
			t.Fatalf("the merge was not held (tf exited: %v)", held.exited())
		}
		r := runTF(t, home, nil, "approvals", "list", "--json")
		if r.code == 0 {
			_ = json.Unmarshal([]byte(r.stdout), &pending)
		}
	}
	if p := pending[0]; p.Action != "github.pr.merge" || p.Gateway != "ops" || p.Rule != "merges-need-a-human" {
		t.Errorf("pending approval %+v", p)
	}
	if r := runTF(t, home, nil, "status"); r.code != 0 || !strings.Contains(r.stdout, "ops") || !strings.Contains(r.stdout, "github.pr.merge") {
		t.Errorf("tf status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The plain list names the target and the params a person decides on.
	if r := runTF(t, home, nil, "approvals", "list"); r.code != 0 || !strings.Contains(r.stdout, "TARGET") || !strings.Contains(r.stdout, "acme/app") ||
		!strings.Contains(r.stdout, `merge_method="merge"`) || !strings.Contains(r.stdout, "number=7") {
		t.Errorf("tf approvals list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if up.hits.Load() != 0 {
		t.Fatal("a held request reached the upstream")
	}

	// Answer at the interactive prompt.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, tfBin, "approvals", "watch")
	watch.Env = append(os.Environ(), "TF_HOME="+home)
	watch.Stdin = strings.NewReader("y\n")
	out, _ := watch.CombinedOutput()
	if !strings.Contains(string(out), "github.pr.merge") {
		t.Errorf("tf approvals watch did not show the request:\n%s", out)
	}
	r := held.wait(t)
	if r.code != 0 || !strings.Contains(r.stdout, `"served_by":"fake-github"`) || up.hits.Load() != 1 {
		t.Fatalf("approved merge: exit %d, upstream hits %d\n%s\n%s", r.code, up.hits.Load(), r.stdout, r.stderr)
	}

	// The kill switch.
	if r := runTF(t, home, nil, "kill", "--reason", "incident 42"); r.code != 0 {
		t.Fatalf("tf kill: exit %d\n%s", r.code, r.stderr)
	}
	if r := runTF(t, home, nil, "kill", "--status"); !strings.Contains(r.stdout+r.stderr, "incident 42") {
		t.Errorf("tf kill --status:\n%s%s", r.stdout, r.stderr)
	}
	get := append(run, "--", "curl", "-sS", "-i", "https://api.github.com/repos/acme/app")
	r = runTF(t, home, nil, get...)
	if !strings.Contains(r.stdout, "403") || !strings.Contains(r.stdout, "X-Tf-Kill-Switch: active") || !strings.Contains(r.stdout, "incident 42") {
		t.Errorf("a request under the kill switch:\n%s", r.stdout)
	}
	if r := runTF(t, home, nil, "kill", "--off"); r.code != 0 {
		t.Fatalf("tf kill --off: exit %d\n%s", r.code, r.stderr)
	}
	// The refusal is among the last denials, with its action type.
	if r := runTF(t, home, nil, "status"); !regexp.MustCompile(`(?m)^  \S+ \S+\s+ops\s+deny \(kill switch\)\s+github\.repo\.get\s+acme/app\s`).MatchString(r.stdout) {
		t.Errorf("tf status last denials lack the action type:\n%s", r.stdout)
	}
	r = runTF(t, home, nil, get...)
	if !strings.Contains(r.stdout, "200") || !strings.Contains(r.stdout, "fake-github") {
		t.Errorf("a request after tf kill --off:\n%s", r.stdout)
	}
	if n := up.hits.Load(); n != 2 {
		t.Errorf("upstream hits %d, want 2 (the approved merge and the read after --off)", n)
	}
}
