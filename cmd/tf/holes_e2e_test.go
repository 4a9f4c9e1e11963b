package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/testdata"
)

// Issue 16's holes, tried from inside tf run with real clients (curl, git)
// against local upstreams standing in for GitHub.

const holesSecret = "ghs_holesE2E0123456789abcdefSECRET"

const holesPolicy = `version: 1
default: allow
credentials:
  github: {secret: gh-token}
rules:
  - name: no-vault
    actions: ["github.*"]
    when: resource.repo == "vault"
    decision: deny
    reason: the vault repository is off limits
  - name: no-deletions
    actions: [github.branch.delete, github.repo.delete]
    decision: deny
    reason: deletions are for people
  - name: no-force
    actions: [github.ref.update]
    when: params.force == true
    decision: deny
    reason: no force updates
`

// holesUpstream stands in for api.github.com and github.com over TLS and
// for api.github.com on plain port 80; it records what it saw.
type holesUpstream struct {
	tls, plain *httptest.Server
	caFile     string
	mu         sync.Mutex
	seen       []string // method, path and Authorization of each request
}

func newHolesUpstream(t *testing.T) *holesUpstream {
	u := &holesUpstream{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Method+" "+r.Host+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		u.mu.Unlock()
		switch r.URL.Path {
		case "/echo":
			// A debugging endpoint that echoes the request's credential.
			w.Header().Set("X-Echo", r.Header.Get("Authorization"))
			io.WriteString(w, "you sent: "+r.Header.Get("Authorization")+"\n")
		default:
			io.WriteString(w, `{"ok":true}`+"\n")
		}
	})
	cert, caPEM, err := testdata.ServerCert("api.github.com", "github.com", "ghe.example.test")
	if err != nil {
		t.Fatal(err)
	}
	u.tls = httptest.NewUnstartedServer(h)
	u.tls.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	u.tls.StartTLS()
	t.Cleanup(u.tls.Close)
	u.plain = httptest.NewServer(h)
	t.Cleanup(u.plain.Close)
	u.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(u.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u *holesUpstream) args() []string {
	a := strings.TrimPrefix(u.tls.URL, "https://")
	return []string{"--upstream", "api.github.com:443=" + a, "--upstream", "github.com:443=" + a,
		"--upstream", "ghe.example.test:443=" + a,
		"--upstream", "api.github.com:80=" + strings.TrimPrefix(u.plain.URL, "http://"), "--upstream-ca", u.caFile}
}

func (u *holesUpstream) saw() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Join(u.seen, "\n")
}

