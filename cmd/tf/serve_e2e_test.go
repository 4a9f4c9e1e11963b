package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
)

// servePolicy differs by agent: dev may not use GitHub's API, ci may not
// push to main, ci's posts to other.example.test wait for a person.
const servePolicy = `version: 1
default: allow
rules:
  - name: dev-uses-git-only
    actions: ["github.*"]
    when: action.agent == "dev" && request.host == "api.github.com"
    decision: deny
    reason: The dev agent works through git only.
  - name: ci-never-pushes-main
    actions: [github.repo.push]
    when: action.agent == "ci" && params.branch == "main"
    decision: deny
    reason: CI changes main through pull requests.
  - name: ci-posts-need-a-human
    actions: [http.post]
    when: action.agent == "ci"
    decision: require_approval
`

// served is a tf serve process.
type served struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

func (s *served) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// startServe starts tf serve with TF_HOME=home and returns once it says
// where it listens.
func startServe(t *testing.T, home string, args ...string) *served {
	t.Helper()
	cmd := exec.Command(tfBin, append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), "TF_HOME="+home)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	s := &served{cmd: cmd, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`at https?://(\S+) as gateway`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	go func() { err := cmd.Wait(); pw.Close(); s.done <- err }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case s.addr = <-addr:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("tf serve exited: %v\n%s", err, s.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("tf serve did not start:\n%s", s.output())
	}
	return s
}

// stop sends SIGTERM and returns the exit code.
func (s *served) stop(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		s.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("tf serve did not stop on SIGTERM:\n%s", s.output())
		return -1
	}
}

