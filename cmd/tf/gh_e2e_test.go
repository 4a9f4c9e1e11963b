package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// parentGHToken stands for a real token in the environment tf is started
// from; the governed gh must never send it.
const parentGHToken = "ghp_parentTokenMustNotReachGitHub0123"

// requireTool fails (never skips) a test whose real client is missing: CI
// installs it, and a test that silently does not run proves nothing.
func requireTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (Debian package %s): %v", name, pkg, err)
	}
}

// ghEnv is gh's environment under tf: github.com as the host, a private
// configuration directory, no prompts, no update check, and a token in the
// parent environment that tf must replace with its placeholder.
func ghEnv(t *testing.T, work string) []string {
	t.Helper()
	return append(clientEnv(t),
		"GH_HOST=github.com",
		"GH_CONFIG_DIR="+filepath.Join(t.TempDir(), "gh"),
		"GH_PROMPT_DISABLED=1",
		"GH_NO_UPDATE_NOTIFIER=1",
		"GH_SPINNER_DISABLED=1",
		// gh runs git in the working directory to find remotes: there is
		// no repository here, and git must not look above it.
		"GIT_CEILING_DIRECTORIES="+filepath.Dir(work),
		"GH_TOKEN="+parentGHToken,
	)
}

// The real GitHub CLI under tf run with the example policy: gh pr create
// is allowed and creates the pull request on the fake GitHub. gh pr merge
// is held for a person (rule merges-need-a-human): while held, and once a
// person denies it, the fake never sees the mergePullRequest mutation, and
// gh shows the user the rule and the reason. Approving a second attempt
// merges it: the refusal is tf's doing, not the fake's.
func TestGHPullRequestCreateAllowedMergeRefused(t *testing.T) {
	requireTool(t, "gh", "gh")
	home := t.TempDir()
	fake := newFakeGitHub(t)
	work := filepath.Join(t.TempDir(), "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	env := ghEnv(t, work)
	base := append([]string{"run", "--name", "e2e-gh", "--policy", absPath(t, examplePolicy)}, fake.args()...)
	mergeCmd := append(append([]string(nil), base...), "--", "gh", "pr", "merge", "42", "--repo", "acme/app", "--merge")

	r := runTFIn(t, work, home, env, append(base, "--", "gh", "pr", "create", "--repo", "acme/app",
		"--base", "main", "--head", "feature/x", "--title", "T", "--body", "B")...)
	if r.code != 0 {
		t.Fatalf("gh pr create: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got, want := strings.TrimSpace(r.stdout), "https://github.com/acme/app/pull/42"; got != want {
		t.Errorf("gh pr create printed %q, want %q", got, want)
	}
	if !fake.sawField("createPullRequest") {
		t.Fatalf("the fake never received the createPullRequest mutation: %s", opNames(fake.operations()))
	}
	pr, ok := fake.pull(42)
	if !ok || pr.Title != "T" || pr.Body != "B" || pr.BaseRefName != "main" || pr.HeadRefName != "feature/x" || pr.State != "OPEN" {
		t.Fatalf("pull request 42 on the fake: %+v (exists %v)", pr, ok)
	}

	// The merge is held; a person denies it.
	merge := startTF(t, work, home, env, mergeCmd...)
	held := awaitApproval(t, work, home, merge, "github.pr.merge")
	if held.Gateway != "e2e-gh" || held.Rule != "merges-need-a-human" {
		t.Errorf("held approval: %+v", held)
	}
	if fake.sawField("mergePullRequest") {
		t.Fatalf("a held merge reached the fake")
	}
	const why = "not before the release"
	if r := runTFIn(t, work, home, nil, "approvals", "deny", "--reason", why, held.ID); r.code != 0 {
		t.Fatalf("tf approvals deny: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = merge.wait(t)
	if r.code == 0 {
		t.Fatalf("gh pr merge succeeded after a person denied it\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	// gh prints the refusal's body: the user sees the status, rule and reasons.
	for _, want := range []string{"403", "merges-need-a-human", "A person merges pull requests.", why} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("gh's error output lacks %q:\n%s", want, r.stderr)
		}
	}
	if fake.sawField("mergePullRequest") {
		t.Errorf("a refused merge reached the fake")
	}
	if pr, _ := fake.pull(42); pr.State != "OPEN" {
		t.Errorf("pull request 42 is %s after a refused merge", pr.State)
	}
	// gh read the pull request (allowed) before it tried to merge.
	if names := opNames(fake.operations()); !strings.Contains(names, "PullRequestByNumber") {
		t.Errorf("gh pr merge did not look the pull request up: %s", names)
	}

	// The control: the same merge, approved, goes through.
	merge = startTF(t, work, home, env, mergeCmd...)
	again := awaitApproval(t, work, home, merge, "github.pr.merge")
	if again.RequestID == held.RequestID {
		t.Fatalf("the second merge has the first one's request id %s", held.RequestID)
	}
	if r := runTFIn(t, work, home, nil, "approvals", "approve", again.ID, "--reason", "release is out"); r.code != 0 {
		t.Fatalf("tf approvals approve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = merge.wait(t); r.code != 0 {
		t.Fatalf("gh pr merge, approved: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if pr, _ := fake.pull(42); pr.State != "MERGED" || pr.MergeMethod != "MERGE" {
		t.Errorf("pull request 42 after an approved merge: %+v", pr)
	}

	for _, op := range fake.operations() {
		// No credential is configured: the placeholder is removed, and
		// the token tf was started with never appears.
		if op.Authorization != "" {
			t.Errorf("%s reached the fake with Authorization %q", op.Name, op.Authorization)
		}
	}
	if u := fake.unexpectedRequests(); len(u) != 0 {
		t.Errorf("the fake could not answer: %q", u)
	}

	recs := decisions(t, home)
	statuses := outcomeStatuses(t, home)
	for _, rec := range recs {
		switch rec.Action.Type {
		case "github.graphql.query", "github.pr.create", "github.pr.merge":
		default:
			t.Errorf("unexpected action %s (%s %s)", rec.Action.Type, rec.Action.Request.Method, rec.Action.Request.Path)
		}
		if rec.Gateway != "e2e-gh" || rec.Action.Connector != "github" || rec.Action.Request.Host != "api.github.com" {
			t.Errorf("record %s: gateway %q connector %q host %q", rec.RequestID, rec.Gateway, rec.Action.Connector, rec.Action.Request.Host)
		}
	}
	creates := recordsOf(recs, "github.pr.create")
	if len(creates) != 1 {
		t.Fatalf("%d github.pr.create records, want 1", len(creates))
	}
	create := creates[0]
	if create.Decision.Effect != rules.Allow || create.Decision.Rule != "open-pull-requests" {
		t.Errorf("github.pr.create decided %s by %q", create.Decision.Effect, create.Decision.Rule)
	}
	if p := create.Action.Params; p["base"] != "main" || p["head"] != "feature/x" || p["title"] != "T" {
		t.Errorf("github.pr.create params %v", p)
	}
	if s := statuses[create.RequestID]; s != 200 {
		t.Errorf("github.pr.create outcome status %d, want 200", s)
	}
	checkHeldMerge(t, recs, statuses, held.RequestID, pr.ID, rules.Deny, 403, why)
	checkHeldMerge(t, recs, statuses, again.RequestID, pr.ID, rules.Allow, 200, "release is out")
}

// checkHeldMerge checks the audit trail of one held merge: first the
// policy's require_approval by merges-need-a-human, then the person's
// decision (want) with its reason, and the outcome's status.
func checkHeldMerge(t *testing.T, recs []*audit.Record, statuses map[string]int, requestID, pullID string, want rules.Effect, status int, reason string) {
	t.Helper()
	var trail []*audit.Record
	for _, r := range recordsOf(recs, "github.pr.merge") {
		if r.RequestID == requestID {
			trail = append(trail, r)
		}
	}
	if len(trail) != 2 {
		t.Fatalf("request %s: %d github.pr.merge records, want 2 (held, then decided)", requestID, len(trail))
	}
	first, last := trail[0], trail[1]
	if first.Decision.Effect != rules.RequireApproval || first.Decision.Rule != "merges-need-a-human" {
		t.Errorf("request %s held as %s by %q", requestID, first.Decision.Effect, first.Decision.Rule)
	}
	if p := first.Action.Params; p["pull_request_id"] != pullID || p["merge_method"] != "merge" {
		t.Errorf("github.pr.merge params %v, want pull_request_id %s", p, pullID)
	}
	if last.Decision.Effect != want || last.Approval == nil || !strings.Contains(last.Approval.Reason, reason) {
		t.Errorf("request %s decided %s, approval %+v; want %s with reason %q", requestID, last.Decision.Effect, last.Approval, want, reason)
	}
	if s := statuses[requestID]; s != status {
		t.Errorf("request %s outcome status %d, want %d", requestID, s, status)
	}
}

// pendingApproval is an entry of tf approvals list --json.
type pendingApproval struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id"`
	Gateway   string `json:"gateway"`
	Action    string `json:"action"`
	Rule      string `json:"rule"`
}

// awaitApproval polls tf approvals list until the process proc, a tf run,
// has a request of action type typ held, and returns it. It fails the test
// if proc ends first or nothing is held within a minute.
func awaitApproval(t *testing.T, dir, home string, proc *tfProc, typ string) pendingApproval {
	t.Helper()
	return awaitApprovalWithin(t, time.Minute, 100*time.Millisecond, dir, home, proc, typ)
}

// awaitApprovalWithin is awaitApproval waiting up to limit, asking every
// poll.
func awaitApprovalWithin(t *testing.T, limit, poll time.Duration, dir, home string, proc *tfProc, typ string) pendingApproval {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		if proc.exited() {
			r := proc.wait(t)
			t.Fatalf("tf run ended (exit %d) before a %s was held\nstdout:\n%s\nstderr:\n%s", r.code, typ, r.stdout, r.stderr)
		}
		r := runTFIn(t, dir, home, nil, "approvals", "list", "--json")
		if r.code == 0 {
			var pending []pendingApproval
			if err := json.Unmarshal([]byte(r.stdout), &pending); err != nil {
				t.Fatalf("tf approvals list --json: %v\n%s", err, r.stdout)
			}
			for _, p := range pending {
				if p.Action == typ {
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s was held within %s; last tf approvals list: exit %d\n%s%s", typ, limit, r.code, r.stdout, r.stderr)
		case <-tick.C:
		}
	}
}

func opNames(ops []ghOperation) string {
	var names []string
	for _, op := range ops {
		names = append(names, op.Name)
	}
	return strings.Join(names, " ")
}
