package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/keyring"
)

// Tests of issue 16's holes through a running gateway and the real curl.

const echoSecret = "ghp_NeverShowThisToTheAgent0123456789"

// curl runs the real curl through the gateway's proxy, trusting only its CA.
func (f *fixture) curl(t *testing.T, proxyURL string, args ...string) (string, error) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, f.g.CA().CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := []string{"-q", "-sS", "--max-time", "15", "-D", "-", "-w", "\n%{http_code}", "--proxy", proxyURL, "--cacert", ca}
	cmd := exec.CommandContext(ctx, "curl", append(base, args...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func secretResolver(value string) *keyring.Resolver {
	return keyring.NewResolver(nil, keyring.ResolverOptions{LookupEnv: func(name string) (string, bool) {
		if name == keyring.EnvName("gh-token") {
			return value, true
		}
		return "", false
	}})
}

func (f *fixture) events(t *testing.T, name string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	for _, r := range f.waitRecords(t, audit.KindEvent, 0) {
		if r.Event == name {
			out = append(out, r)
		}
	}
	return out
}

// Item 4: credentials are injected over TLS only. curl to
// http://api.github.com/user reaches the upstream without the secret.
func TestCredentialsOnlyOverTLS(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			auth = "-"
		}
		io.WriteString(w, "plain saw: "+auth)
	}))
	t.Cleanup(plain.Close)
	f := start(t, policy(t, credPolicy), func(c *Config) {
		c.Secrets = secretResolver(echoSecret)
		c.Upstreams["api.github.com:80"] = strings.TrimPrefix(plain.URL, "http://")
		c.Policy.PrivateHosts = []string{"api.github.com"}
	})
	out, err := f.curl(t, f.g.ProxyURL(), "-H", "Authorization: Bearer tf-managed", "http://api.github.com/user")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if strings.Contains(out, echoSecret) || !strings.Contains(out, "plain saw: -") || !strings.HasSuffix(strings.TrimSpace(out), "200") {
		t.Errorf("plain HTTP carried a credential or failed: %s", out)
	}
	out, err = f.curl(t, f.g.ProxyURL(), "https://api.github.com/echo/body")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	f.mu.Lock()
	got := strings.Join(f.auth, "|")
	f.mu.Unlock()
	if got != "Bearer "+echoSecret {
		t.Errorf("the TLS upstream saw %q, want the injected bearer token", got)
	}
}

