package main

import (
	"strings"
	"testing"

	"github.com/tameflare/tf/agent"
)

// tf run passes the child's exit code through, and --print-env shows what
// it sets, in shell syntax, without any secret.
func TestRunExitCodeAndPrintEnv(t *testing.T) {
	home := t.TempDir()
	r := runTF(t, home, nil, "run", "--policy", examplePolicy, "--", "sh", "-c", "exit 7")
	if r.code != 7 {
		t.Errorf("exit %d, want the child's 7\n%s", r.code, r.stderr)
	}

	r = runTF(t, home, []string{"GITHUB_TOKEN=ghp_printenvsecret", "NO_PROXY=localhost"},
		"run", "--policy", examplePolicy, "--print-env", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"export HTTPS_PROXY='http://tf:", "export https_proxy='http://tf:", "export ALL_PROXY='http://tf:",
		"export NODE_USE_ENV_PROXY='1'", "export SSL_CERT_FILE='" + agent.BundlePath + "'", // the sandbox binds the bundle in on its own
		"export GIT_CONFIG_VALUE_", "git@github.com:", "export GH_TOKEN='tf-managed'",
		"unset GITHUB_TOKEN", "unset NO_PROXY",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("--print-env lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr+r.stdout, "ghp_printenvsecret") {
		t.Error("--print-env shows the secret")
	}
}
