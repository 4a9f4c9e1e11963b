package mcp_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

const samplingPolicy = `version: 1
default: deny
mcp_servers:
  - {name: everything, url: "http://everything.test/mcp"}
rules:
  - {name: trigger, actions: [mcp.everything.trigger-sampling-request], decision: allow}
`

type samplingReport struct {
	Sampled bool   `json:"sampled"`
	Text    string `json:"text"`
	IsError bool   `json:"isError"`
	Error   string `json:"error"`
}

func runSampling(t *testing.T, ctx context.Context, env []string, args ...string) samplingReport {
	t.Helper()
	out := runClientRaw(t, ctx, env, append([]string{"sampling"}, args...)...)
	var r samplingReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	return r
}

// checkSampling checks what the client saw of a sampling request the
// policy refused (allowed false) or allowed, and the server request's
// record in the log at home.
func checkSampling(t *testing.T, home string, r samplingReport, allowed bool) {
	t.Helper()
	if allowed {
		if !r.Sampled || !strings.Contains(r.Text, "sampled!") {
			t.Fatalf("allowed sampling: %+v", r)
		}
	} else {
		// The client never sees the request; the server hears the refusal
		// and fails the tool, which the client sees at once.
		if r.Sampled || !strings.Contains(r.Text+r.Error, "tf refused mcp.everything.@sampling/createMessage") {
			t.Fatalf("refused sampling: %+v", r)
		}
	}
	found := false
	if err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindDecision}, func(rec *audit.Record) error {
		if rec.Action.Type == "mcp.everything.@sampling/createMessage" && rec.Action.Resource["from"] == "server" &&
			(rec.Decision.Effect == rules.Allow) == allowed && rec.Action.Params["maxTokens"] == 100.0 {
			found = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Error("no record of the server's sampling request")
	}
}

// Issue 17, item 8: requests the server sends the client are decided as
// mcp.<server>.@<method>; a refusal is answered to the server, and the
// client never sees the request. Under tf mcp wrap.
func TestServerRequestsOverStdioWrap(t *testing.T) {
	node, dir := nodeDir(t)
	tmp := t.TempDir()
	tf := filepath.Join(tmp, "tf")
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", tf, "github.com/tameflare/tf/cmd/tf")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building tf: %v\n%s", err, out)
	}
	server := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	for _, allowed := range []bool{false, true} {
		policy := samplingPolicy
		if allowed {
			policy += "  - {name: sampling, actions: [mcp.everything.@sampling/createMessage], decision: allow}\n"
		}
		policyDir := filepath.Join(tmp, "policy-"+strconv.FormatBool(allowed))
		if err := os.MkdirAll(policyDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, "tameflare.yaml"), []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		home := t.TempDir()
		env := append(os.Environ(), "TF_HOME="+home)
		r := runSampling(t, ctx, env, "stdio", tf, "mcp", "wrap", "--server", "everything", "--policy", policyDir, "--", node, server, "stdio")
		checkSampling(t, home, r, allowed)
	}
}

// Issue 17, item 8, over Streamable HTTP: the sampling request travels in
// the tool call's event stream; refused, tf answers the server with a POST
// of its own and drops the event.
func TestServerRequestsOverHTTP(t *testing.T) {
	for _, allowed := range []bool{false, true} {
		policy := samplingPolicy
		if allowed {
			policy += "  - {name: sampling, actions: [mcp.everything.@sampling/createMessage], decision: allow}\n"
		}
		g := startEverythingGateway(t, policy)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r := runSampling(t, ctx, os.Environ(), "http", "http://everything.test/mcp", g.ProxyURL())
		cancel()
		home := os.Getenv("TF_HOME")
		g.Close()
		checkSampling(t, home, r, allowed)
	}
}
