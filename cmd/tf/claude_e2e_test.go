//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// claudeBin is the real Claude Code, pinned in testdata/claude-code and
// installed there by .ci/run (npm ci).
func claudeBin(t *testing.T) string {
	t.Helper()
	bin := absPath(t, filepath.Join("testdata", "claude-code", "node_modules", ".bin", "claude"))
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Claude Code is not installed; run: cd cmd/tf/testdata/claude-code && npm ci")
	}
	return bin
}

// messagesStandIn answers the Messages API as Anthropic's does (a
// streamed reply of one text block) and every other endpoint with {}; it
// records what it was asked.
type messagesStandIn struct {
	mu    sync.Mutex
	paths []string
	keys  []string // the x-api-key of each model call
}

func (m *messagesStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.paths = append(m.paths, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/v1/messages" {
		m.keys = append(m.keys, r.Header.Get("X-Api-Key"))
	}
	m.mu.Unlock()
	if r.URL.Path != "/v1/messages" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	json.Unmarshal(body, &req)
	const text = "hello from the stand-in"
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":%q}],"stop_reason":"end_turn","usage":{"input_tokens":10,"output_tokens":5}}`, req.Model, text)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range [][2]string{
		{"message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}`, req.Model)},
		{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{"content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, text)},
		{"content_block_stop", `{"type":"content_block_stop","index":0}`},
		{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}`},
		{"message_stop", `{"type":"message_stop"}`},
	} {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev[0], ev[1])
		w.(http.Flusher).Flush()
	}
}

// The real Claude Code runs inside tf run's sandbox with the built-in
// policy (no --policy) and with the starter policy of tf init: it finds the proxy and the CA through its
// environment, its model calls go through tf as anthropic.messages.create
// and are allowed, its telemetry is refused without a word from it, it
// writes its state under HOME, and nothing of $TF_HOME is visible to it.
func TestClaudeCodeInSandbox(t *testing.T) {
	requireSandbox(t)
	claude := claudeBin(t)
	t.Run("built-in policy", func(t *testing.T) { claudeSession(t, claude, "built-in") })
	t.Run("tf init starter", func(t *testing.T) { claudeSession(t, claude, "init") })
	t.Run("key injected", func(t *testing.T) { claudeSession(t, claude, "key") })
}

// claudeKey is the real API key of the "key injected" session: tf holds
// it, the agent has a placeholder.
const claudeKey = "sk-ant-api03-real-key-the-agent-never-sees"

func claudeSession(t *testing.T, claude string, policy string) {
	initPolicy := policy == "init"
	standIn := &messagesStandIn{}
	hosts := []string{"api.anthropic.com", "platform.claude.com", "claude.ai"}
	addr, caFile := startFakeTLS(t, standIn, hosts...)
	home := t.TempDir()
	env := append(clientEnv(t), "ANTHROPIC_API_KEY=sk-ant-test-not-a-key")
	if initPolicy {
		if r := runTFIn(t, t.TempDir(), home, env, "init", filepath.Join(t.TempDir(), "policy")); r.code != 0 {
			t.Fatalf("tf init: exit %d\n%s", r.code, r.stderr)
		}
	}
	// Claude Code is installed in the checkout, which may lie under /tmp.
	args := append([]string{"run", "--name", "claude", "--ro", absPath(t, filepath.Join("testdata", "claude-code"))}, upstreamArgs(addr, caFile, hosts...)...)
	if policy == "key" {
		// The built-in agents' rules, and the key injected as x-api-key.
		rules, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", "policies", "agents.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "tameflare.yaml"), append(rules, []byte(`default: deny
credentials:
  connectors:
    anthropic: {secret: anthropic-key, header: x-api-key, format: "{}"}
`)...), 0o644)
		args = append(args, "--policy", dir)
		env = append(env, "TF_SECRET_ANTHROPIC_KEY="+claudeKey)
	}
	r := runTFIn(t, t.TempDir(), home, env, append(args, "--", claude, "-p", "say hi")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "hello from the stand-in" {
		t.Fatalf("claude -p: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if builtin := strings.Contains(r.stderr, "built-in example policy"); builtin != (policy == "built-in") {
		t.Fatalf("governed by the wrong policy (tf init: %v):\n%s", initPolicy, r.stderr)
	}
	standIn.mu.Lock()
	paths := strings.Join(standIn.paths, "\n")
	standIn.mu.Unlock()
	t.Logf("Claude Code asked the stand-in:\n%s", paths)
	if !strings.Contains(paths, "POST /v1/messages") {
		t.Errorf("the stand-in saw no model call:\n%s", paths)
	}
	if policy == "key" {
		standIn.mu.Lock()
		keys := standIn.keys
		standIn.mu.Unlock()
		if len(keys) == 0 {
			t.Error("no model call reached the stand-in")
		}
		for _, k := range keys {
			if k != claudeKey {
				t.Errorf("the model call carried x-api-key %q, want the key tf holds", k)
			}
		}
		if strings.Contains(r.stdout+r.stderr, claudeKey) {
			t.Error("the key appears in tf run's output")
		}
		if out := runTFIn(t, t.TempDir(), home, env, "logs", "--json"); strings.Contains(out.stdout, claudeKey) {
			t.Error("the key appears in the audit log")
		}
	}
	// Every request Claude Code made was classified by the anthropic
	// connector (none fell to http.*), and the built-in policy decided
	// each by name.
	modelCall := false
	for _, rec := range decisions(t, home) {
		a, d := rec.Action, rec.Decision
		t.Logf("%s %s %s%s -> %s (%s)", rec.Gateway, a.Type, a.Request.Host, a.Request.Path, d.Effect, d.Rule)
		if a.Connector != "anthropic" {
			t.Errorf("%s %s%s was classified by %q, want anthropic", a.Type, a.Request.Host, a.Request.Path, a.Connector)
		}
		switch a.Type {
		case "anthropic.messages.create":
			modelCall = true
			if d.Effect != rules.Allow || a.Params["model"] == nil || a.Params["stream"] != true {
				t.Errorf("model call: decision %s, params %v", d.Effect, a.Params)
			}
		case "anthropic.telemetry.send", "anthropic.claude_code.post":
			if d.Effect != rules.Deny {
				t.Errorf("telemetry %s: decision %s, want deny", a.Request.Path, d.Effect)
			}
			if strings.Contains(paths, "POST "+a.Request.Path) {
				t.Errorf("refused telemetry %s reached the upstream", a.Request.Path)
			}
		default:
			if d.Effect != rules.Allow {
				t.Errorf("%s %s: decision %s (%s)", a.Type, a.Request.Path, d.Effect, d.Reason)
			}
		}
	}
	if !modelCall {
		t.Error("no decision record of the model call")
	}
	// The model call's outcome carries the usage the stand-in's stream
	// reported (message_start: 10 in; message_delta: 5 out), and tf logs
	// shows it.
	var usages []audit.Usage
	err := audit.Scan(filepath.Join(home, "audit"), audit.Filter{Kind: audit.KindOutcome}, func(rec *audit.Record) error {
		if rec.Usage != nil {
			usages = append(usages, *rec.Usage)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(usages) == 0 || usages[0].Input != 10 || usages[0].Output != 5 || usages[0].Model == "" || usages[0].Unknown != "" {
		t.Errorf("usage of the model call = %+v, want 10 in, 5 out and the model", usages)
	}
	logs := runTFIn(t, t.TempDir(), home, env, "logs", "--gateway", "claude")
	if !strings.Contains(logs.stdout, "TOKENS") || !regexp.MustCompile(`anthropic\.messages\.create .*in 10 out 5`).MatchString(logs.stdout) {
		t.Errorf("tf logs does not show the model call's tokens:\n%s%s", logs.stdout, logs.stderr)
	}
	// Refused telemetry leaves Claude Code quiet: nothing on stderr but
	// tf's own lines.
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if line != "" && !strings.HasPrefix(line, "tf: ") {
			t.Errorf("Claude Code wrote to stderr: %s", line)
		}
	}
}
