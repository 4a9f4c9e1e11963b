package main

import (
	"bytes"
	"context"
	"io/fs"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const pinPolicyV1 = `version: 1
mode: enforce
default: deny
rules:
  - name: reads
    actions: [github.repo.get]
    decision: allow
`

const pinTestsV1 = `cases:
  - name: a read is allowed
    action: {type: github.repo.get, resource: {owner: acme, repo: app}}
    expect: allow
`

const pinPolicyV2 = `version: 1
mode: enforce
default: deny
rules:
  - name: reads
    actions: [github.repo.get]
    decision: deny
    reason: Frozen by the team's policy.
`

const pinTestsV2 = `cases:
  - name: reads are refused
    action: {type: github.repo.get, resource: {owner: acme, repo: app}}
    expect: deny
`

// git runs git in dir for a test, with a fixed identity.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Pat", "GIT_AUTHOR_EMAIL=pat@example.com",
		"GIT_COMMITTER_NAME=Pat", "GIT_COMMITTER_EMAIL=pat@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commitPolicy writes a policy and its tests in work, commits and pushes
// them to the bare remote.
func commitPolicy(t *testing.T, work, bare, policy, tests, msg string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(work, "tests"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "tameflare.yaml"), []byte(policy), 0o644)
	os.WriteFile(filepath.Join(work, "tests", "policy.yaml"), []byte(tests), 0o644)
	gitIn(t, work, "add", "-A")
	gitIn(t, work, "commit", "-q", "-m", msg)
	gitIn(t, work, "push", "-q", bare, "HEAD:main")
	return gitIn(t, work, "rev-parse", "HEAD")
}

