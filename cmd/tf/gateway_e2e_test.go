package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A shell wired by hand: tf gateway start returns once the gateway serves,
// `eval "$(tf env NAME)"` in bash -c routes curl through it (a read
// forwarded, a delete refused, no token in the shell), and tf gateway stop
// ends it.
func TestGatewayStartEnvStop(t *testing.T) {
	requireTool(t, "curl", "curl")
	home := t.TempDir()
	up := newUpstream(t, t.TempDir())
	start := append([]string{"gateway", "start", "wired", "--policy", examplePolicy}, up.args()...)
	r := runTF(t, home, []string{"GITHUB_TOKEN=ghp_wiredshellsecret"}, start...)
	if r.code != 0 || !strings.Contains(r.stderr, `eval "$(tf env wired)"`) {
		t.Fatalf("gateway start: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Cleanup(func() { runTF(t, home, nil, "gateway", "stop", "wired") })

	// A second start of the same name is refused while the first serves.
	if r := runTF(t, home, nil, start...); r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second start: exit %d\n%s", r.code, r.stderr)
	}

	script := `set -e
eval "$("$TF" env wired)"
echo "gh=[$GH_TOKEN] github=[$GITHUB_TOKEN]"
curl -sS --fail https://api.github.com/repos/acme/app
curl -sS -o /dev/null -w 'delete=%{http_code}\n' -X DELETE https://api.github.com/repos/acme/app
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Env = append(os.Environ(), "TF_HOME="+home, "TF="+tfBin, "GITHUB_TOKEN=ghp_wiredshellsecret")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash -c: %v\n%s", err, out)
	}
	for _, want := range []string{"gh=[tf-managed] github=[]", `"served_by":"fake-github"`, "delete=403"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the wired shell's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "ghp_wiredshellsecret") {
		t.Error("the wired shell still holds the token")
	}
	up.mu.Lock()
	paths := strings.Join(up.paths, "\n")
	up.mu.Unlock()
	if strings.Contains(paths, "DELETE") || !strings.Contains(paths, "GET api.github.com/repos/acme/app") {
		t.Errorf("upstream saw:\n%s", paths)
	}
	recs := decisions(t, home)
	var denied bool
	for _, rec := range recs {
		if rec.Gateway == "wired" && rec.Action.Type == "github.repo.delete" && rec.Decision.Effect == "deny" {
			denied = true
		}
	}
	if !denied {
		t.Errorf("no audit record of the refused delete through gateway wired")
	}

	r = runTF(t, home, nil, "gateway", "stop", "wired")
	if r.code != 0 || !strings.Contains(r.stderr, "gateway wired stopped") {
		t.Fatalf("gateway stop: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(home, "gateways", "wired.env")); !os.IsNotExist(err) {
		t.Errorf("the environment file outlives the gateway: %v", err)
	}
	if r := runTF(t, home, nil, "env", "wired"); r.code != 1 || !strings.Contains(r.stderr, "no gateway wired is running") {
		t.Errorf("env after stop: exit %d\n%s", r.code, r.stderr)
	}
	if r := runTF(t, home, nil, "gateway", "stop", "wired"); r.code != 1 {
		t.Errorf("second stop: exit %d\n%s", r.code, r.stderr)
	}
}
