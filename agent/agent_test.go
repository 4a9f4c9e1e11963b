package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; dup {
			m[k] = "DUPLICATE"
			continue
		}
		m[k] = v
	}
	return m
}

func TestEnv(t *testing.T) {
	base := []string{
		"PATH=/usr/bin", "HOME=/home/a", "NO_PROXY=localhost", "no_proxy=*",
		"HTTP_PROXY=http://corp:3128", "GITHUB_TOKEN=ghp_real", "TF_SECRET_GH=x", "TF_SECRET_NPM=y",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=user.name", "GIT_CONFIG_VALUE_0=A", "SSL_CERT_FILE=/old",
	}
	env := Env(base, EnvSpec{
		ProxyURL: "http://tf:tok@127.0.0.1:9", CABundle: "/b.pem",
		Remove: []string{"GITHUB_TOKEN", "TF_SECRET_*"},
		Set:    map[string]string{"GH_TOKEN": "tf-managed"},
	})
	m := envMap(env)
	for k, v := range map[string]string{
		"PATH": "/usr/bin", "HOME": "/home/a",
		"HTTP_PROXY": "http://tf:tok@127.0.0.1:9", "http_proxy": "http://tf:tok@127.0.0.1:9",
		"HTTPS_PROXY": "http://tf:tok@127.0.0.1:9", "https_proxy": "http://tf:tok@127.0.0.1:9",
		"ALL_PROXY": "http://tf:tok@127.0.0.1:9", "all_proxy": "http://tf:tok@127.0.0.1:9",
		"NODE_USE_ENV_PROXY": "1", "NODE_EXTRA_CA_CERTS": "/b.pem", "SSL_CERT_FILE": "/b.pem",
		"REQUESTS_CA_BUNDLE": "/b.pem", "CURL_CA_BUNDLE": "/b.pem", "GIT_SSL_CAINFO": "/b.pem",
		"npm_config_cafile": "/b.pem", "DENO_CERT": "/b.pem", "GH_TOKEN": "tf-managed",
		"GIT_CONFIG_COUNT": "3", "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "A",
		"GIT_CONFIG_KEY_1": "url.https://github.com/.insteadOf", "GIT_CONFIG_VALUE_1": "git@github.com:",
		"GIT_CONFIG_KEY_2": "url.https://github.com/.insteadOf", "GIT_CONFIG_VALUE_2": "ssh://git@github.com/",
	} {
		if m[k] != v {
			t.Errorf("%s=%q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"NO_PROXY", "no_proxy", "GITHUB_TOKEN", "TF_SECRET_GH", "TF_SECRET_NPM"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s kept", k)
		}
	}
}

// git itself must read the rewrite: an SSH remote becomes HTTPS.
func TestEnvRewritesGitRemotes(t *testing.T) {
	env := Env(os.Environ(), EnvSpec{ProxyURL: "http://tf:x@127.0.0.1:9", CABundle: "/b.pem"})
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, err := commandOutput(t, dir, env, "git", args...)
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	run("init", "-q")
	run("remote", "add", "a", "git@github.com:acme/app.git")
	run("remote", "add", "b", "ssh://git@github.com/acme/app.git")
	for _, r := range []string{"a", "b"} {
		if got := run("remote", "get-url", r); got != "https://github.com/acme/app.git" {
			t.Errorf("remote %s resolves to %s", r, got)
		}
		if got := run("remote", "get-url", "--push", r); got != "https://github.com/acme/app.git" {
			t.Errorf("push url of %s resolves to %s", r, got)
		}
	}
}

func TestWriteBundle(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nTFCA\n-----END CERTIFICATE-----\n")
	path := filepath.Join(t.TempDir(), "ca", "bundle.pem")
	if err := WriteBundle(path, ca); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := SystemRoots()
	if !strings.HasPrefix(string(b), string(roots)) || !strings.HasSuffix(string(b), string(ca)) {
		t.Error("bundle is not the system roots followed by the local CA")
	}
	if n := strings.Count(string(b), "BEGIN CERTIFICATE"); n < 10 {
		t.Errorf("bundle holds %d certificates; the system roots are missing", n)
	}
}

func TestRunExitCodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		argv []string
		want int
	}{
		{[]string{"sh", "-c", "exit 0"}, 0},
		{[]string{"sh", "-c", "exit 3"}, 3},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"no-such-command-tf-test"}, 127},
	} {
		got, _ := Run(ctx, c.argv, os.Environ())
		if got != c.want {
			t.Errorf("%v: exit %d, want %d", c.argv, got, c.want)
		}
	}
}

func TestRunPassesEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "env")
	env := []string{"PATH=" + os.Getenv("PATH"), "MARK=seen"}
	code, err := Run(ctx, []string{"sh", "-c", `printf '%s' "$MARK" > ` + out}, env)
	if err != nil || code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	if b, _ := os.ReadFile(out); string(b) != "seen" {
		t.Errorf("child saw MARK=%q", b)
	}
}

func TestRunStopsChildWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	code, _ := Run(ctx, []string{"sleep", "30"}, os.Environ())
	if code != 128+15 || time.Since(start) > 10*time.Second {
		t.Errorf("exit %d after %v", code, time.Since(start))
	}
}
