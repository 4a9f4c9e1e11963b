package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const knownSecret = "ghs_tfLeakTest0123456789abcdefXYZ"

const credsPolicy = `version: 1
default: deny
credentials:
  github: {secret: gh-token}
rules:
  - name: reads
    actions: [github.*.get, github.api.get, http.get]
    decision: allow
`

// The proxy injects the credential the policy names, only for the
// connector's hosts; the agent's environment and every byte tf writes stay
// free of it.
func TestRunInjectsCredentialsAndLeaksNothing(t *testing.T) {
	home := t.TempDir()
	policy := t.TempDir()
	if err := os.WriteFile(filepath.Join(policy, "tameflare.yaml"), []byte(credsPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t, t.TempDir())
	work := t.TempDir()
	dump := filepath.Join(work, "env.txt")
	script := `env > ` + dump + `
curl -sS -H "Authorization: token agent-sent" https://api.github.com/repos/acme/app
curl -sS https://other.example.test/elsewhere
curl -sS -L https://api.github.com/redirect-me
echo "GH_TOKEN=$GH_TOKEN"`
	// The agent writes its environment where the test can read it.
	args := append([]string{"run", "--policy", policy, "--rw", work}, up.args()...)
	r := runTF(t, home, []string{"TF_SECRET_GH_TOKEN=" + knownSecret, "GITHUB_TOKEN=" + knownSecret},
		append(args, "--", "sh", "-c", script)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	// The upstream got the real credential, in place of the agent's.
	if got, _ := up.authFor("api.github.com /repos/acme/app"); got != "Bearer "+knownSecret {
		t.Errorf("api.github.com received Authorization %q", got)
	}
	if got, _ := up.authFor("api.github.com /redirect-me"); got != "Bearer "+knownSecret {
		t.Errorf("api.github.com (before the redirect) received Authorization %q", got)
	}
	// Another host, directly or after a cross-host redirect, never does.
	for _, hp := range []string{"other.example.test /elsewhere", "other.example.test /landing"} {
		got, ok := up.authFor(hp)
		if !ok {
			t.Errorf("%s was not requested", hp)
		} else if got != "" {
			t.Errorf("%s received Authorization %q", hp, got)
		}
	}
	if !strings.Contains(r.stdout, "GH_TOKEN=tf-managed") {
		t.Errorf("the agent's GH_TOKEN placeholder is missing:\n%s", r.stdout)
	}

	// Search every byte tf wrote, and what the agent could see.
	hits := 0
	check := func(what string, b []byte) {
		if bytes.Contains(b, []byte(knownSecret)) {
			t.Errorf("the secret appears in %s", what)
			hits++
		}
	}
	check("stdout", []byte(r.stdout))
	check("stderr", []byte(r.stderr))
	env, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	check("the agent's environment", env)
	n := 0
	err = filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		check(p, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("searched only %d files in TF_HOME", n)
	}
	t.Logf("searched stdout, stderr, the agent's environment and %d files of TF_HOME: %d hits", n, hits)
}