// proxyCurl runs curl through an HTTPS proxy with the given credentials
// and returns its output, the status code last.
func proxyCurl(t *testing.T, proxy, ca string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"-sS", "--proxy", proxy, "--proxy-cacert", ca, "--cacert", ca, "-w", "\n%{http_code}"}
	out, _ := exec.CommandContext(ctx, "curl", append(base, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func addAgent(t *testing.T, home, name string) string {
	t.Helper()
	r := runTF(t, home, nil, "agents", "add", name)
	tok := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(tok, "tfa_") || strings.Contains(r.stderr, tok) {
		t.Fatalf("tf agents add %s: %d %q\n%s", name, r.code, r.stdout, r.stderr)
	}
	return tok
}

func writeServePolicy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tameflare.yaml"), []byte(servePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tf serve with two agents through an HTTPS proxy leg, with real curl and
// git: rules differ by agent, a token that does not exist is refused with
// 407 and recorded, a kill switch stops one agent only, the tokens appear
// nowhere, and SIGTERM stops the gateway with exit status 0.
func TestServeTwoAgents(t *testing.T) {
	home := t.TempDir()
	g := newGitRepo(t)
	up := newUpstream(t, g.root)
	ciTok, devTok := addAgent(t, home, "ci"), addAgent(t, home, "dev")
	if r := runTF(t, home, nil, "agents", "list"); r.code != 0 || !regexp.MustCompile(`(?m)^ci\s+\S+\s+never$`).MatchString(r.stdout) || !strings.Contains(r.stdout, "dev") ||
		strings.Contains(r.stdout, ciTok) || strings.Contains(r.stdout, devTok) {
		t.Fatalf("tf agents list: %+v", r)
	}
	s := startServe(t, home, append([]string{"--listen", "127.0.0.1:0", "--tls", "--tls-name", "127.0.0.1", "--policy", writeServePolicy(t)}, up.args()...)...)
	ca := filepath.Join(home, "ca", "ca.pem")
	proxy := func(name, tok string) string { return "https://" + name + ":" + tok + "@" + s.addr }

	// Rules by agent, over curl.
	if out := proxyCurl(t, proxy("ci", ciTok), ca, "https://api.github.com/repos/acme/app"); !strings.HasSuffix(out, "200") || !strings.Contains(out, "fake-github") {
		t.Errorf("ci reads the API: %s", out)
	}
	if out := proxyCurl(t, proxy("dev", devTok), ca, "https://api.github.com/repos/acme/app"); !strings.HasSuffix(out, "403") || !strings.Contains(out, "works through git only") {
		t.Errorf("dev reads the API: %s", out)
	}

	// Rules by agent, over git.
	clone := filepath.Join(t.TempDir(), "clone")
	g.git(g.root, "clone", "-q", g.bare, clone)
	os.WriteFile(filepath.Join(clone, "README"), []byte("v2\n"), 0o644)
	g.git(clone, "commit", "-q", "-am", "second")
	head := g.git(clone, "rev-parse", "HEAD")
	push := func(name, tok, ref string) (string, error) {
		cmd := exec.Command("git", "-c", "http.proxy="+proxy(name, tok), "-c", "http.proxySSLCAInfo="+ca,
			"-C", clone, "push", "https://github.com/acme/app.git", "HEAD:"+ref)
		// GIT_SSL_CAINFO, which the environment may set, beats http.sslCAInfo.
		cmd.Env = append(append(os.Environ(), g.env...), "GIT_SSL_CAINFO="+ca)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	mainBefore := g.ref("main")
	if out, err := push("ci", ciTok, "refs/heads/main"); err == nil || !strings.Contains(out, "through pull requests") {
		t.Errorf("ci pushes main: %v\n%s", err, out)
	}
	if g.ref("main") != mainBefore {
		t.Fatal("main moved after ci's refused push")
	}
	if out, err := push("ci", ciTok, "refs/heads/ci-branch"); err != nil || g.ref("ci-branch") != head {
		t.Errorf("ci pushes a branch: %v\n%s", err, out)
	}
	if out, err := push("dev", devTok, "refs/heads/main"); err != nil || g.ref("main") != head {
		t.Errorf("dev pushes main: %v\n%s", err, out)
	}

	// Credentials that do not exist: 407, a clear reason, never forwarded.
	hits := up.hits.Load()
	for _, p := range []string{proxy("ci", devTok), proxy("ghost", ciTok), proxy("ci", "tfa_guess"), "https://" + s.addr} {
		out := proxyCurl(t, p, ca, "-v", "http://other.example.test/plain")
		if !strings.Contains(out, "407") || !strings.Contains(out, "proxy authentication required") {
			t.Errorf("credentials %q: %s", strings.Split(p, "@")[0], out)
		}
	}
	if up.hits.Load() != hits {
		t.Error("a request with bad credentials reached the upstream")
	}

	// The kill switch for one agent stops it and only it.
	if r := runTF(t, home, nil, "kill", "--agent", "ci", "--reason", "runaway job"); r.code != 0 || !strings.Contains(r.stdout, "kill switch on: agent ci") {
		t.Fatalf("tf kill --agent ci: %+v", r)
	}
	waitUntil(t, "ci refused", func() bool {
		return strings.HasSuffix(proxyCurl(t, proxy("ci", ciTok), ca, "https://other.example.test/x"), "403")
	})
	out := proxyCurl(t, proxy("ci", ciTok), ca, "-i", "https://other.example.test/x")
	if !strings.Contains(out, "runaway job") || !strings.Contains(strings.ToLower(out), "x-tf-kill-switch") {
		t.Errorf("ci under the kill switch: %s", out)
	}
	if out := proxyCurl(t, proxy("dev", devTok), ca, "https://other.example.test/x"); !strings.HasSuffix(out, "200") {
		t.Errorf("dev while ci is killed: %s", out)
	}
	if r := runTF(t, home, nil, "resume", "--agent", "ci"); r.code != 0 || !strings.Contains(r.stdout, "kill switch off: agent ci") {
		t.Fatalf("tf resume --agent ci: %+v", r)
	}
	waitUntil(t, "ci let through again", func() bool {
		return strings.HasSuffix(proxyCurl(t, proxy("ci", ciTok), ca, "https://other.example.test/x"), "200")
	})

	if code := s.stop(t); code != 0 {
		t.Errorf("tf serve exited %d on SIGTERM\n%s", code, s.output())
	}
	// The gateway noted when each agent was last let in.
	if r := runTF(t, home, nil, "agents", "list"); r.code != 0 || !regexp.MustCompile(`(?m)^ci\s+\S+\s+\d{4}-`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^dev\s+\S+\s+\d{4}-`).MatchString(r.stdout) {
		t.Errorf("tf agents list after use:\n%s", r.stdout)
	}

	// Every decision names its agent; tf logs shows it.
	byAgent := map[string]int{}
	for _, r := range decisions(t, home) {
		if r.Action.Agent != "ci" && r.Action.Agent != "dev" {
			t.Errorf("decision %s %s names agent %q", r.RequestID, r.Action.Type, r.Action.Agent)
		}
		byAgent[r.Action.Agent]++
	}
	if byAgent["ci"] == 0 || byAgent["dev"] == 0 {
		t.Errorf("decisions by agent: %v", byAgent)
	}
	logs := runTF(t, home, nil, "logs", "--agent", "dev")
	if logs.code != 0 || !strings.Contains(logs.stdout, "serve/dev") || strings.Contains(logs.stdout, "serve/ci") {
		t.Errorf("tf logs --agent dev:\n%s%s", logs.stdout, logs.stderr)
	}
	var fails, stops int
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		switch r.Event {
		case "proxy.auth_failed":
			fails += int(r.Details["failures"].(float64))
		case audit.EventGatewayStopped:
			if r.Details["reason"] == "shutdown" {
				stops++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fails < 4 || stops != 1 {
		t.Errorf("%d failed authentications recorded (want 4 or more), %d graceful stops (want 1)", fails, stops)
	}

	// The tokens are nowhere: not in the log, the output, the state.
	assertNoToken(t, home, s.output()+logs.stdout+logs.stderr, ciTok, devTok)
}

// assertNoToken fails if a token appears in output or any file of home.
func assertNoToken(t *testing.T, home, output string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if strings.Contains(output, tok) {
			t.Errorf("a token appears in the output")
		}
	}
	filepath.WalkDir(home, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, tok := range tokens {
			if bytes.Contains(b, []byte(tok)) {
				t.Errorf("a token appears in %s", path)
			}
		}
		return nil
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

// SIGTERM with a request held for approval: the agent is refused with a
// reason that says the gateway is shutting down, the refusal is recorded,
// and tf serve exits 0. The approval list names the agent.
func TestServeShutdownRefusesHeld(t *testing.T) {
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	ciTok := addAgent(t, home, "ci")
	s := startServe(t, home, append([]string{"--listen", "127.0.0.1:0", "--policy", writeServePolicy(t)}, up.args()...)...)
	ca := filepath.Join(home, "ca", "ca.pem")
	held := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, "curl", "-sS", "--proxy", "http://ci:"+ciTok+"@"+s.addr, "--cacert", ca, "-w", "\n%{http_code}",
			"-d", "x=1", "https://other.example.test/hook").CombinedOutput()
		held <- strings.TrimSpace(string(out))
	}()
	var list result
	waitUntil(t, "the post is held", func() bool {
		list = runTF(t, home, nil, "approvals", "list")
		return strings.Contains(list.stdout, "http.post")
	})
	if !strings.Contains(list.stdout, "AGENT") || !regexp.MustCompile(`serve\s+ci\s+http\.post`).MatchString(list.stdout) {
		t.Errorf("tf approvals list does not name the agent:\n%s", list.stdout)
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("tf serve exited %d\n%s", code, s.output())
	}
	select {
	case out := <-held:
		if !strings.HasSuffix(out, "403") || !strings.Contains(out, "the gateway is shutting down") {
			t.Errorf("the held request got: %s", out)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held request was not answered")
	}
	if up.hits.Load() != 0 {
		t.Error("the held request reached the upstream")
	}
	var cancelled bool
	audit.Scan(filepath.Join(home, "audit"), audit.Filter{}, func(r *audit.Record) error {
		if r.Event == audit.EventApprovalCancelled && r.Details["agent"] == "ci" && strings.Contains(r.Details["reason"].(string), "shutting down") {
			cancelled = true
		}
		return nil
	})
	if !cancelled {
		t.Error("no approval.cancelled record names the agent and the shutdown")
	}
	assertNoToken(t, home, s.output()+list.stdout, ciTok)
}

// tf serve refuses to serve credentials in plain HTTP beyond loopback.
func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	r := runTF(t, t.TempDir(), nil, "serve", "--listen", "0.0.0.0:0")
	if r.code != 2 || !strings.Contains(r.stderr, "plain HTTP") {
		t.Fatalf("plain HTTP on 0.0.0.0: %+v", r)
	}
}
