package main

import (
	"os"
	"strconv"
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

// A model API key in tf's environment stays with tf: the agent holds the
// placeholder, and tf says so without the value; --keep-env gives the
// agent the real key on purpose.
func TestRunKeepsModelKeys(t *testing.T) {
	const key = "sk-ant-api03-printenv-key-stays-with-tf"
	home := t.TempDir()
	env := []string{"ANTHROPIC_API_KEY=" + key, "GEMINI_API_KEY=" + key + "-g"}
	r := runTF(t, home, env, "run", "--policy", examplePolicy, "--", "env")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, key) {
		t.Errorf("a model key reached the agent or tf's output:\n%s\n%s", r.stdout, r.stderr)
	}
	for _, want := range []string{"ANTHROPIC_API_KEY=tf-managed", "GEMINI_API_KEY=tf-managed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the agent's environment lacks %s", want)
		}
	}
	if !strings.Contains(r.stderr, "tf: ANTHROPIC_API_KEY is held by tf and sent only to the anthropic API") {
		t.Errorf("tf does not say it holds the key:\n%s", r.stderr)
	}
	r = runTF(t, home, env, "run", "--policy", examplePolicy, "--keep-env", "ANTHROPIC_API_KEY", "--", "env")
	if r.code != 0 || !strings.Contains(r.stdout, "ANTHROPIC_API_KEY="+key+"\n") || !strings.Contains(r.stdout, "GEMINI_API_KEY=tf-managed") {
		t.Errorf("--keep-env ANTHROPIC_API_KEY: exit %d\n%s", r.code, r.stdout)
	}
}

// tf run starts itself anew with the runtime's monitor kept awake (package
// sched); the agent sees the user's GODEBUG, never tf's setting or marker.
func TestRunAgentKeepsUsersGODEBUG(t *testing.T) {
	home := t.TempDir()
	script := `printf '[%s][%s]' "${GODEBUG-unset}" "${TF_SCHED_REEXEC-unset}"; tr '\0' '\n' </proc/$PPID/environ | grep '^GODEBUG=' || true`
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "[unset][unset]"},
		{[]string{"GODEBUG=http2client=0"}, "[http2client=0][unset]"},
	} {
		r := runTF(t, home, tc.env, "run", "--isolate=off", "--policy", examplePolicy, "--", "sh", "-c", script)
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, tc.want) {
			t.Errorf("env %v: the agent sees %q, want %q first", tc.env, r.stdout, tc.want)
		}
		// tf itself (the agent's parent here) runs with the setting,
		// unless the machine has been up too long for it.
		if !strings.Contains(r.stdout, "schedtrace=2147483647") && !upLong(t) {
			t.Errorf("env %v: tf runs without sysmon kept awake: %q", tc.env, r.stdout)
		}
		if strings.Contains(r.stderr, "SCHED") {
			t.Errorf("tf printed a scheduler trace:\n%s", r.stderr)
		}
	}
}

// upLong reports whether the machine has been up for over 21 days, when
// package sched rightly leaves the runtime alone.
func upLong(t *testing.T) bool {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	f, _, _ := strings.Cut(string(b), " ")
	s, err := strconv.ParseFloat(f, 64)
	if err != nil {
		t.Fatal(err)
	}
	return s > 21*24*3600
}
