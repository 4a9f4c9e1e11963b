package connectors

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// gitEnv is a git environment that never reads the real home or system
// configuration.
type gitEnv struct {
	t   *testing.T
	ctx context.Context
	env []string
}

func newGitEnv(t *testing.T, ctx context.Context) *gitEnv {
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"TF_HOME=" + filepath.Join(home, "tf"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"PATH=" + os.Getenv("PATH"),
	}
	return &gitEnv{t: t, ctx: ctx, env: env}
}

func (g *gitEnv) run(dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(g.ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = g.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gitEnv) must(dir string, args ...string) string {
	g.t.Helper()
	out, err := g.run(dir, args...)
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// TestGitPushEndToEnd pushes with the real git client to a real
// git http-backend behind a handler that classifies each receive-pack
// request and answers refused ones with the connector's Refuser.
func TestGitPushEndToEnd(t *testing.T) {
	backend, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	httpBackend := filepath.Join(strings.TrimSpace(string(backend)), "git-http-backend")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-5*time.Second))
	}
	defer cancel()
	g := newGitEnv(t, ctx)

	root := t.TempDir()
	bare := filepath.Join(root, "acme", "app.git")
	g.must(root, "init", "--bare", "--initial-branch=main", bare)
	g.must(bare, "config", "http.receivepack", "true")
	g.must(bare, "config", "receive.advertisePushOptions", "true")

	reg := testRegistry(t)
	gh := reg.Lookup("github.com").(*GitHub)
	var mu sync.Mutex
	var seen []rules.Action

	cgiHandler := &cgi.Handler{
		Path: httpBackend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	const peek = 64 << 10
	front := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != "POST" || !strings.HasSuffix(req.URL.Path, "/git-receive-pack") {
			// Reads of acme/secret are refused.
			creq := req.Clone(req.Context())
			creq.URL.Host, creq.Host = "github.com", "github.com"
			r := &Request{HTTP: creq, Scheme: "https"}
			if acts, err := reg.Classify(r); err == nil && acts[0].Resource["repo"] == "secret" {
				if status, h, body, ok := gh.Refuse(r, acts, "no-secret", "This repository is off limits.", ""); ok {
					for k, v := range h {
						w.Header()[k] = v
					}
					w.WriteHeader(status)
					w.Write(body)
					return
				}
				http.Error(w, "refused", http.StatusForbidden)
				return
			}
			cgiHandler.ServeHTTP(w, req)
			return
		}
		all, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		// Classify as the proxy would: the request was for github.com.
		creq := req.Clone(req.Context())
		creq.URL.Host, creq.Host = "github.com", "github.com"
		r := &Request{HTTP: creq, Scheme: "https", Body: all[:min(peek, len(all))], Truncated: len(all) > peek}
		acts, err := reg.Classify(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		mu.Lock()
		seen = append(seen, acts...)
		mu.Unlock()
		// The stub policy: nothing touches main.
		var refused []rules.Action
		for _, a := range acts {
			if a.Params["branch"] == "main" {
				refused = append(refused, a)
			}
		}
		if len(refused) > 0 {
			status, h, body, ok := gh.Refuse(r, refused, "protect-main", "Protected branches change through pull requests.", "req-42")
			if !ok {
				http.Error(w, "refused", http.StatusForbidden)
				return
			}
			for k, v := range h {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			w.Write(body)
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(all))
		cgiHandler.ServeHTTP(w, req)
	})
	srv := httptest.NewServer(front)
	defer srv.Close()

	work := filepath.Join(t.TempDir(), "work")
	g.must("", "init", "--initial-branch=main", work)
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("one\n"), 0o644)
	g.must(work, "add", ".")
	g.must(work, "commit", "-m", "one")
	// Seed main directly, not through the handler.
	g.must(work, "push", bare, "main")
	baseMain := g.must(bare, "rev-parse", "refs/heads/main")
	g.must(work, "remote", "add", "origin", srv.URL+"/acme/app.git")

	takeSeen := func() []rules.Action {
		mu.Lock()
		defer mu.Unlock()
		s := seen
		seen = nil
		return s
	}

	// A push to main is refused the way GitHub refuses it.
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("two\n"), 0o644)
	g.must(work, "commit", "-am", "two")
	out, err := g.run(work, "push", "origin", "main")
	if err == nil {
		t.Fatalf("push to main succeeded:\n%s", out)
	}
	if !strings.Contains(out, "! [remote rejected] main -> main (refused by rule protect-main: Protected branches change through pull requests.)") {
		t.Errorf("git output lacks the rejection:\n%s", out)
	}
	if !strings.Contains(out, "remote: tf: refused by rule protect-main") {
		t.Errorf("git output lacks the progress line:\n%s", out)
	}
	if got := g.must(bare, "rev-parse", "refs/heads/main"); got != baseMain {
		t.Errorf("main moved to %s", got)
	}
	if s := takeSeen(); len(s) != 1 || s[0].Type != "github.repo.push" || s[0].Params["branch"] != "main" || s[0].Resource["repo"] != "app" {
		t.Errorf("actions of the main push: %+v", s)
	}

	// A push of a feature branch goes through, push options included.
	g.must(work, "checkout", "-b", "feature/x")
	out, err = g.run(work, "push", "-o", "ci.skip", "origin", "feature/x")
	if err != nil {
		t.Fatalf("push of feature/x: %v\n%s", err, out)
	}
	if got := g.must(bare, "rev-parse", "refs/heads/feature/x"); got == baseMain {
		t.Errorf("feature/x not pushed")
	}
	s := takeSeen()
	if len(s) != 1 || s[0].Type != "github.repo.push" || s[0].Params["branch"] != "feature/x" || s[0].Params["create"] != true {
		t.Errorf("actions of the feature push: %+v", s)
	} else if opts, _ := s[0].Params["push_options"].([]string); len(opts) != 1 || opts[0] != "ci.skip" {
		t.Errorf("push options = %v", s[0].Params["push_options"])
	}

	// Two refs at once: the whole push is refused, each ref with its reason.
	g.must(work, "branch", "feature/y")
	out, err = g.run(work, "push", "origin", "main", "feature/y")
	if err == nil {
		t.Fatalf("push of main and feature/y succeeded:\n%s", out)
	}
	if !strings.Contains(out, "feature/y -> feature/y (not pushed: another ref of this push was refused)") {
		t.Errorf("git output lacks the second ref:\n%s", out)
	}
	if _, err := g.run(bare, "rev-parse", "--verify", "refs/heads/feature/y"); err == nil {
		t.Error("feature/y was created")
	}
	takeSeen()

	// Deleting a branch is github.branch.delete, as through REST.
	out, err = g.run(work, "push", "origin", "--delete", "feature/x")
	if err != nil {
		t.Fatalf("delete of feature/x: %v\n%s", err, out)
	}
	if _, err := g.run(bare, "rev-parse", "--verify", "refs/heads/feature/x"); err == nil {
		t.Error("feature/x still exists")
	}
	s = takeSeen()
	if len(s) != 1 || s[0].Type != "github.branch.delete" || s[0].Params["branch"] != "feature/x" || s[0].Params["ref"] != "refs/heads/feature/x" {
		t.Errorf("actions of the delete: %+v", s)
	}
	out, err = g.run(work, "push", "origin", "--delete", "main")
	if err == nil || !strings.Contains(out, "[remote rejected] main (refused by rule protect-main") {
		t.Errorf("delete of main: %v\n%s", err, out)
	}
	if s := takeSeen(); len(s) != 1 || s[0].Type != "github.branch.delete" || s[0].Params["branch"] != "main" {
		t.Errorf("actions of the main delete: %+v", s)
	}

	// A clone is a pull; a refused one says why.
	out, err = g.run(t.TempDir(), "clone", srv.URL+"/acme/app.git", "c")
	if err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	g.must(root, "clone", "--bare", bare, filepath.Join(root, "acme", "secret.git"))
	out, err = g.run(t.TempDir(), "clone", srv.URL+"/acme/secret.git", "c")
	if err == nil || !strings.Contains(out, "remote error: tf: refused by rule no-secret: This repository is off limits.") {
		t.Errorf("clone of secret: %v\n%s", err, out)
	}
	out, err = g.run(work, "push", srv.URL+"/acme/secret.git", "feature/y")
	if err == nil || !strings.Contains(out, "remote error: tf: refused by rule no-secret") {
		t.Errorf("push to secret: %v\n%s", err, out)
	}
}
