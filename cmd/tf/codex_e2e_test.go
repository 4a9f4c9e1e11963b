//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// codexBin is the real Codex CLI, pinned in testdata/codex and installed
// there by scripts/test (npm ci).
func codexBin(t *testing.T) string { return npmBin(t, "Codex CLI", "codex", "codex") }

// responsesStandIn answers OpenAI's Responses API as a stream, the way
// Codex asks for it, and every other request with {}; it records what it
// was asked. With a script, each model call is answered with the script's
// next shell command (the step is the number of tool outputs the
// conversation already holds, so a retried request gets the same
// answer), and the outputs Codex sends back are kept; the call after the
// last step gets text.
type responsesStandIn struct {
	mu       sync.Mutex
	paths    []string
	auths    []string // the Authorization of each model call
	codeMode bool     // whether the last model call offered the shell in code mode
	script   []string // shell commands
	results  []string // what the model received for each step
}

// functionOutputs reads the function_call_output items of a Responses API
// request, in order.
func functionOutputs(body []byte) []string {
	var req struct {
		Input []struct {
			Type   string          `json:"type"`
			Output json.RawMessage `json:"output"`
		} `json:"input"`
	}
	json.Unmarshal(body, &req)
	var out []string
	for _, it := range req.Input {
		if it.Type != "function_call_output" && it.Type != "custom_tool_call_output" {
			continue
		}
		var text string
		if json.Unmarshal(it.Output, &text) != nil {
			var parts []struct{ Text string }
			json.Unmarshal(it.Output, &parts)
			for _, p := range parts {
				text += p.Text
			}
		}
		out = append(out, text)
	}
	return out
}

func (m *responsesStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.paths = append(m.paths, r.Method+" "+r.Host+r.URL.Path)
	m.mu.Unlock()
	if r.Method != "POST" || r.URL.Path != "/v1/responses" {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	var req struct {
		Model string `json:"model"`
		Tools []struct {
			Type string `json:"type"`
			Name string `json:"name"`
		} `json:"tools"`
	}
	json.Unmarshal(body, &req)
	outputs := functionOutputs(body)
	// Codex's default model runs in code mode: its tools are functions
	// that the JavaScript of one custom exec tool calls, and the shell is
	// exec_command among them; other models get exec_command itself.
	codeMode := !slices.ContainsFunc(req.Tools, func(tl struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}) bool {
		return tl.Name == "exec_command"
	})
	m.mu.Lock()
	m.auths = append(m.auths, r.Header.Get("Authorization"))
	if len(outputs) > len(m.results) {
		m.results = outputs
	}
	m.codeMode = codeMode
	m.mu.Unlock()
	n := len(outputs)
	item := `{"type":"message","role":"assistant","id":"msg_1","content":[{"type":"output_text","text":"all done"}]}`
	switch {
	case len(m.script) == 0:
		item = `{"type":"message","role":"assistant","id":"msg_1","content":[{"type":"output_text","text":"hello from the stand-in"}]}`
	case n < len(m.script) && codeMode:
		cmd, _ := json.Marshal(m.script[n])
		js := fmt.Sprintf("const r = await tools.exec_command({cmd: %s, yield_time_ms: 30000});\ntext(r.output);", cmd)
		item = fmt.Sprintf(`{"type":"custom_tool_call","id":"ctc_%02d","call_id":"call_%02d","name":"exec","input":%q}`, n, n, js)
	case n < len(m.script):
		args, _ := json.Marshal(map[string]any{"cmd": m.script[n], "yield_time_ms": 30000})
		item = fmt.Sprintf(`{"type":"function_call","id":"fc_%02d","call_id":"call_%02d","name":"exec_command","arguments":%q}`, n, n, args)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range [][2]string{
		{"response.created", `{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}`},
		{"response.output_item.done", `{"type":"response.output_item.done","output_index":0,"item":` + item + `}`},
		{"response.completed", fmt.Sprintf(`{"type":"response.completed","response":{"id":"resp_1","status":"completed","model":%q,"usage":{"input_tokens":12,"input_tokens_details":{"cached_tokens":0},"output_tokens":7,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":19}}}`, req.Model)},
	} {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev[0], ev[1])
		w.(http.Flusher).Flush()
	}
}

// codexKey is the real API key: tf holds it, Codex a placeholder.
const codexKey = "sk-proj-codex-real-key-the-agent-never-sees"

// codexRunLimit bounds one Codex session under tf run (about 8 s when
// measured).
const codexRunLimit = 2 * time.Minute

// The real Codex CLI (codex exec) runs inside tf run's sandbox with the
// built-in policy (no --policy), driven by a stand-in for the Responses
// API: the session answers; the model runs shell commands through Codex's
// exec_command tool (called from the JavaScript of its code mode, as its
// default model does), and what tf refuses (a push to main, a POST to an
// unlisted host) reaches the model with the rule and the reason; a push
// to a feature branch lands; the key stays with tf.
func TestCodexInSandbox(t *testing.T) {
	requireSandbox(t)
	codex := codexBin(t)
	t.Run("scripted", func(t *testing.T) { codexScripted(t, codex) })
	t.Run("preset", func(t *testing.T) { codexPreset(t, codex) })
}

