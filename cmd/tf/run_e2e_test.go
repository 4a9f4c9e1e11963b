package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

const examplePolicy = "../../testdata/policy"

// curl through tf run: a refused DELETE never reaches the upstream and the
// client sees the rule's reason; an allowed GET goes through; both are in
// the audit log.
func TestRunCurl(t *testing.T) {
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	base := append([]string{"run", "--name", "e2e-curl", "--policy", examplePolicy}, up.args()...)

	r := runTF(t, home, nil, append(base, "--", "curl", "-sS", "-i", "-X", "DELETE", "https://api.github.com/repos/acme/app")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"HTTP/1.1 403", "X-Tf-Decision: deny", `"action":"github.repo.delete"`, "the policy default is deny", "X-Tf-Request-Id: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("curl output lacks %q:\n%s", want, r.stdout)
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("a refused request reached the upstream (%d hits)", n)
	}
	if !strings.Contains(r.stderr, "tf: governing with policy "+examplePolicy) {
		t.Errorf("stderr does not say which policy governs:\n%s", r.stderr)
	}

	r = runTF(t, home, nil, append(base, "--", "curl", "-sS", "--fail", "https://api.github.com/repos/acme/app")...)
	if r.code != 0 || !strings.Contains(r.stdout, `"served_by":"fake-github"`) {
		t.Fatalf("allowed GET: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := up.hits.Load(); n != 1 {
		t.Errorf("upstream hits %d, want 1", n)
	}

	recs := decisions(t, home)
	if len(recs) != 2 {
		t.Fatalf("%d decision records, want 2", len(recs))
	}
	del, get := recs[0], recs[1]
	if del.Action.Type != "github.repo.delete" || del.Decision.Effect != rules.Deny || del.Gateway != "e2e-curl" ||
		del.Action.Request.Method != "DELETE" || del.Action.Resource["repo"] != "app" {
		t.Errorf("delete record: %+v %+v", del.Action, del.Decision)
	}
	if get.Action.Type != "github.repo.get" || get.Decision.Effect != rules.Allow || get.Decision.Rule != "github-reads" {
		t.Errorf("get record: %+v %+v", get.Action, get.Decision)
	}

	// tf logs shows both, newest last.
	r = runTF(t, home, nil, "logs")
	if r.code != 0 || !strings.Contains(r.stdout, "github.repo.delete") || !strings.Contains(r.stdout, "github.repo.get") {
		t.Errorf("tf logs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// git clone and fetch over HTTPS through tf run, from a real git
// http-backend standing in for github.com.
func TestRunGitCloneAndFetch(t *testing.T) {
	home := t.TempDir()
	root := t.TempDir()
	gitc := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+root, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	bare := filepath.Join(root, "acme", "app.git")
	gitc(root, "init", "-q", "--bare", "--initial-branch=main", bare)
	work := filepath.Join(root, "seed")
	gitc(root, "init", "-q", "--initial-branch=main", work)
	os.WriteFile(filepath.Join(work, "README"), []byte("hello\n"), 0o644)
	gitc(work, "add", ".")
	gitc(work, "commit", "-q", "-m", "first")
	gitc(work, "push", "-q", bare, "main")

	up := newUpstream(t, root)
	cloneDir := t.TempDir()
	clone := filepath.Join(cloneDir, "clone")
	base := append([]string{"run", "--policy", examplePolicy, "--rw", cloneDir}, up.args()...)
	env := []string{"HOME=" + root, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"}
	r := runTF(t, home, env, append(base, "--", "git", "clone", "-q", "https://github.com/acme/app.git", clone)...)
	if r.code != 0 {
		t.Fatalf("clone: exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "README")); string(b) != "hello\n" {
		t.Fatalf("cloned README = %q", b)
	}

	// A new commit upstream, then fetch through tf.
	os.WriteFile(filepath.Join(work, "README"), []byte("hello again\n"), 0o644)
	gitc(work, "commit", "-q", "-am", "second")
	gitc(work, "push", "-q", bare, "main")
	r = runTF(t, home, env, append(base, "--", "git", "-C", clone, "fetch", "-q", "origin")...)
	if r.code != 0 {
		t.Fatalf("fetch: exit %d\n%s", r.code, r.stderr)
	}
	if got, want := gitc(clone, "rev-parse", "origin/main"), gitc(work, "rev-parse", "HEAD"); got != want {
		t.Errorf("fetched %s, upstream has %s", got, want)
	}

	recs := decisions(t, home)
	if len(recs) < 4 {
		t.Fatalf("%d decision records, want at least 4 (two ref advertisements, two upload-packs)", len(recs))
	}
	for _, r := range recs {
		if r.Action.Type != "github.repo.pull" || r.Decision.Effect != rules.Allow ||
			r.Action.Resource["owner"] != "acme" || r.Action.Resource["repo"] != "app" {
			t.Errorf("record %s: %s %s %v", r.RequestID, r.Action.Type, r.Decision.Effect, r.Action.Resource)
		}
	}
}

// A Go client under tf run: it finds the proxy and the CA through the
// environment alone (HTTPS_PROXY, SSL_CERT_FILE), like any Go program.
func TestRunGoClient(t *testing.T) {
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives under /tmp, which the sandbox replaces.
	base := append([]string{"run", "--policy", examplePolicy, "--ro", filepath.Dir(self)}, up.args()...)
	r := runTF(t, home, []string{"TF_E2E_CHILD=goclient"}, append(base, "--", self)...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	want := "GET https://api.github.com/repos/acme/app/pulls -> 200\nPOST https://api.github.com/repos/acme/app/merges -> 403 deny\n"
	if r.stdout != want {
		t.Errorf("child printed:\n%s\nwant:\n%s", r.stdout, want)
	}
	if n := up.hits.Load(); n != 1 {
		t.Errorf("upstream hits %d, want 1", n)
	}
}

// e2eChild is the governed process of TestRunGoClient.
func e2eChild() int {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{}}}
	for _, req := range []struct{ method, url string }{
		{"GET", "https://api.github.com/repos/acme/app/pulls"},
		{"POST", "https://api.github.com/repos/acme/app/merges"},
	} {
		r, _ := http.NewRequest(req.method, req.url, strings.NewReader(`{"base":"main","head":"feature/x"}`))
		res, err := c.Do(r)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		line := fmt.Sprintf("%s %s -> %d", req.method, req.url, res.StatusCode)
		if d := res.Header.Get("X-TF-Decision"); d != "" && res.StatusCode != 200 {
			line += " " + d
		}
		fmt.Println(line)
	}
	return 0
}
