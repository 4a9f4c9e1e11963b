//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
}

func (m *messagesStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.paths = append(m.paths, r.Method+" "+r.URL.Path)
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

// The real Claude Code runs inside tf run's sandbox: it finds the proxy
// and the CA through its environment, its model calls go through tf (and
// are recorded), it writes its state under HOME, and nothing of $TF_HOME
// is visible to it.
func TestClaudeCodeInSandbox(t *testing.T) {
	requireSandbox(t)
	claude := claudeBin(t)
	standIn := &messagesStandIn{}
	hosts := []string{"api.anthropic.com", "platform.claude.com", "claude.ai"}
	addr, caFile := startFakeTLS(t, standIn, hosts...)
	policy := t.TempDir()
	os.WriteFile(filepath.Join(policy, "tameflare.yaml"), []byte(`version: 1
default: deny
rules:
  - name: model-api
    actions: ["http.*"]
    when: request.host in ["api.anthropic.com", "platform.claude.com", "claude.ai"]
    decision: allow
`), 0o644)
	home := t.TempDir()
	env := append(clientEnv(t), "ANTHROPIC_API_KEY=sk-ant-test-not-a-key")
	// Claude Code is installed in the checkout, which may lie under /tmp.
	args := append([]string{"run", "--name", "claude", "--policy", policy, "--ro", absPath(t, filepath.Join("testdata", "claude-code"))}, upstreamArgs(addr, caFile, hosts...)...)
	r := runTFIn(t, t.TempDir(), home, env, append(args, "--", claude, "-p", "say hi")...)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from the stand-in") {
		t.Fatalf("claude -p: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	standIn.mu.Lock()
	paths := strings.Join(standIn.paths, "\n")
	standIn.mu.Unlock()
	if !strings.Contains(paths, "POST /v1/messages") {
		t.Errorf("the stand-in saw no model call:\n%s", paths)
	}
	found := false
	for _, rec := range decisions(t, home) {
		if rec.Action.Request.Host == "api.anthropic.com" && rec.Action.Request.Path == "/v1/messages" && rec.Gateway == "claude" {
			found = true
		}
	}
	if !found {
		t.Error("no decision record of the model call")
	}
}