func codexScripted(t *testing.T, codex string) {
	home := t.TempDir()
	env := append(clientEnv(t), "OPENAI_API_KEY="+codexKey,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	standIn := &responsesStandIn{script: scriptedSteps}
	modelHosts := []string{"api.openai.com", "chatgpt.com", "ab.chatgpt.com", "auth.openai.com"}
	modelAddr, modelCA := startFakeTLS(t, standIn, modelHosts...)
	w := newScriptedWork(t)

	args := append([]string{"run", "--name", "codex", "--ro", absPath(t, filepath.Join("testdata", "codex"))}, w.up.args()...)
	args = append(args, upstreamArgs(modelAddr, modelCA, modelHosts...)...)
	args = append(args, "--", codex, "exec", "--skip-git-repo-check",
		"--dangerously-bypass-approvals-and-sandbox", "do the work")
	start := time.Now()
	r := startTFWithin(t, codexRunLimit, w.dir, home, env, args...).wait(t)
	t.Logf("codex exec took %v", time.Since(start).Round(time.Millisecond))
	standIn.mu.Lock()
	results, auths, paths, codeMode := standIn.results, standIn.auths, strings.Join(standIn.paths, "\n"), standIn.codeMode
	standIn.mu.Unlock()
	for i, res := range results {
		t.Logf("step %d (%s):\n%s", i, standIn.script[i], res)
	}
	t.Logf("Codex asked the stand-in:\n%s\nstderr:\n%s", paths, r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "all done") || len(results) != len(standIn.script) {
		t.Fatalf("codex exec: exit %d, %d of %d tool results\nstdout:\n%s\nstderr:\n%s", r.code, len(results), len(standIn.script), r.stdout, r.stderr)
	}
	if !codeMode {
		t.Error("Codex's default model was not offered code mode's exec tool")
	}
	w.checkSteps(t, results, "OPENAI_API_KEY=tf-managed", "HTTPS_PROXY=", "SSL_CERT_FILE=")
	// Codex's own requests: its WebSocket handshake is refused (tf cannot
	// read past an upgrade) with 426, on which Codex falls back to HTTPS at
	// once, without retries; its metrics export is refused by name and
	// never reaches the upstream; everything else it sent to OpenAI's
	// hosts was classified by the openai connector.
	handshakes := 0
	for _, rec := range decisions(t, home) {
		a, d := rec.Action, rec.Decision
		switch {
		case a.Type == "tf.unclassified" && a.Request.Host == "api.openai.com":
			handshakes++
		case a.Type == "openai.telemetry.send":
			if d.Effect != rules.Deny || d.Rule != "no-agent-telemetry" {
				t.Errorf("Codex's telemetry %s: %s by %q", a.Request.Path, d.Effect, d.Rule)
			}
		case slices.Contains(modelHosts, a.Request.Host) && a.Connector != "openai":
			t.Errorf("%s %s%s was classified by %q", a.Type, a.Request.Host, a.Request.Path, a.Connector)
		}
	}
	if handshakes == 0 || handshakes > 2 || strings.Contains(r.stderr, "Reconnecting") {
		t.Errorf("%d refused WebSocket handshakes; Codex's stderr:\n%s", handshakes, r.stderr)
	}
	if strings.Contains(paths, "/otlp/") {
		t.Error("refused telemetry reached the upstream")
	}
	checkAgentSession(t, home, "codex", r, results, auths, "Bearer "+codexKey, codexKey,
		`openai\.responses\.create .*in 12 out 7`, "openai")
}

// codexPreset runs codex exec under the starter of tf init --agent codex:
// the session answers, its model calls are allowed by name and its
// telemetry refused by name.
func codexPreset(t *testing.T, codex string) {
	standIn := &responsesStandIn{}
	hosts := []string{"api.openai.com", "chatgpt.com", "ab.chatgpt.com", "auth.openai.com"}
	addr, caFile := startFakeTLS(t, standIn, hosts...)
	github := newUpstream(t, t.TempDir()) // Codex syncs its plugin list from GitHub
	r := runPreset(t, "codex", []string{"OPENAI_API_KEY=" + codexKey},
		append(append(github.args(), upstreamArgs(addr, caFile, hosts...)...),
			"--", codex, "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "say hi"),
		map[string]string{"openai.responses.create": "allow agent-model-calls", "openai.telemetry.send": "deny no-agent-telemetry"})
	if !strings.Contains(r.stdout, "hello from the stand-in") {
		t.Errorf("codex exec under the preset answered:\n%s\n%s", r.stdout, r.stderr)
	}
}