// Item 5: a secret the upstream echoes back never reaches the agent:
// redacted in headers and in a body read whole, the stream cut otherwise;
// each is recorded.
func TestEchoedSecretRedacted(t *testing.T) {
	f := start(t, policy(t, credPolicy), func(c *Config) { c.Secrets = secretResolver(echoSecret) })
	for _, c := range []struct{ path, want, where string }{
		{"/echo/body", "you sent Bearer [redacted]", "body"},
		{"/echo/header", "X-Debug-Auth: Bearer [redacted]", "header"},
		{"/echo/stream", "data: first", "stream"},
	} {
		out, _ := f.curl(t, f.g.ProxyURL(), "https://api.github.com"+c.path)
		if strings.Contains(out, echoSecret) {
			t.Errorf("%s: the secret reached curl: %s", c.path, out)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("%s: %s, want %q", c.path, out, c.want)
		}
	}
	var where []string
	deadline := time.Now().Add(5 * time.Second)
	for len(where) < 3 && time.Now().Before(deadline) {
		where = where[:0]
		for _, r := range f.events(t, EventSecretInResponse) {
			where = append(where, r.Details["where"].(string))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Join(where, " ") != "body header stream" {
		t.Errorf("recorded %v, want body, header and stream", where)
	}
}

// Item 9: failed proxy authentication is recorded, rate-limited.
func TestProxyAuthFailuresRecorded(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: allow\n"), nil)
	wrong := strings.Replace(f.g.ProxyURL(), f.g.token, "guess", 1)
	for range 5 {
		out, _ := f.curl(t, wrong, "http://example.test/")
		if !strings.HasSuffix(strings.TrimSpace(out), "407") {
			t.Fatalf("wrong token: %s", out)
		}
	}
	f.g.Close()
	total := 0
	recs := f.events(t, EventAuthFailed)
	for _, r := range recs {
		total += int(r.Details["failures"].(float64))
		if c, _ := r.Details["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
			t.Errorf("client %q", c)
		}
	}
	if total != 5 || len(recs) > 2 {
		t.Errorf("%d records of %d failures, want 5 failures in at most 2 records", len(recs), total)
	}
}

// Item 7: an Upgrade no connector governs is refused, and the refusal is
// recorded. A WebSocket handshake is refused with 426, on which clients
// fall back to plain HTTPS at once; other upgrades with 403.
func TestUpgradeRefused(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: allow\n"), nil)
	for _, c := range []struct{ proto, status string }{{"websocket", "426"}, {"WebSocket", "426"}, {"h2c", "403"}} {
		out, _ := f.curl(t, f.g.ProxyURL(), "-H", "Connection: Upgrade", "-H", "Upgrade: "+c.proto, "https://example.test/socket")
		if !strings.HasSuffix(strings.TrimSpace(out), c.status) || !strings.Contains(out, "no connector governs that protocol") {
			t.Errorf("upgrade to %s: %s, want %s", c.proto, out, c.status)
		}
	}
	if f.hits.Load() != 0 {
		t.Error("the upstream saw the upgrade")
	}
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 3 || recs[0].Action.Type != "tf.unclassified" {
		t.Errorf("records %+v", recs)
	}
}

// Item 11: an Enterprise host named in $TF_HOME/config.yaml is the github
// connector's, /api/v3 its REST API.
func TestEnterpriseHostFromConfig(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: allow\nrules:\n  - {name: no-vault, actions: [github.*], when: 'resource.repo == \"vault\"', decision: deny}\n  - {name: main-merges, actions: [github.pr.merge], when: 'params.base == \"main\"', decision: deny, reason: merges into main need a person}\n"), func(c *Config) {
		if err := os.WriteFile(ConfigPath(c.Home), []byte("github:\n  enterprise_hosts: [ghe.example.test]\nlimits:\n  body_read_timeout: 5s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Upstreams["ghe.example.test"] = c.Upstreams["api.github.com"]
	})
	out, _ := f.curl(t, f.g.ProxyURL(), "https://ghe.example.test/api/v3/repos/acme/VAULT")
	if !strings.HasSuffix(strings.TrimSpace(out), "403") {
		t.Errorf("GHE request to acme/VAULT: %s", out)
	}
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 1 || recs[0].Action.Connector != "github" || recs[0].Action.Type != "github.repo.get" || recs[0].Action.Request.Path != "/api/v3/repos/acme/VAULT" {
		t.Fatalf("records %+v", recs)
	}
	// The base of a merge is looked up on the Enterprise host's own API.
	out, _ = f.curl(t, f.g.ProxyURL(), "-X", "PUT", "--data-binary", "{}", "https://ghe.example.test/api/v3/repos/acme/app/pulls/7/merge")
	if !strings.HasSuffix(strings.TrimSpace(out), "403") || !strings.Contains(out, "merges into main need a person") {
		t.Errorf("GHE merge into main: %s", out)
	}
	f.mu.Lock()
	paths := strings.Join(f.paths, ", ")
	f.mu.Unlock()
	if paths != "GET /api/v3/repos/acme/app/pulls/7" {
		t.Errorf("upstream saw %s, want only the base lookup on /api/v3", paths)
	}
}

// Item 14: a commit that names main by node id is resolved through the
// gateway's own lookup and refused by the rule for main, not allowed by
// the rule for other branches; an id that cannot be resolved is refused.
func TestCommitByNodeIDResolved(t *testing.T) {
	f := start(t, policy(t, `version: 1
default: deny
rules:
  - name: protect-main
    actions: [github.repo.push]
    when: params.branch == "main"
    decision: deny
  - name: push-other-branches
    actions: [github.repo.push]
    decision: allow
`), nil)
	for _, c := range [][2]string{{"REF_main", "protect-main"}, {"REF_gone", "could not resolve"}} {
		id, want := c[0], c[1]
		body := `{"query":"mutation($input:CreateCommitOnBranchInput!){createCommitOnBranch(input:$input){commit{oid}}}","variables":{"input":{"branch":{"id":"` + id + `"},"expectedHeadOid":"cc","message":{"headline":"x"}}}}`
		out, _ := f.curl(t, f.g.ProxyURL(), "-H", "Content-Type: application/json", "--data-binary", body, "https://api.github.com/graphql")
		if !strings.HasSuffix(strings.TrimSpace(out), "403") || !strings.Contains(out, want) {
			t.Errorf("%s: %s, want a refusal naming %q", id, out, want)
		}
	}
	lookups := f.events(t, "github.ref_lookup")
	if len(lookups) != 2 || lookups[0].Details["ref"] != "refs/heads/main" {
		t.Errorf("lookups %+v", lookups)
	}
}

// A body past the inspected limit that a rule reads is refused; the limit
// is raised in $TF_HOME/config.yaml.
func TestInspectedBodyLimitFromConfig(t *testing.T) {
	body := `{"title":"x","pad":"` + strings.Repeat("a", 1100<<10) + `"}`
	for _, c := range []struct {
		config string
		status int
	}{
		{"", 403},
		{"limits:\n  max_inspected_body: 4194304\n", 200},
	} {
		f := start(t, policy(t, "version: 1\ndefault: allow\n"), func(cfg *Config) {
			if c.config != "" {
				if err := os.WriteFile(ConfigPath(cfg.Home), []byte(c.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		})
		res, out := f.do(t, "POST", "https://api.github.com/repos/acme/app/issues", body)
		if res.StatusCode != c.status {
			t.Errorf("config %q: %d %.300s, want %d", c.config, res.StatusCode, out, c.status)
		}
	}
}

// Item 13: a refusal whose record would exceed the record limit is
// answered as refused (not 503) and recorded truncated with a marker.
func TestOversizedRefusalRecorded(t *testing.T) {
	f := start(t, policy(t, "version: 1\ndefault: allow\nrules:\n  - {name: no-issues, actions: [github.issue.create], decision: deny, reason: no issues}\n"), nil)
	body := `{"title":"` + strings.Repeat("<", 200<<10) + `"}`
	res, out := f.do(t, "POST", "https://api.github.com/repos/acme/app/issues", body)
	if res.StatusCode != 403 || !strings.Contains(out, "no issues") {
		t.Fatalf("%d %.200s", res.StatusCode, out)
	}
	recs := f.records(t, audit.KindDecision)
	if len(recs) != 1 || recs[0].Action.Params[audit.TruncatedKey] == nil || recs[0].Decision.Rule != "no-issues" {
		t.Fatalf("records %+v", recs)
	}
}