// Two gateways on two machines (two TF_HOMEs) follow the same applied ref
// of a policy repository served by git http-backend: one tf policy apply
// changes both; tf policy log reads the ref's history; a gateway that
// starts while the remote is unreachable governs with its last good policy,
// and one with nothing to fall back on does not start.
func TestTwoGatewaysFollowTheRemoteRef(t *testing.T) {
	requireTool(t, "curl", "curl")
	root := t.TempDir()
	bare := filepath.Join(root, "policy.git")
	gitIn(t, root, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, bare, "config", "http.receivepack", "true")
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer srv.Close()
	remote := srv.URL + "/policy.git"
	work := filepath.Join(t.TempDir(), "work")
	gitIn(t, root, "init", "-q", "-b", "main", work)
	v1 := commitPolicy(t, work, bare, pinPolicyV1, pinTestsV1, "reads allowed")

	operator := t.TempDir()
	r := runTF(t, operator, nil, "policy", "apply", "--remote", remote)
	if r.code != 0 || !strings.Contains(r.stdout, "applied (nothing) → "+v1[:12]) {
		t.Fatalf("first apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	up := newUpstream(t, t.TempDir())
	config := "pin:\n  remote: " + remote + "\n  interval: 200ms\n"
	homes := []string{t.TempDir(), t.TempDir()}
	for i, h := range homes {
		if err := os.WriteFile(filepath.Join(h, "config.yaml"), []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		name := []string{"laptop", "ci"}[i]
		r := runTF(t, h, nil, append([]string{"gateway", "start", name}, up.args()...)...)
		if r.code != 0 {
			t.Fatalf("gateway start %s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
		}
		t.Cleanup(func() { runTF(t, h, nil, "gateway", "stop", name) })
	}
	// curlThrough reads the repository through a home's gateway and
	// returns the HTTP status.
	curlThrough := func(h, name string) string {
		script := `eval "$("$TF" env ` + name + `)" && curl -sS -o /dev/null -w '%{http_code}' https://api.github.com/repos/acme/app`
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Env = append(os.Environ(), "TF_HOME="+h, "TF="+tfBin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl through %s: %v\n%s", name, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for i, h := range homes {
		if got := curlThrough(h, []string{"laptop", "ci"}[i]); got != "200" {
			t.Fatalf("gateway %d under v1: %s", i, got)
		}
	}

	v2 := commitPolicy(t, work, bare, pinPolicyV2, pinTestsV2, "freeze reads")
	r = runTF(t, operator, nil, "policy", "apply", "--remote", remote)
	if r.code != 0 || !strings.Contains(r.stdout, "applied "+v1[:12]+" → "+v2[:12]) {
		t.Fatalf("second apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, h := range homes {
		name := []string{"laptop", "ci"}[i]
		deadline := time.Now().Add(20 * time.Second)
		for got := curlThrough(h, name); got != "403"; got = curlThrough(h, name) {
			if time.Now().After(deadline) {
				t.Fatalf("gateway %s still answers %s after the apply", name, got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Each gateway's audit log records the change, naming the apply.
	for _, h := range homes {
		r := runTF(t, h, nil, "policy", "log", "--local")
		if r.code != 0 || !strings.Contains(r.stdout, v1[:12]+"  "+v2[:12]) {
			t.Errorf("local policy log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	// tf policy log reads the ref's history, in a following home without
	// --remote.
	r = runTF(t, homes[0], nil, "policy", "log")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.Contains(lines[1], v2[:12]) || !strings.Contains(lines[1], "freeze reads") ||
		!strings.Contains(lines[2], v1[:12]) || !strings.Contains(lines[2], "reads allowed") {
		t.Errorf("tf policy log: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Someone with push access rewinds the ref to the first apply: the
	// gateways say so and keep the policy in force until a person accepts
	// the rewrite with tf policy sync --accept-rewrite.
	first := gitIn(t, bare, "rev-parse", "refs/tf/applied~1")
	gitIn(t, bare, "update-ref", "refs/tf/applied", first)
	logPath := filepath.Join(homes[1], "gateways", "ci.log")
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "the ref's history was rewritten") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not report the rewound ref:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := curlThrough(homes[1], "ci"); got != "403" {
		t.Errorf("after the rewind: %s, want the policy in force (403)", got)
	}
	if r := runTF(t, homes[1], nil, "policy", "sync"); r.code != 1 || !strings.Contains(r.stderr, "--accept-rewrite") {
		t.Errorf("tf policy sync of a rewound ref: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTF(t, homes[1], nil, "policy", "sync", "--accept-rewrite"); r.code != 0 || !strings.Contains(r.stdout, "pinned "+v1[:12]) {
		t.Fatalf("tf policy sync --accept-rewrite: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	deadline = time.Now().Add(20 * time.Second)
	for got := curlThrough(homes[1], "ci"); got != "200"; got = curlThrough(homes[1], "ci") {
		if time.Now().After(deadline) {
			t.Fatalf("after accepting the rewrite the gateway answers %s", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The remote goes away; a gateway restarted now keeps the last good
	// policy and says why; a home that never synced refuses to start.
	srv.Close()
	runTF(t, homes[0], nil, "gateway", "stop", "laptop")
	r = runTF(t, homes[0], nil, append([]string{"gateway", "start", "laptop"}, up.args()...)...)
	if r.code != 0 {
		t.Fatalf("restart with the remote down: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := curlThrough(homes[0], "laptop"); got != "403" {
		t.Errorf("after a restart with the remote down: %s, want the last good policy's 403", got)
	}
	log, _ := os.ReadFile(filepath.Join(homes[0], "gateways", "laptop.log"))
	if !strings.Contains(string(log), "could not follow refs/tf/applied of "+remote) || !strings.Contains(string(log), "governing with the last good policy "+v2[:12]) {
		t.Errorf("the gateway did not say it kept the last good policy:\n%s%s", r.stderr, log)
	}
	fresh := t.TempDir()
	os.WriteFile(filepath.Join(fresh, "config.yaml"), []byte(config), 0o600)
	r = runTF(t, fresh, nil, "run", "--isolate=off", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "following refs/tf/applied of "+remote) || !strings.Contains(r.stderr, "no policy is pinned here to fall back on") {
		t.Errorf("a fresh home with the remote down: exit %d\n%s", r.code, r.stderr)
	}
}

// A remote that wants credentials gets the keyring's (here TF_SECRET_*, as
// in CI), and no output or error of tf carries the secret.
func TestRemotePinCredential(t *testing.T) {
	const secret = "glpat-tfPinSecret0123456789"
	root := t.TempDir()
	bare := filepath.Join(root, "policy.git")
	gitIn(t, root, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, bare, "config", "http.receivepack", "true")
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); !ok || pw != secret {
			w.Header().Set("WWW-Authenticate", `Basic realm="policy"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	remote := srv.URL + "/policy.git"
	work := filepath.Join(t.TempDir(), "work")
	gitIn(t, root, "init", "-q", "-b", "main", work)
	v1 := commitPolicy(t, work, bare, pinPolicyV1, pinTestsV1, "reads allowed")

	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "config.yaml"), []byte("pin:\n  remote: "+remote+"\n  credential: policy-repo\n"), 0o600)
	env := []string{"TF_SECRET_POLICY_REPO=" + secret}
	r := runTF(t, home, env, "policy", "apply")
	if r.code != 0 || !strings.Contains(r.stdout, "→ "+v1[:12]) || !strings.Contains(r.stdout, "this home's pin follows") {
		t.Fatalf("apply with the credential: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTF(t, home, env, "policy", "log"); r.code != 0 || !strings.Contains(r.stdout, v1[:12]) {
		t.Errorf("log with the credential: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A wrong secret: a clear error, without the secret.
	wrong := []string{"TF_SECRET_POLICY_REPO=" + secret + "-wrong"}
	r = runTF(t, home, wrong, "policy", "sync")
	if r.code != 1 || !strings.Contains(r.stderr, "authentication") {
		t.Errorf("sync with a wrong credential: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// No byte tf wrote holds the secret: outputs, pin, audit log, cache.
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Error("the secret is in tf's output")
	}
	filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})
}

// The agent, inside tf run, tries to move the applied ref of a policy
// repository it may push to (tf would inject the push credential): the
// built-in policy refuses a push that names no branch, and git shows why.
func TestAgentCannotPushTheAppliedRef(t *testing.T) {
	home := t.TempDir()
	g := newGitRepo(t)
	up := newUpstream(t, g.root)
	cloneDir := t.TempDir()
	clone := filepath.Join(cloneDir, "clone")
	g.git(g.root, "clone", "-q", g.bare, clone)
	g.git(clone, "remote", "set-url", "origin", "https://github.com/acme/app.git")
	before := g.ref("refs/tf/applied")
	args := append([]string{"run", "--rw", cloneDir}, up.args()...)
	r := runTF(t, home, g.env, append(args, "--", "git", "-C", clone, "push", "origin", "HEAD:refs/tf/applied")...)
	if r.code == 0 {
		t.Fatalf("the agent moved the applied ref:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "[remote rejected]") || !strings.Contains(r.stderr, "push-needs-a-known-branch") {
		t.Errorf("git did not show the refusal:\n%s", r.stderr)
	}
	if after := g.ref("refs/tf/applied"); after != before {
		t.Errorf("refs/tf/applied is %q upstream, was %q", after, before)
	}
}

// tf policy apply from a home that has not seen the latest apply is
// refused with who applied what; --force applies on top of it.
func TestRemoteApplyNotFastForwardCLI(t *testing.T) {
	root := t.TempDir()
	bare := filepath.Join(root, "policy.git")
	gitIn(t, root, "init", "-q", "--bare", "-b", "main", bare)
	gitIn(t, bare, "config", "http.receivepack", "true")
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	})
	defer srv.Close()
	remote := srv.URL + "/policy.git"
	work := filepath.Join(t.TempDir(), "work")
	gitIn(t, root, "init", "-q", "-b", "main", work)
	v1 := commitPolicy(t, work, bare, pinPolicyV1, pinTestsV1, "reads allowed")

	laptop, other := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(laptop, "config.yaml"), []byte("pin:\n  remote: "+remote+"\n"), 0o600)
	if r := runTF(t, laptop, nil, "policy", "apply"); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	v2 := commitPolicy(t, work, bare, pinPolicyV2, pinTestsV2, "freeze reads")
	if r := runTF(t, other, nil, "policy", "apply", "--remote", remote); r.code != 0 {
		t.Fatalf("apply elsewhere: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := runTF(t, laptop, nil, "policy", "apply", "--rev", v1)
	if r.code != 1 || !strings.Contains(r.stderr, "not a fast-forward") || !strings.Contains(r.stderr, "moved since this home last saw it") ||
		!strings.Contains(r.stderr, v2[:12]+" applied by") {
		t.Fatalf("stale apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTF(t, laptop, nil, "policy", "apply", "--rev", v1, "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "applied "+v2[:12]+" → "+v1[:12]) {
		t.Fatalf("forced apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTF(t, laptop, nil, "policy", "log", "--json")
	if r.code != 0 || strings.Count(r.stdout, `"policy"`) != 3 {
		t.Errorf("three applies on the ref: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runTF(t, laptop, nil, "policy", "show"); r.code != 0 || !strings.Contains(r.stdout, v1) {
		t.Errorf("the laptop's pin after --force: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