func TestRunHolesClosed(t *testing.T) {
	home, policy, work := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(policy, "tameflare.yaml"), []byte(holesPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	up := newHolesUpstream(t)
	// An Enterprise host named in $TF_HOME/config.yaml (item 11).
	if err := os.WriteFile(filepath.Join(home, "config.yaml"), []byte("github:\n  enterprise_hosts: [ghe.example.test]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A ref update whose second "force" lies past the 1 MiB inspected
	// prefix (item 2).
	pad := strings.Repeat("a", 1100<<10)
	if err := os.WriteFile(filepath.Join(work, "force.json"), []byte(`{"sha":"a","force":false,"pad":"`+pad+`","force":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, loopPort, _ := net.SplitHostPort(strings.TrimPrefix(up.plain.URL, "http://"))
	mutation := url.QueryEscape(`mutation{deleteRepository(input:{repositoryId:"R_1"}){clientMutationId}}`)
	steps := []struct{ name, cmd string }{
		{"1 graphql case twin", `curl -sS -w ' %{http_code}' -H 'Content-Type: application/json' --data-binary '{"query":"mutation{deleteRef(input:{refId:\"REF_1\"}){clientMutationId}}","Query":"{viewer{login}}"}' https://api.github.com/graphql`},
		{"2 duplicate past the prefix", `curl -sS -w ' %{http_code}' -X PATCH -H 'Content-Type: application/json' --data-binary @force.json https://api.github.com/repos/acme/app/git/refs/heads/main`},
		{"3 VAULT in upper case", `curl -sS -w ' %{http_code}' https://api.github.com/repos/acme/VAULT`},
		{"3 VAULT.git over git", `git ls-remote https://github.com/ACME/VAULT.git 2>&1; echo " exit=$?"`},
		{"4 credential over plain http", `curl -sS -w ' %{http_code}' http://api.github.com/user`},
		{"5 echoed credential", `curl -sS -D - -w ' %{http_code}' https://api.github.com/echo`},
		{"6 graphql mutation over GET", `curl -sS -w ' %{http_code}' 'https://api.github.com/graphql?query=` + mutation + `'`},
		{"7 websocket upgrade", `curl -sS -w ' %{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: websocket' https://api.github.com/socket`},
		{"10 loopback inside IPv6", `curl -sS -g -w ' %{http_code}' 'http://[::127.0.0.1]:` + loopPort + `/x'`},
		{"9 wrong proxy credentials", `for i in 1 2 3; do curl -sS -o /dev/null -w ' %{http_connect}' --proxy "$(echo "$HTTPS_PROXY" | sed 's/:[^:@/]*@/:guess@/')" https://api.github.com/user 2>/dev/null; done`},
		{"11 Enterprise host", `curl -sS -w ' %{http_code}' https://ghe.example.test/api/v3/repos/acme/VAULT`},
		// tf mcp wrap-config registers HTTP servers in $TF_HOME: the agent
		// running it inside the sandbox must not list a server of its own.
		{"12 register an MCP server", `echo '{"mcpServers":{"evil":{"type":"http","url":"https://evil.example.test/mcp"}}}' >/tmp/m.json; tf mcp wrap-config /tmp/m.json 2>&1; echo " exit=$?"`},
	}
	var script strings.Builder
	for _, s := range steps {
		script.WriteString("echo '=== " + s.name + "'\n" + s.cmd + "\necho\n")
	}
	// The sandbox shows the agent its working files only when named.
	args := append([]string{"run", "--name", "holes", "--policy", policy, "--ro", work}, up.args()...)
	cmd := append(args, "--", "sh", "-c", "cd "+work+" || exit 97\n"+script.String())
	r := runTF(t, home, []string{"TF_SECRET_GH_TOKEN=" + holesSecret, "GIT_TERMINAL_PROMPT=0"}, cmd...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	out := map[string]string{}
	for _, part := range strings.Split(r.stdout, "=== ")[1:] {
		name, body, _ := strings.Cut(part, "\n")
		out[name] = body
	}
	for name, want := range map[string][]string{
		"1 graphql case twin":          {"differ only in case", " 403"},
		"2 duplicate past the prefix":  {"larger than the inspected prefix", " 403"},
		"3 VAULT in upper case":        {"the vault repository is off limits", " 403"},
		"3 VAULT.git over git":         {"no-vault", "exit=128"},
		"4 credential over plain http": {`{"ok":true}`, " 200"},
		"5 echoed credential":          {"X-Echo: Bearer [redacted]", "you sent: Bearer [redacted]", " 200"},
		"6 graphql mutation over GET":  {"deletions are for people", " 403"},
		"7 websocket upgrade":          {"no connector governs that protocol", " 426"},
		"10 loopback inside IPv6":      {"loopback (embedded in IPv6)", " 403"},
		"9 wrong proxy credentials":    {" 407 407 407"},
		"11 Enterprise host":           {"the vault repository is off limits", " 403"},
		"12 register an MCP server":    {"read-only file system", " exit=1"},
	} {
		for _, w := range want {
			if !strings.Contains(out[name], w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, out[name])
			}
		}
	}
	if strings.Contains(r.stdout, holesSecret) || strings.Contains(r.stderr, holesSecret) {
		t.Error("the secret reached the agent's output")
	}
	if cfg, _ := os.ReadFile(filepath.Join(home, "config.yaml")); strings.Contains(string(cfg), "evil") {
		t.Errorf("the agent registered an MCP server:\n%s", cfg)
	}
	saw := up.saw()
	for _, bad := range []string{"/graphql", "/git/refs", "VAULT", "/socket", "/x auth"} {
		if strings.Contains(saw, bad) {
			t.Errorf("a refused request reached the upstream (%s):\n%s", bad, saw)
		}
	}
	if !strings.Contains(saw, "GET api.github.com/user auth=\n") && !strings.HasSuffix(saw, "GET api.github.com/user auth=") {
		t.Errorf("plain HTTP request: want it forwarded without a credential:\n%s", saw)
	}
	if !strings.Contains(saw, "GET api.github.com/echo auth=Bearer "+holesSecret) {
		t.Errorf("the TLS request did not carry the credential:\n%s", saw)
	}
	// Every refusal is on record.
	var types []string
	for _, rec := range decisions(t, home) {
		if rec.Decision.Effect != "allow" {
			types = append(types, rec.Action.Type)
		}
	}
	if len(types) != 7 { // the IPv6 loopback is refused at the dial, after an allow
		t.Errorf("%d refusals recorded: %v", len(types), types)
	}
	var echoes, authFailures int
	if err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindEvent}, func(r *audit.Record) error {
		switch r.Event {
		case "keyring.secret_in_response":
			echoes++
		case "proxy.auth_failed":
			authFailures += int(r.Details["failures"].(float64))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if echoes != 2 {
		t.Errorf("%d secret_in_response events, want 2 (header and body)", echoes)
	}
	// The CONNECT of each guess is refused; all are on record by the time
	// the gateway stops.
	if authFailures < 3 {
		t.Errorf("%d failed proxy authentications recorded, want at least 3", authFailures)
	}
}

// A clone with a credential: the response guard that withholds an echoed
// secret passes git's protocol and a multi-megabyte pack untouched.
func TestRunGitCloneWithCredentialGuarded(t *testing.T) {
	home, root, policy := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(policy, "tameflare.yaml"), []byte("version: 1\ndefault: allow\ncredentials:\n  github: {secret: gh-token}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitc := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+root, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	bare := filepath.Join(root, "acme", "app.git")
	gitc(root, "init", "-q", "--bare", "--initial-branch=main", bare)
	work := filepath.Join(root, "seed")
	gitc(root, "init", "-q", "--initial-branch=main", work)
	big := make([]byte, 3<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644)
	gitc(work, "add", ".")
	gitc(work, "commit", "-q", "-m", "big")
	gitc(work, "push", "-q", bare, "main")

	up := newUpstream(t, root)
	cloneDir := t.TempDir()
	clone := filepath.Join(cloneDir, "clone")
	args := append([]string{"run", "--policy", policy, "--rw", cloneDir}, up.args()...)
	r := runTF(t, home, []string{"TF_SECRET_GH_TOKEN=" + holesSecret, "HOME=" + root, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0"},
		append(args, "--", "git", "clone", "-q", "https://github.com/acme/app.git", clone)...)
	if r.code != 0 {
		t.Fatalf("clone: exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "big.bin")); !bytes.Equal(b, big) {
		t.Fatalf("cloned big.bin differs (%d bytes)", len(b))
	}
	if got, _ := up.authFor("github.com /acme/app.git/git-upload-pack"); !strings.HasPrefix(got, "Basic ") {
		t.Errorf("upload-pack carried %q, want the injected git credential", got)
	}
}
